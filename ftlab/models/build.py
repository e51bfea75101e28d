"""Building a model to train or to load a run into: `get_model` (a sequence classifier with the run's labels,
pad token and attention kernel) and the bf16 rule (`bf16_supported`: CUDA bf16, or AVX512-BF16/AMX + oneDNN)
that training, predict and LLM inference share.
"""
from __future__ import annotations

import os
from typing import List, Optional

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from ftlab.hardware import cpu_flags
from ftlab.models.checkpoints import load_tokenizer, resolve_model_name, untrained_pooler


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX on the CPU and a oneDNN build of torch: bf16 autocast is fast here."""
    return torch.backends.mkldnn.is_available() and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


# FTLAB_BF16=1 / 0 forces the CPU's answer (unset: detect): one test suite runs both precision paths on either
# kind of CPU (.ci/run runs the `precision` tests once each way); oneDNN runs bf16 autocast on AVX2 too, slowly
BF16_ENV = "FTLAB_BF16"


def bf16_supported(device_type: Optional[str] = None) -> bool:
    """bf16 is fast on this device type ("cuda" / "cpu"; default: CUDA when available, else the CPU); on the
    CPU $FTLAB_BF16 (1 / 0) overrides the detection."""
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    forced = os.environ.get(BF16_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "0", "false", "no"):
        return forced in ("1", "true", "yes")
    return cpu_supports_bf16()


def attention_for(config, requested: Optional[str], cpu_fast_dropout: bool) -> Optional[str]:
    """The attn_implementation to load with: the requested one, else "eager" where CPU training with
    FastDropout would otherwise draw SDPA's attention-dropout mask with bernoulli (BERT family), else None
    (transformers' default)."""
    if requested is not None:
        return requested
    if cpu_fast_dropout and getattr(config, "attention_probs_dropout_prob", 0.0) > 0:
        return "eager"
    return None


def get_model(model_name: str, num_labels: int, label_names: Optional[List[str]] = None,
              load_kwargs: Optional[dict] = None, trust_remote_code: bool = False, tokenizer=None,
              attn_implementation: Optional[str] = None, cpu_fast_dropout: bool = False):
    """(tokenizer, AutoModelForSequenceClassification) with a pad token set on both; pass the
    tokenizer when you already have it (it is loaded otherwise). attn_implementation / cpu_fast_dropout:
    see attention_for."""
    path = resolve_model_name(model_name)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_name, trust_remote_code)
    config = AutoConfig.from_pretrained(path, num_labels=num_labels, trust_remote_code=trust_remote_code)
    if label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {n: i for i, n in enumerate(label_names)}
    # Decoder heads pool the last non-pad token: they need pad_token_id in the config.
    config.pad_token_id = tokenizer.pad_token_id
    if untrained_pooler(path):  # the classifier reads BERT's pooler: train it with the head (ftlab/methods/registry.py)
        config.untrained_pooler = True
    load_kwargs = dict(load_kwargs or {})
    attention = attention_for(config, attn_implementation, cpu_fast_dropout)
    if attention is not None:
        load_kwargs["attn_implementation"] = attention
    model = AutoModelForSequenceClassification.from_pretrained(
        path, config=config, use_safetensors=True, trust_remote_code=trust_remote_code, **load_kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # tokens the checkpoint lacks get rows
    return tokenizer, model

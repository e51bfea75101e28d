"""Estimate the training memory of a model + fine-tuning method before the run, and hold the
estimate against what `train.py` runs measured.

    uv run ftlab memory llama-3-70b --method qlora --batch_size 1 --seq_len 2048
    uv run ftlab memory minilm --method lora --batch_size 32 --seq_len 128 --json
    uv run ftlab memory llama-3-70b --method full --zero 3 --gpus 8 --gradient_checkpointing
    uv run ftlab memory --compare outputs/run_a outputs/run_b

The estimate is built from the model *config* only (a local dir / config.json, an embedded name,
a built-in table of common configs that works offline, or a Hub name when online):

    total = weights + weight_copies + gradients + optimizer + activations + overhead

  * weights     frozen params x storage bytes (16-bit, fp32, or NF4 = 0.5 B + quantization
                constants for QLoRA) + trainable params x master bytes (fp32 under mixed precision)
  * weight_copies  the 16-bit copies autocast makes of fp32 weights that backward needs
                (trainable ones are cached for the step; frozen ones are saved by the matmul)
  * gradients   trainable params x gradient bytes (fp32 master grads under HF autocast,
                16-bit under DeepSpeed ZeRO)
  * optimizer   trainable params x state bytes (AdamW 8 = m + v in fp32; AdamW-8bit 2; SGD 0;
                ZeRO keeps the fp32 master copy there too: +4)
  * activations saved-for-backward tensors per layer, in the spirit of Korthikanti et al. 2022
                ("Reducing Activation Recomputation", sbh(34 + 5as/h)), but slot by slot so that
                frozen linears (whose inputs need not be saved), GQA, gated MLPs, RMSNorm's fp32
                upcast, flash vs materialised attention and the LM logits are all accounted for;
                gradient checkpointing keeps only each layer's input + one recomputed layer
  * overhead    fixed: CUDA context + workspaces on GPU; allocator slack + framework on CPU

Under ZeRO stage 1/2/3 the optimizer / +gradients / +weights are divided over `--gpus`; every
figure printed is per GPU.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace

from ftlab import commandline
from ftlab.commandline import one_line_errors
from ftlab.io import split_list
from ftlab.methods.registry import ADAPTER_CONFIGS, MethodArguments
from ftlab.methods.registry import METHODS as TRAIN_METHODS
from ftlab.models.checkpoints import resolve_model_name
from ftlab.runs.record import read_record, upgrade
from ftlab.speed.microbatch import piece_rows

# Imported inside functions: transformers loads only to read a config the built-in table lacks (the estimate itself needs none).

logger = logging.getLogger("memory")

GiB = 1024**3
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2}
OPTIMIZERS = ("adamw", "adamw_8bit", "sgd")
TASKS = ("auto", "seq_cls", "causal_lm", "base")

# NF4 as bitsandbytes stores it (bnb_4bit_use_double_quant=True, blocksize 64): 4 bits per
# weight, one 8-bit absmax per 64-weight block, and one fp32 scale per 256 absmax values.
NF4_BLOCK = 64
NF4_DOUBLE_QUANT_BLOCK = 256
NF4_BYTES_PER_PARAM = 0.5 + 1 / NF4_BLOCK + 4 / (NF4_BLOCK * NF4_DOUBLE_QUANT_BLOCK)
# bitsandbytes' 8-bit Adam: m and v in 1 byte each + one fp32 absmax per 2048-value block each.
ADAM8BIT_BYTES_PER_PARAM = 2 + 2 * 4 / 2048

# Fixed overheads (bytes). GPU: CUDA context + cuBLAS workspace + caching-allocator slack; it is
# NOT seen by torch.cuda.max_memory_allocated, so `--compare` leaves it out for such runs.
GPU_OVERHEAD = int(0.75 * GiB)
# CPU (peak RSS over the pre-model baseline): what the Trainer, the data loader and lazily
# imported libraries touch, plus glibc's free-but-kept arenas, which grow with the size of the
# per-step tensors: overhead = CPU_OVERHEAD_FIXED + CPU_ALLOCATOR_SLACK x activations.
# Calibrated on all-MiniLM-L6-v2 with HF Trainer (see `--compare` figures in the report).
CPU_OVERHEAD_FIXED = 50 * 1024**2
CPU_ALLOCATOR_SLACK = 0.3


# --------------------------------------------------------------------------- configs
# Exact values of the real config.json files (the fields that decide parameter counts and
# activation sizes), so that the common models work offline.
BUILTIN_CONFIGS: dict[str, dict] = {
    "llama-3-70b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 8192, "intermediate_size": 28672,
                        "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
                        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                        "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001},
    "llama-3-8b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
                       "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                       "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                       "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001},
    "llama-3.2-1b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
                         "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                         "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                         "tie_word_embeddings": True, "bos_token_id": 128000, "eos_token_id": 128001},
    "llama-2-7b": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
                       "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                       "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False},
    "mistral-7b": {"model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336,
                       "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                       "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                       "sliding_window": 4096, "tie_word_embeddings": False},
    "qwen1.5-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 2816,
                         "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
                         "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                         "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151643},
    "qwen2.5-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
                         "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                         "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                         "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151643},
    "qwen2.5-7b": {"model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                       "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                       "max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                       "tie_word_embeddings": False, "bos_token_id": 151643, "eos_token_id": 151643},
    "smollm2-135m": {"model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536,
                         "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                         "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
                         "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2},
    "bert-base-uncased": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                              "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                              "type_vocab_size": 2},
    "bert-large-uncased": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": 24,
                               "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 512,
                               "type_vocab_size": 2},
    "distilbert-base-uncased": {"model_type": "distilbert", "vocab_size": 30522, "dim": 768, "n_layers": 6, "n_heads": 12,
                                    "hidden_dim": 3072, "max_position_embeddings": 512},
    "roberta-base": {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
                         "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514,
                         "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "roberta-large": {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 1024, "num_hidden_layers": 24,
                          "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 514,
                          "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2},
    "bart-base": {"model_type": "bart", "vocab_size": 50265, "d_model": 768, "encoder_layers": 6, "decoder_layers": 6,
                      "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
                      "decoder_ffn_dim": 3072, "max_position_embeddings": 1024, "pad_token_id": 1, "bos_token_id": 0,
                      "eos_token_id": 2, "decoder_start_token_id": 2},
    "bart-large": {"model_type": "bart", "vocab_size": 50265, "d_model": 1024, "encoder_layers": 12, "decoder_layers": 12,
                       "encoder_attention_heads": 16, "decoder_attention_heads": 16, "encoder_ffn_dim": 4096,
                       "decoder_ffn_dim": 4096, "max_position_embeddings": 1024, "pad_token_id": 1, "bos_token_id": 0,
                       "eos_token_id": 2, "decoder_start_token_id": 2},
}
# Hub ids (lower-cased, org prefix dropped) that mean a built-in entry.
BUILTIN_ALIASES: dict[str, str] = {
    "meta-llama-3-70b": "llama-3-70b", "meta-llama-3-70b-instruct": "llama-3-70b",
    "llama-3.1-70b": "llama-3-70b", "llama-3.1-70b-instruct": "llama-3-70b",
    "meta-llama-3-8b": "llama-3-8b", "meta-llama-3-8b-instruct": "llama-3-8b",
    "llama-3.1-8b": "llama-3-8b", "llama-3.1-8b-instruct": "llama-3-8b",
    "llama-3.2-1b-instruct": "llama-3.2-1b", "llama-2-7b-hf": "llama-2-7b",
    "mistral-7b-v0.1": "mistral-7b", "qwen1.5-0.5b-chat": "qwen1.5-0.5b",
    "qwen2.5-0.5b-instruct": "qwen2.5-0.5b", "qwen2.5-7b-instruct": "qwen2.5-7b",
    "smollm2-135m-instruct": "smollm2-135m", "smollm2": "smollm2-135m",
}


def builtin_config(name: str):
    """A transformers config object for a built-in name (or Hub alias of one), else None."""
    from transformers import AutoConfig

    key = name.strip().lower().split("/")[-1]
    key = BUILTIN_ALIASES.get(key, key)
    if key not in BUILTIN_CONFIGS:
        return None
    values = dict(BUILTIN_CONFIGS[key])
    return AutoConfig.for_model(values.pop("model_type"), **values)


def load_config(name_or_path: str):
    """Config for a local dir / config.json, an embedded name, a built-in name, or a Hub id."""
    from transformers import AutoConfig  # here: the estimate of a known architecture needs no transformers

    source = name_or_path
    if not os.path.exists(name_or_path):
        try:
            source = resolve_model_name(name_or_path)
        except ValueError as err:  # an embedded model whose package is missing: built-in table next
            logger.debug("embedded %s unavailable: %s", name_or_path, err)
    if os.path.isdir(source) or source.endswith(".json"):
        if not os.path.exists(os.path.join(source, "config.json") if os.path.isdir(source) else source):
            raise FileNotFoundError(f"no config.json in {source!r}: pass a model folder or its config.json")
        return AutoConfig.from_pretrained(source)
    found = builtin_config(source)
    if found is not None:
        return found
    if not (os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"):
        try:
            return AutoConfig.from_pretrained(source)
        except (OSError, ValueError) as err:
            logger.debug("Hub lookup of %s failed: %s", source, err)
    raise ValueError(
        f"unknown model {name_or_path!r} (offline or not on the Hub); built-in: "
        f"{', '.join(sorted(BUILTIN_CONFIGS))}, embedded: minilm, smollm2; or pass a model folder / "
        "path/to/config.json")


# --------------------------------------------------------------------------- architecture
@dataclass(frozen=True)
class Linear:
    """One nn.Linear: `name` is the module path inside its layer, as LoRA target names match it."""

    name: str
    fan_in: int
    fan_out: int
    bias: bool = True
    group: str = ""  # linears reading the same input tensor share a group (q/k/v; gate/up)

    @property
    def params(self) -> int:
        return self.fan_in * self.fan_out + (self.fan_out if self.bias else 0)


@dataclass(frozen=True)
class Block:
    """One transformer layer: its linears, norms and the shapes the activation formula needs."""

    linears: tuple
    norm_params: int
    norms: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    gated: bool  # SwiGLU MLP (Llama/Qwen2/Mistral) instead of fc1 -> GELU -> fc2
    rms: bool  # HF's python RMSNorm (upcasts its input to fp32) instead of nn.LayerNorm
    attentions: int = 1  # BART decoder layers also attend to the encoder
    hidden_dropout: float = 0.0
    attn_dropout: float = 0.0

    @property
    def params(self) -> int:
        return sum(lin.params for lin in self.linears) + self.norm_params


@dataclass(frozen=True)
class Arch:
    """A model reduced to what parameter counting and memory estimation need."""

    family: str
    task: str
    hidden: int
    vocab: int
    num_labels: int
    embedding_params: int  # token (+ position, type) embeddings and embedding norms
    blocks: tuple
    final_params: int  # final norm, pooler: base-model parts after the layers
    head: tuple  # task-head linears (classifier, score, untied lm_head); () when tied
    head_tied: bool  # the LM head is the token embedding matrix
    lora_default: tuple  # peft's default LoRA targets for this family
    embedding_norms: int = 1
    hidden_dropout: float = 0.0
    final_norm_params: int = 0  # the final norm's share of final_params (pre-norm decoders)

    @property
    def layer_params(self) -> int:
        return sum(b.params for b in self.blocks)

    @property
    def norm_params(self) -> int:
        """Every norm of the base model: the layers', the embeddings' LayerNorms (weight + bias), the final one."""
        return sum(b.norm_params for b in self.blocks) + self.embedding_norms * 2 * self.hidden + self.final_norm_params

    @property
    def head_params(self) -> int:
        return sum(lin.params for lin in self.head)

    @property
    def total_params(self) -> int:
        return self.embedding_params + self.layer_params + self.final_params + self.head_params

    @property
    def logits_width(self) -> int:
        return self.vocab if self.task == "causal_lm" else (self.num_labels if self.task == "seq_cls" else 0)


def _attn_linears(names: Sequence[str], h: int, q_out: int, kv_out: int, bias: Sequence[bool],
                  kv_in: int | None = None) -> list[Linear]:
    """q, k, v (reading the same input) and the output projection."""
    q, k, v, o = names
    kv_in = h if kv_in is None else kv_in
    return [Linear(q, h, q_out, bias[0], "qkv"), Linear(k, kv_in, kv_out, bias[1], "qkv"),
            Linear(v, kv_in, kv_out, bias[2], "qkv"), Linear(o, q_out, h, bias[3], "o")]


def _cls_head(task: str, family_head: list[Linear]) -> tuple:
    return tuple(family_head) if task == "seq_cls" else ()


def _bert_like(cfg, task: str, num_labels: int) -> Arch:
    """BERT and RoBERTa: post-LN encoder, absolute + token-type embeddings, pooler."""
    h, inter, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    attn = _attn_linears(("attention.self.query", "attention.self.key", "attention.self.value",
                          "attention.output.dense"), h, h, h, (True,) * 4)
    block = Block(tuple(attn + [Linear("intermediate.dense", h, inter, True, "fc1"),
                                Linear("output.dense", inter, h, True, "fc2")]),
                  norm_params=4 * h, norms=2, hidden=h, intermediate=inter, heads=n, kv_heads=n,
                  head_dim=h // n, gated=False, rms=False, hidden_dropout=cfg.hidden_dropout_prob,
                  attn_dropout=cfg.attention_probs_dropout_prob)
    roberta = cfg.model_type in ("roberta", "xlm-roberta")
    # RobertaForSequenceClassification builds its model without the pooler; BertFor... keeps it.
    pooler = 0 if (roberta and task == "seq_cls") else h * h + h
    head = ([Linear("classifier.dense", h, h), Linear("classifier.out_proj", h, num_labels)] if roberta
            else [Linear("classifier", h, num_labels)])
    if task == "causal_lm":
        raise ValueError(f"task causal_lm is not modelled for {cfg.model_type}; use --task seq_cls or base")
    emb = (cfg.vocab_size + cfg.max_position_embeddings + cfg.type_vocab_size) * h + 2 * h
    return Arch(cfg.model_type, task, h, cfg.vocab_size, num_labels, emb, (block,) * cfg.num_hidden_layers,
                pooler, _cls_head(task, head), False, ("query", "value"),
                hidden_dropout=cfg.hidden_dropout_prob)


def _distilbert(cfg, task: str, num_labels: int) -> Arch:
    d, inter, n = cfg.dim, cfg.hidden_dim, cfg.n_heads
    attn = _attn_linears(("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin"),
                         d, d, d, (True,) * 4)
    block = Block(tuple(attn + [Linear("ffn.lin1", d, inter, True, "fc1"), Linear("ffn.lin2", inter, d, True, "fc2")]),
                  norm_params=4 * d, norms=2, hidden=d, intermediate=inter, heads=n, kv_heads=n,
                  head_dim=d // n, gated=False, rms=False, hidden_dropout=cfg.dropout,
                  attn_dropout=cfg.attention_dropout)
    if task == "causal_lm":
        raise ValueError("task causal_lm is not modelled for distilbert; use --task seq_cls or base")
    head = [Linear("pre_classifier", d, d), Linear("classifier", d, num_labels)]
    emb = (cfg.vocab_size + cfg.max_position_embeddings) * d + 2 * d
    return Arch("distilbert", task, d, cfg.vocab_size, num_labels, emb, (block,) * cfg.n_layers, 0,
                _cls_head(task, head), False, ("q_lin", "v_lin"), hidden_dropout=cfg.dropout)


def _bart(cfg, task: str, num_labels: int) -> Arch:
    """BART: encoder + decoder (with cross-attention); shared token embeddings, learned positions
    with an offset of 2; `causal_lm` means BartForConditionalGeneration (lm_head tied)."""
    d = cfg.d_model
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
    cross = ("encoder_attn.q_proj", "encoder_attn.k_proj", "encoder_attn.v_proj", "encoder_attn.out_proj")

    def layer(heads: int, ffn: int, decoder: bool) -> Block:
        lins = _attn_linears(names, d, d, d, (True,) * 4)
        if decoder:  # cross-attention keys/values read the encoder output (group "enc")
            q, k, v, o = _attn_linears(cross, d, d, d, (True,) * 4)
            lins += [replace(q, group="xq"), replace(k, group="enc"), replace(v, group="enc"), replace(o, group="o")]
        lins += [Linear("fc1", d, ffn, True, "fc1"), Linear("fc2", ffn, d, True, "fc2")]
        return Block(tuple(lins), norm_params=(6 if decoder else 4) * d, norms=3 if decoder else 2, hidden=d,
                     intermediate=ffn, heads=heads, kv_heads=heads, head_dim=d // heads, gated=False, rms=False,
                     attentions=2 if decoder else 1, hidden_dropout=cfg.dropout, attn_dropout=cfg.attention_dropout)

    blocks = ((layer(cfg.encoder_attention_heads, cfg.encoder_ffn_dim, False),) * cfg.encoder_layers
              + (layer(cfg.decoder_attention_heads, cfg.decoder_ffn_dim, True),) * cfg.decoder_layers)
    emb = cfg.vocab_size * d + 2 * (cfg.max_position_embeddings + 2) * d + 2 * 2 * d
    head = [Linear("classification_head.dense", d, d), Linear("classification_head.out_proj", d, num_labels)]
    return Arch("bart", task, d, cfg.vocab_size, num_labels, emb, blocks, 0, _cls_head(task, head),
                task == "causal_lm", ("q_proj", "v_proj"), embedding_norms=2, hidden_dropout=cfg.dropout)


def _llama_like(cfg, task: str, num_labels: int) -> Arch:
    """Llama, Qwen2, Mistral: pre-RMSNorm decoder, GQA, SwiGLU MLP, optional tied lm_head."""
    h, inter, n = cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or n
    hd = getattr(cfg, "head_dim", None) or h // n
    if cfg.model_type == "qwen2":
        bias = (True, True, True, False)  # Qwen2 has q/k/v biases, no o_proj bias
    else:
        bias = (bool(getattr(cfg, "attention_bias", False)),) * 4
    mlp_bias = bool(getattr(cfg, "mlp_bias", False))
    lins = _attn_linears(("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                         h, n * hd, kv * hd, bias)
    lins += [Linear("mlp.gate_proj", h, inter, mlp_bias, "fc1"), Linear("mlp.up_proj", h, inter, mlp_bias, "fc1"),
             Linear("mlp.down_proj", inter, h, mlp_bias, "fc2")]
    block = Block(tuple(lins), norm_params=2 * h, norms=2, hidden=h, intermediate=inter, heads=n, kv_heads=kv,
                  head_dim=hd, gated=True, rms=True, attn_dropout=float(getattr(cfg, "attention_dropout", 0.0)))
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    head: list[Linear] = []
    if task == "seq_cls":
        head = [Linear("score", h, num_labels, False)]
    elif task == "causal_lm" and not tied:
        head = [Linear("lm_head", h, cfg.vocab_size, False)]
    return Arch(cfg.model_type, task, h, cfg.vocab_size, num_labels, cfg.vocab_size * h,
                (block,) * cfg.num_hidden_layers, h, tuple(head), tied and task == "causal_lm",
                ("q_proj", "v_proj"), embedding_norms=0, final_norm_params=h)


# model_type -> builder(config, task, num_labels); decoders default to causal LM, encoders to
# sequence classification (what train.py fine-tunes).
ARCH_BUILDERS: dict[str, Callable] = {
    "bert": _bert_like, "roberta": _bert_like, "distilbert": _distilbert, "bart": _bart,
    "llama": _llama_like, "qwen2": _llama_like, "mistral": _llama_like,
}
DECODERS = ("llama", "qwen2", "mistral")


def build_arch(cfg, task: str = "auto", num_labels: int | None = None) -> Arch:
    """Reduce a transformers config to an `Arch` for `task` (auto|seq_cls|causal_lm|base)."""
    if cfg.model_type not in ARCH_BUILDERS:
        raise ValueError(f"model type {cfg.model_type!r} is not modelled; supported: {', '.join(ARCH_BUILDERS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    if task == "auto":
        task = "causal_lm" if cfg.model_type in DECODERS else "seq_cls"
    labels = num_labels if num_labels is not None else getattr(cfg, "num_labels", 2)
    _positive("num_labels", labels)
    return ARCH_BUILDERS[cfg.model_type](cfg, task, labels)


# --------------------------------------------------------------------------- settings
_TRAIN_DEFAULTS = {f.name: f.default for f in fields(MethodArguments)}


@dataclass
class Settings:
    """One training setup (per GPU batch)."""

    method: str = field(default="full", metadata={"help": "a train.py method (methods.METHODS): full, head, lora ..."})
    batch_size: int = field(default=8, metadata={"help": "per-device train batch size"})
    seq_len: int = field(default=512, metadata={"help": "tokens per sample (the padded length)"})
    dtype: str = field(default="bf16", metadata={"help": "compute dtype; bf16/fp16 = mixed precision"})
    weights_dtype: str | None = field(default=None, metadata={
        "help": "storage dtype of frozen weights (default: --dtype, as PEFT recipes load the base "
                "model in 16 bit; fp32 when the model is loaded in fp32, as train.py does)"})
    optimizer: str = field(default="adamw", metadata={"help": "adamw | adamw_8bit | sgd"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "LoRA targets (module name suffixes or all-linear); default: peft's per-architecture default"})
    # the adapter defaults are train.py's own (methods.MethodArguments), so the two cannot drift apart
    adapter_config: str = field(default=_TRAIN_DEFAULTS["adapter_config"], metadata={
        "help": f"houlsby | pfeiffer | parallel (train.py's default: {_TRAIN_DEFAULTS['adapter_config']})"})
    reduction_factor: int = field(default=_TRAIN_DEFAULTS["reduction_factor"], metadata={
        "help": f"adapter bottleneck = hidden / reduction_factor (train.py's default: "
                f"{_TRAIN_DEFAULTS['reduction_factor']})"})
    adapter_train_layernorm: bool = field(default=_TRAIN_DEFAULTS["adapter_train_layernorm"], metadata={
        "help": f"adapter: the body's norms train too (train.py --adapter_train_layernorm, default "
                f"{str(_TRAIN_DEFAULTS['adapter_train_layernorm']).lower()})"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute layers in backward"})
    zero: int = field(default=0, metadata={"help": "DeepSpeed ZeRO stage 0-3"})
    gpus: int = field(default=1, metadata={"help": "number of GPUs (0 = CPU)"})
    attention: str = field(default="auto", metadata={
        "help": "flash (no s^2 tensors) | eager (softmax saved) | math_cpu | auto (flash on GPU; "
                "on CPU math when attention dropout is on, as torch's CPU SDPA falls back)"})

    @property
    def platform(self) -> str:
        return "cpu" if self.gpus == 0 else "gpu"


def _positive(name: str, value) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


# bottleneck adapters per layer for each adapters config class that methods.ADAPTER_CONFIGS names
ADAPTERS_PER_LAYER = {"SeqBnConfig": 1, "DoubleSeqBnConfig": 2, "ParBnConfig": 1}


def validate(s: Settings) -> None:
    """One-line ValueErrors for settings that make no sense."""
    for name, choices, value in (("method", tuple(TRAIN_METHODS), s.method), ("optimizer", OPTIMIZERS, s.optimizer),
                                 ("dtype", tuple(DTYPE_BYTES), s.dtype),
                                 ("adapter_config", tuple(ADAPTER_CONFIGS), s.adapter_config),
                                 ("attention", ("auto", "flash", "eager", "math_cpu"), s.attention)):
        if value not in choices:
            raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")
    if s.weights_dtype is not None and s.weights_dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown weights_dtype {s.weights_dtype!r}; valid: {', '.join(DTYPE_BYTES)}")
    for name in ("batch_size", "seq_len", "lora_r", "reduction_factor"):
        _positive(name, getattr(s, name))
    if s.gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {s.gpus}")
    if s.zero not in (0, 1, 2, 3):
        raise ValueError(f"zero must be a ZeRO stage 0, 1, 2 or 3, got {s.zero}")
    if s.zero and s.gpus == 0:
        raise ValueError("ZeRO partitions over GPUs: use --gpus N >= 1 with --zero")


# --------------------------------------------------------------------------- estimate
@dataclass
class Estimate:
    """Bytes per GPU (or per process on CPU) of each term; `total` sums them."""

    weights: int
    weight_copies: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    trainable_params: int
    total_params: int
    per_param: dict[str, float]
    notes: list[str]

    @property
    def total(self) -> int:
        return (self.weights + self.weight_copies + self.gradients + self.optimizer + self.activations
                + self.overhead)

    def as_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items()}
        out["total"] = self.total
        out["total_without_overhead"] = self.total - self.overhead
        return out


def _targeted(lin: Linear, targets: Sequence[str]) -> bool:
    if "all-linear" in targets:
        return True
    return any(lin.name == t or lin.name.endswith("." + t) for t in targets)


def trainable_parts(arch: Arch, s: Settings) -> dict[str, int]:
    """Trainable parameter counts by origin: base params that train, and added (LoRA/adapter) ones."""
    head = arch.head_params if arch.head else (arch.vocab * arch.hidden if arch.head_tied else 0)
    if s.method == "full":
        return {"base": arch.total_params, "added": 0}
    # Classification heads are new and always train (peft's modules_to_save, adapters' heads);
    # an LM head stays frozen under PEFT.
    cls_head = arch.head_params if arch.task == "seq_cls" else 0
    if s.method == "head":
        return {"base": head, "added": 0}
    if s.method in ("lora", "qlora"):
        targets = s.lora_target_modules or list(arch.lora_default)
        added = sum(s.lora_r * (lin.fan_in + lin.fan_out) for b in arch.blocks for lin in b.linears
                    if _targeted(lin, targets))
        if added == 0:
            names = sorted({lin.name for b in arch.blocks for lin in b.linears})
            raise ValueError(f"LoRA targets {targets} match no linear layer; names: {', '.join(names)}")
        return {"base": cls_head, "added": added}
    # adapter (adapters library): bottleneck h -> h/rf -> h with biases; pfeiffer puts one after
    # the FFN of every layer, houlsby one after attention and one after the FFN, parallel one beside the FFN.
    per = ADAPTERS_PER_LAYER[ADAPTER_CONFIGS[s.adapter_config]]
    added = 0
    for b in arch.blocks:
        down = b.hidden // s.reduction_factor
        added += per * (2 * b.hidden * down + down + b.hidden)
    return {"base": cls_head + (arch.norm_params if s.adapter_train_layernorm else 0), "added": added}


@dataclass(frozen=True)
class Precision:
    """Bytes per element (activations) or per parameter (the rest) of each training state."""

    act: int          # activations: the compute dtype
    frozen: float     # storage of a frozen weight (NF4 block linears: see Plan.weights)
    trainable: int    # a trainable weight (the master copy)
    grad: int         # its gradient
    opt: float        # its optimizer state (ZeRO: + the fp32 master)
    cast: int         # autocast's 16-bit copy of an fp32 weight; 0 when nothing is cast
    nf4: bool = False  # QLoRA: block linears stored in 4 bit, dequantized on the fly


def precision_of(s: Settings) -> Precision:
    """Bytes per parameter of each state, by precision recipe.

    Mixed precision without ZeRO (HF Trainer / accelerate autocast, LLaMA-Factory): trainable
    params are fp32 masters used directly, so their grads are fp32 (autograd makes grads in the
    param's dtype) and AdamW holds m and v in fp32; autocast adds a 16-bit copy per step.
    Under DeepSpeed ZeRO the model runs in 16 bit (16-bit weights and grads) and the optimizer
    keeps the fp32 master copy next to m and v: the 2 + 2 + 12 = 16 B/param of the ZeRO paper.
    """
    act = DTYPE_BYTES[s.dtype]
    mixed = act == 2
    frozen = DTYPE_BYTES[s.weights_dtype or s.dtype]
    opt = {"adamw": 8.0, "adamw_8bit": ADAM8BIT_BYTES_PER_PARAM, "sgd": 0.0}[s.optimizer]
    nf4 = s.method == "qlora"
    if mixed and s.zero:
        return Precision(act, frozen, trainable=2, grad=2, opt=opt + 4, cast=0, nf4=nf4)
    return Precision(act, frozen, trainable=4, grad=4, opt=opt, cast=2 if mixed else 0, nf4=nf4)


def _attention_mode(block: Block, s: Settings) -> str:
    if s.attention != "auto":
        return s.attention
    if s.platform == "cpu" and block.attn_dropout > 0:
        return "math_cpu"
    return "flash"


@dataclass(frozen=True)
class Plan:
    """One method on one architecture: what trains, how far backward reaches, which dtypes flow."""

    arch: Arch
    s: Settings
    p: Precision
    base_trainable: int  # parameters of the base model (or its head) that train
    added: int           # parameters the method adds (LoRA, adapters)

    @property
    def trainable(self) -> int:
        return self.base_trainable + self.added

    @property
    def full(self) -> bool:
        return self.s.method == "full"

    @property
    def backward_through_layers(self) -> bool:
        return self.s.method != "head"

    @property
    def lora_targets(self) -> list[str]:
        return (self.s.lora_target_modules or list(self.arch.lora_default)) if self.s.method in ("lora", "qlora") else []

    @property
    def linear_params(self) -> int:
        return sum(lin.params for b in self.arch.blocks for lin in b.linears)

    @property
    def stream(self) -> int:
        """Bytes of the residual stream: fp32 when the embeddings are fp32 (masters, or an fp32
        load), even under autocast; QLoRA's 16-bit base keeps it 16-bit."""
        if self.p.nf4:
            return self.p.act
        emb_bytes = self.p.trainable if self.full else self.p.frozen
        return 4 if (emb_bytes == 4 or self.p.act == 4) else self.p.act

    def lora(self, lin: Linear) -> bool:
        return bool(self.lora_targets) and _targeted(lin, self.lora_targets)


def block_activation_bytes(block: Block, plan: Plan) -> float:
    """Bytes one layer saves for backward, per token (b*s = 1), slot by slot.

    Under full fine-tuning every linear's weight trains, so its input is saved for the weight
    gradient; `plan.lora(lin)`: a LoRA branch reads its input (dropout mask + a 16-bit copy for lora_A)."""
    s, act, stream = plan.s, plan.p.act, plan.stream
    h, inter = block.hidden, block.intermediate
    total = 0.0
    # Norm inputs (LayerNorm saves its input; HF's RMSNorm upcasts it to fp32 and saves that).
    total += block.norms * h * (4 if block.rms else stream)
    # Linear inputs, by group. Under autocast a fp32 input is cast separately by each linear, so
    # q, k and v each keep their own 16-bit copy; a 16-bit input is shared.
    widths = {"qkv": h, "xq": h, "enc": h, "fc1": h, "o": block.heads * block.head_dim, "fc2": inter}
    casts_each = stream != act
    for group, width in widths.items():
        members = [lin for lin in block.linears if lin.group == group]
        n_train = len(members) if plan.full else 0
        reads_stream = group in ("qkv", "xq", "enc", "fc1")
        if n_train:
            total += width * act * (n_train if casts_each and reads_stream else 1)
        # LoRA branch: lora_dropout's mask + the 16-bit input lora_A saves
        total += sum(width * (act + _mask_bytes(s, stream if reads_stream else act))
                     for lin in members if plan.lora(lin))
    total += attention_core_bytes(block, s, act)
    # MLP nonlinearity: GELU saves its input; SwiGLU saves gate, silu(gate) and up.
    total += inter * act * (3 if block.gated else 1)
    # Hidden dropout masks after the attention and MLP output projections (16-bit outputs).
    if block.hidden_dropout > 0:
        total += 2 * h * _mask_bytes(s, act)
    return total


def attention_core_bytes(block: Block, s: Settings, act: int) -> float:
    """Per token, per layer: q, k, v (+ output) and the s x s part of every attention module."""
    q_w, kv_w = block.heads * block.head_dim, block.kv_heads * block.head_dim
    mode = _attention_mode(block, s)
    if mode == "flash":  # q, k, v, out (16-bit) + fp32 logsumexp per head
        one = (2 * q_w + 2 * kv_w) * act + 4 * block.heads
    elif mode == "math_cpu":  # torch's CPU math SDPA upcasts to fp32: q, k, v + 3 s x s copies
        one = (q_w + 2 * kv_w) * 4 + 12 * block.heads * s.seq_len
    else:  # eager: softmax output (+ dropout mask and output), q, k, v
        drop = (1 + act) if block.attn_dropout > 0 else 0
        one = (q_w + 2 * q_w) * act + (act + drop) * block.heads * s.seq_len
    return one * block.attentions


def _mask_bytes(s: Settings, input_bytes: int) -> int:
    """Bytes per element of a saved dropout mask: CUDA's fused dropout keeps a bool mask; the
    CPU path multiplies by a noise tensor of the input's dtype and saves that."""
    return 1 if s.platform == "gpu" else input_bytes


# ---- the terms (bytes, before ZeRO partitioning)

def weights_bytes(plan: Plan, notes: list[str]) -> float:
    """Frozen storage + trainable masters (LoRA/adapter weights too: peft keeps them fp32)."""
    frozen = plan.arch.total_params - plan.base_trainable
    if plan.p.nf4:
        # Block linears in NF4; bitsandbytes skips embeddings, norms and heads, which keep the frozen dtype:
        # 16-bit as loaded, fp32 in a train.py run (peft's prepare_model_for_kbit_training upcasts them)
        weights = plan.linear_params * NF4_BYTES_PER_PARAM + (frozen - plan.linear_params) * plan.p.frozen
        notes.append(f"qlora: NF4 {NF4_BYTES_PER_PARAM:.4f} B/param for block linears (double-quant constants "
                     f"included); embeddings/norms/head {8 * plan.p.frozen:g}-bit")
    else:
        weights = frozen * plan.p.frozen
    return weights + plan.trainable * plan.p.trainable


def weight_copies_bytes(plan: Plan) -> float:
    """Autocast's 16-bit casts of fp32 weights. Trainable weights' casts are cached for the step;
    a frozen fp32 weight's cast is saved by its matmul when backward must pass through it (the
    input gradient needs W). NF4 weights are dequantized transiently (see activations)."""
    p, arch = plan.p, plan.arch
    if not p.cast:
        return 0.0
    frozen_fp32 = p.frozen == 4 and not p.nf4
    head_matmul = arch.head_params or (arch.vocab * arch.hidden if arch.head_tied else 0)
    head_trains = plan.full or plan.s.method == "head" or arch.task == "seq_cls"
    copies = 0.0
    if plan.backward_through_layers and (plan.full or frozen_fp32):
        copies += plan.linear_params * p.cast
    if head_trains or (plan.backward_through_layers and frozen_fp32):
        copies += head_matmul * p.cast
    return copies + plan.added * p.cast


def activations_bytes(plan: Plan) -> float:
    """Saved-for-backward tensors of every layer (or one layer's working set), embeddings, logits."""
    arch, s, p = plan.arch, plan.s, plan.p
    tokens = s.batch_size * s.seq_len
    per_layer = [block_activation_bytes(b, plan) for b in arch.blocks]
    biggest = max(per_layer)
    if not plan.backward_through_layers:
        # No layer needs its tensors after the forward: only the transient working set of one
        # layer is alive (plus the head's input).
        activations = tokens * (biggest + arch.hidden * p.act)
    elif s.gradient_checkpointing:
        # each layer's input is kept; one layer is recomputed (its tensors alive) in backward
        activations = tokens * (len(arch.blocks) * arch.hidden * plan.stream + biggest)
    else:
        activations = tokens * (sum(per_layer) + biggest)  # + one layer's gradients in flight
    if plan.backward_through_layers:
        activations += tokens * arch.hidden * plan.stream * (arch.embedding_norms + 1)  # embeddings out
    if arch.task == "causal_lm":
        # logits (b, s, V): 16-bit output + fp32 upcast kept by log_softmax + fp32 grad in backward
        activations += tokens * arch.vocab * (p.act + 8)
    if p.nf4:
        # bitsandbytes dequantizes one weight at a time to 16 bit, forward and backward
        activations += max(lin.params for b in arch.blocks for lin in b.linears) * 2
    return activations


def partition(plan: Plan, terms: dict[str, float], notes: list[str]) -> dict[str, float]:
    """DeepSpeed ZeRO over `gpus`: stage 1 splits the optimizer, 2 also gradients, 3 also weights
    (and gathers one layer's full 16-bit weights at a time, prefetching the next)."""
    s, out = plan.s, dict(terms)
    n = max(s.gpus, 1)
    for stage, key in ((1, "optimizer"), (2, "gradients"), (3, "weights")):
        if s.zero >= stage:
            out[key] /= n
    if s.zero >= 3:
        out["activations"] += 2 * max(b.params for b in plan.arch.blocks) * 2
    if s.gpus > 1 and s.zero == 0:
        notes.append("zero 0 (DDP): every GPU holds the full model, gradients and optimizer")
    return out


def overhead_bytes(s: Settings, activations: float) -> float:
    if s.platform == "gpu":
        return GPU_OVERHEAD
    return CPU_OVERHEAD_FIXED + CPU_ALLOCATOR_SLACK * activations


def estimate(arch: Arch, s: Settings) -> Estimate:
    """Per-GPU (or CPU process) memory of training `arch` with settings `s`: the sum of named terms."""
    validate(s)
    s = replace(s, method=TRAIN_METHODS[s.method].memory_as or s.method)  # lora_scratch costs as lora
    parts = trainable_parts(arch, s)
    plan = Plan(arch, s, precision_of(s), parts["base"], parts["added"])
    if plan.trainable == 0:
        raise ValueError(f"method {s.method!r} trains nothing for task {arch.task!r}: use --task seq_cls or causal_lm")
    notes: list[str] = []
    terms = {"weights": weights_bytes(plan, notes), "weight_copies": weight_copies_bytes(plan),
             "gradients": plan.trainable * plan.p.grad, "optimizer": plan.trainable * plan.p.opt,
             "activations": activations_bytes(plan)}
    terms = partition(plan, terms, notes)
    terms["overhead"] = overhead_bytes(s, terms["activations"])
    per_param = {"frozen_weight": NF4_BYTES_PER_PARAM if plan.p.nf4 else plan.p.frozen,
                 "trainable_weight": plan.p.trainable, "gradient": plan.p.grad, "optimizer": plan.p.opt,
                 "weight_copy": plan.p.cast, "activation": plan.p.act}
    return Estimate(**{k: int(v) for k, v in terms.items()}, trainable_params=int(plan.trainable),
                    total_params=int(arch.total_params + plan.added), per_param=per_param, notes=notes)


# --------------------------------------------------------------------------- output
def human(n: float) -> str:
    return f"{n / GiB:,.2f} GiB" if n >= 0.1 * GiB else f"{n / 1024**2:,.1f} MiB"


def format_estimate(name: str, arch: Arch, s: Settings, est: Estimate) -> str:
    where = "CPU process" if s.platform == "cpu" else (f"per GPU of {s.gpus}" if s.gpus > 1 else "one GPU")
    lines = [(f"{name} ({arch.family}, {arch.task}, {est.total_params / 1e6:,.1f}M params) - {s.method}, "
             f"batch {s.batch_size} x {s.seq_len} tokens, {s.dtype}, {s.optimizer}, zero {s.zero}, "
             f"{'gradient checkpointing, ' if s.gradient_checkpointing else ''}{where}"),
             f"  trainable params  {est.trainable_params:,} ({100 * est.trainable_params / est.total_params:.3g}%)"]
    for key in ("weights", "weight_copies", "gradients", "optimizer", "activations", "overhead"):
        lines.append(f"  {key:<16}  {human(getattr(est, key)):>14}")
    lines.append(f"  {'total':<16}  {human(est.total):>14}")
    lines += [f"  note: {n}" for n in est.notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- compare
def settings_from_run(run: dict) -> tuple:
    """(model name, Settings, task, num_labels) reproducing a run.json's training setup (any schema:
    `record.upgrade` puts every argument in `config`)."""
    run = upgrade(run)
    cfg, data = run.get("config", {}), run.get("data", {})
    on_cpu = str(run.get("memory", {}).get("how", "")).startswith("cpu") or str(run.get("device", "cpu")) == "cpu"
    optim = str(cfg.get("optim", "adamw_torch"))
    seq_len = int(_peak_tokens(data, cfg))
    s = Settings(
        method=run.get("method") or cfg.get("method", "full"),
        # train.py's --micro_batch_tokens runs the longest batch in pieces: one piece's rows set the peak
        batch_size=piece_rows(int(cfg.get("per_device_train_batch_size", 8)), seq_len, cfg.get("micro_batch_tokens")),
        seq_len=seq_len,
        dtype="bf16" if cfg.get("bf16") else ("fp16" if cfg.get("fp16") else "fp32"),
        # train.py loads the model in fp32 and trains under autocast (HF Trainer's --bf16)
        weights_dtype="fp32",
        optimizer="adamw_8bit" if "8bit" in optim else ("sgd" if optim.startswith("sgd") else "adamw"),
        lora_r=int(cfg.get("lora_r") or 8),
        lora_target_modules=split_list(cfg.get("lora_target_modules")) or None,
        adapter_config=str(cfg.get("adapter_config") or "pfeiffer"),
        reduction_factor=int(cfg.get("reduction_factor") or 16),
        adapter_train_layernorm=bool(cfg.get("adapter_train_layernorm", False)),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        gpus=0 if on_cpu else 1,
    )
    model = run.get("model_path") or run.get("model") or cfg.get("model_name_or_path", "minilm")
    if not os.path.exists(str(model)):
        model = run.get("model") or cfg.get("model_name_or_path", "minilm")
    return model, s, "seq_cls", int(data.get("num_labels") or 2)


def _peak_tokens(data: dict, cfg: dict) -> int:
    """Padded length of the largest batch. train.py pads each batch to its longest example, so
    the peak batch holds the longest training example (`data.max_tokens` when the run records
    it); otherwise the truncation length, an upper bound."""
    return data.get("max_tokens") or data.get("max_length") or cfg.get("max_length") or 512


def compare_run(run_dir: str) -> dict:
    """Estimate for one run directory vs its measured peak."""
    run = read_record(run_dir)
    measured = run.get("memory", {}).get("peak_bytes")
    if not measured:
        raise ValueError(f"{run_dir} has no memory.peak_bytes to compare against")
    model, s, task, labels = settings_from_run(run)
    est = estimate(build_arch(load_config(model), task, labels), s)
    # max_memory_allocated does not see the CUDA context: compare without the fixed overhead.
    estimated = est.total if s.platform == "cpu" else est.total - est.overhead
    return {"run": run_dir, "method": s.method, "batch_size": s.batch_size, "seq_len": s.seq_len,
            "how": run["memory"].get("how", "?"), "estimated": int(estimated), "measured": int(measured),
            "ratio": estimated / measured}


def format_compare(rows: list[dict]) -> str:
    head = f"{'run':<40} {'method':<8} {'batch':>5} {'seq':>5} {'estimated':>12} {'measured':>12} {'est/meas':>8}"
    lines = [head]
    for r in rows:
        lines.append(f"{r['run'][-40:]:<40} {r['method']:<8} {r['batch_size']:>5} {r['seq_len']:>5} "
                     f"{human(r['estimated']):>12} {human(r['measured']):>12} {r['ratio']:>8.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
@dataclass
class MemoryArguments:
    """What `ftlab memory` does besides the training Settings."""

    compare: list[str] | None = field(default=None, metadata={
        "help": "run folders (or run.json files): estimate vs measured peak for each"})
    task: str = field(default="auto", metadata={"help": "auto | seq_cls | causal_lm | base"})
    num_labels: int | None = field(default=None, metadata={"help": "classes of a seq_cls head"})
    json: bool = field(default=False, metadata={"help": "print one JSON object"})


def parse_args(argv: Sequence[str] | None = None) -> tuple[str | None, Settings, MemoryArguments]:
    """(model, Settings, MemoryArguments) from the command line (HfArgumentParser over both dataclasses)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser((Settings, MemoryArguments), prog="ftlab memory", description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="model folder, config.json, embedded/built-in name or Hub id")
    s, margs, rest = commandline.parse_dataclasses(parser, argv)
    # --lora_target_modules takes names separated by spaces or commas
    targets = [t for item in (s.lora_target_modules or []) for t in split_list(item)]
    return rest.model, replace(s, lora_target_modules=targets or None), margs


def run_estimate(model: str | None, s: Settings, margs: MemoryArguments) -> dict:
    if not model:
        raise ValueError("give a model (name, folder or config.json) or --compare RUN_DIR...")
    validate(s)
    arch = build_arch(load_config(model), margs.task, margs.num_labels)
    est = estimate(arch, s)
    return {"text": format_estimate(model, arch, s, est),
            "json": {"model": model, "task": arch.task, "settings": asdict(s), **est.as_dict()}}


@one_line_errors()
def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model, s, margs = parse_args(argv)
    if margs.compare:
        rows = [compare_run(d) for d in margs.compare]
        print(json.dumps(rows, indent=2) if margs.json else format_compare(rows))
    else:
        result = run_estimate(model, s, margs)
        print(json.dumps(result["json"], indent=2) if margs.json else result["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

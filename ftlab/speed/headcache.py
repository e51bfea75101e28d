"""Head-only training on features the frozen body computes once.

With `--method head` only the classification head trains, so the body's output for an example never
changes: running the body at every step of every epoch repeats the same work. Here the body runs once
per split (eval mode, batched, bf16 autocast when the run uses it), the vector the head reads is kept
([CLS] for encoders, the last non-pad token for decoders: shape (examples, hidden)), and Trainer then
trains the model's own head modules on those vectors. An epoch costs a few milliseconds instead of a
forward pass of the body, so the head can train for as many epochs as it needs to converge.

It is the same method (same trainable parameters, same loss, same optimizer and schedule); what
differs: the body's dropout is off while the features are computed. In the step-by-step head-only run
the frozen body still sits in train mode, so its dropout perturbs the head's input every epoch (a
little noise, a regulariser); cached features are the eval-mode ones the model sees at test time.

Architectures: HEADS maps a config.model_type to (body -> head input, head input -> logits); other
architectures fall back to the step-by-step loop (`supports`).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch
from torch import nn
from transformers import DataCollatorWithPadding
from transformers.modeling_outputs import SequenceClassifierOutput

# Imported inside functions: `datasets` loads only when features are cached.

logger = logging.getLogger("ftlab.headcache")


@dataclass(frozen=True)
class HeadSpec:
    """Where one architecture's head reads the body, and the head's own forward."""

    modules: List[str]  # module paths the head uses (the trainable ones among them train)
    body: Callable[[nn.Module, Dict[str, torch.Tensor]], torch.Tensor]  # (model, batch) -> (B, hidden)
    head: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (model, (B, hidden)) -> logits (B, labels)


def _first_token(base: str):
    def body(model, batch):
        out = getattr(model, base)(**{k: v for k, v in batch.items() if k != "labels"})
        return out.last_hidden_state[:, 0]  # (B, T, H) -> (B, H): the [CLS] / <s> position
    return body


def _last_non_pad(model, batch):
    # HF's rule for decoder classification: the rightmost token that is not the pad token
    input_ids = batch["input_ids"]
    hidden = model.model(input_ids=input_ids, attention_mask=batch.get("attention_mask")).last_hidden_state
    non_pad = (input_ids != model.config.pad_token_id).to(torch.int32)
    last = (torch.arange(input_ids.shape[-1], device=input_ids.device, dtype=torch.int32) * non_pad).argmax(-1)
    return hidden[torch.arange(input_ids.shape[0], device=hidden.device), last]


def _bert_head(model, x):
    # BertPooler reads position 0 of a sequence: give it a length-1 sequence (B, 1, H)
    return model.classifier(model.dropout(model.bert.pooler(x[:, None])))


def _distilbert_head(model, x):
    return model.classifier(model.dropout(torch.relu(model.pre_classifier(x))))


def _roberta_head(model, x):
    return model.classifier(x[:, None])  # RobertaClassificationHead reads position 0 too


_DECODER = HeadSpec(["score"], _last_non_pad, lambda model, x: model.score(x))
HEADS: Dict[str, HeadSpec] = {
    "bert": HeadSpec(["bert.pooler", "dropout", "classifier"], _first_token("bert"), _bert_head),
    "distilbert": HeadSpec(["pre_classifier", "dropout", "classifier"], _first_token("distilbert"),
                           _distilbert_head),
    "roberta": HeadSpec(["classifier"], _first_token("roberta"), _roberta_head),
    "xlm-roberta": HeadSpec(["classifier"], _first_token("roberta"), _roberta_head),
    "qwen2": _DECODER, "llama": _DECODER, "mistral": _DECODER,
}


def supports(model: nn.Module) -> bool:
    return getattr(model.config, "model_type", None) in HEADS and not hasattr(model, "peft_config")


class FeatureHead(nn.Module):
    """The model's head as a module of its own: forward(features (B, H), labels) -> loss, logits.

    Holds the head's modules (shared with the model, so training here trains the model's head);
    `model` is the whole model, kept outside the module tree so checkpoints hold the head only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.spec = HEADS[model.config.model_type]
        self.parts = nn.ModuleDict({path.replace(".", "__"): model.get_submodule(path) for path in self.spec.modules})
        self.config = model.config
        object.__setattr__(self, "model", model)

    def forward(self, features: torch.Tensor, labels: torch.Tensor = None) -> SequenceClassifierOutput:
        logits = self.spec.head(self.model, features)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


@torch.no_grad()
def compute_features(model: nn.Module, split, tokenizer, batch_size: int = 64, bf16: bool = False) -> torch.Tensor:
    """(examples, hidden) float32: what the head reads, for every example of a tokenized split, in order."""
    spec, collate = HEADS[model.config.model_type], DataCollatorWithPadding(tokenizer)
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in split.column_names]
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = []
    try:
        with autocast:
            for start in range(0, len(split), batch_size):
                rows = split[start:start + batch_size]  # column -> list of rows
                batch = collate([{c: rows[c][i] for c in columns} for i in range(len(rows[columns[0]]))])
                out.append(spec.body(model, {k: v.to(device) for k, v in batch.items()}).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, model.config.hidden_size)


def feature_splits(model: nn.Module, tokenized, tokenizer, batch_size: int = 64, bf16: bool = False):
    """(DatasetDict like `tokenized` with columns `features` (the head's input) and `label`,
    {split: seconds the body took on it}): the train split's seconds are part of training's cost."""
    from datasets import Dataset, DatasetDict

    splits, seconds = {}, {}
    for name, split in tokenized.items():
        start = time.perf_counter()
        feats = compute_features(model, split, tokenizer, batch_size, bf16)
        seconds[name] = time.perf_counter() - start
        ds = Dataset.from_dict({"features": feats.numpy(), "label": split["label"]})
        splits[name] = ds.cast_column("label", split.features["label"])
        logger.info("head features of %s: %d x %d in %.1f s, computed once by the frozen body", name,
                    *feats.shape, seconds[name])
    return DatasetDict(splits), seconds

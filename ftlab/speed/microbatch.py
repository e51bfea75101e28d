"""Token-budget micro-batches: a long batch's gradient in pieces, to cap the memory of its step.

With dynamic padding and length-grouped batches the longest batch of restaurant_sup is 32 x 92 tokens
against a median of 32 x 25; Hugging Face's length grouping puts that batch first, and its activations
(linear in tokens, attention quadratic in length) set the process's peak memory, which the allocator then
keeps. Splitting such a batch along the batch dimension into micro-batches of at most `max_tokens` padded
tokens, each trimmed of its all-padding tail columns, and summing their backward passes with each
micro-batch's loss weighted by its share of the batch gives the batch's own gradient (the loss is a mean
over examples; BERT-like models have no statistic across the batch): the method is unchanged, only the
dropout draws and the float summation order differ. fairseq's `--max-tokens` caps tokens by changing the
batch; this keeps the batch, as gradient accumulation does.
"""
from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch


def trim_right_padding(chunk: Dict) -> Dict:
    """Drop the trailing columns where no row has a real token (attention_mask 0 everywhere).
    Only the right end: with left padding (decoders) nothing trails, and positions stay as they were."""
    mask = chunk.get("attention_mask")
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        return chunk
    length = mask.shape[1]
    used = mask.any(dim=0).nonzero()
    keep = int(used.max()) + 1 if used.numel() else length
    if keep == length:
        return chunk
    return {k: v[:, :keep] if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[1] == length else v
            for k, v in chunk.items()}


def piece_rows(rows: int, length: int, max_tokens: int | None) -> int:
    """Rows per micro-batch for a batch of rows x length padded tokens: ceil(rows / pieces) with
    pieces = ceil(tokens / max_tokens), at least one row (a row is never cut); rows when it fits or the
    budget is 0/None. `ftlab memory` reads a run's peak batch through this too."""
    budget = int(max_tokens or 0)
    if budget <= 0 or rows * length <= budget:
        return rows
    pieces = min(rows, math.ceil(rows * length / budget))
    return math.ceil(rows / pieces)


def split_batch(inputs: Mapping, max_tokens: int | None) -> List[Dict]:
    """The batch as micro-batches of at most max_tokens padded tokens (rows split as evenly as the count
    allows, each trimmed of its padding tail); one piece, untouched, when it fits or max_tokens is 0/None.
    A single row longer than the budget stays whole (a row is never cut)."""
    ids = inputs.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        return [dict(inputs)]  # no token ids (cached head features): nothing to measure in tokens
    rows, length = ids.shape
    per_piece = piece_rows(rows, length, max_tokens)
    if per_piece == rows:
        return [dict(inputs)]
    chunks = []
    for start in range(0, rows, per_piece):
        chunk = {k: v[start:start + per_piece] if isinstance(v, torch.Tensor) and v.dim() >= 1
                 and v.shape[0] == rows else v for k, v in inputs.items()}
        chunks.append(trim_right_padding(chunk))
    return chunks


def loss_shares(chunks: List[Mapping], class_weights: torch.Tensor | None = None) -> List[float]:
    """Each micro-batch's weight in the batch's mean loss: its share of the examples, or with class weights
    (torch's weighted mean sum_i w[y_i] CE_i / sum_i w[y_i]) its share of the summed weights."""
    if class_weights is None or any("labels" not in c for c in chunks):
        sizes = [float(c["input_ids"].shape[0]) for c in chunks]
    else:
        sizes = [float(class_weights.to(c["labels"].device)[c["labels"]].sum()) for c in chunks]
    total = sum(sizes)
    return [s / total for s in sizes]


def longest_first(lengths: Sequence[int]) -> np.ndarray:
    """Indices of the examples, longest first (ties in their given order): batches cut from this order pad each
    to about its own length. Evaluation (FtTrainer) and `ftlab predict` share it, so both make the same batches."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")

"""Dropout with a cheaper CPU mask: two mask elements per random draw instead of one.

Why: on the CPU torch draws a dropout mask with `bernoulli_`, one Mersenne-Twister call per element, on one
thread. A training step of MiniLM at batch 32 spent 35 ms of ~300 ms there (torch.profiler: 13.5% of self
CPU time, 20 calls a step), and LoRA on every linear layer adds one dropout per layer input (36 more calls,
six of them 1536 wide). `keep_mask` takes 31 random bits per call from the same seeded generator
(`random_` on int32) and reads them as two 15-bit lanes, compared against a threshold: the mask costs about
a fifth of bernoulli's, and forward + backward of a [32, 27, 384] bf16 dropout takes 1.6 ms instead of
3.1 ms here (README, speed). (Four lanes of an int64 draw are faster, 1.4 against 2.4 ms for a [896, 1536]
mask on the AVX2 EPYC, but draw other masks from the same seed: tried on 2026-12-03 and reverted, its
accuracy check failed, results/search/fused_lora.md.)

The drop probability is p rounded to a multiple of 1/32768 (|error| <= 1.6e-5; p = 0.1 -> 0.100006), and
the kept values are scaled by exactly 1 / (1 - that probability), so E[output] = input as with nn.Dropout.
Masks come from torch's default CPU generator: `set_seed` makes a run repeat. Off the CPU (CUDA draws
masks with Philox, fast) and in eval mode it is nn.Dropout itself.
"""
from __future__ import annotations

import math

import torch
from torch import nn

LANE_BITS = 15  # `random_` on int32 gives 31 random bits: two 15-bit lanes, one per 16-bit half
LANES = 1 << LANE_BITS  # 32768 values per lane


def drop_threshold(p: float) -> int:
    """Lane values below this are dropped: p rounded to a multiple of 1/32768."""
    return min(LANES, round(p * LANES))


def keep_scale(p: float) -> float:
    """1 / (1 - the drop probability keep_mask applies): the kept values' scale, so E[output] = input."""
    return LANES / (LANES - drop_threshold(p))


def random_lanes(n: int) -> torch.Tensor:
    """[n] int16, independent uniform values in 0 .. 32767: two per int32 draw of the default generator."""
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_()  # [ceil(n/2)], 0 .. 2^31-1
    # little-endian int16 halves of a draw: bits 0-15 and 16-31 (bit 31 is always 0); each keeps its low 15
    # bits (in place: `bits` is this function's own)
    return bits.view(torch.int16)[:n].bitwise_and_(LANES - 1)


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Bool mask of `shape`, True with probability 1 - drop_threshold(p) / 32768, independently per element."""
    return (random_lanes(math.prod(shape)) >= drop_threshold(p)).view(shape)


class _MaskedScale(torch.autograd.Function):
    """x * mask * scale, keeping only the bool mask for the backward (1 byte an element, as torch's own
    dropout keeps; autograd of x.mul(mask.to(dtype)) would keep the mask in x's dtype: 4 bytes an element
    for the float32 attention probabilities of eager attention, [batch, heads, query, key] a layer)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(mask)
        ctx.scale = scale
        # torch's own CPU dropout arithmetic: x * mask, then the scale as a float scalar (one rounding; a mask
        # pre-multiplied in bf16 would hold scale rounded to 8 bits, 1.109 for 1.111, and bias every output)
        return x.mul(mask.to(x.dtype)).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad.mul(mask.to(grad.dtype)).mul_(ctx.scale), None, None


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of x with keep_mask; the gradient is the same mask times the same scale."""
    threshold = drop_threshold(p)
    if threshold >= LANES:
        return x * 0.0  # p = 1: everything dropped, as nn.Dropout does
    return _MaskedScale.apply(x, keep_mask(x.shape, p), keep_scale(p))


class FastDropout(nn.Dropout):
    """nn.Dropout (same p, same state) with keep_mask on CPU tensors in training mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        return fast_dropout(x, self.p)


def use_fast_dropout(model: nn.Module) -> int:
    """Turn every plain nn.Dropout in `model` (the model's own, peft's lora_dropout, the head's) into a
    FastDropout in place; returns how many. Dropout has no weights: state_dict and checkpoints are unchanged."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Dropout:
            module.__class__ = FastDropout  # same object: every reference to it (ModuleDicts too) follows
            count += 1
    return count

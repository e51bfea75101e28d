"""A Linear layer with a narrow input (LoRA's B: r inputs) whose CPU backward runs its two matmuls in the
layouts the CPU BLAS is fast at.

Why: for y = h B^T (h: [N, r] the LoRA-A output, B: [out, r]), nn.Linear's backward computes
grad_h = g B ([N, out] @ [out, r]) and grad_B = g^T h ([out, N] @ [N, r]) with g: [N, out]. With r = 8 both
products are "skinny" (8 columns), and the BLAS kernels chosen for those layouts run at 3-15 GFLOP/s. The
same products written as (B^T g^T)^T and (h^T g)^T, an 8-row result transposed as a view, run 2-4x faster.
Measured on the 2-core AVX2 EPYC, fp32, N = 900 (a batch of 32 x 28 tokens), r = 8, out = 1,536 (BERT's
intermediate layer): grad_h 1.57 -> 0.54 ms, grad_B 3.44 -> 0.81 ms; for out = 384: 0.41 -> 0.19 and
0.65 -> 0.18 ms. In a whole step of MiniLM with peft LoRA on all linear layers (36 B matrices) far less is
left: 0-13% (median steps, five batch shapes; labs/lora_backward.py, results/speed/lora_backward.md).

Same products, same float32 arithmetic (the sum over N runs in another order: gradients agree to ~1e-6
relative). Only float32 training on the CPU takes this path: under bf16 autocast (oneDNN's kernels) it is not
measured, so autocast, CUDA, evaluation without gradients and layers with a bias use nn.Linear's own code.
Up to r = 8 the new layouts were faster at every N tried (300-4,096); at r = 16 and 64 they were not always.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_IN_FEATURES = 8  # the widest input (LoRA rank) where the layouts below were measured faster


class _NarrowLinear(torch.autograd.Function):
    """y = x W^T for a narrow x; the backward's matmuls produce [r, *] results and transpose them as views."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # x: [..., r], weight: [out, r]
        ctx.save_for_backward(x, weight)  # what F.linear's own backward keeps: x and the weight
        return F.linear(x, weight)  # [..., out]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # grad: [..., out]
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])  # [N, out]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(weight.t(), g.t()).t().reshape(x.shape)  # [r, out] @ [out, N] -> [N, r]
        if ctx.needs_input_grad[1]:
            grad_weight = torch.mm(x.reshape(-1, x.shape[-1]).t(), g).t()  # [r, N] @ [N, out] -> [out, r]
        return grad_x, grad_weight


def takes_fast_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Float32 on the CPU, gradients on, no autocast, and an input no wider than MAX_IN_FEATURES."""
    return (weight.shape[1] <= MAX_IN_FEATURES and x.device.type == "cpu" and torch.is_grad_enabled()
            and x.dtype == weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"))


def narrow_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """F.linear(x, weight) without a bias; the fast backward where takes_fast_path holds."""
    if takes_fast_path(x, weight):
        return _NarrowLinear.apply(x, weight)
    return F.linear(x, weight)


class NarrowInputLinear(nn.Linear):
    """nn.Linear (same weight, same state_dict) whose forward goes through narrow_linear when it has no bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return narrow_linear(x, self.weight)
        return super().forward(x)


def use_narrow_linear(model: nn.Module) -> int:
    """Turn every plain bias-free nn.Linear with at most MAX_IN_FEATURES inputs (peft's lora_B modules) into a
    NarrowInputLinear in place; returns how many. Same object, same weight: checkpoints are unchanged."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.bias is None and module.in_features <= MAX_IN_FEATURES:
            module.__class__ = NarrowInputLinear
            count += 1
    return count

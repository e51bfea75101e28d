"""peft's LoRA Linear in one autograd node for float32 CPU training: the same function, fewer passes.

LoRA (Hu et al. 2021, eq. 3) with peft's input dropout: y = x W^T + b + s * dropout(x) A^T B^T, with
x: [N, in], W: [out, in] and b frozen, A: [r, in], B: [out, r], s = lora_alpha / r. peft runs it as six autograd
nodes (the frozen Linear, the dropout, A, B, the scale multiply, the add), each a pass over an [N, in] or
[N, out] tensor plus Python dispatch; on the 2-core AVX2 EPYC these cost ~120 ms of a 437 ms MiniLM step with
LoRA on all 36 Linears (labs/lora_ceiling.py), besides the ~31 ms of drawing the dropout masks. Fused: 380 ms
(results/search/fused_lora.md).

Here the dropout's 1/(1-p) and s fold into one scalar on the [N, r] product and the LoRA term is added in place
by addmm: forward = one addmm for W, one mask multiply, x_d A^T ([N, r]), and one addmm_ for B. The backward
computes only what LoRA trains: the input gradient g W + ((s' g B) A) * mask, A's and B's gradients, with the
narrow products in the layouts ftlab/speed/narrowlinear.py measured faster ([r, *] results transposed as views). The
mask is FastDropout's (fastdropout.random_lanes, the draw keep_mask makes: same generator, same count, at the
same point of the forward), so a model trains on the same masks as with peft's modules; values agree to float32 rounding.
The node keeps x itself and the int16 lanes, not a dropped copy of x: layers that read one input (q/k/v) share it.

Without dropout (p = 0) both paths read the same x and the node computes with the merged weight W + s B A (built
each pass, out x in x r multiply-adds): one GEMM forward, x [W + s B A; A]^T, gives y and u = x A^T, and one
backward, g [W + s B A | B], gives the input gradient and g B, as a frozen Linear's two GEMMs with r more
columns; no [N, in] LoRA term is written or added. MiniLM at batch 32 x 64 tokens, AVX2 EPYC, fp32: the default
run (bbc_news, dropout 0) trains 1.37-1.46x full fine-tuning's samples/s, where dropout 0.1 gave 0.98x (its 36
masks alone cost 89-114 ms of a ~1,100 ms step): results/lora_cheaper_than_full.

Taken only where it was measured and where it is the same function: float32 on the CPU with gradients on and no
autocast, one active vanilla LoRA adapter (no DoRA, no LoRA bias, not merged), a plain nn.Linear base whose
weight and bias are frozen, and a dropout that is FastDropout, nn.Identity, or p = 0 / eval mode. Anything
else (evaluation, bf16 autocast, CUDA, mixed adapter batches) runs peft's own forward.
"""
from __future__ import annotations

import functools
import sys
from typing import Optional

import torch
from torch import nn

from ftlab.speed.fastdropout import LANES, FastDropout, drop_threshold, keep_scale, random_lanes

# Imported inside functions: peft's Linear loads only when a model is patched.


class _FusedLora(torch.autograd.Function):
    """y = x W^T + b + scale * (x * mask) A^T B^T; gradients for x, A and B only (W and b are frozen)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scale: float, p: float):
        x2 = x.reshape(-1, x.shape[-1])  # [N, in]
        if p == 0:
            return _FusedLora._forward_merged(ctx, x, x2, weight, bias, lora_a, lora_b, scale)
        y = torch.addmm(bias, x2, weight.t()) if bias is not None else torch.mm(x2, weight.t())  # [N, out]
        # FastDropout's draw (same generator, same count), its mask made as a float tensor directly
        lanes = random_lanes(x2.numel())  # [N * in] int16; a bool mask would cost a cast per multiply
        xd = x2 * _keep(lanes, p, x2)  # [N, in]: dropout without its 1/(1-p), which `scale` holds
        u = torch.mm(xd, lora_a.t())  # [N, r]
        y.addmm_(u, lora_b.t(), alpha=scale)  # [N, out] += scale * u B^T
        # kept for the backward: x itself (no copy: layers that read one input, as q/k/v do, share it, where peft's
        # A nodes keep one dropped copy each), u as peft's B node keeps it, and the lanes (2 bytes an element where
        # peft's dropout keeps a 1-byte bool mask) to remake the float mask; x_d is made again there (one pass)
        ctx.save_for_backward(x2, u, lanes, weight, lora_a, lora_b)
        ctx.scale, ctx.p, ctx.x_shape = scale, p, x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def _forward_merged(ctx, x, x2, weight, bias, lora_a, lora_b, scale: float):
        """Without dropout both paths read the same x, so y = x (W + s B A)^T + b, and u = x A^T (B's gradient
        needs it) comes from the same GEMM: x [W + s B A; A]^T, [N, out + r]. The split form adds a pass over the
        [N, out] output and one over x for u. Same function; float32 rounding differs (~1e-7 relative)."""
        out = weight.shape[0]
        wa = _stacked(weight, lora_b, lora_a, scale, lora_a, rows=True)  # [out + r, in]
        o = torch.addmm(torch.cat([bias, bias.new_zeros(lora_a.shape[0])]), x2, wa.t()) if bias is not None \
            else torch.mm(x2, wa.t())  # [N, out + r]
        u = o[:, out:].clone()  # [N, r], its own: keeping a view would keep all of o
        # x itself is kept, no copy (the previous layer's output, alive anyway); the merged weight is rebuilt in
        # the backward rather than kept: one [out, in] copy per layer would hold a second frozen model in memory
        ctx.save_for_backward(x2, u, None, weight, lora_a, lora_b)  # lanes None: no dropout
        ctx.scale, ctx.p, ctx.x_shape = scale, 0.0, x.shape
        # y: o's first `out` columns, a strided view (row stride out + r); the [..., out] view splits only N
        return o[:, :out].view(*x.shape[:-1], out)

    @staticmethod
    def backward(ctx, grad):  # grad: [..., out]
        x2, u, lanes, weight, lora_a, lora_b = ctx.saved_tensors  # x2: [N, in]
        need_x, _, _, need_a, need_b = ctx.needs_input_grad[:5]
        g = grad.reshape(-1, grad.shape[-1])  # [N, out]
        grad_x = grad_a = grad_b = None
        if need_x and lanes is None:  # no dropout: g [W + s B A | B], one GEMM for the input gradient and g B
            o = torch.mm(g, _stacked(weight, lora_b, lora_a, ctx.scale, lora_b, rows=False))  # [N, in + r]
            grad_x = o[:, :x2.shape[1]].view(ctx.x_shape)
            gu_t = o[:, x2.shape[1]:].t().mul(ctx.scale)  # [r, N] = (scale * g B)^T
        else:
            gu_t = torch.mm(lora_b.t(), g.t()).mul_(ctx.scale)  # [r, N] = (scale * g B)^T
        if need_b:
            grad_b = torch.mm(u.t(), g).mul_(ctx.scale).t()  # [r, N] @ [N, out] -> [out, r] as a view
        keep = _keep(lanes, ctx.p, x2) if lanes is not None else None  # [N, in] 1.0 / 0.0
        if need_a:
            grad_a = torch.mm(gu_t, x2 if keep is None else x2 * keep)  # [r, N] @ [N, in] -> [r, in]
        if need_x and keep is not None:
            grad_x = torch.mm(g, weight)  # [N, out] @ [out, in]: the frozen path
            lora_x = torch.mm(gu_t.t(), lora_a)  # [N, r] @ [r, in]: LoRA's path, before the dropout
            grad_x = grad_x.addcmul_(lora_x, keep).view(ctx.x_shape)
        return grad_x, None, None, grad_a, grad_b, None, None


def _stacked(weight: torch.Tensor, lora_b: torch.Tensor, lora_a: torch.Tensor, scale: float, extra: torch.Tensor,
             rows: bool) -> torch.Tensor:
    """The merged weight W + scale B A ([out, in]) with `extra` beside it in one buffer: below it (rows:
    [out + r, in], extra = A) or to its right ([out, in + r], extra = B), so one GEMM computes both products."""
    out, n_in = weight.shape
    r = lora_a.shape[0]
    buf = torch.empty((out + r, n_in) if rows else (out, n_in + r), dtype=weight.dtype)
    merged, beside = (buf[:out], buf[out:]) if rows else (buf[:, :n_in], buf[:, n_in:])
    torch.addmm(weight, lora_b, lora_a, alpha=scale, out=merged)
    beside.copy_(extra)
    return buf


def _keep(lanes: torch.Tensor, p: float, like: torch.Tensor) -> torch.Tensor:
    """keep_mask's elements (lane >= threshold) as 1.0 / 0.0 in `like`'s dtype and shape, in one pass."""
    keep = torch.empty(like.shape, dtype=like.dtype)
    torch.ge(lanes.view(like.shape), drop_threshold(p), out=keep)
    return keep


def _dropout_p(dropout: nn.Module) -> Optional[float]:
    """The drop probability the fused node applies, or None where peft's own module must run."""
    if isinstance(dropout, nn.Identity):
        return 0.0
    if isinstance(dropout, nn.Dropout) and (not dropout.training or dropout.p == 0):
        return 0.0
    if type(dropout) is FastDropout and not dropout.inplace and drop_threshold(dropout.p) < LANES:
        return dropout.p
    return None  # nn.Dropout in training draws bernoulli masks: keep its own stream; p = 1 drops everything


def takes_fused_path(layer, x: torch.Tensor, args: tuple, kwargs: dict) -> Optional[tuple]:
    """(adapter name, dropout p) when `layer`'s forward of x can run as one _FusedLora node, else None."""
    base = layer.get_base_layer()
    if (args or kwargs or layer.disable_adapters or layer.merged or type(base) is not nn.Linear
            or layer.fan_in_fan_out or len(layer.active_adapters) != 1):
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant or layer.lora_bias.get(name, False):
        return None
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    frozen = not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad)
    if not (frozen and torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and lora_a.bias is None and lora_b.bias is None
            and base.weight.dtype == lora_a.weight.dtype == lora_b.weight.dtype == torch.float32):
        return None
    p = _dropout_p(layer.lora_dropout[name])
    return None if p is None else (name, p)


@functools.lru_cache(maxsize=None)
def fused_lora_class():
    """FusedLoraLinear, a subclass of peft's lora.Linear (built on first use: peft is heavy to import)."""
    from peft.tuners.lora.layer import Linear

    class FusedLoraLinear(Linear):
        """peft's lora.Linear (same parameters, same state_dict) with the fused float32 CPU training path."""

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            path = takes_fused_path(self, x, args, kwargs)
            if path is None:
                return super().forward(x, *args, **kwargs)
            name, p = path
            base_layer = self.get_base_layer()
            scale = self.scaling[name] * (keep_scale(p) if p > 0 else 1.0)
            return _FusedLora.apply(x, base_layer.weight, base_layer.bias, self.lora_A[name].weight,
                                    self.lora_B[name].weight, scale, p)

    FusedLoraLinear.__qualname__ = "FusedLoraLinear"  # found by pickle as fusedlora.FusedLoraLinear
    globals()["FusedLoraLinear"] = FusedLoraLinear
    return FusedLoraLinear


def use_fused_lora(model: nn.Module) -> int:
    """Turn every peft lora.Linear of `model` into a FusedLoraLinear in place (same objects, same weights, same
    checkpoints); returns how many. Layers of other classes (quantized bases, Embedding, Conv) are left alone."""
    if "peft.tuners.lora.layer" not in sys.modules:
        return 0  # peft never loaded: no peft LoRA layer can exist, and nothing is imported for other methods
    cls = fused_lora_class()
    base = cls.__bases__[0]  # peft's lora.Linear
    count = 0
    for module in model.modules():
        if type(module) is base:
            module.__class__ = cls
            count += 1
    return count

"""--frozen_bf16: frozen Linear weights held in bf16 under bf16 mixed precision (cast back before saving)."""
from __future__ import annotations

from typing import List

import torch
from torch import nn


def cast_frozen_linears(model: nn.Module, dtype: torch.dtype) -> List[nn.Linear]:
    """Cast every nn.Linear whose weight (and bias) do not train and are floating point to `dtype`, in
    place; returns the modules cast (to cast them back).

    Why: under bf16 autocast a float32 frozen weight is cast to bf16 at every use (autocast caches the
    cast only for weights that require grad), forward and backward, every step. Holding the frozen
    matrices in bf16 does the same matmuls on the same bf16 values without those casts; trainable
    parameters (LoRA A/B, adapters, the head) stay float32 for the optimizer.
    """
    cast = []
    for m in model.modules():
        params = [p for p in (m.weight, m.bias) if p is not None] if isinstance(m, nn.Linear) else []
        if params and all(not p.requires_grad and p.is_floating_point() and p.dtype != dtype for p in params):
            m.to(dtype)
            cast.append(m)
    return cast

"""The one step that puts the CPU speed kernels into a model: train's run calls `apply_speedups` once, after
the method (peft's and our LoRA modules, adapters, the head are in place). Each kernel keeps its flag
(FtTrainingArguments: --fast_dropout, --fast_lora_backward, --fused_lora, --frozen_bf16); each falls back
to the stock module where it does not apply (CUDA, autocast, other layers). The two kernels that act on
the batch or the data instead of the model (microbatch: --micro_batch_tokens, FtTrainer.training_step;
headcache: head-only on cached features) stay with the trainer.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from ftlab.speed.fastdropout import use_fast_dropout
from ftlab.speed.frozen_bf16 import cast_frozen_linears
from ftlab.speed.fusedlora import use_fused_lora
from ftlab.speed.narrowlinear import use_narrow_linear


def apply_speedups(model: nn.Module, targs) -> List[nn.Linear]:
    """Patch `model` in place by the flags of `targs` (training arguments); returns the Linear modules held
    in bf16 (--frozen_bf16), which the caller casts back to float32 before saving."""
    if targs.fast_dropout:
        use_fast_dropout(model)  # after the method: peft's lora_dropout modules too
    if targs.fast_lora_backward:
        use_narrow_linear(model)  # peft's lora_B modules (methods' LoRALinear calls narrow_linear itself)
    if targs.fused_lora:
        use_fused_lora(model)  # after use_fast_dropout: the fused node draws FastDropout's masks only
    # frozen Linear weights in bf16 where autocast would cast them anyway
    return cast_frozen_linears(model, torch.bfloat16) if targs.bf16 and targs.frozen_bf16 else []

"""What one small GEMM costs on this CPU when its shape changes: why LoRA's extra matmuls are dear here.

    uv run labs/gemm_shapes.py

Dynamic padding gives every training step a new M (= batch x longest sequence), and LoRA on every linear
layer adds small GEMMs such as [M, 384] x [384, 8]. For bf16 torch calls oneDNN, which builds a kernel
for each new shape (and keeps up to ONEDNN_PRIMITIVE_CACHE_CAPACITY of them); fp32 goes to a BLAS without
that step. For each case this prints the mean microseconds a call: every M seen for the first time, the
same M's again (in turn, as training revisits lengths), and one M repeated.
"""
from __future__ import annotations

import time

import torch

HIDDEN, RANK = 384, 8  # MiniLM's hidden size, LoRA's default r
MS = range(320, 2400, 32)  # batch 32 x sequence lengths 10 .. 74
REPEATED = 864  # batch 32 x 27 tokens, restaurant_sup's mean length


def mean_us(call, ms, reps: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        for m in ms:
            call(m)
    return (time.perf_counter() - start) / (reps * len(ms)) * 1e6


def main() -> None:
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads; mean us a call over {len(MS)} values of M (one M repeated: {REPEATED})")
    print("| GEMM | first time an M is seen | M seen before | one M repeated |")
    print("|---|---|---|---|")
    for dtype in (torch.bfloat16, torch.float32):
        inputs = {m: torch.randn(m, HIDDEN, dtype=dtype) for m in [*MS, REPEATED]}
        for out in (RANK, HIDDEN):
            weight = torch.randn(out, HIDDEN, dtype=dtype)  # (out, in), as nn.Linear holds it

            def call(m):
                return inputs[m] @ weight.t()  # [M, 384] x [384, out]

            first, again, same = mean_us(call, MS), mean_us(call, MS, 5), mean_us(call, [REPEATED] * 50)
            name = str(dtype).replace("torch.", "")
            print(f"| {name} [M, {HIDDEN}] x [{HIDDEN}, {out}] | {first:.0f} | {again:.0f} | {same:.0f} |")


if __name__ == "__main__":
    main()

"""Eager vs SDPA attention for one full fine-tuning step of the embedded MiniLM, on this machine.

    uv run labs/attention_kernels.py [--batch 32] [--tokens 30] [--rounds 10] [--bf16 true|false]

Why: train.py loads BERT-family models with eager attention when it trains on the CPU with FastDropout
(`train.attention_for`), because SDPA draws its attention-probability dropout mask with torch's bernoulli
while eager attention drops them through an nn.Dropout that FastDropout replaces. Whether that pays
depends on the machine (bf16 units or not) and the shapes; this prints, for each kernel, the median time
of a training step (forward, backward, fused AdamW) over rounds that alternate the kernels in one process
(this machine's speed drifts between processes), and the bytes the step saves for backward (parameters
left out), with FastDropout's bool mask and with a float copy of the mask (what it saved before
2026-12-02, `fastdropout._MaskedScale`).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch

from ftlab.speed import fastdropout
from ftlab.train import steps as train

KERNELS = ("eager", "sdpa")


def build(model_name: str, kernel: str, seed: int = 0):
    torch.manual_seed(seed)
    _, model = train.get_model(model_name, 3, attn_implementation=kernel)
    fastdropout.use_fast_dropout(model)
    model.train()
    return model, torch.optim.AdamW(model.parameters(), lr=5e-5, fused=True)


def make_batch(model, batch: int, tokens: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    return {"input_ids": torch.randint(min(1000, vocab // 2), vocab, (batch, tokens), generator=g),
            "attention_mask": torch.ones(batch, tokens, dtype=torch.long),
            "labels": torch.randint(0, 3, (batch,), generator=g)}


def step(model, optimizer, batch: dict, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class _FloatMask:
    """fast_dropout's multiply as it was before 2026-12-02: plain autograd of x * mask.to(x.dtype), which keeps
    the mask in x's dtype for the backward (same mask, threshold and scale: fast_dropout computes them)."""

    @staticmethod
    def apply(x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        return x.mul(mask.to(x.dtype)).mul_(scale)


@contextlib.contextmanager
def float_mask():
    """FastDropout as it was before 2026-12-02 (its multiply swapped for _FloatMask's) inside the block."""
    saved, fastdropout._MaskedScale = fastdropout._MaskedScale, _FloatMask
    try:
        yield
    finally:
        fastdropout._MaskedScale = saved


def saved_bytes(model, batch: dict, bf16: bool) -> int:
    """Bytes of the distinct storages one forward saves for backward, the parameters' own left out."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    del loss
    return sum(seen.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=30, help="tokens an example (restaurant_sup: ~27 real)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="timed steps a kernel a round (after one warm-up)")
    parser.add_argument("--bf16", choices=["true", "false"], default=None,
                        help="bf16 autocast; default: train.py's rule (bf16 units on this CPU)")
    args = parser.parse_args(argv)
    bf16 = train.bf16_supported("cpu") if args.bf16 is None else args.bf16 == "true"
    models = {k: build(args.model, k) for k in KERNELS}
    batch = make_batch(models["eager"][0], args.batch, args.tokens)
    times = {k: [] for k in KERNELS}
    for k in KERNELS:
        step(*models[k], batch, bf16)  # warm-up: oneDNN kernels for these shapes
    for r in range(args.rounds):
        for k in (KERNELS if r % 2 == 0 else KERNELS[::-1]):
            start = time.perf_counter()
            for _ in range(args.steps):
                step(*models[k], batch, bf16)
            times[k].append(1000 * (time.perf_counter() - start) / args.steps)
    print(f"{args.model}, batch {args.batch} x {args.tokens} tokens, {'bf16 autocast' if bf16 else 'fp32'}, "
          f"{torch.get_num_threads()} threads, {args.rounds} alternating rounds of {args.steps} steps, FastDropout\n")
    print("| attention | median ms a step | min / max | rounds faster than the other | saved for backward MiB "
          "(bool mask) | (float mask, before 2026-12-02) |")
    print("|---|---|---|---|---|---|")
    for k, other in zip(KERNELS, KERNELS[::-1]):
        wins = sum(a < b for a, b in zip(times[k], times[other]))
        mib = saved_bytes(models[k][0], batch, bf16) / 2 ** 20
        with float_mask():
            old = saved_bytes(models[k][0], batch, bf16) / 2 ** 20
        print(f"| {k} | {statistics.median(times[k]):.1f} | {min(times[k]):.1f} / {max(times[k]):.1f} | "
              f"{wins} of {args.rounds} | {mib:.1f} | {old:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

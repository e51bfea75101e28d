"""LoRA's B matrices with nn.Linear's backward vs narrowlinear's, one training step of the embedded MiniLM.

    uv run labs/lora_backward.py [--batch 32] [--tokens 28] [--rounds 10] [--lora_dropout 0.1] [--bf16 false]

Why: train.py swaps peft's lora_B modules (a Linear with r inputs) for narrowlinear.NarrowInputLinear, whose
float32 CPU backward runs its two matmuls in layouts the BLAS is faster at (`--fast_lora_backward`). A
`ftlab bench` run of a few dozen dynamically padded steps drifts by +-10% between setups on this machine, more
than the effect, so this times one model as train.py builds it (peft LoRA, the method's defaults, eager
attention, FastDropout) on one fixed batch, its lora_B modules switched between the two classes in
alternating rounds in one process (same weights, same optimizer), and prints the median step (forward,
backward, fused AdamW) of each and the rounds each won.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn

from ftlab.methods import registry as methods
from ftlab.speed.fastdropout import use_fast_dropout
from ftlab.speed.narrowlinear import NarrowInputLinear
from ftlab.train import steps as train
from labs.attention_kernels import make_batch, step

SETUPS = {"nn.Linear": nn.Linear, "narrowlinear": NarrowInputLinear}


def build(model_name: str, lora_dropout: float, seed: int = 0):
    """train.py's LoRA model (method defaults but the dropout) and its lora_B modules."""
    torch.manual_seed(seed)
    _, model = train.get_model(model_name, 3, cpu_fast_dropout=True)
    model = methods.bind_method(methods.MethodArguments(method="lora", lora_dropout=lora_dropout)).apply(model)
    use_fast_dropout(model)
    b_modules = [m for name, m in model.named_modules() if name.endswith("lora_B.default")]
    for module in b_modules:  # B starts at zero; random values make both of its gradients real work
        nn.init.normal_(module.weight, std=0.02)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(trainable, lr=6e-4, fused=True), b_modules


def use(b_modules, cls) -> None:
    for module in b_modules:
        module.__class__ = cls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=28, help="tokens an example (restaurant_sup: ~27 real)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=4, help="timed steps a setup a round (after one warm-up)")
    parser.add_argument("--lora_dropout", type=float, default=0.1)
    parser.add_argument("--bf16", choices=["true", "false"], default="false",
                        help="bf16 autocast (narrowlinear then falls back to nn.Linear: a control)")
    args = parser.parse_args(argv)
    bf16 = args.bf16 == "true"
    model, optimizer, b_modules = build(args.model, args.lora_dropout)
    batch = make_batch(model, args.batch, args.tokens)
    names = list(SETUPS)
    for name in names:  # warm-up: the BLAS's kernels for these shapes
        use(b_modules, SETUPS[name])
        step(model, optimizer, batch, bf16)
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            use(b_modules, SETUPS[name])
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, optimizer, batch, bf16)
            times[name].append(1000 * (time.perf_counter() - start) / args.steps)
    print(f"{args.model}, peft LoRA (method defaults, lora_dropout {args.lora_dropout:g}, {len(b_modules)} B "
          f"matrices), batch {args.batch} x {args.tokens} tokens, {'bf16 autocast' if bf16 else 'fp32'}, "
          f"{torch.get_num_threads()} threads, {args.rounds} alternating rounds of {args.steps} steps\n")
    print("| lora_B backward | median ms a step | min / max | rounds faster than the other |")
    print("|---|---|---|---|")
    for name, other in zip(names, names[::-1]):
        wins = sum(a < b for a, b in zip(times[name], times[other]))
        print(f"| {name} | {statistics.median(times[name]):.1f} | {min(times[name]):.1f} / "
              f"{max(times[name]):.1f} | {wins} of {args.rounds} |")
    ratio = statistics.median(times["nn.Linear"]) / statistics.median(times["narrowlinear"])
    print(f"\nnn.Linear / narrowlinear median step: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast can LoRA be, here? Full fine-tuning, LoRA (peft's modules, fused), LoRA with free A/B: one step each.

    uv run labs/lora_ceiling.py [--batch 32] [--tokens 28] [--rounds 8] [--bf16 false]

Why: issue 12 asks LoRA to train >= 1.4x as many samples/s as full fine-tuning. LoRA skips the frozen weights'
gradients (one of the three matmuls of every Linear: forward, input gradient, weight gradient) and their AdamW
update, but it still runs the whole forward and the input gradients down to the lowest LoRA layer. The setup
"floor" measures that floor on this machine: train.py's full model with every weight frozen and only the
biases of LoRA's target Linears plus the head training (LoRA's head). Its backward flows through every layer as
LoRA's does (input gradients only, plus [out] bias sums), with no A/B matrices, no LoRA dropout and an optimizer
over ~0.2M parameters: a LoRA whose adapters cost nothing. full / floor is the most that any LoRA
implementation can gain over full fine-tuning on this CPU, batch and precision; drawing LoRA's dropout masks
(timed alone) lowers it for LoRA with dropout. full / lora_peft and full / lora_fused are what peft's modules
and train.py's fused layers (ftlab/speed/fusedlora.py, the default) gain today.

The four models are built as train.py builds them (eager attention and FastDropout on the CPU) and timed in
one process on one fixed batch, in rounds whose order rotates; each step is forward + backward + fused AdamW.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from ftlab.methods import registry as methods
from ftlab.speed.fastdropout import keep_mask, use_fast_dropout
from ftlab.speed.fusedlora import use_fused_lora
from ftlab.speed.narrowlinear import use_narrow_linear
from ftlab.train import steps as train
from labs.attention_kernels import make_batch

SETUPS = ("full", "lora_peft", "lora_fused", "lora_fused_p0", "floor")


def _base(model_name: str):
    _, model = train.get_model(model_name, 3, cpu_fast_dropout=True)
    return model


def build_full(model_name: str):
    return _base(model_name)


def build_lora_peft(model_name: str, dropout: float = methods.DEFAULT_LORA_DROPOUT):
    """peft's LoRA (method defaults) as train.py built it before fusedlora: --fused_lora false."""
    model = methods.bind_method(methods.MethodArguments(method="lora", lora_dropout=dropout)).apply(_base(model_name))
    use_narrow_linear(model)  # train.py's --fast_lora_backward default
    return model


def build_lora_fused(model_name: str, dropout: float = methods.DEFAULT_LORA_DROPOUT):
    """train.py's LoRA today: peft's layers in one fused node each (ftlab/speed/fusedlora.py)."""
    model = build_lora_peft(model_name, dropout)
    use_fused_lora(model)
    return model


def build_lora_fused_p0(model_name: str):
    """The fused LoRA with --lora_dropout 0: no masks, and the merged-weight path (one GEMM each way)."""
    return build_lora_fused(model_name, 0.0)


def build_floor(model_name: str):
    """The full model, frozen but for the biases of LoRA's default target Linears and the head."""
    model = _base(model_name)
    targets = methods.resolve_target_modules(model, methods.get_method("lora").lora_targets)
    target_biases = {f"{name}.bias" for name, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and methods._matches(name, targets)}
    in_head = methods._in_head(model)
    methods.set_trainable(model, lambda name: name in target_biases or in_head(name))
    return model


BUILDERS = {"full": build_full, "lora_peft": build_lora_peft, "lora_fused": build_lora_fused,
            "lora_fused_p0": build_lora_fused_p0, "floor": build_floor}


def timed_step(model, optimizer, batch: dict, bf16: bool) -> tuple:
    """(forward, backward, optimizer) seconds of one training step."""
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def lora_dropout_shapes(model, batch: dict) -> list:
    """Input shapes of every LoRA dropout module (peft's lora_dropout) in one forward of `batch`."""
    shapes, hooks = [], []
    for name, module in model.named_modules():
        if ".lora_dropout." in f"{name}.":
            hooks.append(module.register_forward_pre_hook(lambda _m, inputs: shapes.append(inputs[0].shape)))
    with torch.no_grad():
        model(**batch)
    for hook in hooks:
        hook.remove()
    return shapes


def draw_masks(shapes: list, p: float) -> float:
    """Seconds to draw FastDropout's keep masks for `shapes` (LoRA's dropout masks of one step)."""
    start = time.perf_counter()
    for shape in shapes:
        keep_mask(shape, p)
    return time.perf_counter() - start


def trainable_count(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=28, help="tokens an example (restaurant_sup: ~27 real)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps a setup a round (after one warm-up)")
    parser.add_argument("--bf16", choices=["true", "false"], default="false", help="bf16 autocast")
    args = parser.parse_args(argv)
    bf16 = args.bf16 == "true"
    models, optimizers = {}, {}
    for name in SETUPS:
        torch.manual_seed(0)
        model = BUILDERS[name](args.model)
        use_fast_dropout(model)
        model.train()
        models[name] = model
        optimizers[name] = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                                             fused=True)
    batch = make_batch(models["full"], args.batch, args.tokens)
    shapes = lora_dropout_shapes(models["lora_peft"], batch)
    p = methods.DEFAULT_LORA_DROPOUT
    for name in SETUPS:  # warm-up: the BLAS's kernels for these shapes
        timed_step(models[name], optimizers[name], batch, bf16)
    steps = {name: [] for name in SETUPS}  # (fwd, bwd, opt) of every timed step
    rounds = {name: [] for name in SETUPS}  # mean step of every round
    masks = []  # ms to draw LoRA's dropout masks of one step, a median every round
    for r in range(args.rounds):
        for name in SETUPS[r % len(SETUPS):] + SETUPS[:r % len(SETUPS)]:
            done = [timed_step(models[name], optimizers[name], batch, bf16) for _ in range(args.steps)]
            steps[name] += done
            rounds[name].append(1000 * sum(map(sum, done)) / args.steps)
        masks.append(1000 * statistics.median(draw_masks(shapes, p) for _ in range(args.steps)))
    print(f"{args.model}, batch {args.batch} x {args.tokens} tokens, {'bf16 autocast' if bf16 else 'fp32'}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rotating rounds of {args.steps} steps\n")
    print("| setup | trainable | median ms a step | forward | backward | optimizer | full / setup |")
    print("|---|---|---|---|---|---|---|")
    median = {name: statistics.median(rounds[name]) for name in SETUPS}
    for name in SETUPS:
        phases = [1000 * statistics.median(s[i] for s in steps[name]) for i in range(3)]
        print(f"| {name} | {trainable_count(models[name]):,} | {median[name]:.1f} | {phases[0]:.1f} | "
              f"{phases[1]:.1f} | {phases[2]:.1f} | {median['full'] / median[name]:.2f}x |")
    print(f"\nLoRA: {median['full'] / median['lora_peft']:.2f}x full fine-tuning with peft's layers, "
          f"{median['full'] / median['lora_fused']:.2f}x fused; the ceiling (free A/B): "
          f"{median['full'] / median['floor']:.2f}x; LoRA's own cost: {median['lora_peft'] - median['floor']:.1f} "
          f"ms a step with peft's layers, {median['lora_fused'] - median['floor']:.1f} fused; without dropout "
          f"(merged path) {median['full'] / median['lora_fused_p0']:.2f}x")
    elements = sum(shape.numel() for shape in shapes)
    mask_ms = statistics.median(masks)
    print(f"LoRA's dropout masks alone ({len(shapes)} a step, {elements / 1e6:.1f}M elements, p {p:g}): "
          f"{mask_ms:.1f} ms a step; the ceiling with them drawn: {median['full'] / (median['floor'] + mask_ms):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

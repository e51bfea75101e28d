"""Training throughput: train.py's defaults vs a naive setup, on the embedded model and data set.

    uv run bench.py [--steps 10] [--method full]                       # bbc_news: runs anywhere
    DATA_DIR=../shared/data uv run bench.py --dataset_name restaurant_sup  # the README's figures

Both runs train the same model for the same number of optimizer steps through train.run:
- default: train.py as it is (bf16 autocast where supported, batch 32, dynamic padding, length-grouped batches);
- naive:   the HF example defaults (fp32, batch 8, every input padded to 128 tokens, random batches).
Prints samples/s of each, their ratio, and achieved FLOP/s as a share of the bf16 GEMM peak measured here.
FLOPs are estimated as 6 x N x tokens (forward 2N, backward 4N per token; Kaplan et al. 2020) with N the
non-embedding parameters (embedding lookups do no matmuls) and attention score FLOPs left out; "useful"
counts real tokens only, "executed" counts padded tokens too. With LoRA/head the backward pass skips
weight gradients, so 6N overstates the work: use --method full (the default) for the FLOP/s figure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import torch

import train

NAIVE = ["--bf16", "false", "--per_device_train_batch_size", "8", "--group_by_length", "false",
         "--pad_to_max_length", "true", "--max_length", "128"]


def gemm_peak_flops(n: int = 2048, reps: int = 5, dtype=torch.bfloat16) -> float:
    """FLOP/s of an n x n x n matmul (2 n^3 FLOPs), best of `reps`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up (oneDNN kernel selection)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def non_embedding_params(model_name: str) -> int:
    _, model = train.get_model(model_name, 3)
    embeddings = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    return sum(p.numel() for p in model.parameters()) - embeddings


def run_once(label: str, steps: int, method: str, extra: list, pad_to: int | None, dataset: str) -> dict:
    out = tempfile.mkdtemp(prefix=f"bench-{label}-")
    argv = ["--dataset_name", dataset, "--method", method, "--max_steps", str(steps),
            "--eval_strategy", "no", "--save_strategy", "no", "--max_eval_samples", "8", "--do_predict", "false",
            "--report_to", "none", "--disable_tqdm", "true", "--output_dir", out, *extra]
    try:
        record = train.run(*train.parse_args(argv))
    finally:
        shutil.rmtree(out, ignore_errors=True)  # checkpoints/weights of a throughput run are not kept
    t = record["time"]
    padded_tokens = pad_to or record["data"]["mean_tokens"]
    return {"label": label, "samples_per_second": t["samples_per_second"], "useful_tokens_per_second":
            t["tokens_per_second"], "executed_tokens_per_second": t["samples_per_second"] * padded_tokens,
            "batch": record["config"]["per_device_train_batch_size"], "bf16": record["config"]["bf16"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per setup")
    parser.add_argument("--method", default="full", help="fine-tuning method for both setups")
    parser.add_argument("--model", default="minilm", help="model for both setups")
    parser.add_argument("--dataset_name", default="bbc_news",
                        help="data set for both setups (the README's figures: restaurant_sup, with DATA_DIR)")
    args = parser.parse_args(argv)
    extra = ["--model_name_or_path", args.model]
    peak = gemm_peak_flops()
    n = non_embedding_params(args.model)
    default = run_once("default", args.steps, args.method, extra, None, args.dataset_name)
    naive = run_once("naive", args.steps, args.method, extra + NAIVE, 128, args.dataset_name)
    print(f"\nbench: {args.model}, {args.dataset_name}, method {args.method}, {args.steps} steps each, "
          f"{torch.get_num_threads()} threads; bf16 GEMM peak {peak / 1e9:.1f} GFLOP/s (2048^3 matmul)")
    print(f"FLOPs = 6 x {n / 1e6:.2f}M non-embedding params x tokens")
    for r in (default, naive):
        useful, executed = (6 * n * r[k] for k in ("useful_tokens_per_second", "executed_tokens_per_second"))
        print(f"{r['label']:8s} batch {r['batch']:3d} bf16 {str(r['bf16']):5s} {r['samples_per_second']:8.2f} "
              f"samples/s  {r['useful_tokens_per_second']:9.1f} real tokens/s  useful {useful / 1e9:7.2f} GFLOP/s "
              f"({100 * useful / peak:5.1f}% of peak)  executed {executed / 1e9:7.2f} GFLOP/s "
              f"({100 * executed / peak:5.1f}%)")
    print(f"speed-up default / naive: {default['samples_per_second'] / naive['samples_per_second']:.2f}x samples/s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    sys.exit(main())

"""Tables for the LLM labs, from the files the lab scripts leave (nothing is re-run).

    uv run labs/llm_table.py tatqa results/smollm2_tatqa      # LoRA vs full: params, memory, s/step, EM/F1
    uv run labs/llm_table.py samsum results/smollm2_samsum    # base vs LoRA: BLEU-4, ROUGE-L/Lsum, BERTScore
    uv run labs/llm_table.py same A/generated_predictions.jsonl B/generated_predictions.jsonl

`tatqa` and `samsum` print a Markdown table and write it to DIR/table.md; `same` counts how many
predictions of two runs on the same prompts differ, and where the first difference starts (in
whitespace tokens), which is how batched and one-at-a-time greedy outputs are compared.

Layout read (what labs/tatqa_lora_vs_full.sh and labs/samsum_smollm2.sh write):
  DIR/<method>_train_results.json   LLaMA-Factory's train_results.json (train_runtime)
  DIR/<method>_trainer_state.json   its trainer_state.json (global_step, log_history)
  DIR/<method>_train.log            its log ("trainable params: N || all params: M || ...")
  DIR/<method>_train_time.txt       GNU time -v of the training process (Maximum resident set size)
  DIR/<model>/metrics.json          eval.py's scores; DIR/<model>/predict_results.json its timing
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Dict, List, Optional

from ftlab.io import read_jsonl, write_atomic

GiB = 1024 ** 3


def _json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def trainable_params(log_path: str) -> Optional[tuple]:
    """(trainable, total) from LLaMA-Factory's 'trainable params: N || all params: M' log line."""
    if not os.path.isfile(log_path):
        return None
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        found = re.findall(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+)", fh.read())
    return (int(found[-1][0].replace(",", "")), int(found[-1][1].replace(",", ""))) if found else None


def peak_rss_bytes(time_path: str) -> Optional[int]:
    """GNU time -v's 'Maximum resident set size (kbytes)' in bytes."""
    if not os.path.isfile(time_path):
        return None
    with open(time_path, encoding="utf-8") as fh:
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", fh.read())
    return int(found.group(1)) * 1024 if found else None


def memory_estimate(method: str, batch_size: int, seq_len: int) -> int:
    """`ftlab memory`'s estimate for SmolLM2 on the CPU (fp32 weights, bf16 autocast, LoRA on all linears)."""
    from ftlab.analysis import memory_estimate as memory

    arch = memory.build_arch(memory.load_config("smollm2"), task="causal_lm")
    settings = memory.Settings(method=method, batch_size=batch_size, seq_len=seq_len, gpus=0, weights_dtype="fp32",
                               lora_target_modules=["all-linear"] if method == "lora" else None)
    return memory.estimate(arch, settings).total


def _fmt(value, pattern: str = "{:.4f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def train_row(folder: str, method: str, batch_size: int, seq_len: int) -> Dict[str, object]:
    results = _json(os.path.join(folder, f"{method}_train_results.json")) or {}
    state = _json(os.path.join(folder, f"{method}_trainer_state.json")) or {}
    steps = state.get("global_step")
    params = trainable_params(os.path.join(folder, f"{method}_train.log"))
    return {"steps": steps, "train_runtime": results.get("train_runtime"), "train_loss": results.get("train_loss"),
            "s_per_step": results["train_runtime"] / steps if steps and results.get("train_runtime") else None,
            "trainable": params[0] if params else None, "total": params[1] if params else None,
            "peak_rss": peak_rss_bytes(os.path.join(folder, f"{method}_train_time.txt")),
            "estimate": memory_estimate(method, batch_size, seq_len)}


def tatqa_table(folder: str, batch_size: int = 2, seq_len: int = 1024) -> str:
    """batch_size x seq_len: the yamls' micro-batch (per_device_train_batch_size) and cutoff_len."""
    lines = ["| model | trainable params | steps | s/step | train loss | peak RSS (measured) | `ftlab memory` estimate "
             "| EM | F1 | questions | answers/min |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("base", "lora", "full"):
        metrics = _json(os.path.join(folder, name, "metrics.json"))
        timing = _json(os.path.join(folder, name, "predict_results.json")) or {}
        if metrics is None:
            continue
        cells = ["-"] * 6
        if name != "base":
            t = train_row(folder, name, batch_size, seq_len)
            share = f" ({100 * t['trainable'] / t['total']:.2f}%)" if t["trainable"] else ""
            cells = [f"{_fmt(t['trainable'], '{:,}')}{share}", _fmt(t["steps"], "{}"), _fmt(t["s_per_step"], "{:.1f}"),
                     _fmt(t["train_loss"], "{:.3f}"), _fmt(t["peak_rss"] and t["peak_rss"] / GiB, "{:.2f} GiB"),
                     f"{t['estimate'] / GiB:.2f} GiB"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {metrics['tatqa_em']:.4f} | {metrics['tatqa_f1']:.4f} "
                     f"| {metrics['n']} | {_fmt(timing.get('samples_per_minute'), '{:.1f}')} |")
    return "\n".join(lines) + "\n"


def samsum_table(folder: str) -> str:
    lines = ["| model | n | BLEU-4 (mean sentence) | ROUGE-L F1 | ROUGE-Lsum F1 | BERTScore F1 (minilm) "
             "| dialogues/min |", "|---|---|---|---|---|---|---|"]
    for name in ("base", "lora"):
        m = _json(os.path.join(folder, name, "metrics.json"))
        timing = _json(os.path.join(folder, name, "predict_results.json")) or {}
        if m is None:
            continue
        lines.append(f"| {name} | {m['n']} | {m['bleu']:.4f} | {m['rouge_l']:.4f} | {_fmt(m.get('rouge_lsum'))} "
                     f"| {_fmt(m.get('bertscore_f1'))} | {_fmt(timing.get('samples_per_minute'), '{:.1f}')} |")
    return "\n".join(lines) + "\n"


def first_difference(a: str, b: str) -> int:
    """Index of the first whitespace token where a and b part (len of the shorter when one is a prefix)."""
    ta, tb = a.split(), b.split()
    return next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), min(len(ta), len(tb)))


def compare_predictions(path_a: str, path_b: str) -> Dict[str, object]:
    rows_a, rows_b = [r for _, r in read_jsonl(path_a)], [r for _, r in read_jsonl(path_b)]
    if [r["prompt"] for r in rows_a] != [r["prompt"] for r in rows_b]:
        raise ValueError(f"{path_a} and {path_b} do not hold the same prompts in the same order")
    parts = [first_difference(a["predict"], b["predict"]) for a, b in zip(rows_a, rows_b) if a["predict"] != b["predict"]]
    return {"n": len(rows_a), "differ": len(parts), "first_difference_tokens": sorted(parts)}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("tatqa", "samsum"):
        sub.add_parser(name).add_argument("folder")
    same = sub.add_parser("same")
    same.add_argument("a")
    same.add_argument("b")
    args = parser.parse_args(argv)
    try:
        if args.command == "same":
            print(json.dumps(compare_predictions(args.a, args.b)))
            return 0
        table = tatqa_table(args.folder) if args.command == "tatqa" else samsum_table(args.folder)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_atomic(os.path.join(args.folder, "table.md"), table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

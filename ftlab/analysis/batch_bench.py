"""Memory and speed of LoRA vs full fine-tuning of a causal LM, per batch size.

Runs a few optimizer steps (causal-LM loss, AdamW) for each method x batch size and prints one table
row per run: seconds per step, samples/s, tokens/s, peak memory and trainable parameters. It
answers "which batch size is best" and "why does LoRA need less memory" with numbers instead of
watching `nvidia-smi`.

    uv run ftlab batch_bench                                    # smollm2, lora+full, batch 1,2,4,8, seq 256
    uv run ftlab batch_bench --batch_sizes 1,4,16 --seq_len 512 --bf16 --out bench.json
    DATA_DIR=/work/shared/data uv run ftlab batch_bench --data samsum   # real SAMSum tokens

Peak memory: on a GPU `torch.cuda.max_memory_allocated` (weights + gradients + AdamW states +
activations); on a CPU the peak RSS (VmHWM, reset via /proc/self/clear_refs) minus the RSS before
the model was loaded. Every run happens in a fresh subprocess by default (`--isolate`), because
memory freed by one run stays in the allocator and would hide the next run's peak; the worker
also gets a fixed glibc mmap threshold so freed tensors leave RSS at once (see `bench_isolated`).
The first `--warmup_steps` steps (which also allocate the optimizer states) are not timed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

from ftlab import commandline
from ftlab.data import llamafactory as lfdata
from ftlab.io import split_list, write_atomic
from ftlab.methods import registry as methods
from ftlab.models.checkpoints import resolve_model_name
from ftlab.runs.record import PeakMemory

# Imported inside functions: peft loads only for the LoRA setups.

logger = logging.getLogger("batch_bench")
RESULT_PREFIX = "BATCH_BENCH_RESULT "  # marks the worker's one JSON line on stdout


@dataclass
class BenchArguments:
    model_name_or_path: str = field(default="smollm2", metadata={
        "help": "causal LM: embedded name (smollm2), Hub id or local folder"})
    methods: str = field(default="lora,full", metadata={"help": "comma-separated, from: full, lora"})
    batch_sizes: str = field(default="1,2,4,8", metadata={"help": "comma-separated batch sizes"})
    seq_len: int = field(default=256, metadata={"help": "tokens per sample (every sample is exactly this long)"})
    steps: int = field(default=3, metadata={"help": "timed optimizer steps per run"})
    warmup_steps: int = field(default=1, metadata={"help": "untimed steps first (allocate optimizer states, warm caches)"})
    data: str = field(default="synthetic", metadata={
        "help": "synthetic (random token ids) or samsum (SAMSum train text, packed into seq_len blocks)"})
    data_dir: Optional[str] = field(default=None, metadata={"help": "raw data folder for --data samsum"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (fp32 weights), like TrainingArguments.bf16"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.1, metadata={"help": "LoRA dropout"})
    lora_target_modules: Optional[str] = field(default=None, metadata={
        "help": "comma-separated modules, or all-linear (LLaMA-Factory's lora_target: all); default q_proj,v_proj"})
    isolate: bool = field(default=True, metadata={"help": "run every configuration in a fresh subprocess"})
    seed: int = field(default=0, metadata={"help": "seed of the synthetic data and the LoRA init"})
    out: Optional[str] = field(default=None, metadata={"help": "also write the rows to this JSON file"})


# ---------------------------------------------------------------- methods (causal LM)

def apply_causal_lora(model, args: BenchArguments):
    """peft LoRA for a causal LM: only the adapters train (methods' `lora` is for classification heads)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets = args.lora_target_modules
    if targets != "all-linear":
        targets = methods.resolve_target_modules(model, targets)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=args.lora_r, lora_alpha=args.lora_alpha,
                        lora_dropout=args.lora_dropout, target_modules=targets)
    return get_peft_model(model, config)


def apply_full(model, args: BenchArguments):
    return methods.METHODS["full"].apply(model, None)


# name -> (model, args) -> model with the right parameters trainable
BENCH_METHODS: Dict[str, Callable] = {"full": apply_full, "lora": apply_causal_lora}


# ---------------------------------------------------------------- data: (batch, seq_len) token ids

def synthetic_blocks(tokenizer, args: BenchArguments, n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(args.seed)
    return torch.randint(0, len(tokenizer), (n, args.seq_len), generator=gen)


def samsum_blocks(tokenizer, args: BenchArguments, n: int) -> torch.Tensor:
    """SAMSum train records (instruction, dialogue, summary) tokenized, joined by eos, cut into blocks."""
    records = lfdata.records("samsum", args.data_dir)["samsum_train"]
    ids: List[int] = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for rec in records:
        ids += tokenizer(f"{rec['instruction']}\n{rec['input']}\n{rec['output']}", add_special_tokens=False)["input_ids"] + eos
        if len(ids) >= n * args.seq_len:
            break
    if len(ids) < args.seq_len:
        raise ValueError(f"the SAMSum train text has {len(ids)} tokens, fewer than --seq_len {args.seq_len}")
    blocks = torch.tensor(ids[: len(ids) // args.seq_len * args.seq_len]).view(-1, args.seq_len)
    return blocks.repeat((n + len(blocks) - 1) // len(blocks), 1)[:n]  # cycle when the text is short


DATA_SOURCES: Dict[str, Callable] = {"synthetic": synthetic_blocks, "samsum": samsum_blocks}


def batches(blocks: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(blocks), batch_size):
        yield blocks[i:i + batch_size]


# ---------------------------------------------------------------- one run

def parse_list(text: str, what: str, valid=None) -> list:
    items = split_list(text)
    if valid is not None:
        bad = [t for t in items if t not in valid]
        if bad or not items:
            raise ValueError(f"--{what} {text!r}: unknown {bad}; valid: {', '.join(valid)}")
        return items
    try:
        values = [int(t) for t in items]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"--{what} {text!r}: give comma-separated positive integers, e.g. 1,2,4,8")
    return values


def validate(args: BenchArguments) -> None:
    parse_list(args.methods, "methods", BENCH_METHODS)
    parse_list(args.batch_sizes, "batch_sizes")
    if args.data not in DATA_SOURCES:
        raise ValueError(f"--data {args.data!r}: valid: {', '.join(DATA_SOURCES)}")
    for name in ("seq_len", "steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} {getattr(args, name)}: give a positive number")
    if args.warmup_steps < 0:
        raise ValueError(f"--warmup_steps {args.warmup_steps}: give 0 or more")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_one(args: BenchArguments, method: str, batch_size: int) -> dict:
    """Train `steps + warmup_steps` steps of `method` at `batch_size`; return the table row."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    path = resolve_model_name(args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    total_steps = args.warmup_steps + args.steps
    blocks = DATA_SOURCES[args.data](tokenizer, args, batch_size * total_steps)  # (B * steps, seq_len)
    torch.manual_seed(args.seed)
    memory = PeakMemory()  # baseline: before the model exists
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks still get grads (LoRA)
    model = BENCH_METHODS[method](model, args).to(device).train()
    trainable, total = methods.count_parameters(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=methods.METHODS[method].learning_rate)
    times, losses = [], []
    for step, ids in enumerate(batches(blocks, batch_size)):
        ids = ids.to(device)
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=args.bf16):
            loss = model(input_ids=ids, labels=ids).loss  # labels shifted inside the model
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if step >= args.warmup_steps:
            times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    sec = sum(times) / len(times)
    mem = memory.result()
    return {"method": method, "batch_size": batch_size, "seq_len": args.seq_len, "sec_per_step": sec,
            "samples_per_s": batch_size / sec, "tokens_per_s": batch_size * args.seq_len / sec,
            "peak_bytes": mem["peak_bytes"], "memory_how": mem["how"], "trainable": trainable, "total": total,
            "loss_first": losses[0], "loss_last": losses[-1], "device": device, "bf16": args.bf16,
            "gradient_checkpointing": args.gradient_checkpointing, "steps": args.steps}


def bench_isolated(args: BenchArguments, method: str, batch_size: int) -> dict:
    """`bench_one` in a fresh Python process (a clean peak-RSS counter and allocator)."""
    child = dataclasses.replace(args, methods=method, batch_sizes=str(batch_size), isolate=False, out=None)
    argv = [sys.executable, "-m", "ftlab.analysis.batch_bench", "--worker"]
    for f in dataclasses.fields(child):
        value = getattr(child, f.name)
        if value is not None:
            argv += [f"--{f.name}", str(value)]
    # glibc raises its mmap threshold after big frees, so later big tensors come from the heap and
    # freed ones stay in RSS: peak RSS then over-counts (smollm2 LoRA batch 8: 5.89 GiB vs 3.31 GiB
    # with the threshold fixed). A fixed threshold returns freed tensors to the OS at once.
    env = {"MALLOC_MMAP_THRESHOLD_": "131072", **os.environ}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    if "out of memory" in proc.stderr.lower() or proc.returncode == -9:  # CUDA OOM, or the kernel's OOM killer
        return {"method": method, "batch_size": batch_size, "error": "out of memory"}
    raise RuntimeError(f"{method} batch {batch_size} failed (exit {proc.returncode}): {tail}")


# ---------------------------------------------------------------- table

def human_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def format_table(rows: List[dict]) -> str:
    head = ["method", "batch", "s/step", "samples/s", "tokens/s", "peak memory", "trainable params"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            cells = [r["method"], str(r["batch_size"]), r["error"], "", "", "", ""]
        else:
            cells = [r["method"], str(r["batch_size"]), f"{r['sec_per_step']:.3f}", f"{r['samples_per_s']:.2f}",
                     f"{r['tokens_per_s']:.0f}", human_bytes(r["peak_bytes"]),
                     f"{r['trainable']:,} ({100 * r['trainable'] / r['total']:.2f}%)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: BenchArguments) -> List[dict]:
    validate(args)
    one = bench_isolated if args.isolate else bench_one
    rows = []
    for method in parse_list(args.methods, "methods", BENCH_METHODS):
        for bs in parse_list(args.batch_sizes, "batch_sizes"):
            rows.append(one(args, method, bs))
            r = rows[-1]  # progress: a full table can take many minutes on a CPU
            logger.info("%s batch %d: %s", method, bs, r.get("error") or
                        f"{r['sec_per_step']:.2f} s/step, peak {human_bytes(r['peak_bytes'])}")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    parser = HfArgumentParser(BenchArguments, prog="ftlab batch_bench")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one isolated run
    try:
        args, extra = commandline.parse_dataclasses(parser, argv)
        rows = run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return commandline.fail(exc)
    if extra.worker:
        print(RESULT_PREFIX + json.dumps(rows[0]))
        return 0
    first = next((r for r in rows if "error" not in r), {})
    print(f"# {args.model_name_or_path}, seq_len {args.seq_len}, {args.steps} timed steps "
          f"(+{args.warmup_steps} warmup), data {args.data}, device {first.get('device', '?')}, "
          f"bf16 {args.bf16}, gradient checkpointing {args.gradient_checkpointing}; "
          f"peak memory = {first.get('memory_how', '?')}")
    print(format_table(rows))
    if args.out:
        write_atomic(args.out, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput: train.py's defaults vs a naive setup, on the embedded model and data set.

    uv run ftlab bench [--steps 10] [--method full]                       # bbc_news: runs anywhere
    DATA_DIR=../shared/data uv run ftlab bench --dataset_name restaurant_sup  # the README's figures

    DATA_DIR=../shared/data uv run ftlab bench --dataset_name restaurant_sup --profile --steps 40  # per phase
    DATA_DIR=../shared/data uv run ftlab bench --dataset_name restaurant_sup --whole_run           # one epoch
    DATA_DIR=../shared/data uv run ftlab bench --dataset_name restaurant_sup --time_to_accuracy    # the headline

Both runs train the same model for the same number of optimizer steps through train.run:
- default: train.py as it is (bf16 autocast where supported, batch 32, dynamic padding, length-grouped batches);
- naive:   the HF example defaults (fp32, batch 8, every input padded to 128 tokens, random batches).
Prints samples/s of each, their ratio, and achieved FLOP/s as a share of the GEMM peak measured here in the
default setup's precision (bf16 where train.py trains in bf16, else fp32: an AVX2-only CPU).
FLOPs are estimated as k x N x tokens with N the non-embedding parameters (embedding lookups do no matmuls)
and attention score FLOPs left out; k by each setup's method (`Method.flops_per_token_param`): 6 for full
fine-tuning (forward 2N, backward 4N; Kaplan et al. 2020), 4 where the base is frozen (LoRA, adapters,
QLoRA: no weight gradients of the base), 2 for head only. "Useful" counts real tokens only, "executed"
counts padded tokens too. Only the model's matmuls count: QLoRA's dequantization is left out, and head only
with cached features runs the body once, not every step, so its 2N is an upper bound.

--profile times each training step's phases (`PhaseTimer`, Trainer callbacks + a forward hook): data
(fetching and collating the batch, and the loop's logging), forward, backward (with gradient clipping),
optimizer step, scheduler + zero_grad. --whole_run trains one epoch with train.py's defaults (evaluation
and checkpoint at the epoch, test scored) and adds the run's named steps: start-up (imports), tokenizer +
data, model load, tokenization, evaluation, checkpoint saves, final save, test scoring, run.json.
--train_args adds train.py flags to the default setup; --variant LABEL=FLAGS adds a setup (each is
measured in the same process, one after the other, and compared with the default).

--time_to_accuracy: the naive setup trains 3 epochs per seed (its test accuracies give the band, target =
mean - std), then train.py's defaults (+ --train_args) per seed until a test probe every --probe_every
epochs reaches the target; each run is a child process timed from its spawn (TestProbe, run_child).
--naive_from reuses an earlier run's naive band only if that run recorded this machine (record.machine):
a ratio of wall times from two machines means nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from typing import Callable, Dict, List, Optional

START = time.perf_counter()  # before torch/transformers load: the start-up phase of --whole_run

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from ftlab import commandline  # noqa: E402
from ftlab.hardware import machine  # noqa: E402
from ftlab.io import write_atomic  # noqa: E402
from ftlab.methods.registry import get_method  # noqa: E402
from ftlab.models.build import bf16_supported, get_model  # noqa: E402
from ftlab.train import steps as train  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - START

NAIVE = ["--bf16", "false", "--per_device_train_batch_size", "8", "--group_by_length", "false",
         "--pad_to_max_length", "true", "--max_length", "128",
         "--micro_batch_tokens", "0"]  # whole batches, as the example (8 x 128 fits 2048 anyway)


PRECISION = {torch.bfloat16: "bf16", torch.float32: "fp32"}


def peak_dtype() -> torch.dtype:
    """The precision train.py's defaults compute in here: bf16 where it is fast, else fp32 (a bf16 GEMM on a
    CPU without bf16 units is emulated, and fp32 training measured against it would read as > 100%)."""
    return torch.bfloat16 if bf16_supported() else torch.float32


def gemm_peak_flops(n: int = 2048, reps: int = 5, dtype: Optional[torch.dtype] = None) -> float:
    """FLOP/s of an n x n x n matmul (2 n^3 FLOPs) in `dtype` (default: peak_dtype()), best of `reps`."""
    dtype = dtype or peak_dtype()
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up (oneDNN kernel selection)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def non_embedding_params(model_name: str) -> int:
    _, model = get_model(model_name, 3)
    embeddings = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    return sum(p.numel() for p in model.parameters()) - embeddings


# ---------------------------------------------------------------- per-phase timing

def _now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # GPU kernels run asynchronously: wait before reading the clock
    return time.perf_counter()


class PhaseTimer(TrainerCallback):
    """Seconds per training phase, summed over steps. Trainer's order within a step: fetch + collate
    the batch, on_step_begin, forward (hooked), loss.backward and clipping, on_pre_optimizer_step,
    optimizer.step, on_optimizer_step, scheduler + zero_grad, on_step_end; then logging, evaluation
    (on_evaluate) and checkpoint saving (on_save)."""

    STEP_PHASES = ("data", "forward", "backward", "optimizer", "scheduler+zero_grad")

    def __init__(self):
        self.seconds: Dict[str, float] = defaultdict(float)
        self.per_step: Dict[str, List[float]] = defaultdict(list)  # step phases, one entry a step
        self.in_step, self.training, self.mark = False, False, 0.0

    def attach(self, model) -> None:
        model.register_forward_pre_hook(lambda *_: self._forward_start())
        model.register_forward_hook(lambda *_: self._forward_end())

    def _add(self, phase: str) -> None:
        now = _now()
        self.seconds[phase] += now - self.mark
        if phase in self.STEP_PHASES:
            self.per_step[phase].append(now - self.mark)
        self.mark = now

    def median_ms(self) -> Dict[str, float]:
        """Median milliseconds a step per step phase: robust to one-off costs (a compile, a first
        oneDNN kernel) that the sums include."""
        return {p: 1000 * statistics.median(v) for p, v in self.per_step.items() if v}

    def _forward_start(self):
        if self.in_step:
            self.mark = _now()  # the time since on_step_begin (moving inputs) is negligible on the CPU

    def _forward_end(self):
        if self.in_step:
            self._add("forward")

    def on_train_begin(self, args, state, control, **kw):
        self.mark, self.training = _now(), True

    def on_train_end(self, args, state, control, **kw):
        self.training = False  # evaluations after training belong to train.run's scoring step

    def on_step_begin(self, args, state, control, **kw):
        self._add("data")
        self.in_step = True

    def on_pre_optimizer_step(self, args, state, control, **kw):
        self._add("backward")

    def on_optimizer_step(self, args, state, control, **kw):
        self._add("optimizer")

    def on_step_end(self, args, state, control, **kw):
        self._add("scheduler+zero_grad")
        self.in_step = False

    def on_evaluate(self, args, state, control, **kw):
        if self.training:
            self._add("evaluation (per epoch)")

    def on_save(self, args, state, control, **kw):
        if self.training:
            self._add("checkpoint saves")


@contextlib.contextmanager
def timed_steps(seconds: Dict[str, float], timer: PhaseTimer):
    """Time train.run's named steps (patched on the module for the duration) into `seconds`, and
    attach `timer` to the trainer that build_trainer makes."""
    names = {"load_tokenizer": "tokenizer", "prepare_data": "data set load", "get_model": "model load",
             "tokenize_data": "tokenization", "head_on_features": "head features", "save_final_model":
             "final save", "evaluate_splits": "test + validation scoring", "write_record": "run.json"}
    originals = {name: getattr(train, name) for name in names}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            start = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[names[name]] += _now() - start
        return timed

    def attach(trainer, tokenized):
        trainer.add_callback(timer)
        timer.attach(trainer.model)

    try:
        for name, fn in originals.items():
            setattr(train, name, wrap(name, fn))
        with on_trainer_built(attach):
            yield
    finally:
        for name, fn in originals.items():
            setattr(train, name, fn)


@contextlib.contextmanager
def on_trainer_built(hook: Callable):
    """train.build_trainer patched for the duration: hook(trainer, tokenized) sees each trainer that
    train.run builds (to add a callback), before training starts."""
    original = train.build_trainer

    def build_trainer(model, tokenizer, tokenized, *args, **kwargs):
        trainer = original(model, tokenizer, tokenized, *args, **kwargs)
        hook(trainer, tokenized)
        return trainer

    train.build_trainer = build_trainer
    try:
        yield
    finally:
        train.build_trainer = original


class TokenCounter:
    """Real (attention mask) and executed (batch x padded length) tokens of every batch the trainer's
    collator builds: dynamic padding still pads each batch to its longest example, so "executed" FLOP/s
    come from these counts, not from the mean example length."""

    def __init__(self):
        self.real = self.executed = 0

    def wrap(self, trainer, tokenized) -> None:
        collate = trainer.data_collator

        def counted(features):
            batch = collate(features)
            mask = batch.get("attention_mask")
            if mask is not None:  # (batch, padded length) of 0/1; absent for cached head features
                self.real += int(mask.sum())
                self.executed += mask.numel()
            return batch

        trainer.data_collator = counted

    def padding_factor(self) -> Optional[float]:
        """executed / real tokens, or None when nothing with an attention mask was collated."""
        return self.executed / self.real if self.real else None


def run_once(label: str, steps: Optional[int], method: str, extra: list, dataset: str,
             profile: bool = False) -> dict:
    """One train.run; steps None = one epoch with train.py's evaluation/saving/test scoring (--whole_run)."""
    out = tempfile.mkdtemp(prefix=f"bench-{label}-")
    quick = (["--max_steps", str(steps), "--eval_strategy", "no", "--save_strategy", "no", "--max_eval_samples", "8",
              "--do_predict", "false"] if steps else ["--num_train_epochs", "1"])
    argv = ["--dataset_name", dataset, "--method", method, *quick, "--report_to", "none", "--disable_tqdm", "true",
            "--output_dir", out, *extra]
    seconds: Dict[str, float] = defaultdict(float)
    timer, tokens = PhaseTimer(), TokenCounter()
    try:
        start = _now()
        with on_trainer_built(tokens.wrap), timed_steps(seconds, timer) if profile else contextlib.nullcontext():
            record = train.run(*train.parse_args(argv))
        total = _now() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)  # checkpoints/weights of a throughput run are not kept
    t = record["time"]
    # executed = real tokens x (padded / real) of the batches collated (training; in --steps runs only 8
    # evaluation examples join them); nothing padded (cached head features): executed = real
    executed = t["tokens_per_second"] * (tokens.padding_factor() or 1.0)
    result = {"label": label, "method": record["config"]["method"],
              "samples_per_second": t["samples_per_second"], "useful_tokens_per_second":
              t["tokens_per_second"], "executed_tokens_per_second": executed,
              "batch": record["config"]["per_device_train_batch_size"], "bf16": record["config"]["bf16"],
              "steps": record["training"]["steps"], "peak_rss_bytes": record["memory"].get("peak_bytes")}
    if profile:
        phases = {**seconds, **timer.seconds}
        phases["other"] = total - sum(phases.values())  # Trainer set-up, logging, what no hook covers
        result["phases"], result["run_seconds"] = dict(phases), total
        result["median_step_ms"] = timer.median_ms()
        # the training steps alone (no per-epoch evaluation or checkpoint): the FLOP/s of the steps themselves
        result["train_seconds"] = t["train_seconds"]
        result["step_seconds"] = sum(timer.seconds.get(p, 0.0) for p in PhaseTimer.STEP_PHASES)
    return result


def phase_table(results: List[dict], startup: Optional[float]) -> str:
    """Markdown: one row per phase, seconds and share of the run (and the median step for step phases),
    then the median step's total."""
    rows = ["| phase | " + " | ".join(f"{r['label']} s (share)" for r in results) + " |",
            "|---|" + "---|" * len(results)]
    order = [*PhaseTimer.STEP_PHASES] + sorted({p for r in results for p in r["phases"]} - set(PhaseTimer.STEP_PHASES)
                                               - {"other"}) + ["other"]
    if startup is not None:
        rows.append("| start-up (imports) | " + " | ".join(f"{startup:.2f}" for _ in results) + " |")
    for phase in order:
        cells = []
        for r in results:
            s = r["phases"].get(phase, 0.0)
            median = r.get("median_step_ms", {}).get(phase)
            per_step = f", median {median:.0f} ms/step" if median is not None else ""
            cells.append(f"{s:.2f} ({100 * s / r['run_seconds']:.1f}%{per_step})")
        rows.append(f"| {phase} | " + " | ".join(cells) + " |")
    rows.append("| median step (sum of the step phases' medians), ms | " + " | ".join(
        f"{sum(r.get('median_step_ms', {}).values()):.0f}" for r in results) + " |")
    rows.append("| whole train.run | " + " | ".join(f"{r['run_seconds']:.2f}" for r in results) + " |")
    return "\n".join(rows)


# ---------------------------------------------------------------- time to accuracy

# The naive setup of --time_to_accuracy, as the HF text-classification example trains: NAIVE's fp32, batch 8,
# pad to 128 and random batches, 3 epochs at lr 5e-5, no evaluation or checkpoint while training, the last
# model tested.
NAIVE_RUN = NAIVE + ["--num_train_epochs", "3", "--learning_rate", "5e-5", "--eval_strategy", "no",
                     "--save_strategy", "no", "--load_best_model_at_end", "false"]


class TestProbe(TrainerCallback):
    """Test accuracy every `every` epochs while training, for the time-to-accuracy figure only: what the
    run decides (best epoch, early stopping) reads validation, never these numbers. `seconds` counts from
    `started` (the process start) and leaves the probes' own time out. Stops training once `target` is
    reached (as MLPerf's time-to-train does) or at `max_epochs`."""

    def __init__(self, trainer, test, started: float, every: float, target: Optional[float] = None,
                 max_epochs: Optional[float] = None):
        self.trainer, self.test, self.started = trainer, test, started
        self.every, self.target, self.max_epochs = every, target, max_epochs
        self.points: List[dict] = []
        self.reached: Optional[dict] = None
        self.probe_seconds, self.interval = 0.0, 1

    def on_train_begin(self, args, state, control, train_dataloader=None, **kw):
        steps_per_epoch = len(train_dataloader) / max(1, args.gradient_accumulation_steps)
        self.interval = max(1, round(steps_per_epoch * self.every))

    def on_step_end(self, args, state, control, **kw):
        if state.global_step % self.interval and state.global_step != state.max_steps:
            return
        start = time.time()
        seconds = start - self.started - self.probe_seconds
        # predict draws from the global generator (the eval loader): fork it, so dropout and the batches go on
        # as they would without the probe (a test checks the trained weights are identical)
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            accuracy = float(self.trainer.predict(self.test, metric_key_prefix="probe").metrics["probe_accuracy"])
        self.probe_seconds += time.time() - start
        point = {"step": state.global_step, "epoch": round(float(state.epoch), 3), "seconds": round(seconds, 2),
                 "accuracy": accuracy}
        self.points.append(point)
        if self.target is not None and accuracy >= self.target and self.reached is None:
            self.reached = point
            control.should_training_stop = True
        if self.max_epochs is not None and state.epoch >= self.max_epochs - 1e-6:
            control.should_training_stop = True


def probe_run(argv: List[str], every: Optional[float], target: Optional[float] = None,
              max_epochs: Optional[float] = None, started: Optional[float] = None) -> dict:
    """One train.run (in this process) with a TestProbe every `every` epochs (None: no probe); the probe
    points, where the target was first reached, and the run's final test accuracy and train time."""
    started = time.time() if started is None else started
    probes: List[TestProbe] = []

    def add_probe(trainer, tokenized):
        probes.append(TestProbe(trainer, tokenized["test"], started, every, target, max_epochs))
        trainer.add_callback(probes[-1])

    with on_trainer_built(add_probe) if every is not None else contextlib.nullcontext():
        record = train.run(*train.parse_args(argv))
    probe = probes[0] if probes else None
    return {"points": probe.points if probe else [], "reached": probe.reached if probe else None,
            "final_test_accuracy": record["metrics"]["test"]["accuracy"],
            "train_seconds": record["time"]["train_seconds"], "epochs": record["training"]["epochs"]}


def run_child(argv: List[str], every: Optional[float], target: Optional[float], max_epochs: Optional[float]) -> dict:
    """probe_run in a fresh Python process (imports count, as they do for a user): adds process_seconds,
    the wall time from spawning the process to its exit. The run's output folder is removed."""
    spec = {"kind": "tta", "argv": argv, "every": every, "target": target, "max_epochs": max_epochs}
    return spawn_worker(spec, f"time-to-accuracy run failed: train.py {shlex.join(argv)}")


def spawn_worker(spec: dict, what: str) -> dict:
    """Run `spec` (kind tta: probe_run; kind setup: run_once) in a fresh `python -m ftlab.analysis.bench` and
    return its result, with process_seconds (spawn to exit) and the process's own peak RSS."""
    work = tempfile.mkdtemp(prefix="bench-worker-")
    spec = {**spec, "result": os.path.join(work, "result.json")}
    if spec["kind"] == "tta":
        spec["argv"] = spec["argv"] + ["--output_dir", os.path.join(work, "run")]
    with open(os.path.join(work, "spec.json"), "w") as f:
        json.dump(spec, f)
    try:
        started = time.time()
        argv = [sys.executable, "-m", "ftlab.analysis.bench", "--worker", os.path.join(work, "spec.json")]
        proc = subprocess.run(argv, env=dict(os.environ, FTLAB_TTA_STARTED=repr(started)))
        seconds = time.time() - started
        if proc.returncode != 0:
            raise SystemExit(f"error: {what} (exit {proc.returncode})")
        with open(spec["result"]) as f:
            return {**json.load(f), "process_seconds": seconds}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def worker(spec_path: str) -> int:
    """The child side of spawn_worker."""
    with open(spec_path) as f:
        spec = json.load(f)
    if spec["kind"] == "tta":
        started = float(os.environ.get("FTLAB_TTA_STARTED", START))
        result = probe_run(spec["argv"], spec["every"], spec["target"], spec["max_epochs"], started)
        result["peak_rss_bytes"] = _process_peak_rss()  # the time-to-accuracy table's figure: the whole process
    else:
        result = run_once(*spec["args"])  # its peak_rss_bytes: run.json's, over the run's baseline
    result["process_peak_rss_bytes"] = _process_peak_rss()
    write_atomic(spec["result"], json.dumps(result))
    return 0


def _process_peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_setup(separate: bool, *args) -> dict:
    """run_once here, or (separate) in its own process, so that its peak memory is its own: in one process the
    allocator keeps the pages an earlier setup freed, and a later setup's peak over its baseline reads low."""
    if not separate:
        return run_once(*args)
    return spawn_worker({"kind": "setup", "args": list(args)}, f"bench setup {args[0]!r} failed")


def band(accuracies: List[float]) -> tuple:
    """(mean, sample std) of the naive runs' test accuracies; the target is mean - std ("within one std")."""
    mean = statistics.mean(accuracies)
    return mean, statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0


def time_to_accuracy(args, runner=run_child) -> dict:
    """The naive setup's 3-epoch test accuracy band over the seeds (or read from --naive_from), then each
    seed of train.py's defaults (plus --train_args) until its probe reaches the band's lower edge."""
    common = ["--model_name_or_path", args.model, "--dataset_name", args.dataset_name, "--method", args.method,
              "--report_to", "none", "--disable_tqdm", "true", *shlex.split(args.common_args)]
    here = machine()
    if args.naive_from:
        with open(args.naive_from) as f:
            earlier = json.load(f)
        check_same_machine(args.naive_from, earlier.get("machine"), here)
        naive = earlier["naive"]
    else:
        naive = [{"seed": s, **runner(common + NAIVE_RUN + ["--seed", str(s)], None, None, None)} for s in args.seeds]
    mean, std = band([r["final_test_accuracy"] for r in naive])
    target = mean - std
    default = [{"seed": s, **runner(common + shlex.split(args.train_args) + ["--seed", str(s)], args.probe_every,
                                    target, args.tta_max_epochs)} for s in args.seeds]
    return {"naive": naive, "default": default, "naive_mean": mean, "naive_std": std, "target": target,
            "naive_seconds": statistics.mean(r["process_seconds"] for r in naive), "machine": here}


def check_same_machine(path: str, earlier: Optional[dict], here: dict) -> None:
    """--naive_from: the naive runs must come from this machine (CPU model, instruction set, threads, GPU)."""
    if earlier is None:  # files written before `ftlab bench` recorded the machine
        print(f"warning: {path} does not record its machine; its naive band is valid only if it ran on this "
              f"one ({here['cpu']}, {here['isa']}, {here['threads']} threads)", file=sys.stderr)
    elif earlier != here:
        raise SystemExit(f"error: --naive_from {path}: its naive runs ran on {earlier}, this machine is {here}; "
                         "a wall-time ratio needs both setups on one machine: run without --naive_from")


def machine_line(m: dict) -> str:
    return f"machine: {m['cpu']} ({m['isa']}), {m['threads']} threads" + (f", GPU {m['gpu']}" if m.get("gpu") else "")


def _gib(run: dict) -> str:
    return f"{run['peak_rss_bytes'] / 2 ** 30:.2f}" if run.get("peak_rss_bytes") else "-"


def tta_table(result: dict, what: str) -> str:
    """Markdown: the naive runs, the band, each default seed's time to it and the ratio."""
    naive_seconds = result["naive_seconds"]
    lines = [f"time to accuracy: {what}",
             f"naive band: test accuracy {result['naive_mean']:.4f} ± {result['naive_std']:.4f} "
             f"(target >= {result['target']:.4f}), mean whole process {naive_seconds:.1f} s",
             *([machine_line(result["machine"])] if result.get("machine") else []),
             "", "| setup | seed | test acc | seconds | epochs | / naive wall | peak RSS GiB |", "|---|---|---|---|---|---|---|"]
    for r in result["naive"]:
        lines.append(f"| naive (3 epochs, whole process) | {r['seed']} | {r['final_test_accuracy']:.4f} | "
                     f"{r['process_seconds']:.1f} | {r['epochs']:g} | {r['process_seconds'] / naive_seconds:.3f} | {_gib(r)} |")
    reached = []
    for r in result["default"]:
        hit = r["reached"]
        if hit:
            reached.append(hit["seconds"])
            lines.append(f"| default (time to target) | {r['seed']} | {hit['accuracy']:.4f} | {hit['seconds']:.1f} | "
                         f"{hit['epoch']:g} | {hit['seconds'] / naive_seconds:.3f} (1/{naive_seconds / hit['seconds']:.1f}) | "
                         f"{_gib(r)} |")
        else:
            best = max((p["accuracy"] for p in r["points"]), default=float("nan"))
            lines.append(f"| default (not reached; best probe) | {r['seed']} | {best:.4f} | - | {r['epochs']:g} | - | "
                         f"{_gib(r)} |")
    if len(reached) == len(result["default"]):
        slowest, mean = max(reached), statistics.mean(reached)
        lines += ["", f"every seed reached the band; slowest {slowest:.1f} s = 1/{naive_seconds / slowest:.1f} of the "
                      f"naive wall time (mean {mean:.1f} s = 1/{naive_seconds / mean:.1f})"]
    else:
        lines += ["", f"{len(result['default']) - len(reached)} of {len(result['default'])} seeds did not reach the band"]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ftlab bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per setup")
    parser.add_argument("--method", default="full", help="fine-tuning method for both setups")
    parser.add_argument("--model", default="minilm", help="model for both setups")
    parser.add_argument("--dataset_name", default="bbc_news",
                        help="data set for both setups (the README's figures: restaurant_sup, with DATA_DIR)")
    parser.add_argument("--train_args", default="", help="more train.py flags for the default setup, one string")
    parser.add_argument("--profile", action="store_true", help="time each phase of every step (and of the run)")
    parser.add_argument("--whole_run", action="store_true",
                        help="one epoch with train.py's evaluation, checkpoint and test scoring (implies --profile)")
    parser.add_argument("--no_naive", action="store_true", help="run the default setup only")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                        help="one more setup: train.py flags on top of the defaults, e.g. "
                             "'fused=--optim adamw_torch_fused' or 'lora=--method lora' (repeatable)")
    parser.add_argument("--out", default=None, help="also write the figures to OUT.json and the table to OUT.md")
    tta = parser.add_argument_group("time to accuracy (--time_to_accuracy)")
    tta.add_argument("--time_to_accuracy", action="store_true",
                     help="naive setup (3 epochs, as the HF example) per seed for its test accuracy band, then train.py's "
                          "defaults per seed until a test probe reaches the band: wall time of each, from process start")
    tta.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of both setups")
    tta.add_argument("--probe_every", type=float, default=0.25, help="epochs between test probes of the default setup")
    tta.add_argument("--tta_max_epochs", type=float, default=3.0,
                     help="the default setup stops here if its probe has not reached the band")
    tta.add_argument("--naive_from", default=None,
                     help="OUT.json of an earlier --time_to_accuracy run: reuse its naive runs instead of training them")
    tta.add_argument("--common_args", default="", help="train.py flags for both setups, one string (e.g. data limits)")
    parser.add_argument("--separate_processes", action="store_true",
                        help="run each setup in its own Python process: peak memory per setup (in one process a "
                             "later setup reuses the pages an earlier one freed and its peak reads low)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one child run
    args = commandline.one_line(parser).parse_args(argv)
    commandline.positive(args.steps, "--steps", "optimizer steps per setup, e.g. 10", allow_none=False)
    args.profile = args.profile or args.whole_run
    args.variants = variants(args.variant)  # a malformed one fails before any run
    return args


def variants(specs: List[str]) -> List[tuple]:
    """['fused=--optim adamw_torch_fused'] -> [('fused', '--optim adamw_torch_fused')]; one-line error otherwise."""
    out = []
    for spec in specs:
        label, sep, flags = spec.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"--variant {spec!r} must be LABEL=FLAGS, e.g. 'fused=--optim adamw_torch_fused'")
        out.append((label.strip(), flags))
    return out


def flops_per_token(r: dict, n: int) -> int:
    """Training FLOPs per token of the setup's method: k x N (k from the method registry)."""
    return get_method(r["method"]).flops_per_token_param * n


def flops_line(r: dict, n: int, peak: float) -> str:
    useful, executed = (flops_per_token(r, n) * r[k] for k in ("useful_tokens_per_second",
                                                               "executed_tokens_per_second"))
    return (f"{r['label']:8s} {r['method']:6s} batch {r['batch']:3d} bf16 {str(r['bf16']):5s} "
            f"{r['samples_per_second']:8.2f} samples/s  {r['useful_tokens_per_second']:9.1f} real tokens/s  "
            f"useful {useful / 1e9:7.2f} GFLOP/s ({100 * useful / peak:5.1f}% of peak)  executed "
            f"{executed / 1e9:7.2f} GFLOP/s ({100 * executed / peak:5.1f}%)" + in_steps_flops(r, n, peak))


def memory_line(results: List[dict], separate: bool) -> str:
    """Each setup's peak memory while training (run.json's memory.peak_bytes: over the run's baseline)."""
    peaks = ", ".join(f"{r['label']} {r['peak_rss_bytes'] / 2 ** 20:,.0f}" for r in results
                      if r.get("peak_rss_bytes") is not None)
    how = ("each setup in its own process" if separate else
           "one process: a later setup reuses pages an earlier one freed and reads low; --separate_processes")
    return f"peak memory while training, MiB over each run's baseline ({how}): {peaks}"


def in_steps_flops(r: dict, n: int, peak: float) -> str:
    """Useful FLOP/s over the step phases only (--profile): the loop's samples/s counts the time Trainer spends
    evaluating and saving a checkpoint at each epoch too, which trains nothing."""
    if not r.get("step_seconds"):
        return ""
    useful = flops_per_token(r, n) * r["useful_tokens_per_second"] * r["train_seconds"] / r["step_seconds"]
    return f"  in the steps alone {useful / 1e9:7.2f} GFLOP/s ({100 * useful / peak:5.1f}%)"


def report_time_to_accuracy(args) -> int:
    result = time_to_accuracy(args)
    text = tta_table(result, f"{args.model}, {args.dataset_name}, method {args.method}, default + "
                             f"'{args.train_args}', seeds {' '.join(map(str, args.seeds))}, probe every "
                             f"{args.probe_every:g} epochs, {torch.get_num_threads()} threads")
    print("\n" + text)
    if args.out:
        write_atomic(args.out + ".json", json.dumps({"args": vars(args), **result}, indent=1))
        write_atomic(args.out + ".md", text + "\n")
    return 0


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except ValueError as e:
        return commandline.fail(e)
    if args.worker:
        return worker(args.worker)
    if args.time_to_accuracy:
        return report_time_to_accuracy(args)
    extra = ["--model_name_or_path", args.model]
    peak = gemm_peak_flops()
    n = non_embedding_params(args.model)
    steps = None if args.whole_run else args.steps
    setups = [("default", extra + shlex.split(args.train_args))]
    setups += [] if args.no_naive else [("naive", extra + NAIVE)]
    setups += [(label, extra + shlex.split(flags)) for label, flags in args.variants]
    results = [run_setup(args.separate_processes, label, steps, args.method, argv, args.dataset_name, args.profile)
               for label, argv in setups]
    # the peak again after the runs, the higher kept: this machine's speed drifts, and one slow reading
    # of the peak alone would inflate every "% of peak" below
    peak = max(peak, gemm_peak_flops())
    what = "one epoch each" if args.whole_run else f"{args.steps} steps each"
    lines = [f"bench: {args.model}, {args.dataset_name}, method {args.method} {args.train_args}, {what}, "
             f"{torch.get_num_threads()} threads; {PRECISION[peak_dtype()]} GEMM peak {peak / 1e9:.1f} GFLOP/s "
             "(2048^3 matmul, the better of before and after the runs)",
             f"FLOPs = k x {n / 1e6:.2f}M non-embedding params x tokens; k = 6 full, 4 with a frozen base "
             "(lora, adapter, qlora: no weight gradients), 2 head",
             *(flops_line(r, n, peak) for r in results)]
    base = results[0]["samples_per_second"]
    lines += [f"{r['label']} / default: {r['samples_per_second'] / base:.2f}x samples/s" for r in results[1:]]
    lines += [memory_line(results, args.separate_processes)]
    if args.profile:
        lines += ["", phase_table(results, IMPORT_SECONDS if args.whole_run else None)]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        write_atomic(args.out + ".json", json.dumps({"args": vars(args), "machine": machine(),
                                                     "gemm_peak_flops": peak, "non_embedding_params": n,
                                                     "results": results}, indent=1))
        write_atomic(args.out + ".md", text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    sys.exit(main())

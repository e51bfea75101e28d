"""The run record (`run.json`): the one contract between a run and everything that reads it.

    build_record(config=..., method=..., ...)  -> dict   (train.py, `ftlab baseline`)
    write_record(output_dir, record)                    (atomic: temp file + rename)
    read_record(path_or_dir)                   -> dict   (`ftlab report`, `ftlab memory`, `ftlab predict` ...)

Every fact is stored once. Schema 2 (this version): every argument of the run lives in `config`
(batch size, bf16, gradient checkpointing included); `training` holds only what the run measured
(steps, epochs). Schema-1 files (the README's results/) also stored batch size, bf16 and gradient
checkpointing under `training`: `read_record` moves them into `config` where `config` lacks them,
so readers see one shape.

What a run folder holds, for resuming it (train.py) and for grids (labs/grid.sh: `ftlab record state
FOLDER`): `complete_checkpoints` (the checkpoints a resume can load, newest first) and `run_state`.

Also here, because every record needs them: `PeakMemory` (how peak memory is measured),
`library_versions()`, `device_name()` and `machine()` (what a speed figure depends on: CPU model, its
best matrix instruction set, threads, GPU).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
import zipfile
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from ftlab import commandline
from ftlab.commandline import one_line_errors
from ftlab.hardware import device_name, machine
from ftlab.io import read_text, write_atomic

# Imported inside functions: torch and the libraries whose versions a record names load inside the functions: run.json readers (ftlab report) do without them.

logger = logging.getLogger("ftlab.record")

SCHEMA = 2
RUN_FILE = "run.json"
# schema 1 kept these under `training` as well as `config`; schema 2 keeps them in `config` only
_SCHEMA1_TRAINING_COPIES = ("per_device_train_batch_size", "bf16", "gradient_checkpointing")


# ---------------------------------------------------------------- facts about the machine

class PeakMemory:
    """Peak memory of this process: CUDA max_memory_allocated, or CPU VmHWM minus the baseline RSS.

    Created before the model loads: the baseline is what the process held before the run's work."""

    def __init__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
        else:
            self.reset = True
            try:  # "5" resets the kernel's peak-RSS counter (VmHWM) to the current RSS
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.reset = False
                logger.warning("cannot reset VmHWM: CPU peak memory includes earlier allocations")
            self.baseline = self._status_bytes("VmRSS")

    @staticmethod
    def _status_bytes(key: str) -> int:
        for line in read_text("/proc/self/status").splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    def peak(self) -> int:
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        # VmRSS too: some kernels and sandboxes report a VmHWM that lags the current RSS
        now = max(self._status_bytes("VmHWM"), self._status_bytes("VmRSS"))
        return max(0, now - self.baseline)

    @property
    def how(self) -> str:
        if self.cuda:
            return "cuda_max_memory_allocated"
        return "cpu_peak_rss_minus_baseline" if self.reset else "cpu_process_peak_rss_minus_baseline"

    def mark_training_done(self) -> None:
        self.train_peak = self.peak()

    def result(self) -> dict:
        """`peak_bytes`: peak while training (what `ftlab memory` estimates); `peak_bytes_with_eval`: whole run."""
        overall = self.peak()
        return {"peak_bytes": getattr(self, "train_peak", overall), "peak_bytes_with_eval": overall,
                "how": self.how,
                "baseline_bytes": int(self.baseline)}


def library_versions(**extra: str) -> Dict[str, str]:
    import adapters
    import datasets
    import peft
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "adapters": adapters.__version__, "datasets": datasets.__version__, **extra}


# ---------------------------------------------------------------- build / write / read

def build_record(*, config: Dict[str, Any], seed: Any, method: str, model: str, model_path: str, dataset: str,
                 settings: Dict[str, Any], metrics: Dict[str, Dict[str, float]], params: Dict[str, int],
                 time: Dict[str, float], memory: Dict[str, Any], data: Dict[str, Any], training: Dict[str, Any],
                 world_size: int = 1, versions: Optional[Dict[str, str]] = None) -> dict:
    """One run.json object (schema 2). `params` takes trainable and total; the share is added here."""
    trainable, total = int(params["trainable"]), int(params["total"])
    return {
        "schema": SCHEMA,
        "config": json.loads(json.dumps(config, default=str)),  # every argument, JSON-safe
        "seed": seed, "method": method, "model": model, "model_path": model_path, "dataset": dataset,
        "settings": settings,
        "versions": versions or library_versions(),
        "device": device_name(), "machine": machine(), "world_size": world_size,
        "metrics": metrics,
        "params": {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / max(total, 1)},
        "time": time,
        "memory": memory,
        "data": data,
        "training": training,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_record(output_dir: str, record: dict) -> str:
    path = os.path.join(output_dir, RUN_FILE)
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def record_path(path: str) -> str:
    return path if path.endswith(".json") else os.path.join(path, RUN_FILE)


def read_record(path: str) -> dict:
    """The record at `path` (a run.json or its folder) in the schema-2 shape, whatever its schema.

    One-line errors: FileNotFoundError (no run.json there), ValueError (not JSON / not an object)."""
    file = record_path(path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no {RUN_FILE} in {path!r}: pass a run folder written by train.py or `ftlab baseline`")
    try:
        with open(file, encoding="utf-8") as f:
            record = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno}): truncated or "
                         "not a run.json") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: unreadable ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{file}: not a JSON object (got {type(record).__name__})")
    return upgrade(record)


def upgrade(record: dict) -> dict:
    """Schema 1 -> 2 in memory: settings stored under `training` move to `config` (config wins)."""
    if record.get("schema", 1) >= SCHEMA:
        return record
    out = dict(record)
    config, training = dict(out.get("config") or {}), dict(out.get("training") or {})
    for key in _SCHEMA1_TRAINING_COPIES:
        if key in training:
            value = training.pop(key)
            config.setdefault(key, value)
    out.update(config=config, training=training, schema=SCHEMA, upgraded_from=record.get("schema", 1))
    return out


# ---------------------------------------------------------------- what a run folder holds

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")  # transformers' checkpoint folders
TRAINER_STATE = "trainer_state.json"  # transformers writes it last into a checkpoint: its presence dates the rest


def checkpoints(folder: str) -> List[str]:
    """The checkpoint-N folders in `folder`, newest (highest N) first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), n) for n in os.listdir(folder)
             if (m := CHECKPOINT_NAME.match(n)) and os.path.isdir(os.path.join(folder, n))]
    return [os.path.join(folder, n) for _, n in sorted(found, reverse=True)]


def checkpoint_flaw(path: str) -> Optional[str]:
    """Why a resume cannot load the checkpoint at `path` (None: it can): trainer_state.json missing or not
    JSON, no weights, or a weights / optimizer file cut short (safetensors header or torch zip unreadable)."""
    try:
        with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as f:
            json.load(f)
    except (OSError, ValueError):
        return f"no readable {TRAINER_STATE}"
    names = os.listdir(path)
    if not any(n.endswith((".safetensors", ".bin")) and n != "training_args.bin" for n in names):
        return "no weights file"
    for name in sorted(names):
        flaw = weights_file_flaw(os.path.join(path, name))
        if flaw:
            return f"{name} {flaw}"
    return None


def weights_file_flaw(file: str) -> Optional[str]:
    """Why a weights file cannot load (None: it can): a safetensors file whose header or data is cut short, or a
    torch.save file (zip) without its end. Resume (checkpoint_flaw) and `ftlab predict` both ask it."""
    if file.endswith(".safetensors"):
        from safetensors import safe_open

        try:
            with safe_open(file, framework="pt") as f:  # checks the header against the file's length
                f.keys()
        except Exception as e:  # noqa: BLE001  (safetensors raises its own error types)
            return f"unreadable ({type(e).__name__})"
    elif file.endswith((".bin", ".pt", ".pth")) and not zipfile.is_zipfile(file):
        return "truncated (no zip directory)"
    return None


def complete_checkpoints(folder: str) -> Tuple[List[str], Dict[str, str]]:
    """(checkpoints a resume can load, newest first; {torn checkpoint: its flaw})."""
    good, torn = [], {}
    for path in checkpoints(folder):
        flaw = checkpoint_flaw(path)
        if flaw:
            torn[path] = flaw
        else:
            good.append(path)
    return good, torn


def finished_record(folder: str) -> Optional[dict]:
    """The folder's run.json when it is complete (read_record reads it), else None."""
    try:
        return read_record(folder)
    except (FileNotFoundError, ValueError):
        return None


# what a grid does with a run folder (labs/grid.sh run_one): skip, resume, clear and start, start
RUN_STATES = ("finished", "resumable", "partial", "new")


def run_state(folder: str) -> str:
    """finished: a complete run.json; resumable: a complete checkpoint; partial: a torn run.json or only torn
    checkpoints (start again in a cleared folder); new: nothing of a run."""
    if finished_record(folder) is not None:
        return "finished"
    if complete_checkpoints(folder)[0]:
        return "resumable"
    if os.path.exists(record_path(folder)) or checkpoints(folder):
        return "partial"
    return "new"


@one_line_errors()
def main(argv: Optional[List[str]] = None) -> int:
    """`ftlab record state FOLDER`: print one of RUN_STATES (labs/grid.sh asks this per run)."""
    parser = argparse.ArgumentParser(description="What a run folder holds: finished, resumable, partial or new.")
    parser.add_argument("command", choices=["state"], help="state: print the folder's run state")
    parser.add_argument("folder", help="a run's output folder")
    print(run_state(commandline.one_line(parser).parse_args(argv).folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""wandb for train.py runs: readable names, one group per experiment, run.json's figures in the summary,
a closed record; and a reader for the offline record (the file `wandb sync` uploads).

What a train.py run logs to wandb (HF's WandbCallback, then `log_run_record`):
- config: every train.py argument (model, data, method, training) and the model's config;
- history: train/loss, train/learning_rate, train/grad_norm, train/epoch every --logging_steps;
  eval/accuracy, eval/macro_f1, eval/loss ... per epoch (--eval_strategy epoch); test/* once;
- summary: the last value of each, plus run.json's params/*, time/*, memory/* and final metrics
  (eval/* = validation, test/*).

Offline by default: without WANDB_API_KEY (or a `wandb login` in ~/.netrc) runs are written to
./wandb/offline-run-<time>-<id>/ ($WANDB_DIR moves it). Upload them later, when online:
`wandb sync wandb/offline-run-*` (or `wandb sync --sync-all`). Turn wandb off: `--report_to none`,
or WANDB_MODE=disabled. Group: --run_group, else $WANDB_RUN_GROUP (the grid scripts set one per
grid, with $WANDB_JOB_TYPE = the configuration and $WANDB_NAME = the run's folder), else
model-dataset-method. Name: --run_name, else $WANDB_NAME, else model-dataset-method-seed<seed>.

    uv run ftlab tracking wandb/offline-run-20261128_063408-cd40uxps   # what an offline record holds
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import struct
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ftlab import commandline
from ftlab.commandline import one_line_errors

# Imported inside functions: wandb's protobuf classes load only to read an offline record.

# The .wandb file: a LevelDB-style log (32 KiB blocks; records split into FULL / FIRST, MIDDLE..., LAST
# chunks, each with a 7-byte header: CRC-32 of type byte + data, length, type) after a 7-byte file
# header (":W&B", magic 0xBEE1, version 0); every record is a wandb.proto Record message.
FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
FILE_IDENT, FILE_MAGIC = b":W&B", 0xBEE1
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


# ---------------------------------------------------------------- train.py side

def default_run_name(model: str, dataset: str, method: str, seed: Any) -> str:
    """'minilm-bbc_news-lora-seed42': what the run is, readable in a dashboard."""
    model_tag = os.path.basename(os.path.normpath(model))
    return f"{model_tag}-{dataset.replace(',', '+')}-{method}-seed{seed}"


def name_run(targs, model: str, dataset: str, method: str) -> str:
    """Give the run a readable name unless --run_name set one: $WANDB_NAME, else default_run_name.
    Call before the Trainer is built (its WandbCallback reads args.run_name when training starts)."""
    if not targs.run_name:
        targs.run_name = os.environ.get("WANDB_NAME") or default_run_name(model, dataset, method, targs.seed)
    return targs.run_name


def summary_figures(record: dict) -> Dict[str, float]:
    """run.json's figures as flat wandb summary keys: params/*, time/*, memory/*, eval/* and test/*."""
    figures: Dict[str, float] = {}
    for section in ("params", "time"):
        for key, value in (record.get(section) or {}).items():
            figures[f"{section}/{key}"] = value
    memory = record.get("memory") or {}
    for key in ("peak_bytes", "peak_bytes_with_eval"):
        if key in memory:
            figures[f"memory/{key}"] = memory[key]
            figures[f"memory/{key.replace('bytes', 'mib')}"] = memory[key] / 2 ** 20
    for split, values in (record.get("metrics") or {}).items():
        prefix = "eval" if split == "validation" else split  # the Trainer logs validation as eval/*
        figures.update({f"{prefix}/{key}": value for key, value in values.items()})
    return figures


def record_config(record: dict) -> Dict[str, Any]:
    """The run's arguments (model, data, method: those the Trainer's own config lacks) and what it is."""
    return {**(record.get("config") or {}), "method": record.get("method"), "dataset": record.get("dataset"),
            "model": record.get("model"), "settings": record.get("settings") or {}, "device": record.get("device")}


def log_run_record(record: dict, finish: bool = True) -> bool:
    """Put run.json's config and figures into the active wandb run, then close it (the offline record
    is complete on disk, and a next run in this process starts its own). False when no run is active."""
    wandb = sys.modules.get("wandb")  # never import it here: runs without wandb stay without it
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    wandb.run.config.update(record_config(record), allow_val_change=True)
    wandb.run.summary.update(summary_figures(record))
    if finish:
        wandb.finish()
    return True


# ---------------------------------------------------------------- reading an offline record

@dataclass
class OfflineRun:
    """What one .wandb file holds: the run (id, name, group, job type, project), config, history rows, summary."""

    path: str
    run: Dict[str, str] = field(default_factory=dict)
    config: Dict[str, Any] = field(default_factory=dict)
    history: List[Dict[str, Any]] = field(default_factory=list)
    summary: Dict[str, Any] = field(default_factory=dict)
    exit_code: Optional[int] = None

    def series(self, key: str) -> List[Any]:
        """The logged values of one history key, in step order."""
        return [row[key] for row in self.history if key in row]


def log_chunks(data: bytes, path: str) -> Iterator[bytes]:
    """The records of a .wandb file's bytes (chunks reassembled, checksums verified)."""
    ident, magic, version = FILE_HEADER.unpack_from(data, 0) if len(data) >= FILE_HEADER.size else (b"", 0, 0)
    if ident != FILE_IDENT or magic != FILE_MAGIC:
        raise ValueError(f"{path}: not a wandb run file (header {data[:7]!r})")
    pos, pending = FILE_HEADER.size, None
    while pos + CHUNK_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER.size:  # block trailer: zero padding
            pos += left
            continue
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled rest of a block
            pos += left
            continue
        chunk = data[pos + CHUNK_HEADER.size:pos + CHUNK_HEADER.size + length]
        if len(chunk) < length:
            break  # the writer is still busy (or was killed): ignore the partial tail
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: corrupt record at byte {pos} (checksum mismatch)")
        pos += CHUNK_HEADER.size + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += chunk
            if kind == LAST:
                yield pending
                pending = None
        else:
            raise ValueError(f"{path}: bad record type {kind} at byte {pos}")


def _items(items) -> Dict[str, Any]:
    """{key: value} of wandb ConfigItem / SummaryItem / HistoryItem messages (value_json decoded)."""
    out = {}
    for item in items:
        key = item.key or ".".join(item.nested_key)
        out[key] = json.loads(item.value_json) if item.value_json else None
    return out


def _apply(run: OfflineRun, record) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        r = record.run
        run.run = {"id": r.run_id, "name": r.display_name, "group": r.run_group, "job_type": r.job_type,
                   "project": r.project}
        run.config.update(_items(r.config.update))
    elif kind == "config":
        run.config.update(_items(record.config.update))
    elif kind == "history":
        run.history.append(_items(record.history.item))
    elif kind == "summary":
        run.summary.update(_items(record.summary.update))
        for item in record.summary.remove:
            run.summary.pop(item.key or ".".join(item.nested_key), None)
    elif kind == "exit":
        run.exit_code = record.exit.exit_code


def run_file(path: str) -> str:
    """The .wandb file of an offline run folder (or the file itself)."""
    if os.path.isfile(path):
        return path
    files = sorted(glob.glob(os.path.join(path, "*.wandb")))
    if not files:
        raise FileNotFoundError(f"no .wandb file in {path!r}: pass a wandb/offline-run-* folder")
    return files[0]


def read_offline_run(path: str, wait_s: float = 0.0) -> OfflineRun:
    """Read an offline run (folder or .wandb file) with wandb's own record messages (wandb.proto).

    `wait_s`: wait up to this long for the run's exit record: wandb's service may still be writing the
    file for a moment after `wandb.finish()` returns (a run in progress is read as far as it goes)."""
    from wandb.proto import wandb_internal_pb2

    file = run_file(path)
    deadline = time.monotonic() + wait_s
    while True:
        with open(file, "rb") as f:
            data = f.read()
        run = OfflineRun(file)
        for chunk in log_chunks(data, file):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            _apply(run, record)
        if run.exit_code is not None or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def offline_runs(wandb_dir: str) -> List[str]:
    """Offline run folders under a wandb directory (WANDB_DIR/wandb or the folder itself), oldest first."""
    root = os.path.join(wandb_dir, "wandb") if os.path.isdir(os.path.join(wandb_dir, "wandb")) else wandb_dir
    return sorted(glob.glob(os.path.join(root, "offline-run-*")))


def describe(run: OfflineRun) -> str:
    """A short text: who the run is, how much history, the loss curve's ends, per-epoch eval, test."""
    info = run.run
    losses = run.series("train/loss")
    lines = [f"{run.path}", f"name {info.get('name') or '-'}, group {info.get('group') or '-'}, job type "
             f"{info.get('job_type') or '-'}, project {info.get('project') or '-'}, {len(run.config)} config keys",
             f"history: {len(run.history)} rows; train/loss {len(losses)} values"
             + (f" ({losses[0]:.4f} -> {losses[-1]:.4f})" if losses else "")]
    for row in run.history:
        if "eval/accuracy" in row:
            lines.append(f"  eval at epoch {row.get('train/epoch', '?')}: accuracy {row['eval/accuracy']:.4f}")
    finals = {k: v for k, v in sorted(run.summary.items()) if k.split("/")[0] in ("test", "params", "time", "memory")}
    lines.append("summary: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in finals.items()))
    return "\n".join(lines)


@one_line_errors()
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Print what a train.py run's offline wandb record holds.")
    parser.add_argument("paths", nargs="+", metavar="OFFLINE_RUN_DIR_OR_WANDB_DIR",
                        help="a wandb/offline-run-* folder, or a wandb folder holding several")
    for path in commandline.one_line(parser).parse_args(argv).paths:
        for folder in (offline_runs(path) or [path]):
            print(describe(read_offline_run(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where a process's resident memory peaks: run a command, sample its RSS, tie the peak to its log.

Usage (any command after `--`):

    uv run labs/rss_timeline.py --out outputs/rss/full -- \
        uv run train.py --dataset_name restaurant_sup --num_train_epochs 1 --output_dir outputs/rss/full/run

Every `--interval` seconds it reads VmRSS of the command and all its descendants from /proc (the sum:
`uv run` is a parent of the Python process), and timestamps every line the command prints. It writes
`timeline.tsv` (seconds, RSS MiB) and `log.txt` (seconds, line) under --out and prints one row per log
line that raised the running peak: the phase whose code ran when the memory grew. Linux only (/proc).
Why: `ru_maxrss` and `/usr/bin/time -f %M` give one number for the whole process; to lower it one has to
know whether imports, tokenization, a training step, evaluation or the checkpoint save reached it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def children(pid: int) -> List[int]:
    """Direct children of pid, from /proc/PID/task/*/children (Linux >= 3.5)."""
    out: List[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def tree_rss_kib(root: int) -> int:
    """RSS of root and every descendant, summed (shared pages are counted once per process)."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss_kib(pid)
        stack.extend(children(pid))
    return total


def peak_rows(timeline: List[Tuple[float, int]], log: List[Tuple[float, str]]) -> List[Dict]:
    """For each log line, the highest RSS sampled between it and the next line; keep the lines whose
    window raised the running peak. Samples before the first line belong to a "(start)" row."""
    marks = [(0.0, "(start)")] + log
    rows, running = [], 0
    for i, (t0, text) in enumerate(marks):
        t1 = marks[i + 1][0] if i + 1 < len(marks) else float("inf")
        window = [kib for t, kib in timeline if t0 <= t < t1]
        if window and max(window) > running:
            running = max(window)
            rows.append({"t": t0, "peak_mib": running / 1024, "line": text})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for timeline.tsv and log.txt")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command: give it after --, e.g. -- uv run train.py ...")
    os.makedirs(args.out, exist_ok=True)
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    log: List[Tuple[float, str]] = []

    def read_output():
        for line in proc.stdout:
            log.append((time.monotonic() - start, line.rstrip("\n")))
            sys.stdout.write(line)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    timeline: List[Tuple[float, int]] = []
    while proc.poll() is None:
        timeline.append((time.monotonic() - start, tree_rss_kib(proc.pid)))
        time.sleep(args.interval)
    reader.join(timeout=5)
    with open(os.path.join(args.out, "timeline.tsv"), "w") as f:
        f.write("seconds\trss_mib\n")
        f.writelines(f"{t:.2f}\t{kib / 1024:.1f}\n" for t, kib in timeline)
    with open(os.path.join(args.out, "log.txt"), "w") as f:
        f.writelines(f"{t:.2f}\t{text}\n" for t, text in log)
    print(f"\nexit {proc.returncode}; {len(timeline)} samples; peak {max(k for _, k in timeline) / 1024:.0f} MiB"
          if timeline else f"\nexit {proc.returncode}; no samples")
    print("| s | running peak MiB | log line in whose window it was reached |\n|---|---|---|")
    for row in peak_rows(timeline, log):
        print(f"| {row['t']:.1f} | {row['peak_mib']:.0f} | {row['line'][:110]} |")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

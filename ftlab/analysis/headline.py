"""The result tables of README.md and docs/results.md, generated from the files under results/.

    python -m ftlab.analysis.headline --write   # rewrite every table between its markers
    python -m ftlab.analysis.headline --check   # exit 1 when a file's tables differ from what --write writes

A table lives between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in the files of `FILES`. The rows of
today's defaults are chosen here, in `DEFAULTS` (one line per (set, method): the run folders it averages);
a new default is a new line there, then `--write`. Statistics: mean and sample std (ddof 1) over the runs,
as report.py computes them.
"""
from __future__ import annotations

import argparse
import csv
import glob
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Sequence

from ftlab.runs.record import read_record

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "results"


@dataclass(frozen=True)
class Row:
    """One (set, method) of today's defaults: the run.json folders (globs under results/) it averages."""

    dataset: str
    method: str
    runs: str  # glob of run folders, relative to results/
    note: str = ""

    @property
    def folder(self) -> str:
        return self.runs.split("/")[0]


_RUNS = "{folder}/run_records/{source}/{dataset}/minilm/{method}/seed*"


def _row(dataset: str, method: str, folder: str, source: str, note: str = "") -> Row:
    return Row(dataset, method, _RUNS.format(folder=folder, source=source, dataset=dataset, method=method), note)


# Today's defaults per course set (MiniLM, each method's registry schedule, run_sup.sh's per-set flags).
DEFAULTS: List[Row] = [
    _row("restaurant_sup", "full", "restaurant_methods", "sup_minilm_v11"),
    _row("restaurant_sup", "lora", "restaurant_methods", "sup_minilm_v11"),
    _row("restaurant_sup", "adapter", "restaurant_methods", "adapter_size_a"),
    _row("restaurant_sup", "head", "restaurant_methods", "sup_minilm_v11"),
    _row("restaurant_sup", "svm", "svm_c", "svm_c", "deterministic: every seed the same"),
    _row("acl_sup", "full", "acl_methods", "sup_minilm_v4"),
    _row("acl_sup", "lora", "acl_methods", "sup_minilm_v5"),
    _row("acl_sup", "adapter", "acl_adapter_default", "acl_adapter_v12"),
    _row("acl_sup", "head", "acl_methods", "sup_minilm_v4"),
    _row("acl_sup", "svm", "svm_c", "svm_c", "deterministic: every seed the same"),
    _row("agnews_sup", "full", "agnews_methods", "sup_minilm_v9"),
    _row("agnews_sup", "lora", "agnews_methods", "sup_minilm_v9"),
    _row("agnews_sup", "adapter", "agnews_adapter_default", "agnews_adapter_v12"),
    _row("agnews_sup", "head", "agnews_methods", "sup_minilm_v8"),
    _row("agnews_sup", "svm", "svm_c", "svm_c2", "deterministic: every seed the same"),
]

# The course labs: their report.py table.csv (no run records kept), one table row per CSV row.
LABS = [("rotten_tomatoes", "rotten_tomatoes_lab", "method"), ("imdb_2k", "imdb_lab", "method"),
        ("mrpc (prompt)", "mrpc_prompts", "config.prompt")]


# ---------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float], digits: int = 4) -> str:
    """'mean ± std' (sample std); the mean alone for one value; '–' for none."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.4f}" if values else "–"


def records(row: Row, root: Path) -> List[dict]:
    folders = sorted(glob.glob(str(root / RESULTS / row.runs)))
    if not folders:
        raise FileNotFoundError(f"{RESULTS}/{row.runs}: no run folders for {row.dataset} {row.method}")
    return [read_record(f) for f in folders]


def values(recs: Sequence[dict], *path: str) -> List[float]:
    out = []
    for r in recs:
        for key in path:
            r = r.get(key) if isinstance(r, dict) else None
        if isinstance(r, (int, float)) and not math.isnan(r):
            out.append(float(r))
    return out


def selection_metric(recs: Sequence[dict]) -> str:
    """The validation metric the runs chose on (accuracy unless run_sup.sh set another for the set)."""
    config = recs[0].get("config") or {}
    return config.get("metric_for_best_model") or ("macro_f1" if config.get("class_weight") == "balanced"
                                                   else "accuracy")


# ---------------------------------------------------------------------------- tables
def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def headline_table(root: Path) -> str:
    rows = []
    for row in DEFAULTS:
        recs = records(row, root)
        rows.append([row.dataset, row.method, str(len(recs)), mean_std(values(recs, "metrics", "test", "accuracy")),
                     mean_std(values(recs, "metrics", "test", "macro_f1")), f"[{row.folder}](results/{row.folder})"])
    return markdown(["set", "method", "n", "test accuracy", "test macro-F1", "runs in"], rows)


def detail_table(root: Path) -> str:
    rows = []
    for row in DEFAULTS:
        recs = records(row, root)
        metric = selection_metric(recs)
        trainable = values(recs, "params", "trainable")
        rows.append([row.dataset, row.method, str(len(recs)), median(values(recs, "metrics", "test", "accuracy")),
                     f"{metric}: {mean_std(values(recs, 'metrics', 'validation', metric))}",
                     f"{trainable[0]:,.0f}" if trainable else "–",
                     mean_std(values(recs, "time", "train_seconds"), 0),
                     " ".join(str(r.get("seed")) for r in recs), row.note])
    return markdown(["set", "method", "n", "test acc median", "validation (selection metric)", "trainable",
                     "train s", "seeds", "note"], rows)


def _csv_stat(line: Dict[str, str], name: str) -> str:
    mean, std, n = (line.get(f"{name}_{part}", "") for part in ("mean", "std", "n"))
    if not mean:
        return "–"
    if not std or int(float(n or 1)) < 2:
        return f"{float(mean):.4f}"
    return f"{float(mean):.4f} ± {float(std):.4f}"


def prompt_label(prompt: str) -> str:
    """A prompt template's instruction, without its sentence slots."""
    return prompt.split(" Sentence 1")[0].split("{")[0].strip() or "no prompt"


def labs_table(root: Path) -> str:
    rows = []
    for lab, folder, key in LABS:
        with open(root / RESULTS / folder / "table.csv", encoding="utf-8", newline="") as f:
            for line in csv.DictReader(f):
                label = line[key] if key == "method" else f"{line['method']}, {prompt_label(line[key])}"
                rows.append([lab, label, line["n"], _csv_stat(line, "validation_accuracy"),
                             _csv_stat(line, "test_accuracy"), _csv_stat(line, "test_macro_f1"),
                             f"[{folder}](results/{folder})"])
    return markdown(["lab", "method", "n", "validation acc", "test acc", "test macro-F1", "table"], rows)


TABLES: Dict[str, Callable[[Path], str]] = {"headline": headline_table, "detail": detail_table, "labs": labs_table}
FILES: Dict[str, Sequence[str]] = {"README.md": ("headline",), "docs/results.md": ("headline", "detail", "labs")}


def _relink(table: str, file: str) -> str:
    """Links are written from the repository root; a file in a sub-folder climbs to it."""
    depth = file.count("/")
    return table.replace("](results/", "](" + "../" * depth + "results/") if depth else table


def render(text: str, file: str, names: Sequence[str], root: Path) -> str:
    """`text` with each named table replaced by what the results say."""
    for name in names:
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        start, stop = text.find(begin), text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"{file}: no '{begin}' ... '{end}' markers: add them where the {name} table goes")
        table = _relink(TABLES[name](root), file)
        text = text[:start + len(begin)] + "\n" + table + "\n" + text[stop:]
    return text


def differing(root: Path = ROOT, write: bool = False) -> List[str]:
    """The files whose generated tables differ from what the results give (rewritten when `write`)."""
    out = []
    for file, names in FILES.items():
        path = root / file
        old = path.read_text(encoding="utf-8")
        new = render(old, file, names, root)
        if new != old:
            out.append(file)
            if write:
                path.write_text(new, encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftlab.analysis.headline", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 when a file's tables differ from the results")
    mode.add_argument("--write", action="store_true", help="rewrite the tables between their markers")
    args = parser.parse_args(argv)
    try:
        changed = differing(ROOT, write=args.write)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for file in changed:
        print(f"{'rewrote' if args.write else 'differs'}: {file}")
    return 1 if changed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())

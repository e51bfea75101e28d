"""Compare runs: mean ± sample std over seeds of every `run.json` under the given folders.

    uv run ftlab report outputs/ [more_dirs_or_run.json ...] [--out DIR] [--group_by config.prompt]

Runs are grouped by (model, dataset, method, settings) plus any `--group_by` field, so runs on
different data sets never share a row. Writes, atomically, into `--out` (default: the first
RUN_DIR): `table.md`, `table.csv`, `runs.md` (one row a run), `significance.md` and the plots
`metric_vs_params.png`, `metric_per_seed.png`, `time_per_method.png`, `memory_per_method.png`.
Unreadable runs are listed as skipped, with the reason; runs of one group that disagree on something
that should be constant are noted.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import logging
import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ftlab import commandline
from ftlab.io import write_atomic
from ftlab.runs.record import read_record

# Imported inside functions: matplotlib loads only when plots are written.

logger = logging.getLogger("report")

METRICS = ("accuracy", "micro_f1", "macro_f1", "weight_f1")
SPLITS = ("test", "validation")
REQUIRED_FIELDS = ("model", "dataset", "method", "metrics", "params")
# Every seed of one comparison group must agree on these; otherwise mean ± std mixes
# different experiments (other data, other budget) and the row is misleading.
CONSTANT_FIELDS = (
    "params.trainable",
    "params.total",
    "data.num_labels",
    "data.train_samples",
    "data.max_length",
    "training.steps",
    "config.learning_rate",
    "config.num_train_epochs",
    "config.max_steps",
    "config.per_device_train_batch_size",
    "memory.how",
    "device",
)
MIB = 2**20


# ---------------------------------------------------------------------------- loading
@dataclass
class Run:
    path: str
    record: dict

    def get(self, dotted: str) -> Any:
        return get_path(self.record, dotted)


@dataclass
class Skipped:
    path: str
    reason: str


def get_path(record: Any, dotted: str) -> Any:
    """`get_path(r, "metrics.test.accuracy")` -> value, or None when any step is missing."""
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return None
        record = record[part]
    return record


def find_run_files(paths: Sequence[str]) -> tuple[list[Path], list[Skipped]]:
    """Every run.json under `paths` (folders searched recursively; files taken as they are)."""
    files, skipped = [], []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.rglob("run.json")))
        elif p.is_file():
            files.append(p)
        else:
            skipped.append(Skipped(str(p), "no such file or directory"))
    return files, skipped


def check_record(record: Any) -> str | None:
    """Why `record` cannot be reported (None when it can)."""
    if not isinstance(record, dict):
        return f"not a JSON object (got {type(record).__name__})"
    missing = [k for k in REQUIRED_FIELDS if k not in record]
    if missing:
        return f"missing field(s): {', '.join(missing)}"
    if not any(isinstance(split := get_path(record, f"metrics.{name}"), dict) and any(m in split for m in METRICS)
               for name in ("test", "validation")):  # a --score_test false run (search, a rule's choices): validation
        return "no test or validation metrics (metrics.test / metrics.validation with accuracy/F1)"
    return None


def load_run(path: Path) -> Run | Skipped:
    try:
        record = read_record(str(path))  # any schema, in the current shape
    except (ValueError, FileNotFoundError) as e:
        return Skipped(str(path), str(e).split(": ", 1)[-1])
    reason = check_record(record)
    return Skipped(str(path), reason) if reason else Run(str(path), record)


def load_runs(paths: Sequence[str]) -> tuple[list[Run], list[Skipped]]:
    files, skipped = find_run_files(paths)
    runs = []
    for f in files:
        loaded = load_run(f)
        (skipped if isinstance(loaded, Skipped) else runs).append(loaded)
    return runs, skipped


# ---------------------------------------------------------------------------- grouping
def settings_label(settings: Any) -> str:
    """{"lora_r": 8, "lora_alpha": 16} -> "lora_alpha=16, lora_r=8" ("" for {} / None)."""
    if not settings:
        return ""
    if not isinstance(settings, dict):
        return str(settings)
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))


def display_value(value: Any, width: int = 48) -> str:
    """Short cell text for a `--group_by` value (prompts can be long)."""
    if value is None or value == "":
        return "(none)"
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def model_label(model: str) -> str:
    """Local paths -> their folder name; Hub ids (org/name) and embedded names unchanged."""
    if model.startswith(("/", ".", "~")):
        return os.path.basename(model.rstrip("/")) or model
    return model


@dataclass
class Group:
    model: str
    dataset: str
    method: str
    settings: str
    extra: tuple  # values of the --group_by fields
    runs: list[Run] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.model, self.dataset, self.method, self.settings, self.extra)

    @property
    def label(self) -> str:
        """Short name inside one (model, dataset): method [settings] [group_by values]."""
        parts = [self.method] + [p for p in (self.settings,) if p] + [display_value(v, 24) for v in self.extra]
        return " ".join(parts[:1] + [f"[{p}]" for p in parts[1:]])

    @property
    def seeds(self) -> str:
        """"1 2 3": the distinct seeds, numbers in numeric order."""
        return " ".join(str(s) for s in sorted({r.get("seed") for r in self.runs}, key=seed_order))

    def runs_in_seed_order(self) -> list[Run]:
        return sorted(self.runs, key=lambda r: seed_order(r.get("seed")))

    def values(self, dotted: str) -> list[float]:
        return [float(v) for v in (r.get(dotted) for r in self.runs) if isinstance(v, (int, float))]

    def stat(self, dotted: str) -> "Stat":
        return Stat.of(self.values(dotted))


def seed_order(seed: Any) -> tuple:
    """Sort key: numbers in numeric order, then anything else as text."""
    return (0, seed, "") if isinstance(seed, (int, float)) else (1, 0, str(seed))


def group_runs(runs: Iterable[Run], group_by: Sequence[str] = ()) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for run in runs:
        g = Group(
            model=str(run.get("model")),
            dataset=str(run.get("dataset")),
            method=str(run.get("method")),
            settings=settings_label(run.get("settings")),
            extra=tuple(json.dumps(run.get(f), sort_keys=True) if isinstance(run.get(f), (dict, list)) else run.get(f)
                        for f in group_by),
        )
        groups.setdefault(g.key, g).runs.append(run)
    return sorted(groups.values(), key=lambda g: tuple(str(x) for x in g.key))


def consistency_notes(group: Group) -> list[str]:
    """Say where the runs of one group disagree on what should be constant, or repeat a seed."""
    where = f"{group.dataset} / {model_label(group.model)} / {group.label}"
    notes = []
    early_stopped = any(r.get("config.early_stopping_patience") for r in group.runs)
    for dotted in CONSTANT_FIELDS:
        if dotted == "training.steps" and early_stopped:
            continue  # early stopping ends each seed at its own step: not a sign of a different setup
        seen = {json.dumps(r.get(dotted), sort_keys=True) for r in group.runs if r.get(dotted) is not None}
        if len(seen) > 1:
            notes.append(f"{where}: runs disagree on {dotted} ({', '.join(sorted(seen))}); they may not be comparable")
    seeds = [r.get("seed") for r in group.runs]
    for seed in sorted({s for s in seeds if seeds.count(s) > 1}, key=str):
        paths = [r.path for r in group.runs if r.get("seed") == seed]
        notes.append(f"{where}: seed {seed} appears {len(paths)} times ({', '.join(paths)}); each counts in n")
    return notes


# ---------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample std (ddof=1); nan when n < 2
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stat":
        n = len(values)
        if n == 0:
            return cls(math.nan, math.nan, 0)
        return cls(statistics.fmean(values), statistics.stdev(values) if n >= 2 else math.nan, n)


@dataclass(frozen=True)
class Column:
    """One quantity of the table: CSV gets `<name>_mean`, `<name>_std`; Markdown `header`."""

    name: str
    header: str
    path: str
    fmt: Callable[[float], str]
    spread: bool = True  # show "± std" (False for what is constant across seeds)
    scale: float = 1.0
    median: bool = False  # the median over seeds instead of the mean (the LoRA paper's statistic)
    compute: Callable[[Run], float | None] | None = None  # a value derived from a run, not read at `path`


def _metric_fmt(x: float) -> str:
    return f"{x:.4f}"


def columns_for(groups: Sequence[Group]) -> list[Column]:
    """Metric columns for the splits present (test first), then the cost columns."""
    cols = []
    for split in SPLITS:
        for metric in METRICS:
            path = f"metrics.{split}.{metric}"
            if any(g.values(path) for g in groups):
                cols.append(Column(f"{split}_{metric}", f"{split} {metric}", path, _metric_fmt))
    for metric in ("accuracy", "macro_f1"):  # medians of the headline test metrics
        path = f"metrics.test.{metric}"
        if any(g.values(path) for g in groups):
            cols.append(Column(f"test_{metric}_median", f"test {metric} median", path, _metric_fmt, spread=False,
                               median=True))
    cols += [
        Column("trainable_params", "trainable params", "params.trainable", lambda x: f"{x:,.0f}", spread=False),
        Column("trainable_pct", "trainable %", "params.trainable", lambda x: f"{x:.3g}%", spread=False,
               compute=trainable_pct),
        Column("total_params", "total params", "params.total", lambda x: f"{x:,.0f}", spread=False),
        Column("train_seconds", "train time (s)", "time.train_seconds", lambda x: f"{x:.1f}"),
        Column("seconds_per_step", "s/step", "time.train_seconds", lambda x: f"{x:.3g}", compute=seconds_per_step),
        Column("peak_memory_mib", "peak memory (MiB)", "memory.peak_bytes", lambda x: f"{x:.0f}", scale=1 / MIB),
    ]
    return cols


def trainable_pct(run: Run) -> float | None:
    # computed rather than read: writers may store a fraction or a percentage
    trainable, total = run.get("params.trainable"), run.get("params.total")
    return 100.0 * trainable / total if isinstance(trainable, (int, float)) and total else None


def seconds_per_step(run: Run) -> float | None:
    # every segment of a resumed run counts (time.train_seconds sums them), over the run's optimizer steps
    seconds, steps = run.get("time.train_seconds"), run.get("training.steps")
    return seconds / steps if isinstance(seconds, (int, float)) and steps else None


def run_value(run: Run, col: Column) -> float | None:
    """One run's value of `col`: computed (unscaled), or read at `col.path` and scaled; None when missing."""
    if col.compute is not None:
        return col.compute(run)
    v = run.get(col.path)
    return float(v) * col.scale if isinstance(v, (int, float)) else None


def column_stat(group: Group, col: Column) -> Stat:
    if col.compute is not None:
        return Stat.of([v for v in (run_value(r, col) for r in group.runs) if v is not None])
    if col.median:
        vals = group.values(col.path)
        return Stat(statistics.median(vals) * col.scale if vals else math.nan, math.nan, len(vals))
    s = group.stat(col.path)
    return Stat(s.mean * col.scale, s.std * col.scale, s.n)


def format_stat(s: Stat, col: Column) -> str:
    if s.n == 0:
        return "–"
    if not col.spread or s.n < 2:
        return col.fmt(s.mean)
    return f"{col.fmt(s.mean)} ± {col.fmt(s.std)}"


# ---------------------------------------------------------------------------- tables
def key_cells(g: Group, group_by: Sequence[str]) -> list[str]:
    return [model_label(g.model), g.dataset, g.method, g.settings or "–",
            *(display_value(v) for v in g.extra), str(len(g.runs)), g.seeds]


def key_headers(group_by: Sequence[str]) -> list[str]:
    return ["model", "dataset", "method", "settings", *group_by, "n", "seeds"]


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def markdown_table(groups: Sequence[Group], cols: Sequence[Column], group_by: Sequence[str]) -> str:
    return _markdown(key_headers(group_by) + [c.header for c in cols],
                     (key_cells(g, group_by) + [format_stat(column_stat(g, c), c) for c in cols] for g in groups))


def runs_table(groups: Sequence[Group], cols: Sequence[Column], group_by: Sequence[str]) -> str:
    """One row a run, in seed order within each group: what varies from seed to seed (metrics, time, memory),
    so a mean ± std in table.md can be read back to its seeds."""
    per_run = [c for c in cols if c.spread and not c.median]

    def cell(run: Run, c: Column) -> str:
        v = run_value(run, c)
        return "–" if v is None else c.fmt(v)

    rows = (key_cells(g, group_by)[:-2] + [str(run.get("seed"))] + [cell(run, c) for c in per_run]
            for g in groups for run in g.runs_in_seed_order())
    return _markdown(key_headers(group_by)[:-2] + ["seed"] + [c.header for c in per_run], rows)


def csv_text(groups: Sequence[Group], cols: Sequence[Column], group_by: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(key_headers(group_by) + [f"{c.name}_{s}" for c in cols for s in ("mean", "std", "n")])
    for g in groups:
        row = [g.model, g.dataset, g.method, g.settings, *("" if v is None else v for v in g.extra),
               len(g.runs), g.seeds]
        for c in cols:
            s = column_stat(g, c)
            row += ["" if math.isnan(s.mean) else repr(s.mean), "" if math.isnan(s.std) else repr(s.std), s.n]
        w.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------------------- significance
def _mean_std_n(s: Stat) -> str:
    """'0.8300 ± 0.0361, n=3'; one run has no std: '0.5000, n=1'."""
    spread = f" ± {s.std:.4f}" if s.n >= 2 else ""
    return f"{s.mean:.4f}{spread}, n={s.n}"


def significance_lines(groups: Sequence[Group], metric_path: str) -> list[str]:
    """Pairs of groups on one (dataset, model) whose mean difference exceeds one std.

    "One std" is the standard deviation of the difference of two independent means of
    seeds, sqrt(std_a^2 + std_b^2); pairs where either side has n < 2 cannot be judged.
    """
    lines = []
    for (dataset, model), members in sorted(_by_dataset_model(groups).items()):
        for a, b in itertools.combinations(members, 2):
            sa, sb = a.stat(metric_path), b.stat(metric_path)
            if sa.n == 0 or sb.n == 0:
                continue
            if sb.mean > sa.mean:
                a, b, sa, sb = b, a, sb, sa
            head = (f"{dataset} / {model_label(model)}: {_line_label(a, members)} ({_mean_std_n(sa)}) vs "
                    f"{_line_label(b, members)} ({_mean_std_n(sb)}): diff {sa.mean - sb.mean:+.4f}")
            if sa.n < 2 or sb.n < 2:
                lines.append(f"{head}, not judged (needs n >= 2 on both sides)")
                continue
            one_std = math.hypot(sa.std, sb.std)
            verdict = "EXCEEDS one std" if sa.mean - sb.mean > one_std else "within one std"
            lines.append(f"{head}, {verdict} ({one_std:.4f})")
    return lines


def paired_lines(groups: Sequence[Group], metric_path: str) -> list[str]:
    """Pairs of groups on one (dataset, model) compared seed by seed over the seeds both ran (a grid's
    configurations share their seeds, so a seed's runs saw the same initial head and batch order): the mean
    and sample std of the per-seed differences, their median and how many seeds favour each side."""
    lines = []
    for (dataset, model), members in sorted(_by_dataset_model(groups).items()):
        for a, b in itertools.combinations(members, 2):
            va, vb = _by_seed(a, metric_path), _by_seed(b, metric_path)
            seeds = sorted(set(va) & set(vb), key=str)
            if len(seeds) < 2:
                continue
            diffs = [va[s] - vb[s] for s in seeds]
            d = Stat.of(diffs)
            wins = sum(x > 0 for x in diffs), sum(x < 0 for x in diffs)
            per_seed = " ".join(f"{x:+.4f}" for x in diffs)
            lines.append(f"{dataset} / {model_label(model)}: {_line_label(a, members)} - {_line_label(b, members)} "
                         f"over seeds {' '.join(map(str, seeds))}: {per_seed}; mean {d.mean:+.4f} ± {d.std:.4f}, "
                         f"median {statistics.median(diffs):+.4f}; higher on {wins[0]} of {len(seeds)} seeds, "
                         f"lower on {wins[1]}")
    return lines


def _by_dataset_model(groups: Sequence[Group]) -> dict[tuple[str, str], list[Group]]:
    buckets: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        buckets.setdefault((g.dataset, g.model), []).append(g)
    return buckets


def _by_seed(group: Group, dotted: str) -> dict:
    """seed -> the metric of the group's run with that seed (runs without a number are left out)."""
    return {r.get("seed"): float(v) for r in group.runs if isinstance(v := r.get(dotted), (int, float))}


# ---------------------------------------------------------------------------- plots
def _figure_grid(n: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def _by_dataset(groups: Sequence[Group]) -> dict[str, list[Group]]:
    out: dict[str, list[Group]] = {}
    for g in groups:
        out.setdefault(g.dataset, []).append(g)
    return out


def _method_colors(plt, groups: Sequence[Group]) -> dict[str, Any]:
    """One tab10 colour per method, the same in every plot."""
    return {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(sorted({g.method for g in groups}))}


def _distinct_parts(g: Group, pool: Sequence[Group], width: int) -> list[str]:
    """What tells `g` apart from the other groups of `pool`: model, settings, group_by values, each only where
    they differ within the pool (a label repeated on every line or point says nothing)."""
    parts = [model_label(g.model)] if len({m.model for m in pool}) > 1 else []
    if len({m.settings for m in pool}) > 1:
        parts.append(g.settings)
    parts += [display_value(v, width) for i, v in enumerate(g.extra) if len({m.extra[i] for m in pool}) > 1]
    return [p for p in parts if p]


def _tag(g: Group, members: Sequence[Group]) -> str:
    """A plot label's tail: what tells `g` apart from the other points of its method."""
    return " ".join(_distinct_parts(g, [m for m in members if m.method == g.method], 16))


def _line_label(g: Group, members: Sequence[Group]) -> str:
    """A significance line's name for `g` among the groups it is compared with: "lora [perfect prompt…]",
    not the settings every group shares."""
    return " ".join([g.method] + [f"[{p}]" for p in _distinct_parts(g, members, 32)])


def _png_bytes(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def plot_metric_vs_params(groups: Sequence[Group], metric_path: str) -> bytes:
    """One panel per data set: metric mean ± std against trainable params (log x), a colour per method."""
    per_ds = _by_dataset(groups)
    plt, fig, axes = _figure_grid(len(per_ds))
    colors = _method_colors(plt, groups)
    for ax, (dataset, members) in zip(axes, per_ds.items()):
        plotted = set()
        for g in members:
            x, y = g.stat("params.trainable"), g.stat(metric_path)
            if x.n == 0 or y.n == 0 or x.mean <= 0:
                continue
            ax.errorbar(x.mean, y.mean, yerr=0 if math.isnan(y.std) else y.std, fmt="o", capsize=4,
                        color=colors[g.method], label=None if g.method in plotted else g.method)
            plotted.add(g.method)
            ax.annotate(_tag(g, members), (x.mean, y.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log)")
        ax.set_ylabel(metric_path.removeprefix("metrics.").replace(".", " "))
        ax.set_title(dataset)
        ax.grid(True, alpha=0.3)
        if plotted:
            ax.legend(fontsize=8)
    return _png_bytes(plt, fig)


def plot_bars(groups: Sequence[Group], path: str, ylabel: str, scale: float = 1.0) -> bytes:
    """One panel per data set: a bar (mean ± std over seeds) per group."""
    per_ds = _by_dataset(groups)
    plt, fig, axes = _figure_grid(len(per_ds))
    colors = _method_colors(plt, groups)
    for ax, (dataset, members) in zip(axes, per_ds.items()):
        stats = [g.stat(path) for g in members]
        means = [0.0 if s.n == 0 else s.mean * scale for s in stats]
        errs = [0.0 if math.isnan(s.std) else s.std * scale for s in stats]
        labels = [" ".join(p for p in (g.method, _tag(g, members)) if p) for g in members]
        ax.bar(range(len(members)), means, yerr=errs, capsize=4, color=[colors[g.method] for g in members], alpha=0.85)
        ax.set_xticks(range(len(members)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(dataset)
        ax.grid(True, axis="y", alpha=0.3)
    return _png_bytes(plt, fig)


def seed_points(members: Sequence[Group], path: str) -> list[tuple[int, float, Any]]:
    """(column, value, seed) of every run in `members` that has a number at `path`."""
    return [(i, float(v), r.get("seed")) for i, g in enumerate(members)
            for r in g.runs_in_seed_order() if isinstance(v := r.get(path), (int, float))]


def plot_seeds(groups: Sequence[Group], metric_path: str) -> bytes:
    """One panel per data set: each group's runs as points marked with their seed, beside the mean ± std. Where
    groups differ by a few hundredths, the seeds show whether the ranking is one seed's doing."""
    per_ds = _by_dataset(groups)
    plt, fig, axes = _figure_grid(len(per_ds))
    colors = _method_colors(plt, groups)
    for ax, (dataset, members) in zip(axes, per_ds.items()):
        for i, y, seed in seed_points(members, metric_path):
            ax.plot(i, y, "o", color=colors[members[i].method], alpha=0.6, markersize=5)
            ax.annotate(str(seed), (i, y), fontsize=6, xytext=(4, -2), textcoords="offset points")
        for i, g in enumerate(members):
            s = g.stat(metric_path)
            if s.n:
                ax.errorbar(i - 0.2, s.mean, yerr=0 if math.isnan(s.std) else s.std, fmt="_", markersize=12,
                            capsize=4, color="black")
        labels = [" ".join([g.method] + _distinct_parts(g, members, 16)) for g in members]
        ax.set_xticks(range(len(members)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_xlim(-0.6, len(members) - 0.4)
        ax.set_ylabel(metric_path.removeprefix("metrics.").replace(".", " ") + " (seeds; mean ± std in black)")
        ax.set_title(dataset)
        ax.grid(True, axis="y", alpha=0.3)
    return _png_bytes(plt, fig)


# ---------------------------------------------------------------------------- output
@dataclass
class Report:
    groups: list[Group]
    skipped: list[Skipped]
    notes: list[str]
    significance: list[str]
    summary: str  # title, table and notes (what main prints)
    markdown: str  # summary + skipped list (table.md)
    files: dict[str, Path]


def build_report(run_dirs: Sequence[str], out_dir: str | None = None, group_by: Sequence[str] = (),
                 metric: str = "accuracy", split: str = "test", plots: bool = True) -> Report:
    """Load, group, and write the tables (and plots) for the runs under `run_dirs`.

    Raises FileNotFoundError when no readable run is found (the skipped ones are named).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown --metric {metric!r}; choose one of {', '.join(METRICS)}")
    runs, skipped = load_runs(run_dirs)
    if not runs:
        why = "; ".join(f"{s.path}: {s.reason}" for s in skipped)
        raise FileNotFoundError(
            f"no readable run.json under {', '.join(run_dirs)}"
            + (f" (skipped: {why})" if why else "")
            + "; point `ftlab report` at the folder a grid script or train.py wrote")
    groups = group_runs(runs, group_by)
    cols = columns_for(groups)
    metric_path = f"metrics.{split}.{metric}"
    notes = [n for g in groups for n in consistency_notes(g)]
    sig = significance_lines(groups, metric_path)

    md = [f"# Results ({len(runs)} runs, {len(groups)} groups)\n",
          "mean ± sample std (ddof=1) over seeds; n = number of runs.\n\n",
          markdown_table(groups, cols, group_by)]
    if notes:
        md += ["\n## Notes\n"] + [f"- {n}\n" for n in notes]
    summary = "".join(md)
    skipped_md = "".join(["\n## Skipped\n"] + [f"- {s.path}: {s.reason}\n" for s in skipped]) if skipped else ""
    markdown = summary + skipped_md

    out = Path(out_dir or run_dirs[0])
    files = {"table.md": out / "table.md", "table.csv": out / "table.csv", "runs.md": out / "runs.md",
             "significance.md": out / "significance.md"}
    write_atomic(files["table.md"], markdown)
    write_atomic(files["runs.md"], f"# Runs ({len(runs)}), one row a run\n\n" + runs_table(groups, cols, group_by))
    write_atomic(files["table.csv"], csv_text(groups, cols, group_by))
    write_atomic(files["significance.md"],
                 f"# Differences of {split} {metric} (per data set and model)\n\n"
                 "A difference exceeds one std when |mean_a - mean_b| > sqrt(std_a^2 + std_b^2).\n\n"
                 + "".join(f"- {line}\n" for line in sig)
                 + "\n## Paired by seed\n\nThe same seeds on both sides: per-seed differences, their mean ± std "
                   "and median.\n\n" + "".join(f"- {line}\n" for line in paired_lines(groups, metric_path)))
    if plots:
        pngs = {
            "metric_vs_params.png": lambda: plot_metric_vs_params(groups, metric_path),
            "metric_per_seed.png": lambda: plot_seeds(groups, metric_path),
            "time_per_method.png": lambda: plot_bars(groups, "time.train_seconds", "train time (s)"),
            "memory_per_method.png": lambda: plot_bars(groups, "memory.peak_bytes", "peak memory (MiB)", 1 / MIB),
        }
        for name, draw in pngs.items():
            files[name] = out / name
            write_atomic(files[name], draw())
    return Report(groups, skipped, notes, sig, summary, markdown, files)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ftlab report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="folders searched recursively for run.json (or run.json files)")
    p.add_argument("--out", default=None, help="where the tables and plots go (default: the first RUN_DIR)")
    p.add_argument("--group_by", action="append", default=[], metavar="FIELD",
                   help="extra dotted run.json field that splits groups, e.g. config.prompt (repeatable)")
    p.add_argument("--metric", default="accuracy", help=f"metric for plots and the one-std note: {', '.join(METRICS)}")
    p.add_argument("--split", default="test", help="split for plots and the one-std note (test or validation)")
    p.add_argument("--no_plots", action="store_true", help="tables only (skips importing matplotlib)")
    commandline.one_line(p)  # one-line errors; help strings with a literal % escaped
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        rep = build_report(args.run_dirs, args.out, args.group_by, args.metric, args.split, plots=not args.no_plots)
    except (ValueError, FileNotFoundError) as e:
        return commandline.fail(e)
    print(rep.summary)
    print(f"differences of {args.split} {args.metric} (exceeds one std: |diff| > sqrt(std_a^2 + std_b^2)):")
    for line in rep.significance or ["(no two groups on the same data set and model)"]:
        print(f"  {line}")
    if rep.skipped:
        print("skipped:")
        for s in rep.skipped:
            print(f"  {s.path}: {s.reason}")
    print("wrote: " + ", ".join(str(p) for p in rep.files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

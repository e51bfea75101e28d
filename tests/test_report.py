"""ftlab/analysis/report.py on hand-made run.json files: statistics against hand arithmetic, files, bad input."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ftlab.analysis import report

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, name: str, *, acc: float, seed: int, method: str = "lora", dataset: str = "restaurant_sup",
             model: str = "minilm", settings: dict | None = None, trainable: int = 1000, total: int = 100_000,
             seconds: float = 10.0, peak: int = 100 * 2**20, validation: float | None = None, **extra) -> Path:
    """Write a minimal contract-shaped run.json under root/name/ and return its path."""
    metrics = {"test": {"accuracy": acc, "micro_f1": acc, "macro_f1": acc - 0.1, "weight_f1": acc - 0.05, "loss": 0.5}}
    if validation is not None:
        metrics["validation"] = {"accuracy": validation, "micro_f1": validation, "macro_f1": validation, "weight_f1": validation}
    record = {
        "schema": 1, "config": {"seed": seed, "learning_rate": 5e-4}, "seed": seed, "method": method, "model": model,
        "model_path": "/x", "dataset": dataset, "settings": settings if settings is not None else {},
        "device": "cpu", "metrics": metrics,
        "params": {"trainable": trainable, "total": total, "trainable_pct": 100 * trainable / total},
        "time": {"train_seconds": seconds, "samples_per_second": 1.0, "tokens_per_second": 1.0},
        "memory": {"peak_bytes": peak, "how": "cpu_peak_rss_minus_baseline", "baseline_bytes": 0},
        "data": {"train_samples": 100, "num_labels": 3, "max_length": 128, "mean_tokens": 20.0},
    }
    for dotted, value in extra.items():  # e.g. data__train_samples=50
        *parents, leaf = dotted.split("__")
        node = record
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = root / name / "run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


@pytest.fixture()
def grid(tmp_path):
    """lora: 3 seeds, acc 0.80/0.82/0.87; head: 3 seeds, acc 0.70/0.71/0.72; other data set: 1 run."""
    runs = tmp_path / "runs"
    for seed, acc, secs in [(1, 0.80, 10.0), (2, 0.82, 12.0), (3, 0.87, 14.0)]:
        make_run(runs, f"restaurant_sup/minilm/lora/seed{seed}", acc=acc, seed=seed, seconds=secs,
                 settings={"lora_r": 8, "lora_alpha": 16})
    for seed, acc in [(1, 0.70), (2, 0.71), (3, 0.72)]:
        make_run(runs, f"restaurant_sup/minilm/head/seed{seed}", acc=acc, seed=seed, method="head", trainable=1155)
    make_run(runs, "acl_sup/minilm/lora/seed1", acc=0.50, seed=1, dataset="acl_sup", settings={"lora_r": 8, "lora_alpha": 16})
    return runs


def group_of(rep, method, dataset="restaurant_sup"):
    (g,) = [g for g in rep.groups if g.method == method and g.dataset == dataset]
    return g


def test_mean_and_sample_std_match_hand_arithmetic(grid, tmp_path):
    rep = report.build_report([str(grid)], str(tmp_path / "out"))
    lora = group_of(rep, "lora")
    s = lora.stat("metrics.test.accuracy")
    # mean = (0.80 + 0.82 + 0.87) / 3 = 2.49 / 3 = 0.83
    # deviations -0.03, -0.01, +0.04 -> squares 0.0009 + 0.0001 + 0.0016 = 0.0026
    # sample variance = 0.0026 / (3 - 1) = 0.0013 -> std = sqrt(0.0013) = 0.0360555
    assert s.n == 3
    assert s.mean == pytest.approx(0.83)
    assert s.std == pytest.approx(math.sqrt(0.0013))
    assert s.std == pytest.approx(0.0360555, abs=1e-7)
    # train seconds 10, 12, 14: mean 12, deviations -2, 0, 2 -> var (4 + 0 + 4) / 2 = 4 -> std 2
    t = lora.stat("time.train_seconds")
    assert (t.mean, t.std) == (pytest.approx(12.0), pytest.approx(2.0))

    rows = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    row = next(r for r in rows if r["method"] == "lora" and r["dataset"] == "restaurant_sup")
    assert float(row["test_accuracy_mean"]) == pytest.approx(0.83)
    assert float(row["test_accuracy_std"]) == pytest.approx(0.0360555, abs=1e-7)
    assert row["test_accuracy_n"] == "3" and row["n"] == "3" and row["seeds"] == "1 2 3"
    # macro F1 = acc - 0.1 on every run: same std, mean 0.73
    assert float(row["test_macro_f1_mean"]) == pytest.approx(0.73)
    # trainable % = 100 * 1000 / 100000 = 1.0
    assert float(row["trainable_pct_mean"]) == pytest.approx(1.0)
    assert float(row["peak_memory_mib_mean"]) == pytest.approx(100.0)

    md = (tmp_path / "out" / "table.md").read_text()
    assert "| 0.8300 ± 0.0361 |" in md
    assert "lora_alpha=16, lora_r=8" in md
    # medians: 0.80 / 0.82 / 0.87 -> 0.82 (the mean is 0.83); macro-F1 0.70 / 0.72 / 0.77 -> 0.72
    assert float(row["test_accuracy_median_mean"]) == pytest.approx(0.82)
    assert float(row["test_macro_f1_median_mean"]) == pytest.approx(0.72)
    assert "| test accuracy median | test macro_f1 median |" in md and "| 0.8200 | 0.7200 |" in md


def test_datasets_never_share_a_row(grid, tmp_path):
    rep = report.build_report([str(grid)], str(tmp_path / "out"), plots=False)
    keys = [(g.dataset, g.method) for g in rep.groups]
    assert sorted(keys) == [("acl_sup", "lora"), ("restaurant_sup", "head"), ("restaurant_sup", "lora")]
    acl = group_of(rep, "lora", "acl_sup")
    s = acl.stat("metrics.test.accuracy")
    assert (s.n, s.mean) == (1, pytest.approx(0.5)) and math.isnan(s.std)
    # n = 1: no "±" (a std of one run is undefined), and the pair is not judged
    assert "| 0.5000 | 0.5000 |" in rep.markdown
    make_run(grid, "acl_sup/minilm/head/seed1", acc=0.40, seed=1, method="head", dataset="acl_sup")
    (acl_pair,) = [line for line in report.build_report([str(grid)], str(tmp_path / "out2"), plots=False).significance
                   if line.startswith("acl_sup")]
    assert "(0.5000, n=1) vs head (0.4000, n=1): diff +0.1000, not judged (needs n >= 2 on both sides)" in acl_pair


def test_plots_are_written_and_are_png(grid, tmp_path):
    rep = report.build_report([str(grid)], str(tmp_path / "out"))
    for name in ("metric_vs_params.png", "metric_per_seed.png", "time_per_method.png", "memory_per_method.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 5000, name  # a drawn figure, not an empty canvas header
        assert rep.files[name] == tmp_path / "out" / name
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes left no temp files
    # metric_per_seed.png's points: restaurant_sup's groups sort head, lora; each run once, in seed order
    members = [g for g in rep.groups if g.dataset == "restaurant_sup"]
    assert report.seed_points(members, "metrics.test.accuracy") == [
        (0, 0.70, 1), (0, 0.71, 2), (0, 0.72, 3), (1, 0.80, 1), (1, 0.82, 2), (1, 0.87, 3)]


def test_significance_says_which_differences_exceed_one_std(grid, tmp_path):
    rep = report.build_report([str(grid)], str(tmp_path / "out"), plots=False)
    # lora 0.83 ± 0.0361 vs head 0.71 ± 0.01: diff 0.12 > sqrt(0.0013 + 0.0001) = 0.0374
    (line,) = rep.significance
    assert "lora [lora_alpha=16, lora_r=8] (0.8300 ± 0.0361, n=3) vs head (0.7100 ± 0.0100, n=3)" in line
    assert "diff +0.1200, EXCEEDS one std (0.0374)" in line
    assert "EXCEEDS one std" in (tmp_path / "out" / "significance.md").read_text()


def test_small_difference_is_within_one_std(tmp_path):
    for seed, (a, b) in enumerate([(0.80, 0.81), (0.84, 0.82), (0.82, 0.80)], start=1):
        make_run(tmp_path / "r", f"full/seed{seed}", acc=a, seed=seed, method="full")
        make_run(tmp_path / "r", f"head/seed{seed}", acc=b, seed=seed, method="head")
    rep = report.build_report([str(tmp_path / "r")], plots=False)
    # full 0.82 ± 0.02, head 0.81 ± 0.01: diff 0.01 < sqrt(0.0004 + 0.0001) = 0.0224
    (line,) = rep.significance
    assert "diff +0.0100, within one std (0.0224)" in line
    assert (tmp_path / "r" / "table.md").exists()  # default --out is the first RUN_DIR


def test_inconsistent_group_and_duplicate_seed_are_noted(tmp_path):
    make_run(tmp_path, "a/seed1", acc=0.8, seed=1, data__train_samples=100)
    make_run(tmp_path, "b/seed1", acc=0.9, seed=1, data__train_samples=50)
    rep = report.build_report([str(tmp_path)], str(tmp_path / "out"), plots=False)
    text = "\n".join(rep.notes)
    assert "runs disagree on data.train_samples (100, 50)" in text
    assert "seed 1 appears 2 times" in text
    assert "## Notes" in rep.markdown


def test_different_steps_are_noted_unless_early_stopping_ended_them(tmp_path):
    make_run(tmp_path / "fixed", "a/seed1", acc=0.8, seed=1, training__steps=100)
    make_run(tmp_path / "fixed", "a/seed2", acc=0.8, seed=2, training__steps=90)
    rep = report.build_report([str(tmp_path / "fixed")], str(tmp_path / "out"), plots=False)
    assert "runs disagree on training.steps (100, 90)" in "\n".join(rep.notes)
    for seed, steps in ((1, 100), (2, 90)):
        make_run(tmp_path / "es", f"a/seed{seed}", acc=0.8, seed=seed, training__steps=steps,
                 config__early_stopping_patience=3)
    rep = report.build_report([str(tmp_path / "es")], str(tmp_path / "out2"), plots=False)
    assert not rep.notes


def test_validation_columns_appear_only_when_present(tmp_path):
    make_run(tmp_path / "a", "x/seed1", acc=0.8, seed=1)
    rep = report.build_report([str(tmp_path / "a")], plots=False)
    assert "validation accuracy" not in rep.markdown
    make_run(tmp_path / "b", "x/seed1", acc=0.8, seed=1, validation=0.75)
    make_run(tmp_path / "b", "x/seed2", acc=0.8, seed=2, validation=0.85)
    rep = report.build_report([str(tmp_path / "b")], plots=False)
    assert "validation accuracy" in rep.markdown and "| 0.8000 ± 0.0707 |" in rep.markdown  # std of .75,.85 = .1/sqrt2


def test_group_by_splits_prompts(tmp_path):
    for i, prompt in enumerate([None, "Are these paraphrases? {sentence1} {sentence2}"]):
        for seed in (1, 2):
            make_run(tmp_path, f"p{i}/seed{seed}", acc=0.6 + 0.1 * i, seed=seed, dataset="mrpc", config__prompt=prompt)
    rep = report.build_report([str(tmp_path)], str(tmp_path / "out"), group_by=["config.prompt"], plots=False)
    assert len(rep.groups) == 2
    assert "| config.prompt |" in rep.markdown and "(none)" in rep.markdown
    assert "Are these paraphrases?" in rep.markdown
    merged = report.build_report([str(tmp_path)], str(tmp_path / "out2"), plots=False)
    assert len(merged.groups) == 1 and len(merged.groups[0].runs) == 4


def test_comparison_lines_name_groups_by_what_differs(tmp_path):
    """Shared settings are left out of a line's names; the prompts that differ are shown, 32 characters each."""
    shared = {"lora_r": 8, "lora_alpha": 16}
    prompts = {"lora": "Does sentence 1 mean the same as sentence 2? {sentence1} {sentence2}", "qlora": None}
    for method, prompt in [("lora", prompts["lora"]), ("lora", None), ("qlora", prompts["lora"])]:
        for seed, acc in [(1, 0.70), (2, 0.74)]:
            make_run(tmp_path / "r", f"{method}{prompt is None}/seed{seed}", acc=acc + (0.01 if method == "qlora" else 0),
                     seed=seed, method=method, dataset="mrpc", settings=shared, config__prompt=prompt)
    rep = report.build_report([str(tmp_path / "r")], plots=False, group_by=["config.prompt"])
    lines = report.significance_lines(rep.groups, "metrics.test.accuracy") + \
        report.paired_lines(rep.groups, "metrics.test.accuracy")
    assert len(lines) == 6 and not any("lora_r=8" in line for line in lines)
    assert ("mrpc / minilm: lora [Does sentence 1 mean the same a…] - qlora [Does sentence 1 mean the same a…] over "
            "seeds 1 2: -0.0100 -0.0100") in "\n".join(lines)
    assert "lora [(none)] (0.7200 ± 0.0283, n=2)" in "\n".join(lines)


def test_runs_md_has_one_row_a_run_in_seed_order(grid, tmp_path):
    rep = report.build_report([str(grid)], str(tmp_path / "out"), plots=False)
    text = rep.files["runs.md"].read_text()
    rows = [line for line in text.splitlines() if line.startswith("| minilm | restaurant_sup | lora")]
    # the grid's lora seeds: acc 0.80/0.82/0.87, macro-F1 = acc - 0.1, 10/12/14 s, 100 MiB; no steps, so s/step "–"
    assert [r.split(" | ")[4] for r in rows] == ["1", "2", "3"]
    assert rows[2] == ("| minilm | restaurant_sup | lora | lora_alpha=16, lora_r=8 | 3 | 0.8700 | 0.8700 | 0.7700 | "
                       "0.8200 | 14.0 | – | 100 |")
    assert text.startswith("# Runs (7), one row a run") and text.count("| minilm |") == 7


def test_truncated_and_invalid_runs_are_listed_as_skipped(grid, tmp_path):
    good = grid / "restaurant_sup/minilm/head/seed1/run.json"
    (grid / "broken").mkdir()
    (grid / "broken/run.json").write_text(good.read_text()[:50])  # truncated mid-write
    (grid / "nolist").mkdir()
    (grid / "nolist/run.json").write_text("[1, 2]")
    (grid / "nodata").mkdir()
    (grid / "nodata/run.json").write_text(json.dumps({"model": "m", "method": "full", "metrics": {}, "params": {}}))
    rep = report.build_report([str(grid), str(tmp_path / "missing")], str(tmp_path / "out"), plots=False)
    reasons = {Path(s.path).parent.name: s.reason for s in rep.skipped}
    assert reasons["broken"].startswith("invalid JSON") and "truncated" in reasons["broken"]
    assert reasons["nolist"] == "not a JSON object (got list)"
    assert reasons["nodata"] == "missing field(s): dataset"
    assert [s.reason for s in rep.skipped if s.path == str(tmp_path / "missing")] == ["no such file or directory"]
    assert sum(len(g.runs) for g in rep.groups) == 7  # every good run still counted
    assert "## Skipped" in (tmp_path / "out" / "table.md").read_text()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftlab", "report", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_no_runs_is_a_one_line_error(tmp_path):
    proc = run_cli(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith(f"error: no readable run.json under {tmp_path}")


def test_cli_only_broken_runs_names_them(tmp_path):
    (tmp_path / "run.json").write_text("{")
    proc = run_cli(str(tmp_path))
    assert proc.returncode == 2 and "invalid JSON" in proc.stderr and str(tmp_path / "run.json") in proc.stderr


def test_cli_prints_table_skipped_and_significance(grid, tmp_path):
    (grid / "broken").mkdir()
    (grid / "broken/run.json").write_text('{"model": ')
    proc = run_cli(str(grid), "--out", str(tmp_path / "out"), "--no_plots")
    assert proc.returncode == 0, proc.stderr
    assert "| 0.8300 ± 0.0361 |" in proc.stdout
    assert "skipped:\n  " in proc.stdout and "broken/run.json: invalid JSON" in proc.stdout
    assert "EXCEEDS one std" in proc.stdout


def test_unknown_metric_is_rejected(grid):
    with pytest.raises(ValueError, match="unknown --metric 'f1'; choose one of accuracy"):
        report.build_report([str(grid)], metric="f1", plots=False)


def test_seeds_listed_in_numeric_order(tmp_path):
    for seed in (10, 2):
        make_run(tmp_path, f"s{seed}", acc=0.5, seed=seed)
    (g,) = report.build_report([str(tmp_path)], plots=False).groups
    assert g.seeds == "2 10"


def test_paired_comparison_differences_seed_by_seed(tmp_path):
    for seed, (a, b) in enumerate([(0.80, 0.81), (0.84, 0.82), (0.82, 0.80)], start=1):
        make_run(tmp_path / "r", f"full/seed{seed}", acc=a, seed=seed, method="full")
        make_run(tmp_path / "r", f"head/seed{seed}", acc=b, seed=seed, method="head")
    make_run(tmp_path / "r", "adapter/seed9", acc=0.5, seed=9, method="adapter")  # no seed in common: no line
    rep = report.build_report([str(tmp_path / "r")], plots=False)
    # full - head per seed: -0.01, +0.02, +0.02 -> mean +0.01; deviations -0.02, +0.01, +0.01 -> squares
    # 0.0004 + 0.0001 + 0.0001 = 0.0006, / 2 = 0.0003 -> std 0.0173; median +0.02; higher on 2, lower on 1
    (line,) = report.paired_lines(rep.groups, "metrics.test.accuracy")
    assert line.endswith("full - head over seeds 1 2 3: -0.0100 +0.0200 +0.0200; mean +0.0100 ± 0.0173, "
                         "median +0.0200; higher on 2 of 3 seeds, lower on 1")
    assert "## Paired by seed" in (tmp_path / "r" / "significance.md").read_text()
    assert line in (tmp_path / "r" / "significance.md").read_text()


def test_runs_scored_on_validation_only_are_reported_on_validation(tmp_path):
    """--score_test false runs (a search's trials, the choices of a rule) have validation metrics only."""
    for seed, val in [(1, 0.70), (2, 0.74)]:
        path = make_run(tmp_path / "r", f"lora/seed{seed}", acc=0.0, seed=seed, validation=val)
        record = json.loads(path.read_text())
        del record["metrics"]["test"]
        path.write_text(json.dumps(record))
    rep = report.build_report([str(tmp_path / "r")], plots=True)
    assert rep.skipped == []
    group = group_of(rep, "lora")
    assert group.stat("metrics.validation.accuracy").mean == pytest.approx(0.72)
    assert group.stat("metrics.test.accuracy").n == 0
    row = next(r for r in csv.DictReader((tmp_path / "r" / "table.csv").open()))
    assert float(row["validation_accuracy_mean"]) == pytest.approx(0.72) and row["validation_accuracy_n"] == "2"
    assert not any(key.startswith("test_") for key in row)  # no run scored test: no empty test columns
    assert "| 0.7200 ± 0.0283 |" in (tmp_path / "r" / "table.md").read_text()


def test_seconds_a_step_count_every_segment_over_the_runs_steps(tmp_path):
    """s/step = time.train_seconds (every segment of a resumed run) / training.steps; a run without steps is left
    out of that column only."""
    runs = tmp_path / "runs"
    make_run(runs, "a/seed1", acc=0.8, seed=1, seconds=100.0, training__steps=50)  # 2.0 s a step
    make_run(runs, "a/seed2", acc=0.8, seed=2, seconds=300.0, training__steps=100,  # 3.0: two segments, 120 + 180 s
             time__segment_seconds=[120.0, 180.0], training__resumed_from="checkpoint-40")
    make_run(runs, "a/seed3", acc=0.8, seed=3, seconds=50.0)  # no training.steps
    report.build_report([str(runs)], str(tmp_path / "out"), plots=False)
    [row] = list(csv.DictReader((tmp_path / "out" / "table.csv").open()))
    # mean (2 + 3) / 2 = 2.5; sample std sqrt(((-0.5)^2 + 0.5^2) / 1) = sqrt(0.5) = 0.7071
    assert float(row["seconds_per_step_mean"]) == pytest.approx(2.5)
    assert float(row["seconds_per_step_std"]) == pytest.approx(math.sqrt(0.5))
    assert row["seconds_per_step_n"] == "2" and row["train_seconds_n"] == "3"
    assert "| s/step |" in (tmp_path / "out" / "table.md").read_text()

"""Every bad input ends with ONE `error:` line naming the input and the fix, exit 2, no traceback, nothing written.

Each case calls the script's main(argv) in-process (the checks run before any model or data set loads); the
shell grids and a few end-to-end checks run as subprocesses. docs/bad_inputs.md tables the cases by id
(predict.py's are in tests/test_bad_inputs_predict.py). `--help` of every script with a command line exits 0.
"""
import importlib
import json
import os
import subprocess
import sys

import pytest

from ftlab.cli import TOOLS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SCRIPTS_WITH_HELP = ["train", "eval", "dataHelper", "predict", "report", "memory", "baseline", "search", "bench",
                     "batch_bench", "inference", "modelcard", "tracking", "models"]

# (id, module, argv ({i}: the folder of prepared inputs, {w}: the working folder), what the error line says)
CASES = [
    ("train-max-length-0", "train", ["--max_length", "0"], "--max_length 0: must be > 0"),
    ("train-max-length-negative", "train", ["--max_length=-5"], "--max_length -5: must be > 0"),
    ("train-epochs-negative", "train", ["--num_train_epochs=-1"], "--num_train_epochs -1.0: must be > 0"),
    ("train-epochs-0-no-max-steps", "train", ["--num_train_epochs", "0"], "--num_train_epochs 0.0: must be > 0 (or 0 "
                                                                          "with --max_steps N)"),
    ("train-lr-negative-spaced", "train", ["--learning_rate", "-1e-3"], "--learning_rate -0.001: must be >= 0"),
    ("train-lr-negative-equals", "train", ["--learning_rate=-1"], "--learning_rate -1.0: must be >= 0"),
    ("train-batch-size-0", "train", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must "
                                                                           "be > 0"),
    ("train-output-dir-is-file", "train", ["--output_dir", "{i}/a_file"], "--output_dir {i}/a_file is a file, not a "
                                                                         "folder"),
    ("train-empty-data-file", "train", ["--dataset_name", "mrpc", "--data_dir", "{i}/data"],
     "{i}/data/mrpc: the train split has no rows"),
    ("train-unknown-dataset", "train", ["--dataset_name", "restaurnt_sup"],
     "unknown dataset 'restaurnt_sup'; did you mean restaurant_sup"),
    ("train-unknown-method", "train", ["--method", "lorra"], "unknown method 'lorra'; did you mean lora"),
    ("train-lora-dropout-1", "train", ["--lora_dropout", "1"], "--lora_dropout 1: must be in [0, 1)"),
    ("train-folder-not-a-model", "train", ["--model_name_or_path", "{i}/not_a_model"],
     "'{i}/not_a_model' is not a model folder"),
    ("train-unknown-flag", "train", ["--lerning_rate", "1e-4"],
     "unrecognized argument(s) --lerning_rate 1e-4; did you mean --learning_rate"),
    ("train-config-typo", "train", ["{i}/typo.yaml"], "config {i}/typo.yaml: unknown key(s) 'learning_rat'; did you "
                                                      "mean learning_rate?"),
    ("train-bad-int", "train", ["--seed", "abc"], "argument --seed: invalid int value: 'abc' (see train.py --help)"),
    ("train-validation-share", "train", ["--validation_from_train", "1.5"], "--validation_from_train 1.5: must be a "
                                                                          "share of train"),
    ("eval-numeric-label", "eval", ["{i}/numeric_label.jsonl", "--no_bertscore"],
     "{i}/numeric_label.jsonl line 1: 'label' is 3, not text"),
    ("eval-missing-file", "eval", ["{i}/nowhere.jsonl", "--no_bertscore"], "predictions file '{i}/nowhere.jsonl' not "
                                                                           "found"),
    ("eval-empty-file", "eval", ["{i}/empty.jsonl", "--no_bertscore"], "predictions file '{i}/empty.jsonl' has no "
                                                                       "lines"),
    ("eval-bad-task", "eval", ["{i}/empty.jsonl", "--task", "sumary"], "argument --task: invalid choice: 'sumary'"),
    ("memory-unknown-method", "memory", ["minilm", "--method", "lorra"], "unknown method 'lorra'"),
    ("memory-batch-size-0", "memory", ["minilm", "--batch_size", "0"], "batch_size must be a positive number"),
    ("memory-compare-no-run", "memory", ["--compare", "{i}/no_runs"], "no run.json in '{i}/no_runs'"),
    ("report-no-run-json", "report", ["{i}/no_runs", "--no_plots"], "no readable run.json under {i}/no_runs"),
    ("report-corrupt-run-json", "report", ["{i}/corrupt", "--no_plots"], "no readable run.json under {i}/corrupt "
                                                                         "(skipped: {i}/corrupt/run.json: invalid JSON"),
    ("search-no-trials", "search", ["--n_trials", "0", "--study_dir", "{w}/study"], "--n_trials 0: must be >= 1"),
    ("search-unknown-pruner", "search", ["--pruner", "medain", "--study_dir", "{w}/study"],
     "unknown --pruner 'medain'; did you mean median?"),
    ("baseline-negative-c", "baseline", ["--C", "-1"], "--C -1.0: LinearSVC needs a positive C"),
    ("baseline-unknown-set", "baseline", ["--dataset_name", "agnew_sup"], "unknown dataset 'agnew_sup'; did you mean "
                                                                          "agnews_sup"),
    ("baseline-bad-c-grid", "baseline", ["--C_grid", "0.1,x"], "--C_grid '0.1,x': give positive numbers"),
    ("dataHelper-unknown-set", "dataHelper", ["describe", "imbd"], "unknown dataset 'imbd'; did you mean imdb"),
    ("dataHelper-unknown-command", "dataHelper", ["descibe", "imdb"], "argument command: invalid choice: 'descibe'"),
    ("dataHelper-empty-data-file", "dataHelper", ["describe", "mrpc", "--data_dir", "{i}/data"],
     "{i}/data/mrpc: the train split has no rows"),
    ("bench-steps-0", "bench", ["--steps", "0"], "--steps 0: must be > 0"),
    ("bench-bad-variant", "bench", ["--variant", "fused"], "--variant 'fused' must be LABEL=FLAGS"),
    ("inference-unknown-flag", "inference", ["--modle", "x"], "unrecognized argument(s) --modle x"),
    ("models-unknown-command", "models", ["prepair", "minilm"], "argument command: invalid choice: 'prepair'"),
]


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """(folder of bad inputs, empty working folder the scripts run in); the scripts' default outputs land there."""
    i, w = tmp_path / "in", tmp_path / "work"
    (i / "data" / "mrpc").mkdir(parents=True)
    w.mkdir()
    for name in ("dev.tsv", "test.tsv", "train.tsv"):  # train.tsv: the header line alone
        with open(os.path.join(FIXTURES, "mrpc", name), encoding="utf-8") as f:
            text = f.read()
        (i / "data" / "mrpc" / name).write_text(text.splitlines(True)[0] if name == "train.tsv" else text)
    (i / "a_file").write_text("not a folder\n")
    (i / "typo.yaml").write_text("learning_rat: 1.0e-4\nmethod: lora\n")
    (i / "numeric_label.jsonl").write_text(json.dumps({"prompt": "p", "predict": "x", "label": 3}) + "\n")
    (i / "empty.jsonl").write_text("")
    (i / "no_runs").mkdir()
    (i / "not_a_model").mkdir()
    (i / "not_a_model" / "notes.txt").write_text("hello\n")
    (i / "corrupt").mkdir()
    (i / "corrupt" / "run.json").write_text('{"schema": 2, "metr')
    monkeypatch.chdir(w)
    return str(i), str(w)


def module_of(name: str):
    """The course scripts (train, eval, dataHelper) by their own name; a user tool by its `ftlab` sub-command."""
    return importlib.import_module(TOOLS[name][0] if name in TOOLS else name)


def files_under(folder):
    return sorted(os.path.join(d, n) for d, dirs, names in os.walk(folder) for n in names + dirs)


def assert_one_error_line(err, expected):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(case, inputs, capsys):
    _, module, argv, expected = case
    i, w = inputs
    fill = lambda s: s.format(i=i, w=w)  # noqa: E731
    before = files_under(os.path.dirname(i))
    capsys.readouterr()
    assert module_of(module).main([fill(a) for a in argv]) == 2
    assert_one_error_line(capsys.readouterr().err, fill(expected))
    assert files_under(os.path.dirname(i)) == before  # nothing written: no output folder, study, cache


def test_case_ids_are_unique_and_tabled_in_the_docs():
    ids = [c[0] for c in CASES + GRID_CASES]
    assert len(set(ids)) == len(ids) >= 30
    with open(os.path.join(ROOT, "docs", "bad_inputs.md"), encoding="utf-8") as f:
        doc = f.read()
    assert [i for i in ids if f"`{i}`" not in doc] == []


def run_script(argv, env=None, timeout=600):
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def main_exit_code(module, argv):
    """What `python MODULE.py ARGV` exits with: main's return value, or argparse's SystemExit code."""
    try:
        return module_of(module).main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("script", SCRIPTS_WITH_HELP)
def test_help_of_every_script_exits_0_with_usage(script, capsys):
    """argparse %-formats help: a literal % in a help string crashed `train.py --help` (TypeError)."""
    assert main_exit_code(script, ["--help"]) == 0
    out, err = capsys.readouterr()
    assert "usage:" in out and "Traceback" not in err


def test_help_shows_percent_signs_as_written(capsys):
    assert main_exit_code("train", ["--help"]) == 0
    assert "~7% a MiniLM step faster" in " ".join(capsys.readouterr().out.split())


def test_negative_learning_rate_end_to_end_is_one_line_not_a_usage_dump(tmp_path):
    """A fresh process, as a user types it: argparse used to read -1e-3 as an option and print 150 lines."""
    out = tmp_path / "run"
    proc = run_script([sys.executable, "train.py", "--learning_rate", "-1e-3", "--output_dir", str(out)])
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, "--learning_rate -0.001: must be >= 0")
    assert not out.exists()


GRID_CASES = [
    ("run_sup-unknown-method", "run_sup.sh", {"METHODS": "lorra"}, "unknown method 'lorra'; did you mean lora"),
    ("run_peft-bad-sweep", "run_peft.sh", {"LORA_SWEEP": "8:4"}, "LORA_SWEEP entry '8:4' must be r:alpha"),
]


@pytest.mark.parametrize("case", GRID_CASES, ids=[c[0] for c in GRID_CASES])
def test_grid_bad_setting_is_one_error_line(case, tmp_path):
    _, script, env, expected = case
    out = tmp_path / "grid"
    base = {"MODELS": "minilm", "DATASETS": "restaurant_fs", "METHODS": "lora", "SEEDS": "1",
            "OUTPUT_ROOT": str(out), "PYTHON": sys.executable, "DATA_DIR": FIXTURES, "WANDB_MODE": "disabled"}
    proc = run_script(["bash", script], env={**base, **env})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert_one_error_line(proc.stderr, expected)
    assert files_under(tmp_path) == []  # no run folder, no report

"""ftlab/runs/tracking.py: a tiny run's offline wandb record, read back from wandb's own file, holds what the dashboards show."""
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from ftlab.methods.registry import METHODS
from ftlab.runs import tracking
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    """wandb offline into tmp_path/wandb (the suite disables it); the env train.py sets is restored after."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "ftlab-test")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for key in ("WANDB_RUN_GROUP", "WANDB_NAME", "WANDB_JOB_TYPE", "WANDB_API_KEY", "WANDB_DISABLED"):
        monkeypatch.setenv(key, "")  # recorded first, so what train.py sets (os.environ[...] = ...) is undone
        monkeypatch.delenv(key)
    yield tmp_path
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()  # wandb keeps its settings (WANDB_DIR ...) per process until torn down


def wired_train_run(monkeypatch, argv):
    """train.run with tracking wired as the lead wires it: name_run in configure_wandb, log_run_record last."""
    original = train.configure_wandb

    def configure(targs, run_args, model_args, data_args, method_name):
        original(targs, run_args, model_args, data_args, method_name)
        tracking.name_run(targs, model_args.model_name_or_path, data_args.dataset_name, method_name)

    monkeypatch.setattr(train, "configure_wandb", configure)
    monkeypatch.setenv("WANDB_JOB_TYPE", "rotten_tomatoes/bert/lora")  # what the grid scripts set
    record = train.run(*train.parse_args(argv))
    tracking.log_run_record(record)  # a no-op when train.py already did it
    return record


def test_offline_record_of_a_tiny_run(tiny_models, offline_wandb, monkeypatch):
    out = offline_wandb / "run"
    record = wired_train_run(monkeypatch, [
        "--model_name_or_path", tiny_models("bert"), "--dataset_name", "rotten_tomatoes", "--data_dir", FIXTURES,
        "--num_train_epochs", "2", "--per_device_train_batch_size", "16", "--logging_steps", "1",
        "--disable_tqdm", "true", "--report_to", "wandb", "--output_dir", str(out)])
    [folder] = tracking.offline_runs(str(offline_wandb))
    run = tracking.read_offline_run(folder, wait_s=30)
    assert run.run["group"] == "bert-rotten_tomatoes-lora" and run.run["name"] == "bert-rotten_tomatoes-lora-seed42"
    assert run.run["project"] == "ftlab-test" and run.run["job_type"] == "rotten_tomatoes/bert/lora"
    assert run.exit_code == 0
    # config: the Trainer's arguments and train.py's own (data, method)
    assert run.config["learning_rate"] == METHODS["lora"].learning_rate  # the method's default
    assert run.config["dataset_name"] == "rotten_tomatoes"
    assert run.config["lora_r"] == 8 and run.config["method"] == "lora"
    # per-step loss and learning rate: the Trainer's log history, step for step (80 / 16 = 5 steps x 2 epochs)
    with open(out / "checkpoint-10" / "trainer_state.json") as f:
        history = json.load(f)["log_history"]
    losses = run.series("train/loss")
    assert len(losses) == 10 and losses == [h["loss"] for h in history if "loss" in h]
    assert all(math.isfinite(x) for x in losses)
    rates = run.series("train/learning_rate")
    assert len(rates) == 10 and max(rates) == pytest.approx(METHODS["lora"].learning_rate) and rates[-1] < max(rates)
    # per-epoch validation metrics, then the final test metrics and run.json's figures
    epochs = [row["train/epoch"] for row in run.history if "eval/accuracy" in row]
    assert epochs[:2] == [1.0, 2.0]
    assert run.series("test/accuracy") == [record["metrics"]["test"]["accuracy"]]
    summary = run.summary
    assert summary["test/accuracy"] == pytest.approx(record["metrics"]["test"]["accuracy"])
    assert summary["eval/accuracy"] == pytest.approx(record["metrics"]["validation"]["accuracy"])
    assert summary["params/trainable"] == record["params"]["trainable"] > 0
    assert summary["params/total"] == record["params"]["total"]
    assert summary["time/train_seconds"] == pytest.approx(record["time"]["train_seconds"])
    assert summary["memory/peak_bytes"] == record["memory"]["peak_bytes"] > 0
    assert "summary: " in tracking.describe(run) and "train/loss 10 values" in tracking.describe(run)


def test_reader_follows_records_across_blocks_and_checks_them(offline_wandb, capsys):
    import wandb

    # the config record (70 kB) spans three 32 KiB blocks: FIRST, MIDDLE, LAST chunks
    run = wandb.init(project="ftlab-test", name="big", dir=str(offline_wandb), config={"note": "x" * 70_000})
    for i in range(1500):
        run.log({"i": i, "text": f"{i:06d}" + "y" * 40})
    run.summary["final"] = 1.5
    wandb.finish()
    [folder] = tracking.offline_runs(str(offline_wandb))
    record = tracking.read_offline_run(folder, wait_s=30)
    assert os.path.getsize(record.path) > 4 * tracking.BLOCK
    assert record.exit_code == 0
    assert record.config["note"] == "x" * 70_000 and record.run["name"] == "big"
    assert record.series("i") == list(range(1500)) and record.series("text")[-1] == "001499" + "y" * 40
    assert record.summary["final"] == 1.5 and record.summary["i"] == 1499
    assert tracking.main([str(offline_wandb)]) == 0 and "history: 1500 rows" in capsys.readouterr().out
    broken = offline_wandb / "broken.wandb"
    data = bytearray(open(record.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt record"):
        tracking.read_offline_run(str(broken))
    (offline_wandb / "notes.wandb").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not a wandb run file"):
        tracking.read_offline_run(str(offline_wandb / "notes.wandb"))
    assert tracking.main([str(offline_wandb / "notes.wandb")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_names_and_summary_figures(monkeypatch):
    monkeypatch.delenv("WANDB_NAME", raising=False)
    targs = SimpleNamespace(run_name=None, seed=3)
    assert tracking.name_run(targs, "/x/minilm/", "restaurant_sup,laptop_sup", "lora") == \
        "minilm-restaurant_sup+laptop_sup-lora-seed3"
    monkeypatch.setenv("WANDB_NAME", "sup/minilm/lora/seed3")
    assert tracking.name_run(SimpleNamespace(run_name=None, seed=3), "m", "d", "x") == "sup/minilm/lora/seed3"
    assert tracking.name_run(SimpleNamespace(run_name="mine", seed=3), "m", "d", "x") == "mine"
    record = {"params": {"trainable": 10, "total": 100, "trainable_pct": 10.0}, "time": {"train_seconds": 2.5},
              "memory": {"peak_bytes": 2 ** 21, "how": "x"},
              "metrics": {"validation": {"accuracy": 0.5}, "test": {"accuracy": 0.75, "loss": 0.6}}}
    assert tracking.summary_figures(record) == {
        "params/trainable": 10, "params/total": 100, "params/trainable_pct": 10.0, "time/train_seconds": 2.5,
        "memory/peak_bytes": 2 ** 21, "memory/peak_mib": 2.0, "eval/accuracy": 0.5, "test/accuracy": 0.75,
        "test/loss": 0.6}
    assert tracking.log_run_record(record) is False  # no active run: nothing to do


FAKE_PYTHON = """import json, os, sys
script, argv = sys.argv[1], sys.argv[2:]
row = {"script": script, "out": argv[argv.index("--output_dir") + 1] if "--output_dir" in argv else None}
row.update({k: os.environ.get(k) for k in ("WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_NAME")}, argv=argv)
with open(os.environ["CALLS"], "a") as f:
    f.write(json.dumps(row) + "\\n")
"""


def grid_calls(tmp_path, **env_overrides):
    """What run_sup.sh passes to each train.py run (a stand-in interpreter records it; no training)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    fake = tmp_path / "fake_python.py"
    fake.write_text(FAKE_PYTHON)
    calls = tmp_path / "calls.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHON=f"{sys.executable} {fake}", CALLS=str(calls), OUTPUT_ROOT=str(tmp_path / "sup_grid"),
               MODELS="tiny org/base", DATASETS="restaurant_sup", METHODS="head lora", SEEDS="1 2", **env_overrides)
    proc = subprocess.run(["bash", os.path.join(ROOT, "run_sup.sh")], env=env, capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in calls.read_text().splitlines()]
    return [r for r in rows if r["script"] == "train.py"]


def test_grid_runs_share_one_group_with_readable_names(tmp_path):
    """One wandb group per grid (OUTPUT_ROOT's name), the configuration as job type, the run folder as name."""
    runs = grid_calls(tmp_path)
    assert len(runs) == 8 and {r["WANDB_RUN_GROUP"] for r in runs} == {"sup_grid"}
    root = str(tmp_path / "sup_grid") + "/"
    for r in runs:
        assert r["out"] == root + r["WANDB_NAME"] and r["WANDB_JOB_TYPE"] == r["WANDB_NAME"].rsplit("/", 1)[0]
    assert {r["WANDB_NAME"] for r in runs} >= {"restaurant_sup/tiny/head/seed1", "restaurant_sup/base/lora/seed2"}
    assert {r["WANDB_RUN_GROUP"] for r in grid_calls(tmp_path / "a", GRID_NAME="ablation")} == {"ablation"}
    assert {r["WANDB_RUN_GROUP"] for r in grid_calls(tmp_path / "b", WANDB_RUN_GROUP="mine")} == {"mine"}


def test_grid_schedule_is_the_methods_with_early_stopping(tmp_path):
    """EPOCHS unset: no --num_train_epochs (each method's registry default); patience 3; EPOCHS=5 is passed."""
    for run in grid_calls(tmp_path):
        argv = run["argv"]
        assert "--num_train_epochs" not in argv
        assert argv[argv.index("--early_stopping_patience") + 1] == "3"
        assert argv[argv.index("--per_device_train_batch_size") + 1] == "32"
    for run in grid_calls(tmp_path / "set", EPOCHS="5", PATIENCE="2"):
        argv = run["argv"]
        assert argv[argv.index("--num_train_epochs") + 1] == "5"
        assert argv[argv.index("--early_stopping_patience") + 1] == "2"


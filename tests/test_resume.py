"""Resume that survives a kill: a torn checkpoint, a kill at run.json's rename, a finished run (tiny model, fixtures).

Each resumed run must end with the metrics of the same seed's run in one piece, and its run.json must add up
the segments' time."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
STEPS = 8  # rotten_tomatoes fixture: 80 train rows, batch 16 = 5 steps an epoch; a checkpoint every 2 steps


def args_for(model, out):
    return ["--model_name_or_path", model, "--dataset_name", "rotten_tomatoes", "--method", "full",
            "--learning_rate", "3e-3", "--max_steps", str(STEPS), "--per_device_train_batch_size", "16",
            "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
            "--load_best_model_at_end", "false", "--data_dir", FIXTURES, "--disable_tqdm", "true",
            "--report_to", "none", "--output_dir", str(out)]


def read_run(folder):
    with open(os.path.join(folder, "run.json")) as f:
        return json.load(f)


def main_ok(capsys, *argv):
    code = train.main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    return out, err


@pytest.fixture(scope="module")
def whole(tiny_models, tmp_path_factory):
    """The uninterrupted run: its folder (run.json, checkpoint-6, checkpoint-8)."""
    out = tmp_path_factory.mktemp("resume") / "whole"
    assert train.main(args_for(tiny_models("bert"), out)) == 0
    return out


@pytest.fixture
def killed_at_step_7(tiny_models, tmp_path):
    """A real process killed (os._exit, train.py's CrashAtStep) at step 7, after checkpoint-6 was written."""
    out = tmp_path / "cut"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, FTLAB_CRASH_AT_STEP="7")
    proc = subprocess.run([sys.executable, "train.py", *args_for(tiny_models("bert"), out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert (out / "checkpoint-6" / "trainer_state.json").is_file() and not (out / "run.json").exists()
    assert not (out / "checkpoint-8").exists()
    return out


def assert_same_run(resumed, whole):
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["training"]["steps"] == whole["training"]["steps"] == STEPS
    assert resumed["training"]["epochs"] == whole["training"]["epochs"]


@pytest.mark.slow
def test_torn_checkpoints_fall_back_to_the_newest_complete_one(tiny_models, whole, killed_at_step_7, capsys):
    out = killed_at_step_7
    # a kill inside checkpoint-8's write (weights written, trainer_state.json not yet), and a checkpoint-7
    # whose weights were cut short (a copy of 6 with half its model.safetensors)
    shutil.copytree(out / "checkpoint-6", out / "checkpoint-8")
    (out / "checkpoint-8" / "trainer_state.json").unlink()
    shutil.copytree(out / "checkpoint-6", out / "checkpoint-7")
    weights = out / "checkpoint-7" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _, err = main_ok(capsys, *args_for(tiny_models("bert"), out), "--resume_from_checkpoint", "true")
    assert "skipping " + str(out / "checkpoint-8") + ": incomplete (no readable trainer_state.json)" in err
    assert "skipping " + str(out / "checkpoint-7") + ": incomplete (model.safetensors unreadable" in err
    assert f"resuming from {out / 'checkpoint-6'} (the newest complete checkpoint)" in err
    resumed = read_run(out)
    assert_same_run(resumed, read_run(whole))
    assert resumed["training"]["resumed_from"] == "checkpoint-6"
    time = resumed["time"]
    # the killed segment's seconds up to checkpoint-6 + this segment's: the whole run's time
    assert time["segments"] == 2 and len(time["segment_seconds"]) == 2 and min(time["segment_seconds"]) > 0
    assert time["train_seconds"] == pytest.approx(sum(time["segment_seconds"]))
    # samples/s over all segments: the whole run's samples (8 steps x 16) over the whole run's seconds
    assert time["samples_per_second"] == pytest.approx(STEPS * 16 / time["train_seconds"], rel=0.02)
    assert "training" not in read_run(whole) or "resumed_from" not in read_run(whole)["training"]
    assert "segments" not in read_run(whole)["time"]


@pytest.mark.slow
def test_kill_at_run_json_rename_resumes_without_another_step(tiny_models, whole, tmp_path, capsys):
    out = tmp_path / "renamed"
    shutil.copytree(whole, out)
    text = (out / "run.json").read_text()
    (out / "run.json").unlink()  # killed between write_atomic's temp file and its rename
    stray = out / ".run.json.k1ll3d_x.tmp"
    stray.write_text(text[: len(text) // 2])
    main_ok(capsys, *args_for(tiny_models("bert"), out), "--resume_from_checkpoint", "true")
    assert not stray.exists()
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    resumed = read_run(out)
    assert_same_run(resumed, read_run(whole))
    assert resumed["training"]["resumed_from"] == f"checkpoint-{STEPS}"


@pytest.mark.slow
def test_resuming_a_finished_run_keeps_its_record(tiny_models, whole, tmp_path, capsys):
    out = tmp_path / "done"
    shutil.copytree(whole, out)
    before = (out / "run.json").read_bytes()
    stdout, err = main_ok(capsys, *args_for(tiny_models("bert"), out), "--resume_from_checkpoint", "true")
    assert "holds a finished run (run.json complete): nothing to resume" in err
    assert (out / "run.json").read_bytes() == before  # not one more step, not rewritten
    assert f"run record: {out / 'run.json'}" in stdout
    assert sorted(p.name for p in out.glob("checkpoint-*")) == sorted(p.name for p in whole.glob("checkpoint-*"))


def test_resume_without_a_complete_checkpoint_is_one_error_line(tiny_models, tmp_path, capsys):
    out = tmp_path / "torn"
    (out / "checkpoint-2").mkdir(parents=True)  # killed inside the first checkpoint's write
    (out / "checkpoint-2" / "model.safetensors").write_bytes(b"\x00" * 7)
    code = train.main(args_for(tiny_models("bert"), out) + ["--resume_from_checkpoint", "true"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines == [f"error: --resume_from_checkpoint true: no complete checkpoint in {out}; run without it to "
                     "start over (--overwrite_output_dir clears the folder)"], err
    assert "Traceback" not in err
    assert sorted(os.listdir(out)) == [".lock"]  # the torn checkpoint removed, nothing written

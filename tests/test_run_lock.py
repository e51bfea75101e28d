"""One run per output folder: an OS lock (ftio.hold_folder) that a second run meets, and that a killed holder frees."""
import os
import signal
import subprocess
import sys

import pytest

from ftlab import io as ftio
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
HOLD = "import sys, time\nfrom ftlab import io as ftio\nwith ftio.hold_folder(sys.argv[1], 'output dir'):\n    print('held', flush=True)\n" \
       "    time.sleep(600)\n"


@pytest.fixture
def holder(tmp_path):
    """A real second process holding tmp_path/run (as a running train.py does), killed at the end."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.stdout.readline().strip() == "held"
    yield out, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_a_second_run_into_a_held_folder_is_one_error_line_and_writes_nothing(tiny_models, holder, capsys):
    out, proc = holder
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code = train.main(["--model_name_or_path", tiny_models("bert"), "--dataset_name", "rotten_tomatoes",
                       "--output_dir", str(out), "--data_dir", FIXTURES, "--max_steps", "2", "--report_to", "none"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: output dir {out} is in use by another run (pid {proc.pid}); wait for it to end, or pass another "
        "--output_dir"], err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written: only the holder's .lock
    assert sorted(os.listdir(out)) == [".lock"]


def test_kill_9_of_the_holder_frees_the_folder(holder):
    out, proc = holder
    with pytest.raises(ftio.FolderInUse, match=rf"in use by another run \(pid {proc.pid}\)"), \
            ftio.hold_folder(str(out)):
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ftio.hold_folder(str(out)):  # no stale lock: the kernel dropped it with the process
        assert (out / ".lock").read_text() == f"{os.getpid()}\n"
        # one holder, even in one process
        with pytest.raises(ftio.FolderInUse, match=rf"\(pid {os.getpid()}\)"), ftio.hold_folder(str(out)):
            pass
    with ftio.hold_folder(str(out)):  # released at the end of the with-block
        pass


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=rf"^output dir {path} is a file, not a folder: pass a folder path$"), \
            ftio.hold_folder(str(path), "output dir"):
        pass


def test_stray_temp_files_of_atomic_writes_are_removed_and_nothing_else(tmp_path):
    ftio.write_atomic(tmp_path / "run.json", "{}")
    keep = [".run.json.tmp", "run.json.abcdefgh.tmp", ".lock", "notes.tmp"]
    for name in keep:
        (tmp_path / name).write_text("mine")
    stray = [".run.json.k1ll3d_x.tmp", ".predictions_test.jsonl.0a9b8c7d.tmp"]
    for name in stray:
        (tmp_path / name).write_text('{"half')
    assert ftio.remove_stray_temps(str(tmp_path)) == sorted(stray)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["run.json"])

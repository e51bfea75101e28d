"""labs/rss_timeline.py: the RSS peak tied to the log line in whose window it was reached."""
import sys

import pytest

from tests.test_bench import load_lab

lab = load_lab("rss_timeline")


def test_peak_rows_keep_only_the_windows_that_raise_the_running_peak():
    # samples (s, KiB); lines at 1.0 "load" and 3.0 "train" and 5.0 "save"
    timeline = [(0.5, 1024), (1.5, 3072), (2.5, 2048), (3.5, 2048), (4.5, 2560), (5.5, 4096), (6.0, 1024)]
    log = [(1.0, "load"), (3.0, "train"), (5.0, "save")]
    rows = lab.peak_rows(timeline, log)
    # (start) window [0, 1): 1 MiB; load [1, 3): 3 MiB; train [3, 5): 2.5 MiB < 3, dropped; save: 4 MiB
    assert [(r["line"], r["peak_mib"]) for r in rows] == [("(start)", 1.0), ("load", 3.0), ("save", 4.0)]
    assert [r["t"] for r in rows] == [0.0, 1.0, 5.0]


def test_peak_rows_without_samples_is_empty():
    assert lab.peak_rows([], [(1.0, "x")]) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_lab_sees_a_child_allocation_in_its_window(tmp_path, capsys):
    """A child (python under a shell: the tree sum) holds 300 MiB after printing "alloc" and frees it at "free"."""
    script = ("import time; print('alloc', flush=True); a = bytearray(300 * 2**20); a[::4096] = b'x' * len(a[::4096]); "
              "time.sleep(0.6); print('free', flush=True); del a; time.sleep(0.3)")
    code = lab.main(["--out", str(tmp_path), "--interval", "0.02", "--", "sh", "-c", f'{sys.executable} -c "{script}"'])
    assert code == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "running" not in line]
    assert rows[-1].endswith("| alloc |")
    peak = float(rows[-1].split(" | ")[1])
    assert 300 <= peak < 300 + 200  # the buffer plus an interpreter
    samples = (tmp_path / "timeline.tsv").read_text().splitlines()
    assert samples[0] == "seconds\trss_mib" and len(samples) > 10
    assert [line.split("\t")[1] for line in (tmp_path / "log.txt").read_text().splitlines()] == ["alloc", "free"]


def test_lab_without_a_command_says_how_to_give_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lab.main(["--out", str(tmp_path)])
    assert "give it after --" in capsys.readouterr().err

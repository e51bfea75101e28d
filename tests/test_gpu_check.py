"""gpu_check.sh on a CPU: valid bash, refuses with one line without CUDA, and every train.py command
it would run parses (DRY_RUN=1 prints the commands and runs nothing)."""
import os
import shlex
import subprocess
import sys

import pytest
import torch

from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "gpu_check.sh")


def run_script(tmp_path, **env):
    """Run the script with `$PYTHON` = a shim that drops the script's `python` word and runs this
    interpreter, so `$PYTHON train.py` and `$PYTHON python -c` both work without uv."""
    shim = tmp_path / "py"
    shim.write_text(f'#!/bin/sh\n[ "$1" = python ] && shift\nexec {sys.executable} "$@"\n')
    os.chmod(shim, 0o755)
    full = dict(os.environ, PYTHON=str(shim), OUT=str(tmp_path / "out"), WORK=str(tmp_path / "work"), **env)
    return subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=full, cwd=ROOT, timeout=120)


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", SCRIPT], capture_output=True).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal only shows without CUDA")
def test_refuses_without_cuda_in_one_line(tmp_path):
    proc = run_script(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: gpu_check.sh needs a CUDA GPU (torch.cuda.is_available() is False here); on a CPU run `uv run pytest`"]
    assert not (tmp_path / "out").exists()


def test_dry_run_train_commands_parse(tmp_path):
    proc = run_script(tmp_path, DRY_RUN="1")
    assert proc.returncode == 0, proc.stderr
    commands = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
    trains = [c[c.index("train.py") + 1:] for c in commands if "train.py" in c]
    assert len(trains) == 3
    methods = []
    for argv in trains:
        model, data, method, run_args, targs = train.parse_args(argv)
        methods.append((model.model_name_or_path, data.dataset_name, method.method))
        assert targs.bf16 is True and targs.max_steps == 40 and targs.report_to in ([], ["none"], "none")
    assert methods == [("minilm", "bbc_news", "full"), ("minilm", "bbc_news", "lora"), ("smollm2", "mrpc", "qlora")]
    assert any(c[1:3] == ["llamafactory-cli", "train"] and "use_cpu=false" in c for c in commands)

"""`ftlab <tool>`: the console script's table, each tool's --help through it, one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ftlab import cli


def test_help_lists_every_tool(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {tool} " in out for tool in cli.TOOLS)
    assert "train.py" in out and "eval.py" in out and "dataHelper.py" in out


def test_no_tool_prints_the_usage_and_fails(capsys):
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith("usage: ftlab <tool>")


def test_unknown_tool_is_a_one_line_error(capsys):
    assert cli.main(["memroy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unknown tool 'memroy'") and "memory" in err


@pytest.mark.parametrize("tool", sorted(cli.TOOLS))
def test_every_tool_answers_help_under_its_sub_command_name(tool, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["ftlab"])  # the dispatcher renames argv[0]; restored after the test
    try:
        code = cli.main([tool, "--help"])
    except SystemExit as exit_:  # argparse / HfArgumentParser end --help with SystemExit(0)
        code = exit_.code
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and f"ftlab {tool}" in out.splitlines()[0]


def test_python_dash_m_ftlab_and_the_console_script_run_the_same_table():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    module = subprocess.run([sys.executable, "-m", "ftlab", "--help"], capture_output=True, text=True, env=env)
    script = os.path.join(os.path.dirname(sys.executable), "ftlab")
    console = subprocess.run([script, "--help"], capture_output=True, text=True, env=env)
    assert module.returncode == console.returncode == 0
    assert module.stdout == console.stdout == cli.usage() + "\n"

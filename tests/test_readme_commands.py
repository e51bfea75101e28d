"""Every command shown in README.md (bash blocks and `inline` commands) runs: its --help, or a grid's dry run.

How a README command maps to what runs here (the interpreter is this test's, i.e. `uv run`'s):
    uv run X.py ...              ->  python X.py --help
    uv run ftlab TOOL ...        ->  python -m ftlab TOOL --help
    uv run python -m MODULE ...  ->  python -m MODULE --help
    uv run pytest ...            ->  python -m pytest --help
    [VAR=... ] ./run_sup.sh      ->  the script with PYTHON=echo (it prints each train.py/baseline.py call and
                                     the report call instead of running them), OUTPUT_ROOT in a temp folder
    uv sync, export VAR=...      ->  skipped (setting up the shell or the environment this test runs in)
A README command that fits none of these fails the test: add its mapping here.
"""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SKIPPED = {("uv", "sync"): "installs the environment this test runs in"}
# Scripts that are not grids over labs/grid.sh (no PYTHON=echo dry run): where they are tested instead.
_LLM_LAB = "trains with LLaMA-Factory; tests/test_llm_table.py runs its steps on stand-ins"
SCRIPTS_TESTED_ELSEWHERE = {"labs/samsum_smollm2.sh": _LLM_LAB, "labs/tatqa_lora_vs_full.sh": _LLM_LAB,
                            "gpu_check.sh": "needs CUDA; tests/test_gpu_check.py checks its commands (DRY_RUN=1)"}


def readme_commands(text: str) -> list:
    """Each command line of the ```bash blocks: continuations joined, comments dropped, `a && b` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


def inline_commands(text: str) -> list:
    """Commands shown as `inline code` outside the bash blocks (the course-task table's command column)."""
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    commands = []
    for span in re.findall(r"`([^`\n]+)`", outside):
        if "<" in span:  # a pattern such as `uv run ftlab <tool> --help`, not a command
            continue
        words = split_env(shlex.split(span))[1]
        if words and (words[:2] == ["uv", "run"] or words[0].endswith(".sh")):
            commands.append(shlex.split(span))
    return commands


def split_env(words: list) -> tuple:
    env = {}
    while words and ENV_ASSIGNMENT.match(words[0]):
        key, _, value = words[0].partition("=")
        env[key] = value
        words = words[1:]
    return env, words


def help_argv(words: list):
    """The --help call for a `uv run ...` command, or None when it is not one."""
    if words[:2] != ["uv", "run"] or len(words) < 3:
        return None
    program = words[2]
    if program.endswith(".py"):
        return [sys.executable, program, "--help"]
    if program == "ftlab":
        return [sys.executable, "-m", "ftlab", words[3], "--help"]
    if program == "python" and words[3:4] == ["-m"]:
        return [sys.executable, "-m", words[4], "--help"]
    if program == "pytest":
        return [sys.executable, "-m", "pytest", "--help"]
    return None


def is_grid(words: list) -> bool:
    path = ROOT / words[0]
    return words[0].endswith(".sh") and path.is_file() and "labs/grid.sh" in path.read_text()


def plan(words: list):
    """('help', argv) | ('grid', env, script) | ('skip', reason) | ('unknown', words) for one README command."""
    env, rest = split_env(words)
    if not rest:
        return ("skip", "an assignment")
    if rest[0] == "export":
        return ("skip", "sets the shell's environment")
    if tuple(rest[:2]) in SKIPPED:
        return ("skip", SKIPPED[tuple(rest[:2])])
    argv = help_argv(rest)
    if argv:
        return ("help", argv)
    if is_grid(rest):
        return ("grid", env, rest[0])
    script = rest[0].removeprefix("./")
    if script in SCRIPTS_TESTED_ELSEWHERE:
        return ("skip", SCRIPTS_TESTED_ELSEWHERE[script])
    return ("unknown", words)


README_TEXT = (ROOT / "README.md").read_text(encoding="utf-8")
README_COMMANDS = readme_commands(README_TEXT) + inline_commands(README_TEXT)
PLANS = {}
for _words in README_COMMANDS:
    _plan = plan(_words)
    _key = repr(_plan) if _plan[0] == "help" else " ".join(_words)  # one --help per distinct call
    PLANS.setdefault(_key, (_plan, " ".join(_words)))


def test_the_readme_shows_commands():
    kinds = [p[0] for p, _ in PLANS.values()]
    assert kinds.count("help") >= 5 and kinds.count("grid") >= 3, kinds


def test_plan_mapping():
    assert plan(["uv", "run", "ftlab", "predict", "RUN", "text"])[1][-3:] == ["ftlab", "predict", "--help"]
    assert plan(["uv", "run", "train.py"])[1][1:] == ["train.py", "--help"]
    assert plan(["MODELS=minilm", "./run_sup.sh"]) == ("grid", {"MODELS": "minilm"}, "./run_sup.sh")
    assert plan(["curl", "x"])[0] == "unknown"
    assert inline_commands("run `uv run x.py --y` or `A=1 ./g.sh`, not `uv run ftlab <tool>` nor `ls`") == [
        ["uv", "run", "x.py", "--y"], ["A=1", "./g.sh"]]
    assert readme_commands("```bash\nA=1 b \\\n  --c # note\nd && e f\n```\n") == [["A=1", "b", "--c"], ["d"],
                                                                                  ["e", "f"]]


@pytest.mark.parametrize("key", sorted(PLANS), ids=[PLANS[k][1][:60] for k in sorted(PLANS)])
def test_readme_command_runs(key, tmp_path):
    step, command = PLANS[key]
    kind = step[0]
    if kind == "skip":
        pytest.skip(f"{command}: {step[1]}")
    assert kind != "unknown", f"README command with no mapping in this test: {command}"
    if kind == "help":
        done = subprocess.run(step[1], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}: {' '.join(step[1][1:])} exit {done.returncode}\n{done.stderr[-2000:]}"
        assert "usage" in done.stdout.lower(), done.stdout[:500]
        return
    env = {**os.environ, **step[1], "PYTHON": "echo", "OUTPUT_ROOT": str(tmp_path / "out")}
    done = subprocess.run(["bash", step[2]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr[-2000:]}"
    calls = [line for line in done.stdout.splitlines() if re.match(r"(train|baseline)\.py ", line)]
    assert calls, f"{command}: printed no train.py/baseline.py call:\n{done.stdout[-1000:]}"
    assert all("--dataset_name" in c and "--output_dir" in c for c in calls)

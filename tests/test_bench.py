"""bench.py's one run on a tiny model: the figures it reads from run.json are where run.json keeps them."""
import pytest

import bench
from tests.test_train import FIXTURES


def test_run_once_reads_batch_bf16_and_throughput(tiny_models):
    extra = ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES]
    default = bench.run_once("default", 2, "full", extra, None, "restaurant_sup")
    naive = bench.run_once("naive", 2, "full", extra + bench.NAIVE, 128, "restaurant_sup")
    assert default["batch"] == 32 and naive["batch"] == 8 and naive["bf16"] is False
    assert default["samples_per_second"] > 0 and default["useful_tokens_per_second"] > 0
    # naive pads every input to 128 tokens: it executes more tokens than it uses
    assert naive["executed_tokens_per_second"] > naive["useful_tokens_per_second"]


def test_profile_phases_add_up_and_cover_each_step(tiny_models):
    extra = ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES]
    r = bench.run_once("default", 3, "full", extra, None, "restaurant_sup", profile=True)
    phases = r["phases"]
    for phase in (*bench.PhaseTimer.STEP_PHASES, "model load", "tokenization", "final save", "run.json"):
        assert phase in phases, phase
    assert phases["forward"] > 0 and phases["backward"] > 0 and phases["optimizer"] > 0
    # every second of train.run is in exactly one phase ("other" is the remainder, never negative)
    # (the final scoring's evaluate() is not counted again as a per-epoch evaluation)
    assert sum(phases.values()) == pytest.approx(r["run_seconds"]) and phases["other"] >= 0
    # one median per step phase, each no larger than that phase's total over the 3 steps
    assert set(r["median_step_ms"]) == set(bench.PhaseTimer.STEP_PHASES)
    assert all(r["median_step_ms"][p] <= 1000 * phases[p] for p in bench.PhaseTimer.STEP_PHASES)
    # the named steps are restored after the run
    assert bench.train.get_model.__name__ == "get_model" and bench.train.build_trainer.__name__ == "build_trainer"
    table = bench.phase_table([r], startup=1.5)
    assert "| forward | " in table and "median" in table and "ms/step" in table and "| start-up (imports) | 1.50 |" in table


def test_whole_run_times_evaluation_and_checkpoints(tiny_models):
    extra = ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES, "--max_steps", "2"]
    r = bench.run_once("default", None, "full", extra, None, "restaurant_sup", profile=True)
    assert r["phases"]["evaluation (per epoch)"] > 0 and r["phases"]["checkpoint saves"] > 0
    assert r["phases"]["test + validation scoring"] > 0


def test_variant_specs_are_checked():
    assert bench.variants(["fused=--optim adamw_torch_fused", "lora=--method lora"]) == [
        ("fused", "--optim adamw_torch_fused"), ("lora", "--method lora")]
    with pytest.raises(SystemExit, match="--variant 'fused' must be LABEL=FLAGS"):
        bench.variants(["fused"])


def test_speed_profile_lab_runs_bench_with_each_variant(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    log = tmp_path / "calls.txt"
    stand_in = tmp_path / "python"
    stand_in.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s|" "$a" >> {log}; done; echo >> {log}\n')
    stand_in.chmod(0o755)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(["bash", str(root / "labs" / "speed_profile.sh")], capture_output=True, text=True,
                          env=dict(os.environ, PYTHON=str(stand_in), OUT=str(tmp_path / "speed")), cwd="/")
    assert proc.returncode == 0, proc.stderr
    steps, whole, compiled = [line.split("|")[:-1] for line in log.read_text().splitlines()]
    assert steps[:6] == ["bench.py", "--dataset_name", "restaurant_sup", "--steps", "40", "--profile"]
    labels = [steps[i + 1].split("=")[0] for i, a in enumerate(steps) if a == "--variant"]
    assert labels == ["adamw_unfused", "lora", "lora_frozen_bf16", "lora_no_dropout", "lora_scratch", "lora_all_linear",
                      "lora_all_linear_no_dropout", "adapter"]
    assert bench.variants([steps[steps.index("--variant") + 1]]) == [("adamw_unfused", "--optim adamw_torch")]
    assert "--whole_run" in whole and whole[-1] == str(tmp_path / "speed" / "whole_run")
    assert "compile=--torch_compile true" in compiled and compiled[-1] == str(tmp_path / "speed" / "compile")

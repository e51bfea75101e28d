"""ftlab/analysis/bench.py's one run on a tiny model: the figures it reads from run.json are where run.json keeps them."""
import importlib.util
import json
from pathlib import Path

import pytest

from ftlab.analysis import bench
from tests.test_train import FIXTURES


def test_run_once_reads_batch_bf16_and_throughput(tiny_models):
    extra = ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES]
    default = bench.run_once("default", 2, "full", extra, "restaurant_sup")
    naive = bench.run_once("naive", 2, "full", extra + bench.NAIVE, "restaurant_sup")
    assert default["batch"] == 32 and naive["batch"] == 8 and naive["bf16"] is False
    assert default["method"] == naive["method"] == "full"  # run.json's method: the FLOP count follows it
    assert default["samples_per_second"] > 0 and default["useful_tokens_per_second"] > 0
    # naive pads every input to 128 tokens: it executes more tokens than it uses; dynamic padding pads
    # each batch to its longest example (the fixture's lengths differ), less
    assert naive["executed_tokens_per_second"] > naive["useful_tokens_per_second"]
    assert default["executed_tokens_per_second"] > default["useful_tokens_per_second"]


def test_token_counter_counts_real_and_padded_tokens_by_hand(tiny_models):
    """Two examples of 3 and 5 tokens padded to 5: 8 real, 10 executed, factor 1.25; with
    pad_to_multiple_of 8: 16 executed, factor 2."""
    from transformers import DataCollatorWithPadding

    from ftlab.train import steps as train

    tokenizer = train.load_tokenizer(tiny_models("bert"))
    features = [{"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "label": 0},
                {"input_ids": [101, 7, 8, 9, 102], "attention_mask": [1] * 5, "label": 1}]
    for multiple, executed in ((None, 10), (8, 16)):
        trainer = type("T", (), {"data_collator": DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)})()
        counter = bench.TokenCounter()
        counter.wrap(trainer, None)
        batch = trainer.data_collator(features)
        assert batch["input_ids"].shape == (2, executed // 2)
        assert (counter.real, counter.executed) == (8, executed)
        assert counter.padding_factor() == pytest.approx(executed / 8)
    assert bench.TokenCounter().padding_factor() is None


def test_profile_phases_add_up_and_cover_each_step(tiny_models):
    extra = ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES]
    r = bench.run_once("default", 3, "full", extra, "restaurant_sup", profile=True)
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
    r = bench.run_once("default", None, "full", extra, "restaurant_sup", profile=True)
    assert r["phases"]["evaluation (per epoch)"] > 0 and r["phases"]["checkpoint saves"] > 0
    assert r["phases"]["test + validation scoring"] > 0
    # the steps alone took less time than the loop that also evaluated and saved
    assert 0 < r["step_seconds"] < r["train_seconds"]


def test_in_steps_flops_scales_the_loop_rate_by_its_share_of_step_time():
    r = {"method": "full", "useful_tokens_per_second": 1000.0, "train_seconds": 10.0, "step_seconds": 8.0}
    # 6 x 1M params x 1000 tokens/s over the 10 s loop, of which 8 s were steps: 6 GFLOP/s -> 7.5 in the steps
    assert bench.in_steps_flops(r, 1_000_000, 1e10) == "  in the steps alone    7.50 GFLOP/s ( 75.0%)"
    assert bench.in_steps_flops({"useful_tokens_per_second": 1.0}, 1, 1.0) == ""  # no --profile: no figure


@pytest.mark.parametrize("method, gflops", [("full", "6.00"), ("lora", "4.00"), ("qlora", "4.00"),
                                            ("adapter", "4.00"), ("lora_scratch", "4.00"), ("head", "2.00")])
def test_flops_count_only_the_gradients_a_method_computes(method, gflops):
    """A frozen base computes no weight gradients: 6N x tokens would read LoRA's FLOP/s 1.5x too high (the MRPC
    bench printed 120% of the GEMM peak). 1M params x 1,000 real tokens/s: full 6, frozen base 4, head 2 GFLOP/s."""
    r = {"label": "x", "method": method, "batch": 8, "bf16": False, "samples_per_second": 1.0,
         "useful_tokens_per_second": 1000.0, "executed_tokens_per_second": 1000.0}
    line = bench.flops_line(r, 1_000_000, 1e10)
    assert f"useful    {gflops} GFLOP/s" in line and f"executed    {gflops} GFLOP/s" in line


def test_variant_specs_are_checked():
    assert bench.variants(["fused=--optim adamw_torch_fused", "lora=--method lora"]) == [
        ("fused", "--optim adamw_torch_fused"), ("lora", "--method lora")]
    with pytest.raises(ValueError, match="--variant 'fused' must be LABEL=FLAGS"):
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
    steps, whole, compiled, tta = [line.split("|")[:-1] for line in log.read_text().splitlines()]
    assert tta[-5:] == ["--time_to_accuracy", "--tta_max_epochs", "5", "--out", str(tmp_path / "speed" / "time_to_accuracy")]
    bench.parse_args(tta[3:])  # every flag the lab passes is one ftlab/analysis/bench.py knows
    assert steps[:8] == ["-m", "ftlab", "bench", "--dataset_name", "restaurant_sup", "--steps", "40", "--profile"]
    labels = [steps[i + 1].split("=")[0] for i, a in enumerate(steps) if a == "--variant"]
    assert labels == ["adamw_unfused", "torch_dropout", "lora", "lora_frozen_bf16", "lora_no_dropout", "lora_scratch",
                      "lora_all_linear", "lora_all_linear_no_dropout", "adapter"]
    assert bench.variants([steps[steps.index("--variant") + 1]]) == [("adamw_unfused", "--optim adamw_torch")]
    assert "--whole_run" in whole and whole[-1] == str(tmp_path / "speed" / "whole_run")
    assert "compile=--torch_compile true" in compiled and compiled[-1] == str(tmp_path / "speed" / "compile")
    log.unlink()
    subprocess.run(["bash", str(root / "labs" / "speed_profile.sh")], check=True, cwd="/",
                   env=dict(os.environ, PYTHON=str(stand_in), OUT=str(tmp_path / "speed"), TTA="0"))
    assert len(log.read_text().splitlines()) == 3  # TTA=0: no time-to-accuracy run


# ---------------------------------------------------------------- time to accuracy

def _tiny_argv(tiny_models, tmp_path, *more):
    return ["--model_name_or_path", tiny_models("bert"), "--data_dir", FIXTURES, "--dataset_name", "restaurant_sup",
            "--method", "full", "--report_to", "none", "--disable_tqdm", "true", "--seed", "1",
            "--output_dir", str(tmp_path), *more]


def test_probe_scores_test_every_half_epoch_without_changing_the_run(tiny_models, tmp_path):
    argv = ["--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--max_train_samples", "56"]  # 14 steps an epoch
    plain = bench.probe_run(_tiny_argv(tiny_models, tmp_path / "plain", *argv), None)
    probed = bench.probe_run(_tiny_argv(tiny_models, tmp_path / "probed", *argv), 0.5)
    assert plain["points"] == [] and plain["reached"] is None
    # probes at epochs 0.5, 1, 1.5, 2; their time (process start to the probe, probes left out) only grows
    assert [p["epoch"] for p in probed["points"]] == [0.5, 1.0, 1.5, 2.0]
    seconds = [p["seconds"] for p in probed["points"]]
    assert seconds == sorted(seconds) and all(0 <= p["accuracy"] <= 1 for p in probed["points"])
    # scoring test in between changes nothing the run does: the same trained weights, the same final score
    from safetensors.torch import load_file
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("plain", "probed"))
    assert a.keys() == b.keys() and all(bench.torch.equal(a[k], b[k]) for k in a)
    assert probed["final_test_accuracy"] == plain["final_test_accuracy"] and probed["epochs"] == plain["epochs"] == 2.0


def test_probe_stops_training_at_the_target_or_at_max_epochs(tiny_models, tmp_path):
    argv = ["--num_train_epochs", "3", "--per_device_train_batch_size", "4", "--max_train_samples", "56"]
    hit = bench.probe_run(_tiny_argv(tiny_models, tmp_path / "hit", *argv), 0.5, target=0.0)
    assert hit["reached"] == hit["points"][0] and len(hit["points"]) == 1 and hit["epochs"] == 0.5
    capped = bench.probe_run(_tiny_argv(tiny_models, tmp_path / "cap", *argv), 1.0, target=2.0, max_epochs=1)
    assert capped["reached"] is None and [p["epoch"] for p in capped["points"]] == [1.0] and capped["epochs"] == 1.0


def test_time_to_accuracy_band_target_and_ratio_by_hand():
    calls = []

    def runner(argv, every, target, max_epochs):
        calls.append((argv, every, target, max_epochs))
        seed = int(argv[argv.index("--seed") + 1])
        if every is None:  # naive: accuracies 0.80 / 0.82 / 0.84, 100 / 110 / 120 s
            return {"final_test_accuracy": 0.78 + 0.02 * seed, "process_seconds": 90.0 + 10 * seed, "epochs": 3.0,
                    "points": [], "reached": None}
        point = {"seconds": 10.0 + seed, "accuracy": 0.81, "epoch": 0.5, "step": 5}
        return {"final_test_accuracy": 0.81, "process_seconds": 60.0, "epochs": 0.5, "points": [point],
                "reached": point if seed < 3 else None}

    args = bench.parse_args(["--time_to_accuracy", "--train_args", "--learning_rate 1e-4", "--probe_every", "0.5"])
    result = bench.time_to_accuracy(args, runner=runner)
    # mean 0.82, sample std 0.02: the target is 0.80; the naive mean wall time is 110 s
    assert result["naive_mean"] == pytest.approx(0.82) and result["naive_std"] == pytest.approx(0.02)
    assert result["target"] == pytest.approx(0.80) and result["naive_seconds"] == pytest.approx(110.0)
    naive_argv, default_argv = calls[0][0], calls[3][0]
    assert "--pad_to_max_length" in naive_argv and naive_argv[naive_argv.index("--num_train_epochs") + 1] == "3"
    assert "--learning_rate" in default_argv and "--pad_to_max_length" not in default_argv
    assert calls[3][1:] == (0.5, pytest.approx(0.80), 3.0)
    table = bench.tta_table(result, "test")
    assert "| default (time to target) | 1 | 0.8100 | 11.0 | 0.5 | 0.100 (1/10.0) | - |" in table
    assert "| default (not reached; best probe) | 3 | 0.8100 |" in table and "1 of 3 seeds did not reach" in table
    result["default"][2]["reached"] = result["default"][2]["points"][0]  # seed 3 at 13 s: slowest
    assert "slowest 13.0 s = 1/8.5 of the naive wall time (mean 12.0 s = 1/9.2)" in bench.tta_table(result, "test")


def test_time_to_accuracy_command_runs_both_setups_in_child_processes(tiny_models, tmp_path):
    out = tmp_path / "tta"
    common = f"--data_dir {FIXTURES} --max_train_samples 16 --per_device_eval_batch_size 64"
    assert bench.main(["--time_to_accuracy", "--model", tiny_models("bert"), "--dataset_name", "restaurant_sup",
                       "--seeds", "1", "--probe_every", "1", "--tta_max_epochs", "1", "--common_args", common,
                       "--out", str(out)]) == 0
    import json
    saved = json.loads((tmp_path / "tta.json").read_text())
    naive, default = saved["naive"][0], saved["default"][0]
    assert naive["epochs"] == 3.0 and naive["process_seconds"] > 0 and naive["points"] == []
    assert naive["peak_rss_bytes"] > 100 * 2 ** 20  # the child's own peak (torch alone is more than 100 MiB)
    # default: probed once (epoch 1, its cap); the target is the naive accuracy (one seed: std 0)
    assert saved["target"] == naive["final_test_accuracy"] and [p["epoch"] for p in default["points"]] == [1.0]
    assert "naive band: test accuracy" in (tmp_path / "tta.md").read_text()
    # a rerun reuses the naive runs of that file
    args = bench.parse_args(["--time_to_accuracy", "--naive_from", str(tmp_path / "tta.json"), "--seeds", "1"])
    seen = []
    bench.time_to_accuracy(args, runner=lambda argv, *rest: seen.append(rest) or default)
    assert seen == [(0.25, saved["target"], 3.0)]


def load_lab(name: str):
    """labs/NAME.py as a module (labs/ is not a package: its scripts run as files)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "labs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gemm_shapes_counts_each_call_and_prints_every_case(monkeypatch, capsys):
    """labs/gemm_shapes.py: mean_us divides by every call it made; main prints one row per dtype x width."""
    gemm_shapes = load_lab("gemm_shapes")
    calls = []
    assert gemm_shapes.mean_us(calls.append, [1, 2, 3], reps=4) >= 0
    assert calls == [1, 2, 3] * 4
    monkeypatch.setattr(gemm_shapes, "MS", [32, 64])
    gemm_shapes.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "x [384" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| bfloat16 [M, 384] x [384, 8]", "| bfloat16 [M, 384] x [384, 384]",
                                                "| float32 [M, 384] x [384, 8]", "| float32 [M, 384] x [384, 384]"]
    assert all(float(cell) > 0 for r in rows for cell in r.strip(" |").split(" | ")[1:])


def test_main_keeps_the_higher_gemm_peak_of_before_and_after(monkeypatch, tmp_path):
    """A slow first reading of the peak (the machine busy for a moment) must not inflate '% of peak'."""
    readings = iter([100e9, 400e9])
    monkeypatch.setattr(bench, "gemm_peak_flops", lambda: next(readings))
    monkeypatch.setattr(bench, "non_embedding_params", lambda model: 1_000_000)
    # 1,000 useful tokens/s x 6 x 1M params = 6 GFLOP/s: 1.5% of 400, not 6.0% of 100
    monkeypatch.setattr(bench, "run_once", lambda label, *a, **k: {
        "label": label, "method": "full", "samples_per_second": 10.0, "useful_tokens_per_second": 1000.0,
        "executed_tokens_per_second": 1000.0, "batch": 32, "bf16": True})
    out = str(tmp_path / "b")
    assert bench.main(["--no_naive", "--out", out]) == 0
    text = open(out + ".md").read()
    assert "GEMM peak 400.0 GFLOP/s" in text and "6.00 GFLOP/s (  1.5% of peak)" in text
    assert json.load(open(out + ".json"))["gemm_peak_flops"] == 400e9


def test_naive_from_refuses_naive_runs_of_another_machine(tmp_path, capsys, monkeypatch):
    """A wall-time ratio needs both setups on one machine: another machine's band is refused with a one-line
    error naming the file; a file that predates the machine record is used with a warning."""
    here = {"cpu": "AMD EPYC", "isa": "avx2", "threads": 2, "gpu": None}
    monkeypatch.setattr(bench, "machine", lambda: here)
    naive = [{"seed": s, "final_test_accuracy": 0.8, "process_seconds": 100.0, "epochs": 3.0} for s in (1, 2)]
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"naive": naive, "machine": {**here, "isa": "avx512_bf16"}}))
    args = bench.parse_args(["--time_to_accuracy", "--naive_from", str(other), "--seeds", "1"])
    with pytest.raises(SystemExit, match=r"--naive_from .*other.json: its naive runs ran on .*avx512_bf16.*"
                                         r"run without --naive_from"):
        bench.time_to_accuracy(args, runner=lambda *a: pytest.fail("nothing may train"))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"naive": naive}))
    reached = {"seconds": 10.0, "accuracy": 0.8, "epoch": 1.0, "step": 1}
    args = bench.parse_args(["--time_to_accuracy", "--naive_from", str(old), "--seeds", "1"])
    result = bench.time_to_accuracy(args, runner=lambda *a: {"points": [reached], "reached": reached, "epochs": 1.0})
    assert "old.json does not record its machine" in capsys.readouterr().err
    assert result["machine"] == here and "machine: AMD EPYC (avx2), 2 threads" in bench.tta_table(result, "t")


def test_gemm_peak_is_measured_in_the_precision_the_defaults_train_in(monkeypatch):
    """Without bf16 units train.py trains in fp32: the peak is an fp32 GEMM's, not an emulated bf16 one's."""
    import torch

    seen = []
    monkeypatch.setattr(torch, "randn", lambda *shape, dtype: seen.append(dtype) or torch.ones(2, 2, dtype=dtype))
    for supported, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(bench, "bf16_supported", lambda: supported)
        seen.clear()
        assert bench.peak_dtype() == dtype and bench.gemm_peak_flops(n=2, reps=1) > 0 and seen == [dtype, dtype]


def test_separate_processes_run_each_setup_in_its_own_process_and_print_each_peak(tiny_models, tmp_path, capsys):
    out = tmp_path / "sep"
    assert bench.main(["--model", tiny_models("bert"), "--dataset_name", "restaurant_sup", "--method", "lora",
                       "--steps", "2", "--no_naive", "--separate_processes", "--train_args", f"--data_dir {FIXTURES}",
                       "--variant", f"full=--method full --data_dir {FIXTURES}", "--out", str(out)]) == 0
    import json
    results = json.loads((tmp_path / "sep.json").read_text())["results"]
    assert [r["label"] for r in results] == ["default", "full"] and all(r["steps"] == 2 for r in results)
    # each child's own process: its whole-process peak (torch alone is more than 100 MiB), and its spawn time
    assert all(r["process_peak_rss_bytes"] > 100 * 2 ** 20 and r["process_seconds"] > 0 for r in results)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("peak memory while training"))
    assert "(each setup in its own process)" in line
    assert line.endswith(", ".join(f"{r['label']} {r['peak_rss_bytes'] / 2 ** 20:,.0f}" for r in results))

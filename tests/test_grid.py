"""The grid scripts (run_sup.sh, run_peft.sh) end to end on a tiny model, and the course lab's counts."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from ftlab.methods import registry as methods

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = str(ROOT / "tests" / "fixtures")


def distilbert_base():
    """distilbert-base-uncased's architecture (dim 768, 6 layers, vocab 30522), weights on the meta device."""
    cfg = transformers.DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                                        num_labels=2)
    with torch.device("meta"):  # shapes only: no 268 MB of weights
        return transformers.AutoModelForSequenceClassification.from_config(cfg)


def test_distilbert_counts_match_the_course():
    args = methods.MethodArguments()
    full = methods.METHODS["full"].apply(distilbert_base(), args)
    assert methods.count_parameters(full) == (66_955_010, 66_955_010)
    # head = pre_classifier (768 x 768 + 768) + classifier (768 x 2 + 2) = 590,592 + 1,538 = 592,130
    head = methods.METHODS["head"].apply(distilbert_base(), args)
    assert methods.count_parameters(head) == (592_130, 66_955_010)


def grid_env(tmp_path: Path, **overrides: str) -> dict:
    env = dict(os.environ, PYTHON=sys.executable, DATA_DIR=FIXTURES, OUTPUT_ROOT=str(tmp_path / "runs"),
               SEEDS="1 2", EXTRA_ARGS="--max_steps 2 --per_device_train_batch_size 4 --report_to none",
               HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    env.update(overrides)
    return env


def run_script(script: str, env: dict) -> subprocess.CompletedProcess:
    # cwd elsewhere: the scripts must find the repository themselves
    return subprocess.run(["bash", str(ROOT / script)], env=env, capture_output=True, text=True, cwd="/")


def table_rows(out: Path) -> dict:
    rows = csv.DictReader((out / "report" / "table.csv").open())
    return {(r["method"], r["settings"]): r for r in rows}


def test_run_peft_rejects_a_bad_sweep_before_any_run(tmp_path):
    proc = run_script("run_peft.sh", grid_env(tmp_path, MODELS="m", LORA_SWEEP="16:32 8:32"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: LORA_SWEEP entry '8:32' must be r:alpha with 1 <= r <= alpha <= 2r (e.g. 16:32)"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_run_sup_grid_end_to_end_and_resume(tmp_path, tiny_models):
    env = grid_env(tmp_path, MODELS=tiny_models("bert"), DATASETS="restaurant_sup", METHODS="full svm")
    proc = run_script("run_sup.sh", env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "runs"
    for method in ("full", "svm"):
        for seed in (1, 2):
            assert (runs / "restaurant_sup" / "bert" / method / f"seed{seed}" / "run.json").is_file()
    rows = table_rows(runs)
    # the SVM's C comes from validation, the same for both seeds (the features and the solver are deterministic)
    c = {json.loads((runs / "restaurant_sup" / "bert" / "svm" / f"seed{s}" / "run.json").read_text())["settings"]["C"]
         for s in (1, 2)}
    assert len(c) == 1
    svm = ("svm", f"C={c.pop()}, pooling=cls")
    assert set(rows) == {("full", ""), svm}
    assert all(r["n"] == "2" and r["seeds"] == "1 2" and r["dataset"] == "restaurant_sup" for r in rows.values())
    assert rows[svm]["trainable_params_mean"] == "99.0"  # 3 classes x 32 + 3
    assert (runs / "report" / "metric_vs_params.png").stat().st_size > 0

    before = {p: p.stat().st_mtime_ns for p in runs.rglob("run.json")}
    again = run_script("run_sup.sh", env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skip (run.json complete)") == 4 and "run: " not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("run.json")} == before


@pytest.mark.slow
def test_run_peft_grid_with_sweep(tmp_path, tiny_models):
    # one seed: the seed loop and its resume are test_run_sup_grid_end_to_end_and_resume's (the same labs/grid.sh)
    env = grid_env(tmp_path, MODELS=tiny_models("bert"), METHODS="adapter", LORA_SWEEP="4:8", SEEDS="1")
    proc = run_script("run_peft.sh", env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = tmp_path / "runs" / "agnews_sup" / "bert"
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("run.json")) == [
        "adapter/seed1/run.json", "lora_r4_a8/seed1/run.json"]
    rows = table_rows(tmp_path / "runs")
    (sweep,) = [r for (m, s), r in rows.items() if m == "lora"]
    assert "lora_alpha=8" in sweep["settings"] and "lora_r=4" in sweep["settings"] and sweep["n"] == "1"
    assert any(m == "adapter" for m, _ in rows)


def metrics_by_run(runs: Path) -> dict:
    return {str(p.parent.relative_to(runs)): json.loads(p.read_text())["metrics"] for p in runs.rglob("run.json")}


@pytest.mark.slow
def test_killed_grid_restarts_where_it_stopped(tmp_path, tiny_models):
    """restaurant_fs (no validation split: run_sup.sh's early-stopping patience must not stop it) killed inside
    seed 1 after its second checkpoint, seed 2's folder left with a torn run.json; the restarted grid resumes seed 1,
    starts seed 2 again and ends with the metrics of an uninterrupted grid."""
    fs = dict(MODELS=tiny_models("bert"), DATASETS="restaurant_fs", METHODS="full",
              EXTRA_ARGS="--max_steps 4 --per_device_train_batch_size 8 --save_strategy steps --save_steps 1 "
                         "--load_best_model_at_end false --learning_rate 3e-3 --report_to none")
    whole = grid_env(tmp_path / "whole", **fs)
    proc = run_script("run_sup.sh", whole)
    assert proc.returncode == 0, proc.stderr[-3000:]

    env = grid_env(tmp_path / "cut", **fs)
    killed = run_script("run_sup.sh", dict(env, FTLAB_CRASH_AT_STEP="3"))  # CrashAtStep: os._exit(1) after step 3
    assert killed.returncode == 1, killed.stderr[-3000:]
    runs = tmp_path / "cut" / "runs"
    seed1, seed2 = (runs / "restaurant_fs" / "bert" / "full" / f"seed{s}" for s in (1, 2))
    assert (seed1 / "checkpoint-2").is_dir() and not (seed1 / "run.json").exists() and not seed2.exists()
    seed2.mkdir(parents=True)
    (seed2 / "run.json").write_text('{"schema": 2, "metr')  # a run killed while its record was written
    again = run_script("run_sup.sh", env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "run (resumable: --resume_from_checkpoint true): train.py" in again.stdout
    assert "run (partial: --overwrite_output_dir true): train.py" in again.stdout
    assert "no validation split: --early_stopping_patience 3 ignored" in again.stderr
    resumed = json.loads((seed1 / "run.json").read_text())
    assert resumed["training"]["resumed_from"] == "checkpoint-2" and resumed["training"]["steps"] == 4
    assert metrics_by_run(runs) == metrics_by_run(tmp_path / "whole" / "runs")
    assert len(metrics_by_run(runs)) == 2
    rows = table_rows(runs)
    assert rows[("full", "")]["n"] == "2"

    third = run_script("run_sup.sh", env)
    assert third.returncode == 0 and third.stdout.count("skip (run.json complete)") == 2, third.stderr[-3000:]


def test_mrpc_lab_rejects_an_unknown_prompt(tmp_path):
    proc = run_script("labs/mrpc_prompts.sh", grid_env(tmp_path, PROMPTS="none funny"))
    assert proc.returncode == 2
    assert proc.stderr == "error: unknown prompt 'funny' in PROMPTS; valid: none perfect conflicting insufficient\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_rotten_tomatoes_lab_has_validation_and_test_columns(tmp_path, tiny_models):
    env = grid_env(tmp_path, MODEL=tiny_models("bert"), METHODS="svm lora", SEEDS="1")
    proc = run_script("labs/rotten_tomatoes.sh", env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table_rows(tmp_path / "runs")
    assert {m for m, _ in rows} == {"svm", "lora"}
    for r in rows.values():
        assert r["n"] == "1" and r["validation_accuracy_n"] == "1" and r["test_accuracy_n"] == "1"
    md = (tmp_path / "runs" / "report" / "table.md").read_text()
    assert "validation accuracy" in md and "test accuracy" in md


SEED_PROMPTS = {  # the seed lab's f"{prompt} Sentence 1: {s1} Sentence 2: {s2}", with its four prompts
    "none": "", "perfect": "Does sentence 1 mean the same as sentence 2?",
    "conflicting": "Bob sent a message to Alice, which one is better?",
    "insufficient": "Cut the crap, what's your GPA?"}


def test_mrpc_lab_runs_the_seeds_prompts_and_recipe_verbatim(tmp_path):
    log = tmp_path / "calls.txt"
    stand_in = tmp_path / "python"  # records every train.py call, one argument a line
    stand_in.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> {log}\necho ---- >> {log}\n")
    stand_in.chmod(0o755)
    proc = run_script("labs/mrpc_prompts.sh", grid_env(tmp_path, PYTHON=str(stand_in), SEEDS="1", EXTRA_ARGS=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("----\n") if "train.py" in c]
    assert len(calls) == 4
    for name, prompt in SEED_PROMPTS.items():
        [argv] = [c for c in calls if f"_prompt-{name}_pairs-1500/seed1" in c[c.index("--output_dir") + 1]]
        s1, s2 = "A cat sat.", "The cat sat."
        template = argv[argv.index("--prompt") + 1]
        assert template.format(sentence1=s1, sentence2=s2) == f"{prompt} Sentence 1: {s1} Sentence 2: {s2}"
        flags = dict(zip(argv[1::2], argv[2::2]))
        assert {k: flags[k] for k in ("--model_name_or_path", "--dataset_name", "--method", "--lora_r", "--lora_alpha",
                                      "--lora_dropout", "--lora_target_modules", "--per_device_train_batch_size",
                                      "--max_train_samples")} == {
            "--model_name_or_path": "smollm2", "--dataset_name": "mrpc", "--method": "lora", "--lora_r": "8",
            "--lora_alpha": "16", "--lora_dropout": "0.1", "--lora_target_modules": "q_proj,v_proj",
            "--per_device_train_batch_size": "8", "--max_train_samples": "1500"}


def lane_stand_in(tmp_path: Path, fail_seed: str = "") -> Path:
    """A stand-in python that logs each train.py call's seed, threads and start/end time (1 s apart); the
    run of `fail_seed` fails."""
    stand_in = tmp_path / "python"
    stand_in.write_text(f"""#!/bin/bash
case " $* " in *" train.py "*) ;; *) echo "$*" >> {tmp_path}/other.txt; exit 0 ;; esac
seed=$(printf '%s\\n' "$@" | grep -A1 -x -- --seed | tail -1)
echo "start $seed $OMP_NUM_THREADS $(date +%s.%N)" >> {tmp_path}/calls.txt
sleep 1
echo "end $seed $(date +%s.%N)" >> {tmp_path}/calls.txt
[[ "$seed" != "{fail_seed}" ]]
""")
    stand_in.chmod(0o755)
    return stand_in


def lane_env(tmp_path: Path, **overrides: str) -> dict:
    env = grid_env(tmp_path, PYTHON=str(lane_stand_in(tmp_path, overrides.pop("fail_seed", ""))),
                   PROMPTS="perfect", SEEDS="1 2 3", EXTRA_ARGS="", LANES="2", **overrides)
    env.pop("OMP_NUM_THREADS", None)
    return env


def test_lanes_run_two_at_a_time_each_on_its_share_of_the_cores(tmp_path):
    proc = run_script("labs/mrpc_prompts.sh", lane_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [line.split() for line in (tmp_path / "calls.txt").read_text().splitlines()]
    starts = {e[1]: (float(e[3]), e[2]) for e in events if e[0] == "start"}
    ends = {e[1]: float(e[2]) for e in events if e[0] == "end"}
    assert sorted(starts) == sorted(ends) == ["1", "2", "3"]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {t for _, t in starts.values()} == {str(threads)}
    times = sorted([(t, 1) for t, _ in starts.values()] + [(t, -1) for t in ends.values()])
    running = [sum(step for _, step in times[:i + 1]) for i in range(len(times))]
    assert max(running) == 2  # seeds 1 and 2 together, seed 3 once one of them ended
    base = tmp_path / "runs" / "mrpc" / "smollm2" / "lora_prompt-perfect_pairs-1500"
    assert all((base / f"seed{s}.log").is_file() for s in (1, 2, 3))
    assert "-m ftlab report" in (tmp_path / "other.txt").read_text()  # after every run ended


def test_a_failed_lane_run_ends_the_grid_with_its_log_named_and_no_report(tmp_path):
    proc = run_script("labs/mrpc_prompts.sh", lane_env(tmp_path, fail_seed="2"))
    base = tmp_path / "runs" / "mrpc" / "smollm2" / "lora_prompt-perfect_pairs-1500"
    assert proc.returncode == 1
    assert proc.stderr == f"error: 1 run(s) failed, see each one's log: {base}/seed2.log\n"
    assert (tmp_path / "calls.txt").read_text().count("end ") == 3  # the other seeds still ran
    assert "-m ftlab report" not in (tmp_path / "other.txt").read_text()


def test_lanes_must_be_a_positive_number(tmp_path):
    proc = run_script("labs/mrpc_prompts.sh", grid_env(tmp_path, LANES="two"))
    assert proc.returncode == 2
    assert proc.stderr == "error: LANES 'two' must be a positive number of runs side by side (e.g. LANES=2)\n"


@pytest.mark.slow
def test_mrpc_lab_puts_each_prompt_on_its_own_row(tmp_path, tiny_models):
    env = grid_env(tmp_path, MODEL=tiny_models("qwen2"), PROMPTS="none perfect", SEEDS="1")
    proc = run_script("labs/mrpc_prompts.sh", env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "runs" / "report" / "table.csv").open()))
    prompts = sorted(r["config.prompt"].strip() for r in rows)
    assert prompts == ["Does sentence 1 mean the same as sentence 2? Sentence 1: {sentence1} Sentence 2: {sentence2}",
                       "Sentence 1: {sentence1} Sentence 2: {sentence2}"]
    assert all(r["method"] == "lora" and r["dataset"] == "mrpc" for r in rows)


def test_run_sup_adds_each_sets_own_flags(tmp_path):
    """ACL-ARC runs get the class-balanced loss and macro-F1 selection (the svm only the loss weights);
    other sets get neither; the environment overrides the script's per-set flags."""
    log = tmp_path / "calls.txt"
    stand_in = tmp_path / "python"
    stand_in.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    stand_in.chmod(0o755)
    env = grid_env(tmp_path, PYTHON=str(stand_in), MODELS="m", DATASETS="acl_sup restaurant_sup",
                   METHODS="full svm", SEEDS="1", EXTRA_ARGS="")
    proc = run_script("run_sup.sh", env)
    assert proc.returncode == 0, proc.stderr
    calls = {(line.split(" --")[0], line.split("--dataset_name ")[1].split()[0]): line
             for line in log.read_text().splitlines() if "--dataset_name" in line}
    assert calls[("train.py", "acl_sup")].endswith("--class_weight balanced --metric_for_best_model macro_f1")
    assert calls[("-m ftlab baseline", "acl_sup")].endswith("--class_weight balanced --metric_for_best_model macro_f1")
    assert "--class_weight" not in calls[("train.py", "restaurant_sup")] + calls[("-m ftlab baseline", "restaurant_sup")]
    log.unlink()
    env.update(TRAIN_ARGS_acl_sup="", DATASETS="acl_sup", METHODS="full")
    assert run_script("run_sup.sh", env).returncode == 0
    assert "--class_weight" not in log.read_text()


def test_collect_records_copies_only_run_json_per_source(tmp_path):
    for src, runs in (("gridA", ["acl_sup/m/full/seed1", "acl_sup/m/full/seed2"]), ("gridB", ["acl_sup/m/lora/seed1"])):
        for run in runs:
            folder = tmp_path / src / run
            (folder / "checkpoint-5").mkdir(parents=True)
            (folder / "run.json").write_text(f'{{"run": "{src}/{run}"}}')
            (folder / "model.safetensors").write_text("weights")
            (folder / "checkpoint-5" / "run.json").write_text("{}")  # never copied
    dest = tmp_path / "records"
    proc = subprocess.run(["bash", str(ROOT / "labs" / "collect_records.sh"), str(dest), str(tmp_path / "gridA"),
                           str(tmp_path / "gridB")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == ["gridA/acl_sup/m/full/seed1/run.json", "gridA/acl_sup/m/full/seed2/run.json",
                      "gridB/acl_sup/m/lora/seed1/run.json"]
    assert (dest / "gridB/acl_sup/m/lora/seed1/run.json").read_text() == '{"run": "gridB/acl_sup/m/lora/seed1"}'
    bad = subprocess.run(["bash", str(ROOT / "labs" / "collect_records.sh"), str(dest), str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: source folder {tmp_path / 'nope'} does not exist"

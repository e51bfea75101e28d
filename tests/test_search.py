"""search.py: a seeded optuna study over train.py runs, objective on validation, resumable from disk."""
import json
import os
import subprocess
import sys

import yaml

import search
import train
from tests.test_train import FIXTURES, ROOT


def base_flags(model):
    return ["--model_name_or_path", model, "--dataset_name", "restaurant_sup", "--data_dir", FIXTURES,
            "--method", "lora", "--max_steps", "2", "--disable_tqdm", "true"]


def test_killed_study_resumes_without_repeating_finished_trials(tiny_models, tmp_path):
    study_dir = tmp_path / "study"
    argv = ["--study_dir", str(study_dir), "--n_trials", "3", "--max_epochs", "3", "--search_seed", "7",
            *base_flags(tiny_models("bert"))]
    # first process: trial 0 finishes, the process dies at the start of trial 1 (a kill)
    env = dict(os.environ, FTLAB_SEARCH_CRASH_AT_TRIAL="1", PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "search.py"), *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    first = json.loads((study_dir / "trial000" / "run.json").read_text())
    stamp = os.stat(study_dir / "trial000" / "run.json").st_mtime_ns
    assert set(first["metrics"]) == {"validation"}  # the test split is never scored in a trial
    assert not list((study_dir / "trial000").glob("*.safetensors"))  # weights dropped, run.json kept

    # second process (here in-process): resumes, fails the cut-off trial, finishes the study
    assert search.main(argv) == 0
    study = search.open_study(search.SearchArguments(study_dir=str(study_dir)), "maximize")
    states = [t.state.name for t in study.get_trials()]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert os.stat(study_dir / "trial000" / "run.json").st_mtime_ns == stamp  # trial 0 was not run again
    assert study.get_trials()[0].value == first["metrics"]["validation"]["accuracy"]

    table = (study_dir / "trials.md").read_text().splitlines()
    assert table[0] == "| trial | state | validation accuracy | settings |" and len(table) == 2 + 4
    assert "| 1 | fail |" in table[3] and "lora_r=" in table[2]

    best = yaml.safe_load((study_dir / "best.yaml").read_text())
    settings = study.best_trial.user_attrs["settings"]
    assert {k: best[k] for k in settings} == settings and best["method"] == "lora"
    model_args, data_args, method_args, _, targs = train.parse_args(
        [str(study_dir / "best.yaml"), "--output_dir", str(tmp_path / "final")])
    assert targs.learning_rate == settings["learning_rate"] and method_args.lora_r == settings["lora_r"]
    assert data_args.dataset_name == "restaurant_sup" and 1e-5 <= settings["learning_rate"] <= 5e-3


def test_space_is_seeded_and_per_method():
    import optuna

    def draws(method, seed):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return search.draw(study.ask(), method, max_epochs=5)

    assert draws("adapter", 1) == draws("adapter", 1) != draws("adapter", 2)
    assert set(draws("adapter", 1)) == {"learning_rate", "num_train_epochs", "warmup_ratio",
                                        "per_device_train_batch_size", "adapter_config", "reduction_factor"}
    lora = draws("lora", 3)
    assert lora["lora_alpha"] % lora["lora_r"] == 0 and 2 <= lora["num_train_epochs"] <= 5
    assert set(draws("full", 1)) == {"learning_rate", "num_train_epochs", "warmup_ratio", "per_device_train_batch_size"}

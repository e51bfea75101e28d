"""ftlab/analysis/search.py: a seeded optuna study over train.py runs, objective on validation, resumable from disk."""
import json
import os
import subprocess
import sys

import yaml

from ftlab.analysis import search
from ftlab.train import steps as train
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
    proc = subprocess.run([sys.executable, "-m", "ftlab", "search", *argv], env=env, cwd=ROOT,
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


def test_pruners_registry():
    import optuna
    import pytest

    median = search.make_pruner(search.SearchArguments(pruner="median", pruner_startup_trials=4,
                                                       pruner_warmup_epochs=2))
    assert isinstance(median, optuna.pruners.MedianPruner)
    # two epochs always train: evaluation 3 is the first that can be pruned
    assert (median._n_startup_trials, median._n_warmup_steps) == (4, 3)
    assert isinstance(search.make_pruner(search.SearchArguments()), optuna.pruners.NopPruner)
    with pytest.raises(ValueError, match=r"unknown --pruner 'hyperband'; valid: none, median"):
        search.make_pruner(search.SearchArguments(pruner="hyperband"))


def test_report_to_trial_reports_each_evaluation_and_raises_when_pruned():
    import optuna
    import pytest

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = study.ask()
    callback = search.ReportToTrial(trial, "macro_f1")
    callback.on_evaluate(None, None, None, metrics={"eval_macro_f1": 0.9})  # before training: no report
    callback.on_train_begin(None, None, None)
    callback.on_evaluate(None, None, None, metrics={"eval_loss": 0.3})  # not the searched metric: no report
    callback.on_evaluate(None, None, None, metrics={"eval_macro_f1": 0.7, "eval_loss": 0.3})
    with pytest.raises(optuna.TrialPruned, match=r"validation macro_f1 0\.4000 after evaluation 2"):
        callback.on_evaluate(None, None, None, metrics={"eval_macro_f1": 0.4})
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert study.trials[0].intermediate_values == {1: 0.7, 2: 0.4}


def test_pruned_trial_counts_toward_n_trials_and_leaves_no_weights(tiny_models, tmp_path, monkeypatch):
    import optuna

    class PruneTrialOne(optuna.pruners.BasePruner):  # stands in for the median: prunes trial 1 at evaluation 2
        def prune(self, study, trial):
            return trial.number == 1 and trial.last_step == 2

    monkeypatch.setitem(search.PRUNERS, "median", lambda sargs: PruneTrialOne())
    study_dir = tmp_path / "study"
    # 2 epochs a trial (66 examples): epoch 1 saves a checkpoint, trial 1 is pruned after epoch 2's evaluation
    flags = base_flags(tiny_models("bert"))
    flags = flags[:flags.index("--max_steps")] + flags[flags.index("--max_steps") + 2:]
    argv = ["--study_dir", str(study_dir), "--n_trials", "2", "--max_epochs", "2", "--search_seed", "3",
            "--pruner", "median", *flags]
    assert search.main(argv) == 0

    study = search.open_study(search.SearchArguments(study_dir=str(study_dir)), "maximize")
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "PRUNED"]  # 2 in all, not 3
    pruned = study.get_trials()[1]
    assert list(pruned.intermediate_values) == [1, 2] and pruned.user_attrs["settings"]["lora_r"] in (4, 8, 16)
    trial1 = study_dir / "trial001"
    assert not (trial1 / "run.json").exists()  # stopped inside training
    assert not list(trial1.glob("checkpoint-*")) and not list(trial1.glob("*.safetensors"))
    row = (study_dir / "trials.md").read_text().splitlines()[3]
    assert row.startswith(f"| 1 | pruned | {pruned.intermediate_values[2]:.4f} (evaluation 2) | learning_rate=")
    assert study.best_trial.number == 0
    # trial 0 reported its 2 epochs, not train.py's validation scoring after training
    assert list(study.get_trials()[0].intermediate_values) == [1, 2]
    assert (study_dir / "best.yaml").read_text().startswith("# Best of 1 finished trial (trial 0")


def test_trial_seeds_scores_the_mean_and_a_study_keeps_its_count(tiny_models, tmp_path, capsys, monkeypatch):
    """Each trial trains --seed, --seed + 1 (train.run stands in: validation accuracy = seed / 10, a value per
    seed by hand); the objective is their mean, trials.md shows the parts, a resume with another count fails."""
    calls = []

    def fake_run(model_args, data_args, method_args, extra, targs, callbacks=()):
        calls.append((targs.seed, targs.output_dir, len(callbacks)))
        return {"metrics": {"validation": {"accuracy": targs.seed / 10}}}

    monkeypatch.setattr(search.train, "run", fake_run)
    study_dir = tmp_path / "study"
    argv = ["--study_dir", str(study_dir), "--n_trials", "2", "--max_epochs", "2", "--search_seed", "1",
            "--trial_seeds", "2", *base_flags(tiny_models("bert")), "--seed", "5"]
    assert search.main(argv) == 0

    # two trials x seeds 5 and 6, each in its own folder; only a trial's first seed reports to the pruner
    assert calls == [(seed, str(study_dir / f"trial{t:03d}" / f"seed{seed}"), 1 if seed == 5 else 0)
                     for t in (0, 1) for seed in (5, 6)]
    trial = search.open_study(search.SearchArguments(study_dir=str(study_dir)), "maximize").get_trials()[0]
    assert trial.value == (0.5 + 0.6) / 2 and trial.user_attrs["per_seed"] == {"5": 0.5, "6": 0.6}
    row = (study_dir / "trials.md").read_text().splitlines()[2]
    assert row.startswith("| 0 | complete | 0.5500 (seed 5: 0.5000, seed 6: 0.6000) | learning_rate=")
    assert "validation accuracy 0.5500, the mean of 2 seeds)" in (study_dir / "best.yaml").read_text().splitlines()[0]

    # resuming with another count would mix means of 2 seeds with single runs: refused, one line
    capsys.readouterr()
    resume = ["--study_dir", str(study_dir), "--n_trials", "3", *base_flags(tiny_models("bert"))]  # 1 seed
    assert search.main(resume) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (f"error: {study_dir} was started with --trial_seeds 2; "
                                                        "resume it with 2 or give a new --study_dir")
    assert len(calls) == 4
    assert search.main(["--trial_seeds", "0", *resume]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "error: --trial_seeds 0: must be >= 1"

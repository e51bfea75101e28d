"""Seeded, resumable hyper-parameter search for one (model, data set, method) on validation.

    uv run ftlab search --dataset_name restaurant_sup --method lora --n_trials 20 --study_dir outputs/search/rest_lora
    uv run ftlab search ... (same command again)      # resumes: finished trials are kept, a killed one is retried
    uv run train.py outputs/search/rest_lora/best.yaml --seed 1   # train with the best settings

Each trial is one train.py run (every train.py flag works here and stays fixed) with settings drawn
by optuna's TPE sampler (seeded by --search_seed) from the method's space below; the objective is
`--metric_for_best_model` on the validation split (the set must have one: --validation_from_train
makes one), the test split is never scored. The study lives in STUDY_DIR/study.db (sqlite): a killed
search resumes where it stopped; the trial that was running is marked failed and its settings are
tried again. Writes STUDY_DIR/trials.md (every trial: settings, validation metric) and best.yaml.

`--pruner median` stops a trial early when its validation metric after an evaluation is worse than the
median of the earlier trials' at the same epoch (optuna's MedianPruner, as Trainer.hyperparameter_search
does with the optuna backend); a pruned trial counts toward --n_trials and never becomes best.yaml.

`--trial_seeds N` trains each drawn setting with seeds --seed, --seed + 1, ... (STUDY_DIR/trialNNN/seedS)
and scores it by the mean validation metric: on a small validation set one seed's lucky epoch can win a
search that its other seeds do not repeat (the best of 10 adapter trials, 0.7467 on seed 1, averaged 0.7222
over seeds 1-3: results/search/adapter_search.md). With a pruner only the first seed reports its epochs.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from transformers import HfArgumentParser, TrainerCallback

from ftlab import commandline
from ftlab.commandline import one_line_errors
from ftlab.io import write_atomic
from ftlab.methods.registry import get_method
from ftlab.train import steps as train

# Imported inside functions: optuna and yaml load only inside a search (heavy, and `--help` needs neither).

logger = logging.getLogger("ftlab.search")


# the least value of each count (trials draw 2..max_epochs epochs)
SEARCH_MINIMUMS = {"n_trials": 1, "trial_seeds": 1, "max_epochs": 2, "pruner_startup_trials": 0,
                   "pruner_warmup_epochs": 0}


@dataclass
class SearchArguments:
    study_dir: str = field(default="outputs/search", metadata={
        "help": "Folder of the study: study.db (optuna, sqlite), one folder per trial, trials.md, best.yaml."})
    n_trials: int = field(default=12, metadata={"help": "Finished trials the study should hold."})
    search_seed: int = field(default=0, metadata={"help": "Seed of the TPE sampler (the draws)."})
    max_epochs: int = field(default=10, metadata={"help": "Upper bound of the epochs drawn."})
    keep_trial_models: bool = field(default=False, metadata={
        "help": "Keep each trial's saved model (default: only run.json, to save disk)."})
    pruner: str = field(default="none", metadata={
        "help": "Stop unpromising trials early: none, or median (optuna's MedianPruner on the validation "
                "metric of each evaluation)."})
    pruner_startup_trials: int = field(default=3, metadata={
        "help": "median: trials that run to the end before any trial is pruned."})
    pruner_warmup_epochs: int = field(default=2, metadata={
        "help": "median: epochs (evaluations) every trial trains before it can be pruned."})
    trial_seeds: int = field(default=1, metadata={
        "help": "Seeds each trial trains (--seed, --seed + 1, ...); the objective is their mean validation "
                "metric. A study keeps the value it was started with."})

    def __post_init__(self):
        # before the study exists: --n_trials 0 used to leave a half-made study.db and "Record does not exist."
        for flag, least in SEARCH_MINIMUMS.items():
            commandline.require(getattr(self, flag) >= least, f"--{flag} {getattr(self, flag)}: must be >= {least}")
        commandline.require(self.pruner in PRUNERS, commandline.unknown_choice("--pruner", self.pruner, list(PRUNERS)))
        commandline.require(not os.path.isfile(self.study_dir), f"--study_dir {self.study_dir} is a file: pass a folder")


# ---- the spaces: what each method's trial draws (learning rate around the method's default)

def _common(trial, method: str, max_epochs: int) -> Dict[str, Any]:
    default_lr = get_method(method).learning_rate
    return {"learning_rate": trial.suggest_float("learning_rate", default_lr / 10, default_lr * 10, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", 2, max(2, max_epochs)),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
            "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [16, 32])}


def _lora(trial) -> Dict[str, Any]:
    r = trial.suggest_categorical("lora_r", [4, 8, 16])
    return {"lora_r": r, "lora_alpha": r * trial.suggest_categorical("lora_alpha_over_r", [1, 2, 4])}


def _adapter(trial) -> Dict[str, Any]:
    # placement too: after the FFN (pfeiffer), after attention and FFN (houlsby), beside the FFN (parallel)
    return {"adapter_config": trial.suggest_categorical("adapter_config", ["pfeiffer", "houlsby", "parallel"]),
            "reduction_factor": trial.suggest_categorical("reduction_factor", [4, 8, 16, 32])}


METHOD_SPACES: Dict[str, Callable[[Any], Dict[str, Any]]] = {
    "lora": _lora, "lora_scratch": _lora, "qlora": _lora, "adapter": _adapter,
}


def draw(trial, method: str, max_epochs: int) -> Dict[str, Any]:
    """train.py settings for one trial: the common ones and the method's own."""
    space = METHOD_SPACES.get(method)
    return {**_common(trial, method, max_epochs), **(space(trial) if space else {})}


# ---- pruning: a trial reports each evaluation; the pruner may stop it

def _median_pruner(sargs: SearchArguments):
    import optuna

    # optuna prunes from step == n_warmup_steps on; steps are evaluations 1, 2, ...
    return optuna.pruners.MedianPruner(n_startup_trials=sargs.pruner_startup_trials,
                                       n_warmup_steps=sargs.pruner_warmup_epochs + 1)


def _no_pruner(sargs: SearchArguments):
    import optuna

    return optuna.pruners.NopPruner()


PRUNERS: Dict[str, Callable[[SearchArguments], Any]] = {"none": _no_pruner, "median": _median_pruner}


def make_pruner(sargs: SearchArguments):
    if sargs.pruner not in PRUNERS:
        raise ValueError(f"unknown --pruner {sargs.pruner!r}; valid: {', '.join(PRUNERS)}")
    return PRUNERS[sargs.pruner](sargs)


class ReportToTrial(TrainerCallback):
    """After each evaluation: the validation metric to the optuna trial, at step = evaluations so far
    (epochs, with train.py's per-epoch evaluation: comparable across batch sizes, unlike global steps);
    raises optuna.TrialPruned out of trainer.train() when the pruner says so. Only evaluations during
    training count: train.py's final validation scoring (the restored best model) is not an epoch."""

    def __init__(self, trial, metric: str):
        self.trial, self.key, self.evaluations, self.training = trial, f"eval_{metric}", 0, False

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = True

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        import optuna

        if not self.training or not metrics or self.key not in metrics:
            return
        self.evaluations += 1
        self.trial.report(float(metrics[self.key]), step=self.evaluations)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation {self.key[5:]} {metrics[self.key]:.4f} after evaluation "
                                     f"{self.evaluations}: below the pruner's mark")


# ---- one trial = one train.py run

def trial_argv(base_argv: Sequence[str], settings: Dict[str, Any], out_dir: str) -> List[str]:
    """train.py flags: the user's fixed ones, then the drawn ones (the last wins), no test scoring."""
    drawn = [f"--{k}={v}" for k, v in settings.items()]
    return [*base_argv, *drawn, "--output_dir", out_dir, "--overwrite_output_dir", "true",
            "--score_test", "false", "--do_predict", "false", "--save_total_limit", "1", "--report_to", "none"]


def objective_for(base_argv: Sequence[str], sargs: SearchArguments, method: str, metric: str, first_seed: int):
    def objective(trial) -> float:
        crash_at = os.environ.get("FTLAB_SEARCH_CRASH_AT_TRIAL")  # test hook: die like a killed process
        if crash_at is not None and trial.number == int(crash_at):
            os._exit(1)
        settings = draw(trial, method, sargs.max_epochs)
        trial.set_user_attr("settings", settings)
        trial_dir = os.path.join(sargs.study_dir, f"trial{trial.number:03d}")
        per_seed: Dict[str, float] = {}
        for seed in range(first_seed, first_seed + sargs.trial_seeds):
            out = trial_dir if sargs.trial_seeds == 1 else os.path.join(trial_dir, f"seed{seed}")
            # optuna takes one curve a trial: the first seed's
            callbacks = [ReportToTrial(trial, metric)] if seed == first_seed else []
            per_seed[str(seed)] = trial_value(base_argv, settings, seed, out, sargs, metric, callbacks)
        trial.set_user_attr("per_seed", per_seed)
        return sum(per_seed.values()) / len(per_seed)
    return objective


def trial_value(base_argv: Sequence[str], settings: Dict[str, Any], seed: int, out: str,
                sargs: SearchArguments, metric: str, callbacks: List[Any]) -> float:
    """One train.py run of a trial's settings with one seed: its validation metric."""
    argv = trial_argv([*base_argv, "--seed", str(seed)], settings, out)
    try:
        record = train.run(*train.parse_args(argv), callbacks=callbacks)
    finally:  # a pruned trial leaves its checkpoints too
        if not sargs.keep_trial_models and os.path.isdir(out):
            _drop_weights(out)
    value = record["metrics"].get("validation", {}).get(metric)
    if value is None:
        raise ValueError(f"no validation {metric} in {out}/run.json: the set needs a validation split "
                         "(add --validation_from_train 0.1)")
    return float(value)


def _drop_weights(folder: str) -> None:
    for name in os.listdir(folder):
        if name.endswith((".safetensors", ".bin")) or name.startswith("checkpoint-"):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                            shutil.rmtree(path)
            else:
                os.remove(path)


# ---- the study

def open_study(sargs: SearchArguments, direction: str):
    """The on-disk study; a trial left RUNNING by a killed process is failed and queued again."""
    import optuna
    from optuna.trial import TrialState

    os.makedirs(sargs.study_dir, exist_ok=True)
    storage = f"sqlite:///{os.path.abspath(os.path.join(sargs.study_dir, 'study.db'))}"
    study = optuna.create_study(study_name="ftlab", storage=storage, direction=direction, load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=sargs.search_seed),
                                pruner=make_pruner(sargs))
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        logger.info("trial %d was cut off: failed, its settings queued again", stale.number)
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(stale.params, skip_if_exists=False)
    return study


def finished(study) -> List[Any]:
    """Trials that ran to the end (the ones best.yaml is chosen from)."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def done(study) -> List[Any]:
    """Trials that count toward --n_trials: finished or pruned."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def trials_table(study, metric: str) -> str:
    rows = ["| trial | state | validation " + metric + " | settings |", "|---|---|---|---|"]
    for t in study.get_trials(deepcopy=False):
        value = "" if t.value is None else f"{t.value:.4f}"
        per_seed = t.user_attrs.get("per_seed") or {}
        if len(per_seed) > 1:  # the mean's parts, seed by seed
            value += " (" + ", ".join(f"seed {k}: {v:.4f}" for k, v in per_seed.items()) + ")"
        if t.state.name == "PRUNED" and t.intermediate_values:  # optuna keeps the last report as its value
            value += f" (evaluation {max(t.intermediate_values)})"
        settings = ", ".join(f"{k}={_fmt(v)}" for k, v in (t.user_attrs.get("settings") or t.params).items())
        rows.append(f"| {t.number} | {t.state.name.lower()} | {value} | {settings} |")
    return "\n".join(rows) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) and not math.isnan(value) else str(value)


def best_config(study, fixed: Dict[str, Any]) -> str:
    """A YAML that `train.py best.yaml` accepts: the fixed flags and the best trial's settings."""
    import yaml

    best = study.best_trial
    config = {**fixed, **best.user_attrs["settings"]}
    n = len(finished(study))
    seeds = study.user_attrs.get("trial_seeds", 1)
    mean = f", the mean of {seeds} seeds" if seeds > 1 else ""
    header = (f"# Best of {n} finished trial{'' if n == 1 else 's'} (trial {best.number}, validation "
              f"{study.user_attrs.get('metric', 'metric')} {best.value:.4f}{mean}), written by `ftlab search`.\n"
              "#   uv run train.py THIS_FILE --seed 1\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def fixed_settings(argv_args) -> Dict[str, Any]:
    model, data, method, _, _ = argv_args
    out = {"model_name_or_path": model.model_name_or_path, "dataset_name": data.dataset_name,
           "method": method.method}
    if data.max_length:  # unset: train.py takes the set's schedule or its default
        out["max_length"] = data.max_length
    if data.data_dir:
        out["data_dir"] = data.data_dir
    if data.validation_from_train:
        out["validation_from_train"] = data.validation_from_train
    if data.validation:
        out["validation"] = data.validation
    return out


def parse_args(argv: Sequence[str]):
    """(SearchArguments, train.py flags left for every trial)."""
    parser = HfArgumentParser(SearchArguments, prog="ftlab search")
    sargs, rest = commandline.parse_dataclasses(parser, list(argv), return_remaining_strings=True)
    return sargs, rest


def keep_trial_seeds(study, sargs: SearchArguments) -> None:
    """A study's trials are means over one number of seeds: resuming with another would mix them."""
    started = study.user_attrs.get("trial_seeds")
    if started is None and done(study):
        started = 1  # a study from before the flag: one seed a trial
    if started is not None and started != sargs.trial_seeds:
        raise ValueError(f"{sargs.study_dir} was started with --trial_seeds {started}; resume it with "
                         f"{started} or give a new --study_dir")
    study.set_user_attr("trial_seeds", sargs.trial_seeds)


def search(argv: Sequence[str]) -> Dict[str, Any]:
    sargs, base_argv = parse_args(argv)
    base = train.parse_args(list(base_argv) + ["--output_dir", os.path.join(sargs.study_dir, "probe")])
    metric = base[-1].metric_for_best_model or "accuracy"
    study = open_study(sargs, "minimize" if metric.endswith("loss") else "maximize")
    study.set_user_attr("metric", metric)
    keep_trial_seeds(study, sargs)
    remaining = sargs.n_trials - len(done(study))
    if remaining > 0:
        study.optimize(objective_for(base_argv, sargs, base[2].method, metric, base[-1].seed),
                       n_trials=remaining, catch=(RuntimeError,))
    write_atomic(os.path.join(sargs.study_dir, "trials.md"), trials_table(study, metric))
    write_atomic(os.path.join(sargs.study_dir, "best.yaml"), best_config(study, fixed_settings(base)))
    return {"best_value": study.best_value, "best_trial": study.best_trial.number,
            "finished": len(finished(study)), "pruned": len(done(study)) - len(finished(study)),
            "study_dir": sargs.study_dir}


@one_line_errors()
def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = search(sys.argv[1:] if argv is None else argv)
    print(f"best validation value {out['best_value']:.4f} (trial {out['best_trial']}, {out['finished']} finished, "
          f"{out['pruned']} pruned); "
          f"{out['study_dir']}/best.yaml, {out['study_dir']}/trials.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

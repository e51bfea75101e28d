"""Seeded, resumable hyper-parameter search for one (model, data set, method) on validation.

    uv run search.py --dataset_name restaurant_sup --method lora --n_trials 20 --study_dir outputs/search/rest_lora
    uv run search.py ... (same command again)      # resumes: finished trials are kept, a killed one is retried
    uv run train.py outputs/search/rest_lora/best.yaml --seed 1   # train with the best settings

Each trial is one train.py run (every train.py flag works here and stays fixed) with settings drawn
by optuna's TPE sampler (seeded by --search_seed) from the method's space below; the objective is
`--metric_for_best_model` on the validation split (the set must have one: --validation_from_train
makes one), the test split is never scored. The study lives in STUDY_DIR/study.db (sqlite): a killed
search resumes where it stopped; the trial that was running is marked failed and its settings are
tried again. Writes STUDY_DIR/trials.md (every trial: settings, validation metric) and best.yaml.
"""
from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from transformers import HfArgumentParser

import train
from ftio import write_atomic
from methods import get_method

logger = logging.getLogger("ftlab.search")


@dataclass
class SearchArguments:
    study_dir: str = field(default="outputs/search", metadata={
        "help": "Folder of the study: study.db (optuna, sqlite), one folder per trial, trials.md, best.yaml."})
    n_trials: int = field(default=12, metadata={"help": "Finished trials the study should hold."})
    search_seed: int = field(default=0, metadata={"help": "Seed of the TPE sampler (the draws)."})
    max_epochs: int = field(default=10, metadata={"help": "Upper bound of the epochs drawn."})
    keep_trial_models: bool = field(default=False, metadata={
        "help": "Keep each trial's saved model (default: only run.json, to save disk)."})


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
            "reduction_factor": trial.suggest_categorical("reduction_factor", [8, 16, 32])}


METHOD_SPACES: Dict[str, Callable[[Any], Dict[str, Any]]] = {
    "lora": _lora, "lora_scratch": _lora, "qlora": _lora, "adapter": _adapter,
}


def draw(trial, method: str, max_epochs: int) -> Dict[str, Any]:
    """train.py settings for one trial: the common ones and the method's own."""
    space = METHOD_SPACES.get(method)
    return {**_common(trial, method, max_epochs), **(space(trial) if space else {})}


# ---- one trial = one train.py run

def trial_argv(base_argv: Sequence[str], settings: Dict[str, Any], out_dir: str) -> List[str]:
    """train.py flags: the user's fixed ones, then the drawn ones (the last wins), no test scoring."""
    drawn = [f"--{k}={v}" for k, v in settings.items()]
    return [*base_argv, *drawn, "--output_dir", out_dir, "--overwrite_output_dir", "true",
            "--score_test", "false", "--do_predict", "false", "--save_total_limit", "1", "--report_to", "none"]


def objective_for(base_argv: Sequence[str], sargs: SearchArguments, method: str, metric: str):
    def objective(trial) -> float:
        crash_at = os.environ.get("FTLAB_SEARCH_CRASH_AT_TRIAL")  # test hook: die like a killed process
        if crash_at is not None and trial.number == int(crash_at):
            os._exit(1)
        settings = draw(trial, method, sargs.max_epochs)
        out = os.path.join(sargs.study_dir, f"trial{trial.number:03d}")
        record = train.run(*train.parse_args(trial_argv(base_argv, settings, out)))
        trial.set_user_attr("settings", settings)
        if not sargs.keep_trial_models:
            _drop_weights(out)
        value = record["metrics"].get("validation", {}).get(metric)
        if value is None:
            raise ValueError(f"no validation {metric} in {out}/run.json: the set needs a validation split "
                             "(add --validation_from_train 0.1)")
        return float(value)
    return objective


def _drop_weights(folder: str) -> None:
    for name in os.listdir(folder):
        if name.endswith((".safetensors", ".bin")) or name.startswith("checkpoint-"):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                import shutil

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
                                sampler=optuna.samplers.TPESampler(seed=sargs.search_seed))
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        logger.info("trial %d was cut off: failed, its settings queued again", stale.number)
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(stale.params, skip_if_exists=False)
    return study


def finished(study) -> List[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def trials_table(study, metric: str) -> str:
    rows = ["| trial | state | validation " + metric + " | settings |", "|---|---|---|---|"]
    for t in study.get_trials(deepcopy=False):
        value = "" if t.value is None else f"{t.value:.4f}"
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
    header = (f"# Best of {len(finished(study))} trials (trial {best.number}, validation "
              f"{study.user_attrs.get('metric', 'metric')} {best.value:.4f}), written by search.py.\n"
              "#   uv run train.py THIS_FILE --seed 1\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def fixed_settings(argv_args) -> Dict[str, Any]:
    model, data, method, _, _ = argv_args
    out = {"model_name_or_path": model.model_name_or_path, "dataset_name": data.dataset_name,
           "method": method.method, "max_length": data.max_length}
    if data.data_dir:
        out["data_dir"] = data.data_dir
    if data.validation_from_train:
        out["validation_from_train"] = data.validation_from_train
    return out


def parse_args(argv: Sequence[str]):
    """(SearchArguments, train.py flags left for every trial)."""
    parser = HfArgumentParser(SearchArguments)
    sargs, rest = parser.parse_args_into_dataclasses(args=list(argv), return_remaining_strings=True)
    return sargs, rest


def search(argv: Sequence[str]) -> Dict[str, Any]:
    sargs, base_argv = parse_args(argv)
    base = train.parse_args(list(base_argv) + ["--output_dir", os.path.join(sargs.study_dir, "probe")])
    metric = base[-1].metric_for_best_model or "accuracy"
    study = open_study(sargs, "minimize" if metric.endswith("loss") else "maximize")
    study.set_user_attr("metric", metric)
    remaining = sargs.n_trials - len(finished(study))
    if remaining > 0:
        study.optimize(objective_for(base_argv, sargs, base[2].method, metric), n_trials=remaining,
                       catch=(RuntimeError,))
    write_atomic(os.path.join(sargs.study_dir, "trials.md"), trials_table(study, metric))
    write_atomic(os.path.join(sargs.study_dir, "best.yaml"), best_config(study, fixed_settings(base)))
    return {"best_value": study.best_value, "best_trial": study.best_trial.number,
            "finished": len(finished(study)), "study_dir": sargs.study_dir}


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        out = search(sys.argv[1:] if argv is None else argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"best validation value {out['best_value']:.4f} (trial {out['best_trial']}, {out['finished']} finished); "
          f"{out['study_dir']}/best.yaml, {out['study_dir']}/trials.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

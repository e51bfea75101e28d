"""The body of train.py: one training run from flags to OUTPUT_DIR/run.json, as named steps
(load_data, get_model (ftlab/models/build.py), tokenize_data, head_on_features, build_trainer
(ftlab/train/trainer.py), run, main). Flags: ftlab/train/arguments.py.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import transformers
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_callback import ExportableState, TrainerState
from transformers.trainer_utils import IntervalStrategy, TrainOutput

from ftlab import commandline
from ftlab.data.datasets import load_for_run, schedule_for, sep_token_for
from ftlab.io import hold_folder, read_text, remove_stray_temps, write_atomic
from ftlab.methods.registry import BoundMethod, MethodArguments, bind_method, count_parameters
from ftlab.metrics.classification import SCORE_NAMES
from ftlab.models.build import get_model
from ftlab.models.checkpoints import load_tokenizer, resolve_model_name
from ftlab.runs import modelcard, tracking
from ftlab.runs.record import (
    TRAINER_STATE,
    PeakMemory,
    build_record,
    complete_checkpoints,
    finished_record,
    write_record,
)
from ftlab.speed import headcache
from ftlab.speed.apply import apply_speedups
from ftlab.train.arguments import (
    DEFAULT_MAX_LENGTH,
    DataArguments,
    FtTrainingArguments,
    ModelArguments,
    RunArguments,
    TrainArgs,
    parse_args,
)
from ftlab.train.trainer import build_trainer

logger = logging.getLogger("ftlab.train")

METRIC_KEYS = (*SCORE_NAMES, "loss")


# ---------------------------------------------------------------- named steps

def load_data(dataset_name: str | List[str], sep_token: str = "<SEP>", data_dir: Optional[str] = None,
              prompt: Optional[str] = None, validation: Optional[str] = None):
    """(DatasetDict with text/label, number of labels) from dataHelper; 'a,b' aggregates sets."""
    return load_for_run(dataset_name, sep_token, data_dir, prompt=prompt, validation=validation)


def limit_samples(data, data_args: DataArguments, seed: int):
    """Apply --max_train_samples / --max_eval_samples / --validation_from_train."""
    if data_args.validation_from_train > 0 and "validation" not in data:
        split = data["train"].train_test_split(test_size=data_args.validation_from_train, seed=seed)
        data["train"], data["validation"] = split["train"], split["test"]
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_eval_samples}
    for split, n in limits.items():
        if n is not None and split in data and n < len(data[split]):
            data[split] = data[split].select(range(n))
    return data


def tokenize_data(data, tokenizer, max_length: int = 128, pad_to_max_length: bool = False):
    """Token ids for every split (datasets.map, batched, cached on disk when the data is)."""
    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length,
                         padding="max_length" if pad_to_max_length else False)

    return data.map(encode, batched=True, remove_columns=["text"], desc="tokenize")


def head_on_features(model, tokenizer, tokenized, method: BoundMethod, targs: TrainingArguments):
    """(what Trainer trains, what it reads, seconds of the body per split): for head-only on a supported
    architecture the model's head and the frozen body's features computed once (headcache.py); else the
    model and the token ids."""
    if method.name != "head" or not method.args.head_cache_features:
        return model, tokenized, {}
    if not headcache.supports(model):
        logger.info("head: no cached-feature path for model type %r: the body runs at every step",
                    model.config.model_type)
        method.args.head_cache_features = False
        return model, tokenized, {}
    features, seconds = headcache.feature_splits(model.to(targs.device), tokenized, tokenizer,
                                                 targs.per_device_eval_batch_size, targs.bf16)
    return headcache.FeatureHead(model), features, seconds


def save_final_model(trainer: Trainer, tokenizer) -> None:
    """The whole model to output_dir (a FeatureHead trained only the head: save the model it belongs to)."""
    if not isinstance(trainer.model, headcache.FeatureHead):
        trainer.save_model()
    elif trainer.is_world_process_zero():
        trainer.model.model.save_pretrained(trainer.args.output_dir)
        tokenizer.save_pretrained(trainer.args.output_dir)


# ---------------------------------------------------------------- run plumbing

def bind_for_run(method_args: MethodArguments, data_args: DataArguments) -> BoundMethod:
    """bind_method with the data set's own schedule for the method (its LoRA dropout, where it sets one)."""
    return bind_method(method_args, schedule_for(data_args.dataset_name, method_args.method))


def finalize_training_args(targs: FtTrainingArguments, model_args: ModelArguments, data_args: DataArguments,
                           method: BoundMethod, has_validation: bool) -> None:
    """Resolve the defaults that depend on the other arguments."""
    if targs.auto_output_dir:
        model_tag = os.path.basename(os.path.normpath(model_args.model_name_or_path))
        targs.output_dir = os.path.join("outputs", data_args.dataset_name.replace(",", "+"), method.name,
                                        model_tag, f"seed{targs.seed}")
        targs.logging_dir = os.path.join(targs.output_dir, "logs")
    schedule = schedule_for(data_args.dataset_name, method.name)  # the set's own, where it has one
    if data_args.max_length is None:
        data_args.max_length = schedule.get("max_length", DEFAULT_MAX_LENGTH)
    if targs.learning_rate is None:
        targs.learning_rate = method.learning_rate
    if targs.num_train_epochs is None:
        targs.num_train_epochs = schedule.get("num_train_epochs", method.epochs)
    for key, value in method.training_overrides.items():
        setattr(targs, key, value)
    if not has_validation and targs.eval_strategy != IntervalStrategy.NO:
        logger.info("no validation split: no per-epoch evaluation or best-model selection "
                    "(--validation_from_train 0.1 holds out part of train); the last model is tested")
        targs.eval_strategy = IntervalStrategy.NO
        targs.load_best_model_at_end = False


def old_run_files(targs: TrainingArguments) -> List[str]:
    """The files of an earlier run in output_dir that this run would mix with (none when it resumes); without
    --overwrite_output_dir a ValueError. Reads only: run() asks before it locks the folder, and again under the lock."""
    out = targs.output_dir
    if not os.path.isdir(out) or resume_asked(targs):
        return []
    old = [n for n in os.listdir(out) if n == "run.json" or n.startswith("checkpoint-")]
    if old and not targs.overwrite_output_dir:
        raise ValueError(f"output dir {out} holds another run ({', '.join(sorted(old)[:3])}); pass "
                         "--overwrite_output_dir, --resume_from_checkpoint true, or another --output_dir")
    return old


def check_output_dir(targs: TrainingArguments) -> None:
    """Refuse to mix two runs in one folder; with --overwrite_output_dir clear the old run's files."""
    old = old_run_files(targs)
    out = targs.output_dir
    if targs.process_index == 0:
        for name in old:
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def resume_asked(targs: TrainingArguments) -> Optional[str]:
    """None (no resume), "last" (true / last / yes: the newest complete checkpoint) or the checkpoint path given."""
    value = targs.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "no"):
        return None
    return "last" if str(value).lower() in ("true", "last", "yes") else str(value)


def resume_target(targs: TrainingArguments) -> Optional[str]:
    """The checkpoint to resume from: a path as given, or (true) the newest complete one in output_dir. A torn
    checkpoint (killed inside its write: no trainer_state.json, weights cut short) is named and, by process 0,
    removed, so that neither this resume nor a later one reads it."""
    asked = resume_asked(targs)
    if asked != "last":
        return asked
    good, torn = complete_checkpoints(targs.output_dir)
    for path, flaw in torn.items():
        logger.warning("skipping %s: incomplete (%s), killed while it was written", path, flaw)
        if targs.process_index == 0:
            shutil.rmtree(path, ignore_errors=True)
    if not good:
        raise ValueError(f"--resume_from_checkpoint true: no complete checkpoint in {targs.output_dir}; run without "
                         "it to start over (--overwrite_output_dir clears the folder)")
    logger.info("resuming from %s%s", good[0], " (the newest complete checkpoint)" if torn else "")
    return good[0]


OUTPUT_DIR_IN_USE_FIX = "wait for it to end, or pass another --output_dir"


def hold_output_dir(targs: TrainingArguments):
    """One run per output folder: process 0 holds an OS lock on OUTPUT_DIR/.lock from before the first write
    into the folder to after run.json's (ftio.hold_folder: the kernel drops it when the process dies). The
    other processes of a torchrun/accelerate run write only through process 0 and take no lock."""
    if targs.process_index != 0:
        return contextlib.nullcontext()
    return hold_folder(targs.output_dir, "output dir", OUTPUT_DIR_IN_USE_FIX)


def tidy_output_dir(targs: TrainingArguments) -> None:
    """Remove the temp files of atomic writes a killed run left (a `.run.json.*.tmp` from a kill at the rename);
    process 0, under the folder's lock, so no live writer owns them."""
    if targs.process_index != 0:
        return
    for name in remove_stray_temps(targs.output_dir):
        logger.info("removed %s: a temp file a killed run left", os.path.join(targs.output_dir, name))


def finished_run(targs: TrainingArguments) -> Optional[dict]:
    """A resume of a run whose run.json is complete: that record (nothing trains, nothing is rewritten)."""
    if resume_asked(targs) is None:
        return None
    record = finished_record(targs.output_dir)
    if record is not None:
        logger.info("%s holds a finished run (run.json complete): nothing to resume", targs.output_dir)
    return record


def train_or_finish(trainer: Trainer, resumed_from: Optional[str]) -> TrainOutput:
    """trainer.train (resumed from `resumed_from`), or, when that checkpoint ended its run's training (a kill
    after it, in evaluation or at run.json's rename), its model and state without training: transformers would
    train one more step past it."""
    state = None
    if resumed_from is not None and os.path.isfile(os.path.join(resumed_from, TRAINER_STATE)):
        state = TrainerState.load_from_json(os.path.join(resumed_from, TRAINER_STATE))
    if state is None or not training_ended(state, trainer.args):
        return trainer.train(resume_from_checkpoint=resumed_from)
    logger.info("%s ended training (step %d): scoring it without another step", resumed_from, state.global_step)
    trainer._load_from_checkpoint(resumed_from)
    trainer.state = state
    if trainer.args.load_best_model_at_end and state.best_model_checkpoint:
        trainer._load_best_model()  # what the end of trainer.train does
    SegmentClock.of(trainer).earlier = SegmentClock.saved(state)
    return TrainOutput(state.global_step, float("nan"), {"train_runtime": 0.0})


def training_ended(state: TrainerState, targs: TrainingArguments) -> bool:
    """A checkpoint's state at the end of training: the step budget reached (the current --max_steps, else the
    schedule the checkpoint planned), or a callback (early stopping) stopped training before it was saved."""
    control = (state.stateful_callbacks.get("TrainerControl") or {}).get("args") or {}
    budget = targs.max_steps if targs.max_steps > 0 else state.max_steps
    return state.global_step >= budget or bool(control.get("should_training_stop"))


def run_samples(trainer: Trainer) -> float:
    """The training samples of the whole run, as transformers counts them for samples/s."""
    args = trainer.args
    if args.max_steps > 0:
        return float(args.max_steps * args.train_batch_size * args.gradient_accumulation_steps * args.world_size)
    return float(len(trainer.train_dataset) * args.num_train_epochs)


def drop_patience_without_validation(run_args: RunArguments, has_validation: bool) -> None:
    """A grid passes one --early_stopping_patience to every set; a set without a validation split (the few-shot
    `_fs` sets) has nothing to stop on: it trains its whole schedule, and run.json's config says so (None)."""
    if run_args.early_stopping_patience and not has_validation:
        logger.warning("no validation split: --early_stopping_patience %d ignored (the whole schedule trains; "
                       "--validation_from_train 0.1 holds out part of train to stop on)",
                       run_args.early_stopping_patience)
        run_args.early_stopping_patience = None


class SegmentClock(TrainerCallback, ExportableState):
    """Training seconds of the segments before this one, for a resumed run's run.json: each checkpoint stores
    (trainer_state.json, stateful_callbacks) the earlier segments' seconds plus this one's up to that checkpoint;
    a resume reads them back from the checkpoint it loads (on_train_begin: the state is loaded by then)."""

    def __init__(self, earlier: Sequence[float] = ()):
        self.earlier, self.start = list(earlier), None

    def on_train_begin(self, args, state, control, **kwargs):
        self.earlier = self.saved(state)
        state.stateful_callbacks.setdefault(type(self).__name__, self.state())  # older checkpoints lack it
        self.start = time.perf_counter()

    @classmethod
    def saved(cls, state: TrainerState) -> List[float]:
        """The seconds a checkpoint's state holds (none at step 0, or from a checkpoint written before this)."""
        saved = (state.stateful_callbacks.get(cls.__name__) or {}) if state.global_step else {}
        return list((saved.get("args") or {}).get("earlier", []))

    def state(self) -> dict:
        running = [] if self.start is None else [time.perf_counter() - self.start]
        return {"args": {"earlier": self.earlier + running}, "attributes": {}}

    @staticmethod
    def of(trainer: Trainer) -> "SegmentClock":
        return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, SegmentClock))


def configure_wandb(targs: TrainingArguments, run_args: RunArguments, model_args, data_args, method_name) -> None:
    if "wandb" not in targs.report_to:
        return
    os.environ.setdefault("WANDB_PROJECT", "ftlab")
    logged_in = os.environ.get("WANDB_API_KEY") or "api.wandb.ai" in read_text(os.path.expanduser("~/.netrc"))
    if not logged_in:
        os.environ.setdefault("WANDB_MODE", "offline")
    model_tag = os.path.basename(os.path.normpath(model_args.model_name_or_path))
    os.environ["WANDB_RUN_GROUP"] = (run_args.run_group or os.environ.get("WANDB_RUN_GROUP")
                                     or f"{model_tag}-{data_args.dataset_name}-{method_name}")
    tracking.name_run(targs, model_args.model_name_or_path, data_args.dataset_name, method_name)


def setup_logging(targs: TrainingArguments) -> None:
    level = targs.get_process_log_level()  # replicas log warnings only
    ours = logging.INFO if targs.process_index == 0 and targs.log_level == "passive" else level
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level, force=True)
    logging.getLogger("ftlab").setLevel(ours)
    transformers.utils.logging.set_verbosity(level)
    if targs.process_index != 0:
        transformers.utils.logging.disable_progress_bar()


def split_metrics(metrics: dict, prefix: str) -> dict:
    return {k: float(metrics[f"{prefix}_{k}"]) for k in METRIC_KEYS if f"{prefix}_{k}" in metrics}


def evaluate_splits(trainer: Trainer, tokenized, data, targs: TrainingArguments, score_test: bool = True) -> dict:
    """Metrics per split (validation where present, test unless told not to); test predictions to a file."""
    results = {}
    if "validation" in tokenized:
        results["validation"] = split_metrics(trainer.evaluate(tokenized["validation"], metric_key_prefix="eval"),
                                              "eval")
    if not score_test:
        return results
    output = trainer.predict(tokenized["test"], metric_key_prefix="test")
    results["test"] = split_metrics(output.metrics, "test")
    if targs.do_predict and trainer.is_world_process_zero():
        write_predictions(os.path.join(targs.output_dir, "predictions_test.jsonl"), output, data["test"])
    return results


def write_predictions(path: str, output, test_split) -> None:
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    names = test_split.features["label"].names
    rows = [json.dumps({"index": i, "text": text, "label": names[int(gold)], "prediction": names[int(pred)]})
            for i, (text, gold, pred) in enumerate(zip(test_split["text"], output.label_ids, logits.argmax(-1)))]
    write_atomic(path, "\n".join(rows) + "\n")


@dataclass
class RunContext:
    """What one run holds by the time it is scored: the record is built from this alone."""

    args: "TrainArgs"
    method: BoundMethod
    model_path: str
    tokenized: Any  # DatasetDict of token ids (train split: the lengths the model saw)
    trainer: Trainer
    train_output: Any  # TrainOutput of trainer.train
    memory: PeakMemory
    feature_seconds: Dict[str, float] = field(default_factory=dict)  # head on cached features: body per split
    resumed_from: Optional[str] = None  # the checkpoint this segment resumed from


def segment_time(ctx: RunContext) -> tuple:
    """(training seconds, samples/s, {time fields}, {training fields}) over every segment of the run; the dicts
    hold what a resumed run adds to run.json (empty for a run in one piece). Each earlier segment counts up to
    the checkpoint the next one resumed from: the work the final model holds."""
    this = float(ctx.train_output.metrics.get("train_runtime", 0.0))
    speed = float(ctx.train_output.metrics.get("train_samples_per_second", 0.0))
    if ctx.resumed_from is None:
        return this, speed, {}, {}
    earlier = SegmentClock.of(ctx.trainer).earlier
    total = sum(earlier) + this
    # transformers divides the whole run's samples by this segment's seconds: divide them by all segments'
    speed = run_samples(ctx.trainer) / total if total > 0 else 0.0
    return total, speed, {"segments": len(earlier) + 1, "segment_seconds": [*earlier, this]}, \
        {"resumed_from": os.path.basename(os.path.normpath(ctx.resumed_from))}


def token_stats(ctx: RunContext) -> Dict[str, float]:
    """Mean non-pad tokens per training example, and the longest batch the model saw: max_length
    when every example is padded to it, else the longest example (batches pad to their longest)."""
    train_split, data_args = ctx.tokenized["train"], ctx.args.data
    column = "attention_mask" if "attention_mask" in train_split.column_names else "input_ids"
    lengths = [sum(m) if column == "attention_mask" else len(m) for m in train_split[column]]
    longest = data_args.max_length if data_args.pad_to_max_length else int(max(lengths, default=0))
    return {"mean_tokens": float(np.mean(lengths)) if lengths else 0.0, "max_tokens": longest}


def build_run_record(ctx: RunContext, metrics: dict) -> dict:
    """run.json of a train.py run (record.build_record: schema, versions, device, time stamp)."""
    model_args, data_args, method_args, run_args, targs = ctx.args
    model = ctx.trainer.model
    body = model.model if isinstance(model, headcache.FeatureHead) else model
    trainable, total = count_parameters(body)
    tokens = token_stats(ctx)
    train_seconds, samples_per_second, extra_time, resumed = segment_time(ctx)
    # cached head features: the body's pass over train is training cost (validation/test: evaluation)
    train_seconds += ctx.feature_seconds.get("train", 0.0)
    if ctx.feature_seconds:  # the loop alone runs at thousands of samples/s: count the body's pass too
        extra_time["feature_seconds"] = ctx.feature_seconds
        samples = len(ctx.tokenized["train"]) * float(ctx.trainer.state.epoch or 0.0)
        samples_per_second = samples / train_seconds if train_seconds > 0 else 0.0
    return build_record(
        config={**asdict(model_args), **asdict(data_args), **asdict(method_args), **asdict(run_args),
                **targs.to_dict(), "attn_implementation": getattr(body.config, "_attn_implementation", None)},
        seed=targs.seed, method=ctx.method.name, model=model_args.model_name_or_path, model_path=ctx.model_path,
        dataset=data_args.dataset_name, settings=ctx.method.settings(), metrics=metrics,
        params={"trainable": trainable, "total": total},
        # tokens/s = samples/s x mean non-pad tokens per training example (after truncation)
        time={"train_seconds": train_seconds, "samples_per_second": samples_per_second,
              "tokens_per_second": samples_per_second * tokens["mean_tokens"], **extra_time},
        memory=ctx.memory.result(),
        data={"train_samples": len(ctx.tokenized["train"]), "num_labels": ctx.trainer.model.config.num_labels,
              "max_length": data_args.max_length, **tokens,
              "label_names": list(ctx.tokenized["train"].features["label"].names),
              "split_sizes": {split: len(ds) for split, ds in ctx.tokenized.items()}},
        training={"steps": ctx.trainer.state.global_step, "epochs": float(ctx.trainer.state.epoch or 0.0), **resumed},
        world_size=targs.world_size)


def prepare_data(args: TrainArgs, tokenizer):
    """The DatasetDict of the run (separator from the tokenizer unless given; sample limits)."""
    data, _ = load_data(args.data.dataset_name, sep_token_for(tokenizer, args.data.sep_token), args.data.data_dir,
                        args.data.prompt, args.data.validation)
    return limit_samples(data, args.data, args.training.seed)


def run(model_args: ModelArguments, data_args: DataArguments, method_args: MethodArguments,
        run_args: RunArguments, targs: FtTrainingArguments, callbacks: Sequence[TrainerCallback] = ()) -> dict:
    """One training run, start to run.json; returns the record. `callbacks`: more Trainer callbacks
    (search.py's pruning reporter)."""
    args = TrainArgs(model_args, data_args, method_args, run_args, targs)
    method = bind_for_run(method_args, data_args)
    setup_logging(targs)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code)
    data = prepare_data(args, tokenizer)
    finalize_training_args(targs, model_args, data_args, method, "validation" in data)
    drop_patience_without_validation(run_args, "validation" in data)
    old_run_files(targs)  # a folder of another run is refused before the lock writes anything into it
    with hold_output_dir(targs):  # to the end of run.json's write
        check_output_dir(targs)
        tidy_output_dir(targs)
        finished = finished_run(targs)
        if finished is not None:
            return finished
        return train_and_record(args, method, tokenizer, data, callbacks)


def train_and_record(args: TrainArgs, method: BoundMethod, tokenizer, data,
                     callbacks: Sequence[TrainerCallback] = ()) -> dict:
    """run()'s work in a held output folder: the model, training (or its resumed rest), scores, run.json."""
    model_args, data_args, method_args, run_args, targs = args
    resumed_from = resume_target(targs)
    configure_wandb(targs, run_args, model_args, data_args, method.name)
    set_seed(targs.seed)
    memory = PeakMemory()
    label_names = data["train"].features["label"].names
    on_cpu = targs.use_cpu or not torch.cuda.is_available()
    _, model = get_model(model_args.model_name_or_path, len(label_names), label_names, method.load_kwargs(),
                         model_args.trust_remote_code, tokenizer=tokenizer,
                         attn_implementation=model_args.attn_implementation,
                         cpu_fast_dropout=on_cpu and targs.fast_dropout)
    logger.info("attention: %s", model.config._attn_implementation)
    model = method.apply(model)
    in_bf16 = apply_speedups(model, targs)  # the CPU kernels, after the method (ftlab/speed/apply.py)
    trainable, total = count_parameters(model)
    logger.info("method %s: %d trainable of %d parameters (%.2f%%)", method.name, trainable, total,
                100.0 * trainable / total)
    tokenized = tokenize_data(data, tokenizer, data_args.max_length, data_args.pad_to_max_length)
    trained, inputs, feature_seconds = head_on_features(model, tokenizer, tokenized, method, targs)
    trainer = build_trainer(trained, tokenizer, inputs, targs, run_args.early_stopping_patience,
                            [*callbacks, SegmentClock()])
    train_output = train_or_finish(trainer, resumed_from)
    memory.mark_training_done()  # the peak of training alone, before evaluation batches add theirs
    for module in in_bf16:
        module.to(torch.float32)  # saved weights keep the checkpoint's dtype (values: the bf16 ones trained with)
    save_final_model(trainer, tokenizer)
    metrics = evaluate_splits(trainer, inputs, data, targs, run_args.score_test)
    ctx = RunContext(args, method, resolve_model_name(model_args.model_name_or_path), tokenized, trainer,
                     train_output, memory, feature_seconds, resumed_from)
    record = build_run_record(ctx, metrics)
    if trainer.is_world_process_zero():
        write_record(targs.output_dir, record)
        modelcard.write_model_card(targs.output_dir, record)  # README.md: what these weights are
        tracking.log_run_record(record)  # run.json's figures into the wandb summary; closes the run
    return record


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse_args(argv)
        record = run(*args)
    except (ValueError, FileNotFoundError) as e:
        logger.debug("failed", exc_info=True)
        return commandline.fail(e)
    targs = args[-1]
    if targs.process_index == 0:
        metrics = record["metrics"]
        shown = {"test": metrics["test"]} if "test" in metrics else metrics  # search trials: validation only
        for split, values in shown.items():
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        print(f"run record: {os.path.join(targs.output_dir, 'run.json')}")
    return 0


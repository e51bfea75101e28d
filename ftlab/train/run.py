"""Fine-tune a Hugging Face model on a dataHelper set with one method; write OUTPUT_DIR/run.json.

    uv run train.py                                   # LoRA on the embedded MiniLM, bbc_news (embedded BBC News)
    uv run train.py configs/main.yaml --seed 43       # a config file, flags override it
    uv run train.py --dataset_name restaurant_sup --method full --seed 1 --output_dir runs/x
    torchrun --nproc_per_node 2 train.py ...          # data-parallel (gloo on CPU), one run.json

Flags: the dataclasses below (model, data, method) plus every `TrainingArguments` flag; several
defaults differ from HF's for speed and model selection (see `FtTrainingArguments`).
Named steps, importable: load_data, get_model, tokenize_data, compute_metrics, build_trainer.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
import transformers
from transformers import (AutoConfig, AutoModelForSequenceClassification, DataCollatorWithPadding,
                          EarlyStoppingCallback, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments,
                          set_seed, default_data_collator)
from transformers.trainer_pt_utils import get_length_grouped_indices
from transformers.trainer_utils import IntervalStrategy
from accelerate.utils import DistributedType

import headcache
import microbatch
import modelcard
import tracking
from dataHelper import sep_token_for
from fastdropout import use_fast_dropout
from fusedlora import use_fused_lora
from narrowlinear import use_narrow_linear
from ftio import read_text, write_atomic
from methods import (BoundMethod, MethodArguments, bind_method, cast_frozen_linears, count_parameters, epochs_help,
                     learning_rate_help)
from models import load_tokenizer, resolve_model_name, untrained_pooler
from record import PeakMemory, build_record, cpu_flags, write_record
from scores import SCORE_NAMES, check_class_weight
from scores import compute_metrics  # noqa: F401  (train.compute_metrics: the course's entry point)

logger = logging.getLogger("ftlab.train")

METRIC_KEYS = (*SCORE_NAMES, "loss")
# what `accelerate launch --mixed_precision` (or the user's shell) set before this process trained anything;
# transformers writes its own choice into this variable and leaves it there (see FtTrainingArguments)
LAUNCH_MIXED_PRECISION = os.environ.get("ACCELERATE_MIXED_PRECISION")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


# ---------------------------------------------------------------- arguments

@dataclass
class ModelArguments:
    model_name_or_path: str = field(default="minilm", metadata={
        "help": "Embedded name (minilm, smollm2), local folder or Hub id of the model to fine-tune."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run model code shipped with the checkpoint (off unless you trust its source)."})
    attn_implementation: Optional[str] = field(default=None, metadata={
        "help": "Attention kernel (transformers' names: sdpa, eager ...). Default: eager when training on the "
                "CPU with fast_dropout and the model drops attention probabilities (BERT family: "
                "attention_probs_dropout_prob > 0; its eager attention drops them with an nn.Dropout that "
                "FastDropout replaces, ~7% a MiniLM step faster than SDPA's bernoulli mask, README speed), "
                "else transformers' default (sdpa)."})


@dataclass
class DataArguments:
    dataset_name: str = field(default="bbc_news", metadata={
        "help": "dataHelper set name, or several comma-separated to aggregate them (labels offset)."})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "Folder with the raw data sets (default: $DATA_DIR, then ./data)."})
    sep_token: Optional[str] = field(default=None, metadata={
        "help": "Separator between text parts (ABSA term/sentence, MRPC pair); default: the tokenizer's "
                "sep token (else its eos token)."})
    prompt: Optional[str] = field(default=None, metadata={
        "help": "MRPC template with {sentence1}, {sentence2} (and {sep}); default: dataHelper's."})
    validation: Optional[str] = field(default=None, metadata={
        "help": "restaurant_sup / laptop_sup: 'dev' (the release's dev file) or 'holdout' (a stratified 10% of "
                "train, seed 2025); default: the set's (restaurant: holdout, laptop: dev)."})
    max_length: int = field(default=128, metadata={
        "help": "Truncate inputs to this many tokens (batches are padded dynamically, not to this)."})
    pad_to_max_length: bool = field(default=False, metadata={
        "help": "Pad every example to max_length (HF example behaviour; slower, for comparisons)."})
    max_train_samples: Optional[int] = field(default=None, metadata={
        "help": "Keep only the first N training examples (quick runs, benchmarks)."})
    max_eval_samples: Optional[int] = field(default=None, metadata={
        "help": "Keep only the first N examples of the validation and test splits."})
    validation_from_train: float = field(default=0.0, metadata={
        "help": "For sets without a validation split: hold out this share of train (seeded) for "
                "per-epoch evaluation and best-model selection. 0 = no selection: the last epoch is kept."})


@dataclass
class RunArguments:
    run_group: Optional[str] = field(default=None, metadata={
        "help": "wandb group shared by the runs of one experiment (default: $WANDB_RUN_GROUP, "
                "else model-dataset-method)."})
    score_test: bool = field(default=True, metadata={
        "help": "Score the test split at the end. search.py turns it off for its trials: choices read "
                "validation only."})
    early_stopping_patience: Optional[int] = field(default=None, metadata={
        "help": "Stop when metric_for_best_model on validation has not improved for N evaluations; the "
                "best checkpoint is restored (needs a validation split). Default: no early stopping."})


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX on the CPU and a oneDNN build of torch: bf16 autocast is fast here."""
    return torch.backends.mkldnn.is_available() and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def bf16_supported(device_type: Optional[str] = None) -> bool:
    """bf16 is fast on this device type ("cuda" / "cpu"; default: CUDA when available, else the CPU)."""
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_supports_bf16()


def balanced_class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """(num_labels,) float32 weights n / (num_labels x count_c); a class absent from train weighs 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels).astype(np.float64)
    weights = np.divide(len(labels), num_labels * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


def default_report_to() -> str:
    """wandb when installed and not disabled, else none."""
    disabled = os.environ.get("WANDB_MODE") == "disabled" or \
        os.environ.get("WANDB_DISABLED", "").lower() in ("1", "true", "yes")
    return "wandb" if importlib.util.find_spec("wandb") and not disabled else "none"


@dataclass
class FtTrainingArguments(TrainingArguments):
    """TrainingArguments with defaults for fast, selected runs; every HF flag still works."""

    output_dir: Optional[str] = field(default=None, metadata={
        "help": "Where checkpoints, predictions and run.json go (default: "
                "outputs/<dataset>/<method>/<model>/seed<seed>)."})
    learning_rate: Optional[float] = field(default=None, metadata={
        "help": f"Peak learning rate (default per method: {learning_rate_help()})."})
    num_train_epochs: Optional[float] = field(default=None, metadata={
        "help": f"Most training epochs; with validation the best epoch is kept (default per method: {epochs_help()})."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per process."})
    warmup_ratio: float = field(default=0.06, metadata={"help": "Share of steps with linear warm-up."})
    optim: str = field(default="adamw_torch_fused", metadata={
        "help": "Optimizer (HF names). Default: torch's fused AdamW, the same update as adamw_torch in one "
                "kernel per step (CPU and CUDA; 14 -> 10 ms a MiniLM step here, README speed)."})
    eval_strategy: str = field(default="epoch", metadata={
        "help": "When to evaluate on the validation split (no, steps, epoch)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save checkpoints (no, steps, epoch)."})
    save_total_limit: Optional[int] = field(default=2, metadata={
        "help": "Keep at most this many checkpoints (the best one is always kept)."})
    load_best_model_at_end: bool = field(default=True, metadata={
        "help": "Load the best checkpoint (metric_for_best_model on validation) at the end."})
    metric_for_best_model: Optional[str] = field(default="accuracy", metadata={
        "help": "Validation metric that selects the best checkpoint (accuracy, macro_f1, loss ...)."})
    group_by_length: bool = field(default=True, metadata={
        "help": "Batch examples of similar length together (less padding with dynamic padding)."})
    pad_to_multiple_of: Optional[int] = field(default=None, metadata={
        "help": "Pad each batch to a multiple of this many tokens (dynamic padding rounds its length up): "
                "fewer distinct matrix shapes, so oneDNN/cuBLAS reuse their kernels. None: the batch's longest."})
    logging_steps: float = field(default=25, metadata={"help": "Log the training loss every N steps."})
    bf16: Optional[bool] = field(default=None, metadata={
        "help": "bf16 mixed precision; default: on where the GPU or CPU (AVX512-BF16/AMX) supports it."})
    report_to: Optional[str] = field(default="auto", metadata={
        "help": "Integrations to log to: auto (wandb when installed and not disabled, offline without "
                "WANDB_API_KEY), none, wandb, tensorboard ..."})
    do_predict: bool = field(default=True, metadata={
        "help": "Write test-set predictions to OUTPUT_DIR/predictions_test.jsonl."})
    frozen_bf16: bool = field(default=False, metadata={
        "help": "Under bf16 mixed precision hold frozen Linear weights (LoRA, adapter, head: the body) in bf16: "
                "the matmuls autocast would run anyway, without casting every frozen matrix at every use; "
                "cast back to float32 before the model is saved. Off by default: no faster on MiniLM here "
                "(README, speed)."})
    fast_dropout: bool = field(default=True, metadata={
        "help": "Draw CPU dropout masks two elements per random draw (fastdropout.FastDropout: the same dropout, "
                "p rounded to 1/32768; one MiniLM epoch here: full fine-tuning 1.02-1.05x, LoRA on all linear "
                "layers 1.18-1.35x the samples/s, README speed); false: torch's nn.Dropout. No effect on CUDA."})
    fast_lora_backward: bool = field(default=True, metadata={
        "help": "Compute the gradients of LoRA's B matrices (a Linear with r <= 8 inputs) in matmul layouts the "
                "CPU runs 2-4x faster (narrowlinear.py; float32 CPU training only, the same products; a MiniLM "
                "LoRA step here 0-13% faster, README speed); false: nn.Linear's own backward."})
    fused_lora: bool = field(default=True, metadata={
        "help": "Run each peft LoRA Linear as one autograd node in float32 CPU training (fusedlora.py: the same "
                "function and FastDropout masks, fewer passes; MiniLM LoRA here 1.09-1.15x the samples/s, "
                "results/search/fused_lora.md); false: peft's own modules. Evaluation, autocast and CUDA use peft's."})
    micro_batch_tokens: Optional[int] = field(default=2048, metadata={
        "help": "Run a training batch of more padded tokens than this as micro-batches of at most this many "
                "(rows split, padding tails trimmed, losses weighted by their share: the batch's gradient, with "
                "a lower memory peak; microbatch.py). Default 2048: full fine-tuning's peak RSS 2.50 -> 2.12 GiB "
                "on restaurant_sup at the same accuracy (results/search/micro_batch.md). 0: every batch whole."})
    class_weight: str = field(default="none", metadata={
        "help": "Per-class loss weights: none, or balanced (n / (classes x count of the class) on train, "
                "scikit-learn's rule: rare classes weigh more; for imbalanced sets scored by macro-F1)."})

    def __post_init__(self):
        self.auto_output_dir = self.output_dir is None
        if self.bf16 is None:
            self.bf16 = bf16_supported()
        if self.bf16 and not torch.cuda.is_available():
            self.use_cpu = True  # HF accepts bf16 without a GPU only on the CPU path (torch.autocast cpu)
        # TrainingArguments sets ACCELERATE_MIXED_PRECISION=bf16 for a bf16 run and keeps the old value for an
        # fp32 one, and Trainer's Accelerator autocasts by it: an fp32 run after a bf16 one in the same process
        # (bench.py's setups, a test session, a notebook) would silently train and evaluate in bf16
        os.environ["ACCELERATE_MIXED_PRECISION"] = (
            "bf16" if self.bf16 else "fp16" if self.fp16 else LAUNCH_MIXED_PRECISION or "no")
        if self.report_to in (None, "auto"):
            self.report_to = default_report_to()
        check_class_weight(self.class_weight)
        super().__post_init__()


ARGUMENT_CLASSES = (ModelArguments, DataArguments, MethodArguments, RunArguments, FtTrainingArguments)


def parse_args(argv: Optional[Sequence[str]] = None):
    """(model, data, method, run, training) arguments from flags, or a config file + overriding flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(ARGUMENT_CLASSES)
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        parser.set_defaults(**read_config(argv[0], parser))
        argv = argv[1:]
    return parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)


def read_config(path: str, parser: HfArgumentParser) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} not found")
    with open(path) as f:
        if path.endswith(".json"):
            config = json.load(f)
        else:
            import yaml
            config = yaml.safe_load(f) or {}
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"config {path}: unknown keys {unknown}; use train.py flag names (see --help)")
    return config


# ---------------------------------------------------------------- named steps

def load_data(dataset_name: str | List[str], sep_token: str = "<SEP>", data_dir: Optional[str] = None,
              prompt: Optional[str] = None, validation: Optional[str] = None):
    """(DatasetDict with text/label, number of labels) from dataHelper; 'a,b' aggregates sets."""
    import dataHelper

    return dataHelper.load_for_run(dataset_name, sep_token, data_dir, prompt=prompt, validation=validation)


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


def attention_for(config, requested: Optional[str], cpu_fast_dropout: bool) -> Optional[str]:
    """The attn_implementation to load with: the requested one, else "eager" where CPU training with
    FastDropout would otherwise draw SDPA's attention-dropout mask with bernoulli (BERT family), else None
    (transformers' default)."""
    if requested is not None:
        return requested
    if cpu_fast_dropout and getattr(config, "attention_probs_dropout_prob", 0.0) > 0:
        return "eager"
    return None


def get_model(model_name: str, num_labels: int, label_names: Optional[List[str]] = None,
              load_kwargs: Optional[dict] = None, trust_remote_code: bool = False, tokenizer=None,
              attn_implementation: Optional[str] = None, cpu_fast_dropout: bool = False):
    """(tokenizer, AutoModelForSequenceClassification) with a pad token set on both; pass the
    tokenizer when you already have it (it is loaded otherwise). attn_implementation / cpu_fast_dropout:
    see attention_for."""
    path = resolve_model_name(model_name)
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_name, trust_remote_code)
    config = AutoConfig.from_pretrained(path, num_labels=num_labels, trust_remote_code=trust_remote_code)
    if label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {n: i for i, n in enumerate(label_names)}
    # Decoder heads pool the last non-pad token: they need pad_token_id in the config.
    config.pad_token_id = tokenizer.pad_token_id
    if untrained_pooler(path):  # the classifier reads BERT's pooler: train it with the head (methods.py)
        config.untrained_pooler = True
    load_kwargs = dict(load_kwargs or {})
    attention = attention_for(config, attn_implementation, cpu_fast_dropout)
    if attention is not None:
        load_kwargs["attn_implementation"] = attention
    model = AutoModelForSequenceClassification.from_pretrained(
        path, config=config, use_safetensors=True, trust_remote_code=trust_remote_code, **load_kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # tokens the checkpoint lacks get rows
    return tokenizer, model


def tokenize_data(data, tokenizer, max_length: int = 128, pad_to_max_length: bool = False):
    """Token ids for every split (datasets.map, batched, cached on disk when the data is)."""
    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length,
                         padding="max_length" if pad_to_max_length else False)

    return data.map(encode, batched=True, remove_columns=["text"], desc="tokenize")


class CrashAtStep(TrainerCallback):
    """Test hook (FTLAB_CRASH_AT_STEP=N): die like a killed process at the end of step N."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os._exit(1)


class EpochSeededSampler(torch.utils.data.Sampler):
    """Training order drawn from seed + epoch (random, or length-grouped batches).

    HF's samplers draw from the global RNG or from an epoch counter that accelerate resets when a
    resumed run skips batches; the epoch comes here from the trainer state instead, so a resumed run
    sees exactly the batches of an uninterrupted one.
    """

    def __init__(self, lengths: List[int], batch_size: int, seed: int, epoch_fn: Callable[[], int],
                 group_by_length: bool):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.epoch_fn, self.group_by_length = epoch_fn, group_by_length

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch_fn())
        if self.group_by_length:  # megabatches of 50 batches sorted by length, HF's recipe
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
        return iter(torch.randperm(len(self.lengths), generator=generator).tolist())


class FtTrainer(Trainer):
    def __init__(self, *args, class_weights: Optional[torch.Tensor] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights  # (num_labels,) or None: the model's own (unweighted) loss

    loss_share = 1.0  # this micro-batch's weight in its batch's mean loss (training_step)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """A batch over --micro_batch_tokens padded tokens runs as micro-batches whose losses, weighted by
        their share, sum to the batch's: the same gradient with a smaller activation peak (microbatch.py)."""
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:  # DeepSpeed steps in backward
            return super().training_step(model, inputs, num_items_in_batch)
        chunks = microbatch.split_batch(inputs, self.args.micro_batch_tokens)
        if len(chunks) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        total = None
        for i, (chunk, share) in enumerate(zip(chunks, microbatch.loss_shares(chunks, self.class_weights))):
            # DDP: all-reduce gradients once, after the last micro-batch's backward
            sync = contextlib.nullcontext() if i == len(chunks) - 1 or self.args.world_size <= 1 \
                else self.accelerator.no_sync(model)
            self.loss_share = share
            try:
                with sync:  # num_items_in_batch None: each piece's loss is its own mean, weighted by share
                    loss = super().training_step(model, chunk, None)
            finally:
                self.loss_share = 1.0
            total = loss if total is None else total + loss
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = self._loss(model, inputs, return_outputs, num_items_in_batch)
        if self.loss_share == 1.0:
            return out
        return (out[0] * self.loss_share, out[1]) if return_outputs else out * self.loss_share

    def _loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")  # (batch,)
        outputs = model(**inputs)
        # (batch, classes) logits in fp32; torch's weighted mean: sum_i w[y_i] CE_i / sum_i w[y_i]
        loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels,
                                                 weight=self.class_weights.to(outputs.logits.device))
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # cached head features (headcache.py) are one vector per example: every length is 1
        lengths = ([len(ids) for ids in dataset["input_ids"]] if "input_ids" in dataset.column_names
                   else [1] * len(dataset))
        return EpochSeededSampler(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                  self.args.seed, lambda: int((self.state.epoch or 0) + 1e-6),
                                  self.args.group_by_length)

    def _get_eval_sampler(self, eval_dataset):
        # HF shuffles evaluation batches under group_by_length (from the global RNG); keep dataset order
        # so predictions line up with the examples.
        return torch.utils.data.SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None


def build_trainer(model, tokenizer, tokenized, training_args: TrainingArguments,
                  early_stopping_patience: Optional[int] = None, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
    eval_dataset = tokenized["validation"] if "validation" in tokenized else None
    callbacks = list(callbacks)
    if os.environ.get("FTLAB_CRASH_AT_STEP"):
        callbacks.append(CrashAtStep(int(os.environ["FTLAB_CRASH_AT_STEP"])))
    if early_stopping_patience:
        if eval_dataset is None or training_args.eval_strategy == IntervalStrategy.NO:
            raise ValueError("--early_stopping_patience needs a validation split and evaluation (this set has no "
                             "validation split: add --validation_from_train 0.1)")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience))
    on_features = "input_ids" not in tokenized["train"].column_names  # headcache.feature_splits
    class_weights = None
    if getattr(training_args, "class_weight", "none") == "balanced":
        class_weights = balanced_class_weights(tokenized["train"]["label"], model.config.num_labels)
        logger.info("class weights (balanced): %s", [round(w, 3) for w in class_weights.tolist()])
    return FtTrainer(model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=eval_dataset,
                     processing_class=tokenizer,
                     data_collator=default_data_collator if on_features else DataCollatorWithPadding(
                         tokenizer, pad_to_multiple_of=getattr(training_args, "pad_to_multiple_of", None)),
                     compute_metrics=compute_metrics, callbacks=callbacks, class_weights=class_weights)


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

def finalize_training_args(targs: FtTrainingArguments, model_args: ModelArguments, data_args: DataArguments,
                           method: BoundMethod, has_validation: bool) -> None:
    """Resolve the defaults that depend on the other arguments."""
    if targs.auto_output_dir:
        model_tag = os.path.basename(os.path.normpath(model_args.model_name_or_path))
        targs.output_dir = os.path.join("outputs", data_args.dataset_name.replace(",", "+"), method.name,
                                        model_tag, f"seed{targs.seed}")
        targs.logging_dir = os.path.join(targs.output_dir, "logs")
    if targs.learning_rate is None:
        targs.learning_rate = method.learning_rate
    if targs.num_train_epochs is None:
        targs.num_train_epochs = method.epochs
    for key, value in method.training_overrides.items():
        setattr(targs, key, value)
    if not has_validation and targs.eval_strategy != IntervalStrategy.NO:
        logger.info("no validation split: no per-epoch evaluation or best-model selection "
                    "(--validation_from_train 0.1 holds out part of train); the last model is tested")
        targs.eval_strategy = IntervalStrategy.NO
        targs.load_best_model_at_end = False


def check_output_dir(targs: TrainingArguments) -> None:
    """Refuse to mix two runs in one folder; with --overwrite_output_dir clear the old run's files."""
    out = targs.output_dir
    if not os.path.isdir(out):
        return
    old = [n for n in os.listdir(out) if n == "run.json" or n.startswith("checkpoint-")]
    if not old or targs.resume_from_checkpoint:
        return
    if not targs.overwrite_output_dir:
        raise ValueError(f"output dir {out} holds another run ({', '.join(sorted(old)[:3])}); pass "
                         "--overwrite_output_dir, --resume_from_checkpoint true, or another --output_dir")
    if targs.process_index == 0:
        for name in old:
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def resume_target(targs: TrainingArguments):
    value = targs.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "false", "no"):
        return None
    return True if str(value).lower() in ("true", "last", "yes") else value  # True: last checkpoint in output_dir


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
    for name in ("ftlab", "methods"):
        logging.getLogger(name).setLevel(ours)
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
    samples_per_second = float(ctx.train_output.metrics.get("train_samples_per_second", 0.0))
    # cached head features: the body's pass over train is training cost (validation/test: evaluation)
    train_seconds = float(ctx.train_output.metrics.get("train_runtime", 0.0)) + ctx.feature_seconds.get("train", 0.0)
    extra_time = {}
    if ctx.feature_seconds:  # the loop alone runs at thousands of samples/s: count the body's pass too
        extra_time = {"feature_seconds": ctx.feature_seconds}
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
        training={"steps": ctx.trainer.state.global_step, "epochs": float(ctx.trainer.state.epoch or 0.0)},
        world_size=targs.world_size)


class TrainArgs(NamedTuple):
    model: ModelArguments
    data: DataArguments
    method: MethodArguments
    run: RunArguments
    training: FtTrainingArguments


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
    method = bind_method(method_args)
    setup_logging(targs)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code)
    data = prepare_data(args, tokenizer)
    finalize_training_args(targs, model_args, data_args, method, "validation" in data)
    check_output_dir(targs)
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
    if targs.fast_dropout:
        use_fast_dropout(model)  # after the method: peft's lora_dropout modules too
    if targs.fast_lora_backward:
        use_narrow_linear(model)  # peft's lora_B modules (methods.LoRALinear calls narrow_linear itself)
    if targs.fused_lora:
        use_fused_lora(model)  # after use_fast_dropout: the fused node draws FastDropout's masks only
    trainable, total = count_parameters(model)
    logger.info("method %s: %d trainable of %d parameters (%.2f%%)", method.name, trainable, total,
                100.0 * trainable / total)
    tokenized = tokenize_data(data, tokenizer, data_args.max_length, data_args.pad_to_max_length)
    # frozen Linear weights in bf16 where autocast would cast them anyway (methods.cast_frozen_linears)
    in_bf16 = cast_frozen_linears(model, torch.bfloat16) if targs.bf16 and targs.frozen_bf16 else []
    trained, inputs, feature_seconds = head_on_features(model, tokenizer, tokenized, method, targs)
    trainer = build_trainer(trained, tokenizer, inputs, targs, run_args.early_stopping_patience, callbacks)
    train_output = trainer.train(resume_from_checkpoint=resume_target(targs))
    memory.mark_training_done()  # the peak of training alone, before evaluation batches add theirs
    for module in in_bf16:
        module.to(torch.float32)  # saved weights keep the checkpoint's dtype (values: the bf16 ones trained with)
    save_final_model(trainer, tokenizer)
    metrics = evaluate_splits(trainer, inputs, data, targs, run_args.score_test)
    ctx = RunContext(args, method, resolve_model_name(model_args.model_name_or_path), tokenized, trainer,
                     train_output, memory, feature_seconds)
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
        print(f"error: {e}", file=sys.stderr)
        return 2
    targs = args[-1]
    if targs.process_index == 0:
        metrics = record["metrics"]
        shown = {"test": metrics["test"]} if "test" in metrics else metrics  # search trials: validation only
        for split, values in shown.items():
            print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        print(f"run record: {os.path.join(targs.output_dir, 'run.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

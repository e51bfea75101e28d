"""train.py's flags: the model, data and run dataclasses, the method's (ftlab/methods), and
`FtTrainingArguments` (every HF TrainingArguments flag, several defaults changed for fast, selected runs);
`parse_args` reads them from flags or a config file plus overriding flags.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence

import torch
from transformers import HfArgumentParser, TrainingArguments

from ftlab import commandline
from ftlab.data import datasets as dataHelper
from ftlab.methods.registry import MethodArguments, epochs_help, learning_rate_help
from ftlab.metrics.classification import check_class_weight
from ftlab.models.build import bf16_supported

# what `accelerate launch --mixed_precision` (or the user's shell) set before this process trained anything;
# transformers writes its own choice into this variable and leaves it there (see FtTrainingArguments)
LAUNCH_MIXED_PRECISION = os.environ.get("ACCELERATE_MIXED_PRECISION")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_MAX_LENGTH = 128  # tokens, where neither the flag nor the set's schedule says otherwise


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
    max_length: Optional[int] = field(default=None, metadata={
        "help": f"Truncate inputs to this many tokens (batches are padded dynamically, not to this). Default: "
                f"the set's schedule for the method where it has one (bbc_news + lora: 64), else {DEFAULT_MAX_LENGTH}."})
    pad_to_max_length: bool = field(default=False, metadata={
        "help": "Pad every example to max_length (HF example behaviour; slower, for comparisons)."})
    max_train_samples: Optional[int] = field(default=None, metadata={
        "help": "Keep only the first N training examples (quick runs, benchmarks)."})
    max_eval_samples: Optional[int] = field(default=None, metadata={
        "help": "Keep only the first N examples of the validation and test splits."})
    validation_from_train: float = field(default=0.0, metadata={
        "help": "For sets without a validation split: hold out this share of train (seeded) for "
                "per-epoch evaluation and best-model selection. 0 = no selection: the last epoch is kept."})

    def __post_init__(self):
        # checked before anything loads: --max_length 0 used to train untruncated and record 0
        dataHelper.check_names(self.dataset_name)
        commandline.positive(self.max_length, "--max_length", "the most tokens per input, e.g. 128")
        commandline.positive(self.max_train_samples, "--max_train_samples", "leave it out to keep every example")
        commandline.positive(self.max_eval_samples, "--max_eval_samples", "leave it out to keep every example")
        commandline.require(0 <= self.validation_from_train < 1, f"--validation_from_train {self.validation_from_train}: "
                    "must be a share of train in [0, 1), e.g. 0.1")


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
        "help": f"Most training epochs; with validation the best epoch is kept (default per method: {epochs_help()}; a set's schedule may set its own: bbc_news + lora 2)."})
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
    dataloader_pin_memory: Optional[bool] = field(default=None, metadata={
        "help": "Pin host memory for the data loaders; default: only where a CUDA GPU takes the batches (pinning "
                "speeds host-to-GPU copies; on the CPU it does nothing and torch warns on every loader)."})
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
        self.check_values()
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
        if self.dataloader_pin_memory is None:
            self.dataloader_pin_memory = torch.cuda.is_available()
        check_class_weight(self.class_weight)
        super().__post_init__()

    def check_values(self) -> None:
        """The values HF would take silently (a negative epoch count trains 0 steps and records its scores)."""
        # 0 is allowed: a frozen run (tests use one to stop early); below it training climbs the loss
        commandline.require(self.learning_rate is None or self.learning_rate >= 0, f"--learning_rate {self.learning_rate}: "
                    "must be >= 0, e.g. --learning_rate 1e-4 (default: the method's)")
        if self.num_train_epochs is not None:
            given = self.num_train_epochs > 0 or (self.num_train_epochs == 0 and self.max_steps > 0)
            commandline.require(given, f"--num_train_epochs {self.num_train_epochs}: must be > 0 (or 0 with --max_steps N)")
        for flag in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            commandline.positive(getattr(self, flag), f"--{flag}", "e.g. 8", allow_none=False)
        if self.output_dir is not None and os.path.isfile(self.output_dir):
            raise ValueError(f"--output_dir {self.output_dir} is a file, not a folder: pass a folder path")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, MethodArguments, RunArguments, FtTrainingArguments)


def parse_args(argv: Optional[Sequence[str]] = None):
    """(model, data, method, run, training) arguments from flags, or a config file + overriding flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = commandline.one_line(HfArgumentParser(ARGUMENT_CLASSES, prog="train.py"))
    if argv and argv[0].endswith(CONFIG_SUFFIXES):
        parser.set_defaults(**read_config(argv[0], parser))
        argv = argv[1:]
    return commandline.parse_dataclasses(parser, argv)


def read_config(path: str, parser: HfArgumentParser) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} not found")
    with open(path) as f:
        if path.endswith(".json"):
            config = json.load(f)
        else:
            import yaml  # only a YAML config needs it
            config = yaml.safe_load(f) or {}
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(config) - known)
    if unknown:
        hints = "; ".join(f"{key!r}{commandline.nearest(key, known) or ': no flag of that name'}" for key in unknown[:3])
        raise ValueError(f"config {path}: unknown key(s) {hints}")
    return config


class TrainArgs(NamedTuple):
    model: ModelArguments
    data: DataArguments
    method: MethodArguments
    run: RunArguments
    training: FtTrainingArguments

"""Fine-tuning methods: what each one changes when the model is loaded and after it is loaded.

`METHODS` maps a name to a `Method`:

- `full`: every parameter trains.
- `head`: only the classification head trains, i.e. every parameter that
  `AutoModelForSequenceClassification` adds on top of `model.base_model` (BERT: `classifier`;
  DistilBERT: `pre_classifier` + `classifier`; BART: `classification_head`; Qwen2/Llama: `score`).
  BERT's `pooler` belongs to the pretrained base model and stays frozen.
- `lora`: peft LoRA (task SEQ_CLS) on the target modules; the head trains too.
- `lora_scratch`: `LoRALinear` below (Hu et al. 2021, arXiv:2106.09685) on the same targets; the
  head trains too.
- `adapter`: bottleneck adapters from the `adapters` library (`pfeiffer` = seq_bn, `houlsby` =
  double_seq_bn, `parallel` = par_bn) with a reduction factor; the head trains too.
- `qlora`: 4-bit NF4 base with double quantization (bitsandbytes, bf16 compute), k-bit preparation,
  peft LoRA, paged 8-bit AdamW. On CUDA, or on the CPU through bitsandbytes' CPU backend (no paging there:
  bitsandbytes falls back to the plain 8-bit AdamW).

A new method: one `apply_*` function + one registry line + a test of which parameters train.
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ftlab.commandline import unknown_choice
from ftlab.io import split_list
from ftlab.models.build import bf16_supported
from ftlab.speed.narrowlinear import narrow_linear

# Imported inside functions: peft, adapters and bitsandbytes' config load only when their method is applied (each is heavy; qlora needs CUDA).

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- parameter helpers

def count_parameters(model: nn.Module) -> Tuple[int, int]:
    """(trainable, total) parameter counts; shared (tied) tensors are counted once."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def head_module_names(model: nn.Module) -> List[str]:
    """Module names of the task head: the top-level children holding parameters outside
    `model.base_model`, plus the base model's pooler when the checkpoint never trained it
    (`config.untrained_pooler`, set by train.get_model for sentence-transformers checkpoints such as
    all-MiniLM-L6-v2, whose own pooling is a mean over tokens: their BERT pooler is random-init
    weights the classifier would otherwise read through, frozen)."""
    base = model.base_model
    names = [name for name, child in model.named_children()
             if child is not base and any(True for _ in child.parameters())]
    if getattr(model.config, "untrained_pooler", False) and getattr(base, "pooler", None) is not None:
        names.append(f"{model.base_model_prefix}.pooler")
    return names


def linear_module_names(model: nn.Module) -> List[str]:
    """Sorted distinct last name parts of every nn.Linear, e.g. ['dense', 'query', 'value']."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def _matches(module_name: str, targets: List[str]) -> bool:
    # peft's rule for a list of targets: exact name or a dotted suffix.
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


# Attention query/value projections of architectures peft has no default for.
EXTRA_DEFAULT_TARGETS = {"distilbert": ["q_lin", "v_lin"]}


ALL_LINEAR = "all-linear"
DEFAULT_LORA_DROPOUT = 0.1  # where neither --lora_dropout nor the data set's schedule says otherwise


def all_linear_targets(model: nn.Module) -> List[str]:
    """Name suffixes that match every nn.Linear of the base model's layers and nothing of the head.

    BERT: ['query', 'key', 'value', 'attention.output.dense', 'intermediate.dense', 'output.dense']
    minus what would also hit the head's modules (the untrained pooler's `pooler.dense` trains whole,
    so a bare 'dense' cannot be used). Each Linear gets its shortest dotted suffix that matches no head
    module; the QLoRA paper's "all linear layers" (Dettmers et al. 2023) without peft's
    `all-linear`, which would also wrap a pooler that trains as a head module.
    """
    in_head = _in_head(model)  # full names, e.g. 'bert.pooler.dense'
    prefix = model.base_model_prefix + "."
    linear = [prefix + n for n, m in model.base_model.named_modules() if isinstance(m, nn.Linear)]
    excluded = [n for n in linear if in_head(n)]
    targets: List[str] = []
    for name in (n for n in linear if not in_head(n)):
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            suffix = ".".join(parts[-k:])
            if not any(_matches(e, [suffix]) for e in excluded):
                break
        if suffix not in targets:
            targets.append(suffix)
    return targets


def resolve_target_modules(model: nn.Module, targets: Optional[str]) -> List[str]:
    """Target module names from a comma-separated string, `all-linear`, or peft's per-architecture default.

    Raises ValueError naming the Linear modules that exist when a target matches nothing.
    """
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    if targets == ALL_LINEAR:
        return all_linear_targets(model)
    if targets:
        names = split_list(targets)
    else:
        model_type = model.config.model_type
        if model_type not in DEFAULTS and model_type not in EXTRA_DEFAULT_TARGETS:
            raise ValueError(f"no default LoRA target modules for model type {model_type!r}: pass "
                             f"--lora_target_modules (Linear modules here: {', '.join(linear_module_names(model))})")
        names = list(DEFAULTS.get(model_type) or EXTRA_DEFAULT_TARGETS[model_type])
    base_linear = [n for n, m in model.base_model.named_modules() if isinstance(m, nn.Linear)]
    missing = [t for t in names if not any(_matches(n, [t]) for n in base_linear)]
    if missing:
        raise ValueError(f"LoRA target modules {missing} match no Linear module of the model; "
                         f"existing Linear module names: {', '.join(linear_module_names(model.base_model))}")
    return names


def set_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> None:
    """requires_grad = predicate(parameter name) for every parameter."""
    for name, p in model.named_parameters():
        p.requires_grad_(predicate(name))


def _in_head(model: nn.Module) -> Callable[[str], bool]:
    heads = head_module_names(model)
    return lambda name: any(name == h or name.startswith(h + ".") for h in heads)


# ---------------------------------------------------------------- LoRA from scratch

class LoRALinear(nn.Module):
    """y = W0 x + (alpha / r) * B A dropout(x), with W0 frozen (Hu et al. 2021, eq. 3).

    A: (r, in) Kaiming-uniform, B: (out, r) zeros, so the wrapped layer equals the base at init.
    `merge()` folds B A into W0 for inference (no extra latency); `unmerge()` takes it out again.
    Both are idempotent.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank must be positive, got r={r}")
        self.base = base
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, r, dtype=base.weight.dtype))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.base.weight.requires_grad_(False)
        if self.base.bias is not None:
            self.base.bias.requires_grad_(False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same init as nn.Linear for A; B = 0 makes the update B A zero at the start.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    @property
    def weight(self) -> torch.Tensor:  # code that reads `proj.weight` (dtype, device) keeps working
        return self.base.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        return self.base.bias

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, r) @ (r, in) -> (out, in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (..., in) -> (..., out)
        out = self.base(x)
        if self.merged:
            return out
        # F.linear, not x @ A.t(): its backward takes grad_A as g^T x ([r, N] @ [N, in]), the fast layout;
        # narrow_linear does the same for B (ftlab/speed/narrowlinear.py). (..., in) -> (..., r) -> (..., out)
        return out + narrow_linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


def lora_layers(model: nn.Module) -> List[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    for m in lora_layers(model):
        m.merge()


def unmerge_lora(model: nn.Module) -> None:
    for m in lora_layers(model):
        m.unmerge()


# ---------------------------------------------------------------- apply functions (after load)

def apply_full(model, args: MethodArguments):
    set_trainable(model, lambda name: True)
    return model


def apply_head(model, args: MethodArguments):
    set_trainable(model, _in_head(model))
    return model


def apply_lora(model, args: MethodArguments):
    from peft import LoraConfig, TaskType, get_peft_model

    targets = resolve_target_modules(model, args.lora_target_modules)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=args.lora_alpha,
                        lora_dropout=lora_dropout(args), target_modules=targets,
                        # the whole head (not only peft's default "classifier"/"score") trains and is saved
                        modules_to_save=head_module_names(model))
    return get_peft_model(model, config)


def apply_lora_scratch(model, args: MethodArguments):
    targets = resolve_target_modules(model, args.lora_target_modules)
    set_trainable(model, _in_head(model))
    wrapped = [(name, m) for name, m in model.base_model.named_modules()
               if isinstance(m, nn.Linear) and _matches(name, targets)]
    for name, linear in wrapped:
        parent_name, _, child = name.rpartition(".")
        parent = model.base_model.get_submodule(parent_name) if parent_name else model.base_model
        setattr(parent, child, LoRALinear(linear, args.lora_r, args.lora_alpha, lora_dropout(args)))
    logger.info("lora_scratch wrapped %d Linear modules (%s)", len(wrapped), ", ".join(targets))
    return model


# --adapter_config name -> adapters config class. parallel: He et al. 2022 ("Towards a Unified View of
# Parameter-Efficient Transfer Learning"), a bottleneck beside the FFN, its output scaled by 4 and added
# to the FFN's: their best adapter placement; the library's scaling 4.0 is kept.
ADAPTER_CONFIGS = {"pfeiffer": "SeqBnConfig", "seq_bn": "SeqBnConfig",
                   "houlsby": "DoubleSeqBnConfig", "double_seq_bn": "DoubleSeqBnConfig",
                   "parallel": "ParBnConfig", "par_bn": "ParBnConfig"}
ADAPTER_NAME = "ftlab"


def apply_adapter(model, args: MethodArguments):
    import adapters

    if args.adapter_config not in ADAPTER_CONFIGS:
        raise ValueError(f"unknown --adapter_config {args.adapter_config!r}; valid: {', '.join(ADAPTER_CONFIGS)}")
    model_type = model.config.model_type
    try:
        adapters.init(model)
    except (ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"the adapters library does not support model type {model_type!r} ({e}); "
                         f"use --method lora") from e
    config = getattr(adapters, ADAPTER_CONFIGS[args.adapter_config])(reduction_factor=args.reduction_factor)
    model.add_adapter(ADAPTER_NAME, config=config)
    model.train_adapter(ADAPTER_NAME)  # freezes model.base_model except the adapter
    for name, p in model.named_parameters():  # the HF head lives outside base_model: make sure it trains
        if _in_head(model)(name):
            p.requires_grad_(True)
    if args.adapter_train_layernorm:
        # Houlsby et al. 2019 (sec. 2.1) train the layer normalization parameters per task beside the
        # adapters; the adapters library freezes them. Every norm of the body trains (BERT: the embeddings'
        # and two a layer, weight and bias of [hidden] each), nothing else of the base; for decoders the
        # layers' and the final norm; RMSNorm (Llama, Qwen2) counts as the same per-task scale.
        norms = [m for m in model.base_model.modules() if _is_norm(m)]
        if not norms:
            raise ValueError(f"--adapter_train_layernorm: no LayerNorm/RMSNorm found in model type "
                             f"{model.config.model_type!r}; set --adapter_train_layernorm false")
        for module in norms:
            module.requires_grad_(True)
    return model


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


# bitsandbytes runs NF4 weights and its 8-bit optimizers on the CPU since its CPU backend (0.46; the lock
# holds 0.50); an older one, or a build without that backend, fails on the first quantize.
BNB_CPU_SINCE = "0.46"


@functools.lru_cache(maxsize=None)
def bnb_4bit_problem(device_type: str) -> Optional[str]:
    """Why bitsandbytes cannot hold NF4 weights on `device_type` ("cpu" / "cuda"), or None: a capability
    probe (quantize and dequantize 64 values there), not a version table, so any build that serves passes."""
    try:
        import bitsandbytes
        import bitsandbytes.functional as bnbf
    except ImportError as e:
        return f"bitsandbytes is not importable ({e}); `uv sync` installs the locked one"
    try:
        weights = torch.ones(64, dtype=torch.bfloat16, device=device_type)
        packed, state = bnbf.quantize_4bit(weights, quant_type="nf4", compress_statistics=True)
        bnbf.dequantize_4bit(packed, state)
    except Exception as e:  # noqa: BLE001 - any failure means "no backend here"; its text goes in the message
        first = (str(e).splitlines() or [type(e).__name__])[0]
        return (f"bitsandbytes {bitsandbytes.__version__} has no {device_type} 4-bit backend ({first}); "
                f"the {device_type} backend needs bitsandbytes >= {BNB_CPU_SINCE} (`uv sync` installs the locked one)")
    return None


def check_bnb_4bit(method: str) -> None:
    """qlora runs wherever bitsandbytes quantizes to NF4: CUDA when there is a GPU, else its CPU backend."""
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    problem = bnb_4bit_problem(device_type)
    if problem:
        raise ValueError(f"method {method!r} needs bitsandbytes 4-bit weights on {device_type}: {problem}; "
                         "or use --method lora")


def qlora_compute_dtype() -> torch.dtype:
    """The dtype NF4 weights dequantize into for each matmul: bf16 (the QLoRA paper's) where the device runs bf16
    fast (train.py's rule, `bf16_supported`), else fp32. On a 2-core AVX2 CPU one SmolLM2 qlora step (8 x 75
    tokens, LoRA q/v, one thread) took 80 s in bf16 against 4.7 s in fp32: the weights stay 4-bit either way."""
    return torch.bfloat16 if bf16_supported() else torch.float32


def qlora_load_kwargs(args: MethodArguments) -> dict:
    from transformers import BitsAndBytesConfig

    dtype = qlora_compute_dtype()
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype)
    return {"quantization_config": quant, "torch_dtype": dtype}


def dequantize_4bit_into(quantized: nn.Module, target: nn.Module) -> int:
    """Copy every bitsandbytes NF4 weight of `quantized`, dequantized, into the same-named module of `target`
    (the same model loaded unquantized); returns how many. A qlora merge then adds LoRA to the weights the run
    trained against rather than to the checkpoint's, so the export computes what the run computed."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf

    modules = dict(target.named_modules())
    copied = 0
    for name, module in quantized.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = modules[name].weight
            with torch.no_grad():
                weight.copy_(bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state).to(weight))
            copied += 1
    return copied


def own_unquantized_weights(model: nn.Module) -> int:
    """Copy every CPU tensor of `model` that is not an NF4 weight (embeddings, norms, head) into memory of its own;
    returns how many elements. from_pretrained leaves them as views of the memory-mapped checkpoint, and that
    mapping then keeps every page the quantizer read resident: the full-precision source of each 4-bit weight.
    SmolLM2-135M (fp32 file) held 405 MiB of it after an NF4 load; the copy (its 28 M embedding values) frees it."""
    import bitsandbytes as bnb

    copied = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.device.type == "cpu" and not isinstance(tensor, bnb.nn.Params4bit):
            tensor.data = tensor.data.clone()
            copied += tensor.numel()
    return copied


def apply_qlora(model, args: MethodArguments):
    from peft import prepare_model_for_kbit_training

    own_unquantized_weights(model)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return apply_lora(model, args)


def lora_dropout(args: MethodArguments) -> float:
    """The LoRA dropout to build with: bind_method resolves the flag left unset (the set's schedule, else the
    default); a MethodArguments used directly (the library API, tests) gets the default."""
    return DEFAULT_LORA_DROPOUT if args.lora_dropout is None else args.lora_dropout


def _lora_settings(args: MethodArguments) -> dict:
    return {"lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_dropout": lora_dropout(args),
            "lora_target_modules": args.lora_target_modules or "default"}


def _head_settings(args: MethodArguments) -> dict:
    return {"cache_features": args.head_cache_features}


def _adapter_settings(args: MethodArguments) -> dict:
    return {"adapter_config": args.adapter_config, "reduction_factor": args.reduction_factor,
            "train_layernorm": args.adapter_train_layernorm}


@dataclass(frozen=True)
class Method:
    """One fine-tuning method: load-time changes, post-load changes, settings for run.json."""

    name: str
    apply: Callable  # (model, MethodArguments) -> model with the right parameters trainable
    learning_rate: float  # default when --learning_rate is not given
    help: str = ""
    settings: Callable[[MethodArguments], dict] = lambda args: {}
    load_kwargs: Callable[[MethodArguments], dict] = lambda args: {}  # extra from_pretrained kwargs
    check: Callable[[str], None] = lambda name: None  # raises ValueError when it cannot run here
    training_overrides: Dict[str, object] = field(default_factory=dict)  # TrainingArguments values
    memory_as: Optional[str] = None  # `ftlab memory`'s cost model (None: the method's own name)
    epochs: float = 3.0  # default --num_train_epochs: the most epochs; validation picks the best one
    lora_targets: Optional[str] = None  # default --lora_target_modules (None: peft's per-architecture default)
    # training FLOPs per base parameter and token (`ftlab bench`): forward 2; backward 2 for the input gradients
    # and 2 for the weight gradients (Kaplan et al. 2020). A frozen base skips its weight gradients but still
    # passes gradients through (4; the adapter/LoRA weights' own share is left out); a head over a frozen body
    # needs its forward only (2)
    flops_per_token_param: int = 4


# Schedules (learning rate, most epochs; validation picks the best epoch, run_sup.sh stops after 3
# epochs without improvement): chosen on validation with the embedded MiniLM, see README "Schedules".
# head: a sweep on cached features (lr 1e-3 / 3e-3 / 1e-2 x 40 epochs) on acl_sup and restaurant_sup;
# lora: `ftlab search` on restaurant_sup (results/search/restaurant_sup_lora) for lr; all linear layers and 15
# epochs from a validation check (README "Schedules"); adapter: lr 1e-3 and 20 epochs from validation
# trials on restaurant_sup (results/search/adapter_trials.md: 7 epochs at 6e-4 stopped still improving),
# its placement (houlsby), trained layer norms and reduction factor 4 from restaurant_sup's hold-out validation
# (results/search/adapter_holdout.md, adapter_size_lr.md; the 150-sentence dev file could not separate them);
# lora_scratch takes lora's learning rate (7 epochs, no search of its own); full: Gururangan et al. 2020's
# longer schedule with early stopping.
METHODS: Dict[str, Method] = {m.name: m for m in [
    Method("full", apply_full, 5e-5, "every parameter trains", epochs=10, flops_per_token_param=6),
    Method("head", apply_head, 1e-2, "only the classification head trains", _head_settings, epochs=20,
           flops_per_token_param=2),
    Method("lora", apply_lora, 6e-4, "peft LoRA on the target modules (default: all linear layers), head trains",
           _lora_settings, epochs=15, lora_targets=ALL_LINEAR),
    Method("lora_scratch", apply_lora_scratch, 6e-4, "our LoRALinear on the target modules, head trains",
           _lora_settings, memory_as="lora", epochs=7),
    Method("adapter", apply_adapter, 1e-3, "bottleneck adapters (adapters library), head trains", _adapter_settings,
           epochs=20),
    Method("qlora", apply_qlora, 2e-4, "4-bit NF4 base + peft LoRA, paged 8-bit AdamW (CUDA or CPU)",
           _lora_settings, load_kwargs=qlora_load_kwargs, check=check_bnb_4bit,
           training_overrides={"optim": "paged_adamw_8bit"}),
]}


def method_help() -> str:
    """'full (every parameter trains), head (...), ...' from the registry."""
    return ", ".join(f"{m.name} ({m.help})" for m in METHODS.values())


def learning_rate_help() -> str:
    """'full 5e-05, head 0.001, ...': the per-method default learning rates."""
    return ", ".join(f"{m.name} {m.learning_rate:g}" for m in METHODS.values())


def epochs_help() -> str:
    """'full 10, head 20, ...': the per-method default (maximum) epochs."""
    return ", ".join(f"{m.name} {m.epochs:g}" for m in METHODS.values())


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(unknown_choice("method", name, list(METHODS)))
    return METHODS[name]


@dataclass
class MethodArguments:
    """Which fine-tuning method to use and its settings (flags of train.py)."""

    method: str = field(default="lora", metadata={"help": f"Fine-tuning method: {method_help()}."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r (lora, lora_scratch, qlora)."})
    lora_alpha: float = field(default=16, metadata={
        "help": "LoRA alpha; the update is scaled by alpha / r."})
    lora_dropout: Optional[float] = field(default=None, metadata={
        "help": f"Dropout on the LoRA branch input (default {DEFAULT_LORA_DROPOUT}; a set's schedule may set its "
                "own: bbc_news + lora 0)."})
    lora_target_modules: Optional[str] = field(default=None, metadata={
        "help": "Comma-separated module names to wrap with LoRA (e.g. 'query,value'), or all-linear (every "
                "Linear of the base model's layers); default: lora all-linear, others peft's per-architecture "
                "default (query/value projections)."})
    adapter_config: str = field(default="houlsby", metadata={
        "help": "Bottleneck adapter config: houlsby (double_seq_bn, after attention and after the FFN; the "
                "default, chosen on restaurant_sup validation: results/search/adapter_holdout.md), pfeiffer "
                "(seq_bn, one adapter per layer after the FFN) or parallel (par_bn, beside the FFN, output x 4: "
                "He et al. 2022)."})
    reduction_factor: int = field(default=4, metadata={
        "help": "Adapter bottleneck size = hidden size / reduction_factor (default 4, MiniLM's 384 -> 96: chosen "
                "on restaurant_sup's hold-out validation over 16, results/search/adapter_size_lr.md)."})
    adapter_train_layernorm: bool = field(default=True, metadata={
        "help": "adapter: the body's LayerNorm weights and biases train too (Houlsby et al. 2019 train them "
                "per task; the adapters library freezes them: false)."})
    head_cache_features: bool = field(default=True, metadata={
        "help": "head: the frozen body computes the head's input once (eval mode) and the head trains on "
                "it for many cheap epochs (ftlab/speed/headcache.py); false: the body runs at every step."})


@dataclass(frozen=True)
class BoundMethod:
    """A method bound once to its arguments: what train.py calls, with nothing passed back in."""

    method: Method
    args: MethodArguments

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def learning_rate(self) -> float:
        return self.method.learning_rate

    @property
    def epochs(self) -> float:
        return self.method.epochs

    @property
    def training_overrides(self) -> Dict[str, object]:
        return self.method.training_overrides

    def apply(self, model):
        return self.method.apply(model, self.args)

    def load_kwargs(self) -> dict:
        return self.method.load_kwargs(self.args)

    def settings(self) -> dict:
        return self.method.settings(self.args)


def bind_method(args: MethodArguments, schedule: Optional[Mapping[str, Any]] = None) -> BoundMethod:
    """Look the method up and check that it can run here (one-line ValueError otherwise). The method's
    default LoRA targets, and the LoRA dropout (the data set's `schedule`'s where it sets one), are written into
    `args` when none were given, so run.json records them."""
    method = get_method(args.method)
    method.check(method.name)
    if args.lora_dropout is None:
        args.lora_dropout = (schedule or {}).get("lora_dropout", DEFAULT_LORA_DROPOUT)
    if not 0 <= args.lora_dropout < 1:
        raise ValueError(f"--lora_dropout {args.lora_dropout:g}: must be in [0, 1), e.g. 0.1 (0: no dropout)")
    if args.lora_target_modules is None and method.lora_targets:
        args.lora_target_modules = method.lora_targets
    return BoundMethod(method, args)

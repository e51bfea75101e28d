"""Frozen-encoder baseline: sentence features from any model + a linear SVM (scikit-learn).

    uv run ftlab baseline --dataset_name restaurant_sup --pooling cls --seed 1 --output_dir outputs/svm/seed1

The encoder never trains: every text becomes one vector ([CLS] token, mean of the tokens, or the
last token for decoders), a `StandardScaler` + `LinearSVC` learns on the train split and predicts
the other splits. Its regularisation strength C is chosen on validation like every trained method's
schedule: each C of `--C_grid` fits on train and the best validation score wins (`--C` fixes one).
Writes OUTPUT_DIR/run.json in the same shape as train.py (method "svm"; params.trainable = the SVM's
weights and biases, params.total = encoder + SVM), so `ftlab report` puts the baseline in the same table.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np
import sklearn
import torch

from ftlab import commandline
from ftlab.data import datasets as dataHelper
from ftlab.hardware import cpu_flags
from ftlab.io import split_list
from ftlab.metrics.classification import SCORE_NAMES, check_class_weight, classification_scores
from ftlab.models.checkpoints import load_tokenizer, resolve_model_name
from ftlab.runs.record import PeakMemory, build_record, library_versions, write_record

# Imported inside functions: transformers' AutoModel / HfArgumentParser and scikit-learn's SVM load inside the functions that use them: `--help` and bad flags answer without them.

logger = logging.getLogger("baseline")

DEFAULT_C = 1.0  # liblinear's default: the C of a set without a validation split to choose on
SELECTION_METRICS = SCORE_NAMES  # every score classification_scores returns; higher is better
EDGE_DECADES = 3  # a C chosen at the grid's edge extends the grid a decade at a time, at most this often


@dataclass
class BaselineArguments:
    """Flags of `ftlab baseline`."""

    model_name_or_path: str = field(default="minilm", metadata={
        "help": "Encoder: embedded name (minilm), Hub id or local folder."})
    dataset_name: str = field(default="bbc_news", metadata={
        "help": "dataHelper set name; comma-separated names aggregate (labels offset)."})
    data_dir: Optional[str] = field(default=None, metadata={
        "help": "Data folder (default: $DATA_DIR, then ./data)."})
    sep_token: Optional[str] = field(default=None, metadata={
        "help": "Separator between text parts (aspect term and sentence, MRPC pairs); default: the "
                "tokenizer's sep token."})
    validation: Optional[str] = field(default=None, metadata={
        "help": "restaurant_sup / laptop_sup: 'dev' or 'holdout' (as train.py's --validation); default: the set's."})
    pooling: str = field(default="cls", metadata={
        "help": "Sentence vector: cls (first token), mean (mean of non-pad tokens) or last (last "
                "non-pad token, for decoders)."})
    max_length: int = field(default=128, metadata={"help": "Tokens per text (longer texts are truncated)."})
    batch_size: int = field(default=64, metadata={"help": "Texts per encoder forward pass."})
    C: Optional[float] = field(default=None, metadata={
        "help": "SVM regularisation strength (LinearSVC C), fixed; default: chosen from --C_grid on validation."})
    C_grid: str = field(default="0.001,0.01,0.1,1,10", metadata={
        "help": "Comma-separated C values tried when --C is unset: each fits on train, the best validation "
                "--metric_for_best_model wins (ties: the smaller C, the stronger regularisation); a choice "
                f"at the grid's edge tries a decade further, at most {EDGE_DECADES} times. A set without a "
                f"validation split takes C={DEFAULT_C:g} (logged)."})
    metric_for_best_model: str = field(default="accuracy", metadata={
        "help": f"Validation metric that picks C ({', '.join(SELECTION_METRICS)}), as train.py's flag."})
    max_iter: int = field(default=10000, metadata={"help": "LinearSVC solver iterations."})
    class_weight: str = field(default="none", metadata={
        "help": "none, or balanced (rare classes weigh more: n / (classes x count), as train.py --class_weight)."})
    bf16: Optional[bool] = field(default=None, metadata={
        "help": "Run the encoder under bf16 autocast; default: on with CUDA or a CPU with AMX (there ~5x "
                "faster), off elsewhere (measured slower than fp32 on an AVX-512 CPU without AMX)."})
    seed: int = field(default=42, metadata={"help": "Seed of the SVM solver (and torch)."})
    output_dir: str = field(default="outputs/svm", metadata={"help": "Where run.json goes."})

    def __post_init__(self):
        check_class_weight(self.class_weight)
        dataHelper.check_names(self.dataset_name)
        get_pooling(self.pooling)
        for flag in ("max_length", "batch_size", "max_iter"):
            commandline.positive(getattr(self, flag), f"--{flag}", allow_none=False)
        commandline.require(not os.path.isfile(self.output_dir), f"--output_dir {self.output_dir} is a file: pass a folder")
        parse_c_grid(self.C_grid)
        if self.metric_for_best_model not in SELECTION_METRICS:
            raise ValueError(f"--metric_for_best_model {self.metric_for_best_model!r} cannot pick C; "
                             f"use one of: {', '.join(SELECTION_METRICS)}")
        if self.C is not None and not self.C > 0:
            raise ValueError(f"--C {self.C}: LinearSVC needs a positive C (e.g. 0.1), or leave it unset")


def parse_c_grid(text: str) -> tuple:
    """'0.01,0.1,1' -> (0.01, 0.1, 1.0), sorted; a one-line error for anything but positive numbers."""
    try:
        grid = tuple(sorted({float(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        grid = ()
    if not grid or grid[0] <= 0:
        raise ValueError(f"--C_grid {text!r}: give positive numbers separated by commas, e.g. 0.01,0.1,1")
    return grid


def choose_c(scores: Dict[float, float]) -> float:
    """The C with the best validation score; ties go to the smaller C (stronger regularisation)."""
    return max(sorted(scores), key=lambda c: scores[c])  # max keeps the first of equal scores


# ---------------------------------------------------------------------------- pooling
def pool_cls(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]  # (B, T, H) -> (B, H)


def pool_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1): pad tokens weigh 0
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def pool_last(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    last = mask.sum(1).clamp(min=1) - 1  # (B,) index of the last real token (right padding)
    return hidden[torch.arange(hidden.size(0)), last]


POOLINGS: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "cls": pool_cls,
    "mean": pool_mean,
    "last": pool_last,
}


def get_pooling(name: str):
    if name not in POOLINGS:
        raise ValueError(f"unknown --pooling {name!r}; valid: {', '.join(POOLINGS)}")
    return POOLINGS[name]


# ---------------------------------------------------------------------------- steps
def cpu_has_amx() -> bool:
    return "amx_bf16" in cpu_flags()


def use_bf16(requested: Optional[bool], device: torch.device) -> bool:
    if requested is not None:
        return requested
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_amx()


def load_encoder(name: str, device: torch.device):
    """(resolved path, tokenizer, bare encoder): AutoModel, frozen, in eval mode."""
    from transformers import AutoModel

    path = resolve_model_name(name)
    tokenizer = load_tokenizer(name)  # one-line error for unknown names; pad token for decoders
    tokenizer.padding_side = "right"  # pool_last relies on it
    model = AutoModel.from_pretrained(path).to(device).eval().requires_grad_(False)
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()  # BART/T5: the encoder stack alone gives token features
    return path, tokenizer, model


def load_data(args: BaselineArguments, tokenizer):
    """(DatasetDict, number of labels), as train.py loads them (same separator rule)."""
    return dataHelper.load_for_run(args.dataset_name, dataHelper.sep_token_for(tokenizer, args.sep_token),
                                   args.data_dir, validation=args.validation)


@torch.inference_mode()
def extract_features(texts, tokenizer, model, pooling, args: BaselineArguments, device) -> tuple[np.ndarray, int]:
    """(N, H) float32 sentence vectors of `texts`, and the number of real (non-pad) tokens."""
    texts = list(texts)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
    feats, tokens = [], 0
    for i in range(0, len(texts), args.batch_size):
        batch = tokenizer([texts[j] for j in order[i:i + args.batch_size]], padding=True, truncation=True,
                          max_length=args.max_length, return_tensors="pt").to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            hidden = model(**batch).last_hidden_state  # (B, T, H)
        feats.append(pooling(hidden.float(), batch["attention_mask"]).cpu())
        tokens += int(batch["attention_mask"].sum())
    out = np.empty((len(texts), feats[0].shape[1]) if feats else (0, 0), dtype=np.float32)
    if feats:
        out[order] = torch.cat(feats).numpy()  # back to the input order
    return out, tokens


def make_svm(args: BaselineArguments, C: float):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    # Scaling first: pooled features have a few large dimensions that slow liblinear down.
    weight = "balanced" if args.class_weight == "balanced" else None
    return make_pipeline(StandardScaler(), LinearSVC(C=C, max_iter=args.max_iter, random_state=args.seed,
                                                     class_weight=weight))


def classification_metrics(labels: np.ndarray, preds: np.ndarray, decision: np.ndarray, num_labels: int) -> dict:
    """train.py's metrics (the local `evaluate` script, same definitions) plus the SVM's hinge loss."""
    from sklearn.metrics import hinge_loss

    out = classification_scores(preds.tolist(), labels.tolist())
    # multi-class: Crammer-Singer hinge over all classes; binary: decision is (N,), labels 0/1
    out["loss"] = float(hinge_loss(labels, decision, labels=list(range(num_labels)) if num_labels > 2 else None))
    return {k: float(v) for k, v in out.items()}


# ---------------------------------------------------------------------------- main
@dataclass
class Split:
    """One split encoded once: (N, H) features, (N,) labels, real tokens, encoding seconds."""

    x: np.ndarray
    y: np.ndarray
    tokens: int
    seconds: float


def encode_splits(data, tokenizer, encoder, pooling, args: BaselineArguments, device) -> Dict[str, Split]:
    """train, validation (where the set has one) and test, each through the frozen encoder once."""
    out = {}
    for split in (s for s in ("train", "validation", "test") if s in data):
        t0 = time.perf_counter()
        x, tokens = extract_features(data[split]["text"], tokenizer, encoder, pooling, args, device)
        out[split] = Split(x, np.asarray(data[split]["label"]), tokens, time.perf_counter() - t0)
    return out


@dataclass
class Fit:
    """The trained SVM, how its C was chosen, and what training it cost."""

    svm: object  # sklearn Pipeline(StandardScaler, LinearSVC)
    C: float
    c_scores: Optional[Dict[float, float]]  # validation metric per C of the grid; None: C was fixed
    fit_seconds: float  # every LinearSVC.fit of the grid + scoring validation to choose


def candidate_cs(args: BaselineArguments, has_validation: bool) -> tuple:
    if args.C is not None:
        return (args.C,)
    if not has_validation:
        logger.warning("the set has no validation split to choose C on: C=%g (pass --C to set it)", DEFAULT_C)
        return (DEFAULT_C,)
    return parse_c_grid(args.C_grid)


def search_c(grid: tuple, score: Callable[[float], float], edge_decades: int = EDGE_DECADES) -> tuple:
    """(best C, {C: validation score}) over `grid`; while the best is the smallest (largest) C tried, one C a
    decade beyond it is scored too, at most `edge_decades` times: an optimum at the edge means the grid was
    too narrow."""
    scores = {c: score(c) for c in grid}
    best = choose_c(scores)
    for _ in range(edge_decades):
        if best == min(scores):
            extra = best / 10
        elif best == max(scores):
            extra = best * 10
        else:
            break
        scores[extra] = score(extra)
        best = choose_c(scores)
    return best, dict(sorted(scores.items()))


def fit_svm(splits: Dict[str, Split], args: BaselineArguments) -> Fit:
    """One SVM per candidate C on train; validation's --metric_for_best_model keeps one (test is not read)."""
    t0 = time.perf_counter()
    train = splits["train"]
    cs = candidate_cs(args, "validation" in splits)
    fits = {}

    def fitted(c: float):
        if c not in fits:
            fits[c] = make_svm(args, c).fit(train.x, train.y)
        return fits[c]

    if len(cs) == 1:
        return Fit(fitted(cs[0]), cs[0], None, time.perf_counter() - t0)
    val = splits["validation"]
    best, scores = search_c(cs, lambda c: classification_scores(
        fitted(c).predict(val.x).tolist(), val.y.tolist())[args.metric_for_best_model])
    logger.info("C on validation %s: %s", args.metric_for_best_model,
                ", ".join(f"{c:g}={v:.4f}" for c, v in scores.items()))
    return Fit(fits[best], best, scores, time.perf_counter() - t0)


def evaluate_splits(fit: Fit, splits: Dict[str, Split], num_labels: int) -> dict:
    """Metrics per split: validation where the set has one, test always."""
    return {name: classification_metrics(s.y, fit.svm.predict(s.x), fit.svm.decision_function(s.x), num_labels)
            for name, s in splits.items() if name != "train"}


def build_svm_record(args: BaselineArguments, model_path: str, encoder, fit: Fit, splits: Dict[str, Split],
                     metrics: dict, num_labels: int, memory: PeakMemory) -> dict:
    """The run.json contract (record.build_record) for one SVM run."""
    linear, train = fit.svm[-1], splits["train"]
    trainable = int(linear.coef_.size + linear.intercept_.size)  # (C or 1, H) weights + biases
    seconds = train.seconds + fit.fit_seconds  # training cost = encoding train + fitting (and choosing C)
    n = len(train.y)
    choice = {} if fit.c_scores is None else {
        "C_metric": args.metric_for_best_model, "C_validation": {f"{c:g}": v for c, v in fit.c_scores.items()}}
    return build_record(
        config=dataclasses.asdict(args), seed=args.seed, method="svm", model=args.model_name_or_path,
        model_path=model_path, dataset=",".join(split_list(args.dataset_name)),
        settings={"pooling": args.pooling, "C": fit.C}, metrics=metrics,
        params={"trainable": trainable, "total": trainable + sum(p.numel() for p in encoder.parameters())},
        time={"train_seconds": seconds, "samples_per_second": n / seconds, "tokens_per_second": train.tokens / seconds,
              "feature_seconds": train.seconds, "fit_seconds": fit.fit_seconds},
        memory=memory.result(),
        data={"train_samples": n, "num_labels": num_labels, "max_length": args.max_length,
              "mean_tokens": train.tokens / max(n, 1)},
        training={"steps": 0, "epochs": 0.0, "svm_iterations": int(linear.n_iter_), **choice},
        versions=library_versions(**{"scikit-learn": sklearn.__version__}))


def run(args: BaselineArguments) -> dict:
    """Encode every split, fit the SVM (choosing C on validation), evaluate, write run.json; return the record."""
    pooling = get_pooling(args.pooling)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args = dataclasses.replace(args, bf16=use_bf16(args.bf16, device))
    memory = PeakMemory()  # baseline taken now, before the encoder loads (the run.json contract)
    model_path, tokenizer, encoder = load_encoder(args.model_name_or_path, device)
    data, num_labels = load_data(args, tokenizer)
    splits = encode_splits(data, tokenizer, encoder, pooling, args, device)
    fit = fit_svm(splits, args)
    metrics = evaluate_splits(fit, splits, num_labels)
    record = build_svm_record(args, model_path, encoder, fit, splits, metrics, num_labels, memory)
    write_record(args.output_dir, record)
    return record


def parse_args(argv=None) -> BaselineArguments:
    from transformers import HfArgumentParser

    (args,) = commandline.parse_dataclasses(HfArgumentParser(BaselineArguments, prog="ftlab baseline"), argv)
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        record = run(args)
    except (ValueError, FileNotFoundError) as e:
        return commandline.fail(e)
    for split, m in record["metrics"].items():
        print(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()))
    params = record["params"]
    print(f"C={record['settings']['C']:g}; trainable {params['trainable']:,} of {params['total']:,}; "
          f"train {record['time']['train_seconds']:.1f}s; wrote {os.path.join(args.output_dir, 'run.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

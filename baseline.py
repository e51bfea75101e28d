"""Frozen-encoder baseline: sentence features from any model + a linear SVM (scikit-learn).

    uv run baseline.py --dataset_name restaurant_sup --pooling cls --seed 1 --output_dir outputs/svm/seed1

The encoder never trains: every text becomes one vector ([CLS] token, mean of the tokens, or the
last token for decoders), a `StandardScaler` + `LinearSVC` learns on the train split and predicts
the other splits. Writes OUTPUT_DIR/run.json in the same shape as train.py (method "svm";
params.trainable = the SVM's weights and biases, params.total = encoder + SVM), so report.py puts
the baseline in the same table.
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

import dataHelper
from ftio import split_list
from models import load_tokenizer, resolve_model_name
from record import PeakMemory, build_record, cpu_flags, library_versions, write_record
from scores import check_class_weight, classification_scores

logger = logging.getLogger("baseline")


@dataclass
class BaselineArguments:
    """Flags of baseline.py."""

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
    C: float = field(default=1.0, metadata={"help": "SVM regularisation strength (LinearSVC C)."})
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


def make_svm(args: BaselineArguments):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    # Scaling first: pooled features have a few large dimensions that slow liblinear down.
    weight = "balanced" if args.class_weight == "balanced" else None
    return make_pipeline(StandardScaler(), LinearSVC(C=args.C, max_iter=args.max_iter, random_state=args.seed,
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
class Fit:
    """The trained SVM and what training it cost."""

    svm: object  # sklearn Pipeline(StandardScaler, LinearSVC)
    train_samples: int
    train_tokens: int
    feature_seconds: float  # encoding the train split
    fit_seconds: float  # LinearSVC.fit


def fit_svm(data, tokenizer, encoder, pooling, args: BaselineArguments, device) -> Fit:
    t0 = time.perf_counter()
    x_train, tokens = extract_features(data["train"]["text"], tokenizer, encoder, pooling, args, device)
    t1 = time.perf_counter()
    svm = make_svm(args).fit(x_train, np.asarray(data["train"]["label"]))
    return Fit(svm, len(x_train), tokens, t1 - t0, time.perf_counter() - t1)


def evaluate_splits(fit: Fit, data, tokenizer, encoder, pooling, args, device, num_labels: int) -> dict:
    """Metrics per split: validation where the set has one, test always."""
    metrics = {}
    for split in (s for s in ("validation", "test") if s in data):
        x, _ = extract_features(data[split]["text"], tokenizer, encoder, pooling, args, device)
        y = np.asarray(data[split]["label"])
        metrics[split] = classification_metrics(y, fit.svm.predict(x), fit.svm.decision_function(x), num_labels)
    return metrics


def build_svm_record(args: BaselineArguments, model_path: str, encoder, fit: Fit, metrics: dict, num_labels: int,
                     memory: PeakMemory) -> dict:
    """The run.json contract (record.build_record) for one SVM run."""
    linear = fit.svm[-1]
    trainable = int(linear.coef_.size + linear.intercept_.size)  # (C or 1, H) weights + biases
    seconds = fit.feature_seconds + fit.fit_seconds  # training cost = encoding train + fitting
    return build_record(
        config=dataclasses.asdict(args), seed=args.seed, method="svm", model=args.model_name_or_path,
        model_path=model_path, dataset=",".join(split_list(args.dataset_name)),
        settings={"pooling": args.pooling, "C": args.C}, metrics=metrics,
        params={"trainable": trainable, "total": trainable + sum(p.numel() for p in encoder.parameters())},
        time={"train_seconds": seconds, "samples_per_second": fit.train_samples / seconds,
              "tokens_per_second": fit.train_tokens / seconds,
              "feature_seconds": fit.feature_seconds, "fit_seconds": fit.fit_seconds},
        memory=memory.result(),
        data={"train_samples": fit.train_samples, "num_labels": num_labels, "max_length": args.max_length,
              "mean_tokens": fit.train_tokens / max(fit.train_samples, 1)},
        training={"steps": 0, "epochs": 0.0, "svm_iterations": int(linear.n_iter_)},
        versions=library_versions(**{"scikit-learn": sklearn.__version__}))


def run(args: BaselineArguments) -> dict:
    """Extract features, fit the SVM, evaluate every split, write run.json; return the record."""
    pooling = get_pooling(args.pooling)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args = dataclasses.replace(args, bf16=use_bf16(args.bf16, device))
    memory = PeakMemory()  # baseline taken now, before the encoder loads (the run.json contract)
    model_path, tokenizer, encoder = load_encoder(args.model_name_or_path, device)
    data, num_labels = load_data(args, tokenizer)
    fit = fit_svm(data, tokenizer, encoder, pooling, args, device)
    metrics = evaluate_splits(fit, data, tokenizer, encoder, pooling, args, device, num_labels)
    record = build_svm_record(args, model_path, encoder, fit, metrics, num_labels, memory)
    write_record(args.output_dir, record)
    return record


def parse_args(argv=None) -> BaselineArguments:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BaselineArguments).parse_args_into_dataclasses(args=argv)
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        record = run(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, m in record["metrics"].items():
        print(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items()))
    print(f"trainable {record['params']['trainable']:,} of {record['params']['total']:,}; "
          f"train {record['time']['train_seconds']:.1f}s; wrote {os.path.join(args.output_dir, 'run.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

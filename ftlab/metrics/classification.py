"""Classification scores shared by training, the SVM baseline and predict (one definition each).

`compute_metrics(p)` is the course's contract: it takes what Trainer passes (an `EvalPrediction`),
any object with `.predictions` and `.label_ids`, or a `(predictions, label_ids)` tuple, and returns
accuracy, micro_f1, macro_f1, weight_f1 from the local `evaluate` script evaluate_classification.py beside it
(loaded by path: works offline).
"""
from __future__ import annotations

import os
from typing import Dict, Sequence

import numpy as np

# Imported inside functions: `evaluate` loads on the first score (heavy; the metric module is imported by every trainer).

METRIC_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "evaluate_classification.py")
_METRIC = None
SCORE_NAMES = ("accuracy", "micro_f1", "macro_f1", "weight_f1")  # what classification_scores returns


def classification_scores(predictions: Sequence[int], references: Sequence[int]) -> Dict[str, float]:
    """accuracy, micro_f1, macro_f1, weight_f1 of integer class predictions."""
    global _METRIC
    if _METRIC is None:
        import evaluate

        _METRIC = evaluate.load(METRIC_SCRIPT)
    out = _METRIC.compute(predictions=list(map(int, predictions)), references=list(map(int, references)))
    return {k: float(v) for k, v in out.items()}


def unpack_eval_prediction(eval_pred):
    """(logits array (N, C), label ids (N,)) from what a caller passes to compute_metrics.

    `predictions` may be a tuple whose first item is the logits (BART returns (logits, encoder
    states)) or a nested list."""
    if hasattr(eval_pred, "predictions") and hasattr(eval_pred, "label_ids"):
        logits, labels = eval_pred.predictions, eval_pred.label_ids
    elif isinstance(eval_pred, (tuple, list)) and len(eval_pred) == 2:
        logits, labels = eval_pred
    else:
        raise TypeError(f"compute_metrics: expected an EvalPrediction, an object with .predictions and "
                        f".label_ids, or a (predictions, label_ids) tuple; got {type(eval_pred).__name__}")
    if isinstance(logits, (tuple, list)) and len(logits) and np.ndim(logits[0]) == 2:
        logits = logits[0]  # (logits, extra outputs ...); a plain nested list has 1-D rows
    return np.asarray(logits), np.asarray(labels).reshape(-1)


def compute_metrics(eval_pred) -> Dict[str, float]:
    """accuracy, micro_f1, macro_f1, weight_f1 of argmax predictions."""
    logits, labels = unpack_eval_prediction(eval_pred)
    return classification_scores(np.argmax(logits, axis=-1), labels)


CLASS_WEIGHTS = ("none", "balanced")  # train.py and `ftlab baseline` --class_weight


def check_class_weight(value: str) -> None:
    """One-line ValueError unless `value` is a --class_weight choice."""
    if value not in CLASS_WEIGHTS:
        raise ValueError(f"--class_weight {value!r} is not one of: {', '.join(CLASS_WEIGHTS)}")

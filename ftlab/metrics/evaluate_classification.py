"""Classification metrics as a local `evaluate` metric: accuracy, micro/macro/weighted F1.

Load it by path (works offline): `evaluate.load("ftlab/metrics/evaluate_classification.py")`.
`weight_f1` is the support-weighted mean of per-class F1 (scikit-learn `average="weighted"`).
"""
import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score

_DESCRIPTION = "Accuracy and micro/macro/weighted F1 of integer class predictions."
_KWARGS_DESCRIPTION = """
Args:
    predictions (list[int]): predicted class ids.
    references (list[int]): gold class ids.
Returns:
    accuracy, micro_f1, macro_f1, weight_f1 (floats in [0, 1]).
Example:
    >>> m = evaluate.load("ftlab/metrics/evaluate_classification.py")
    >>> m.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]
    0.6666666666666666
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references):
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "micro_f1": float(f1_score(references, predictions, average="micro")),
            "macro_f1": float(f1_score(references, predictions, average="macro")),
            "weight_f1": float(f1_score(references, predictions, average="weighted")),
        }

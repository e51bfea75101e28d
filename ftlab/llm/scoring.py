"""Score generated text against references: BLEU-4, ROUGE-L, ROUGE-Lsum, BERTScore (and corpus BLEU);
TAT-QA answers by exact match and numeracy-aware F1. The body of `uv run eval.py`:

    uv run eval.py saves/samsum/predict/generated_predictions.jsonl [--out metrics.json]
        [--bertscore_model facebook/bart-large | --no_bertscore]
    uv run eval.py saves/tatqa/predict/generated_predictions.jsonl [--task tatqa]
        [--tatqa_gold $DATA_DIR/tatqa/tatqa_dataset_test_gold.json]

Reads LLaMA-Factory's `generated_predictions.jsonl` (one `{"prompt", "predict", "label"}` object
a line), prints a table and writes the metrics as JSON (atomically). The metrics' definitions:
ftlab/metrics/text_generation.py and ftlab/metrics/tatqa.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from transformers import HfArgumentParser

from ftlab import commandline
from ftlab.io import read_jsonl, write_json_atomic
from ftlab.metrics import tatqa as tatqa_metric
from ftlab.metrics.text_generation import (
    DEFAULT_BERTSCORE_MODEL,
    compute_bertscore,
    compute_bleu,
    compute_corpus_bleu,
    compute_rouge,
    compute_rouge_lsum,
    sentence_splitter,
)


# ---------------------------------------------------------------- predictions file
def load_prediction_rows(path: str, pred_field: str = "predict", label_field: str = "label") -> List[Dict[str, str]]:
    """Read LLaMA-Factory's generated_predictions.jsonl -> [{"prompt", "predict", "label"}] (stripped text)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"predictions file {path!r} not found: pass the generated_predictions.jsonl "
                                "written by `llamafactory-cli train <predict yaml>` or `ftlab inference predict`")
    rows = []
    for lineno, row in read_jsonl(path):
        missing = [k for k in (pred_field, label_field) if k not in row]
        if missing:
            raise ValueError(f"{path} line {lineno}: missing field(s) {missing}; each line needs "
                             f"{pred_field!r} and {label_field!r} (set --pred_field/--label_field)")
        wrong = [k for k in (pred_field, label_field) if not isinstance(row[k], (str, type(None)))]
        if wrong:  # a number or a list here used to end in AttributeError ('int' object has no attribute 'strip')
            raise ValueError(f"{path} line {lineno}: {wrong[0]!r} is {row[wrong[0]]!r}, not text: write generated "
                             f"text there (a quoted JSON string), or point --{'pred' if wrong[0] == pred_field else 'label'}"
                             "_field at the text field")
        # LLaMA-Factory's labels end with the template's "\n" after the end-of-turn token.
        rows.append({"prompt": str(row.get("prompt") or ""), "predict": (row[pred_field] or "").strip(),
                     "label": (row[label_field] or "").strip()})
    if not rows:
        raise ValueError(f"predictions file {path!r} has no lines to score")
    return rows


def load_predictions(path: str, pred_field: str = "predict", label_field: str = "label"):
    """Read LLaMA-Factory's generated_predictions.jsonl -> (references, candidates)."""
    rows = load_prediction_rows(path, pred_field, label_field)
    return [r["label"] for r in rows], [r["predict"] for r in rows]


# The opening words of ftlab.data.llamafactory.TATQA_INSTRUCTION (not imported: the llm layer reads
# predictions files, whatever wrote them).
TATQA_MARKER = "Answer the question about the financial report"
TASKS = ("auto", "summary", "tatqa")


def detect_task(rows: Sequence[Dict[str, str]]) -> str:
    """'tatqa' when every prompt holds the TAT-QA instruction, else 'summary'."""
    return "tatqa" if all(TATQA_MARKER in r["prompt"] for r in rows) else "summary"


# ---------------------------------------------------------------- CLI
@dataclass
class EvalOptions:
    """eval.py's flags (HfArgumentParser); the predictions file is the one positional argument."""

    out: Optional[str] = field(default=None, metadata={
        "help": "metrics JSON to write (default: metrics.json next to the predictions file)"})
    bertscore_model: str = field(default=DEFAULT_BERTSCORE_MODEL, metadata={
        "help": "BERTScore scoring model: Hub id, local folder or an embedded name (minilm)"})
    no_bertscore: bool = field(default=False, metadata={"help": "skip BERTScore (no scoring model needed)"})
    bertscore_num_layers: Optional[int] = field(default=None, metadata={
        "help": "layer to score with (default: bert-score's tuned layer, else the last layer)"})
    bertscore_batch_size: int = field(default=32, metadata={"help": "pairs per BERTScore forward pass"})
    pred_field: str = field(default="predict", metadata={"help": "JSON field holding the prediction"})
    label_field: str = field(default="label", metadata={"help": "JSON field holding the reference"})
    task: str = field(default="auto", metadata={
        "help": "summary (BLEU, ROUGE, BERTScore) or tatqa (EM, F1); auto: tatqa when every prompt holds "
                "the TAT-QA instruction", "choices": TASKS})
    tatqa_gold: Optional[str] = field(default=None, metadata={
        "help": "raw TAT-QA file the predictions come from (e.g. tatqa_dataset_test_gold.json): gold answers, "
                "scales and answer types instead of the label text"})


@dataclass
class EvalArgs(EvalOptions):
    predictions: str = field(default="", metadata={"help": "LLaMA-Factory generated_predictions.jsonl"})


def parse_args(argv: Optional[List[str]] = None) -> EvalArgs:
    parser = HfArgumentParser(EvalOptions, prog="eval.py", description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help=EvalArgs.__dataclass_fields__["predictions"].metadata["help"])
    opts, rest = commandline.parse_dataclasses(parser, argv)
    if opts.no_bertscore and opts.bertscore_model != DEFAULT_BERTSCORE_MODEL:
        parser.error("--bertscore_model and --no_bertscore exclude each other: pass one")
    if opts.tatqa_gold and opts.task == "summary":
        parser.error("--tatqa_gold is for --task tatqa (or auto), not summary")
    return EvalArgs(**dataclasses.asdict(opts), predictions=rest.predictions)


def score_all(references: List[str], candidates: List[str], args: EvalArgs) -> Dict[str, object]:
    """Every metric, with the seconds each took (library imports timed on their own)."""
    metrics: Dict[str, object] = {"task": "summary", "n": len(references),
                                  "empty_predictions": sum(not c.strip() for c in candidates),
                                  "empty_references": sum(not r.strip() for r in references),
                                  "rouge_lsum_sentences": sentence_splitter()}
    steps: Dict[str, Callable[[], object]] = {
        # nltk pulls in scipy/sklearn/pandas (seconds on a busy CPU): timed apart from the scoring.
        "imports": lambda: [importlib.import_module(m) for m in
                            ("nltk.translate.bleu_score", "rouge_score.rouge_scorer", "sacrebleu")],
        "bleu": lambda: compute_bleu(references, candidates),
        "rouge_l": lambda: compute_rouge(references, candidates),
        "rouge_lsum": lambda: compute_rouge_lsum(references, candidates),
        "corpus_bleu": lambda: compute_corpus_bleu(references, candidates),
    }
    if not args.no_bertscore:
        steps["bertscore_f1"] = lambda: compute_bertscore(
            references, candidates, args.bertscore_model, args.bertscore_num_layers, args.bertscore_batch_size)
        metrics["bertscore_model"] = args.bertscore_model
    seconds = {}
    for name, fn in steps.items():
        start = time.perf_counter()
        value = fn()
        if name != "imports":
            metrics[name] = value
        seconds[name] = round(time.perf_counter() - start, 3)
    metrics["seconds"] = seconds
    return metrics


def score_tatqa_answers(references: List[str], candidates: List[str],
                        gold_path: Optional[str] = None) -> Dict[str, object]:
    """TAT-QA exact match, F1 and scale accuracy; gold from the labels or the raw file `gold_path`."""
    golds: List[object] = list(references)
    if gold_path:
        golds = tatqa_metric.match_raw_gold(references, tatqa_metric.load_raw_gold(gold_path), gold_path)
    scores = tatqa_metric.score_tatqa(golds, candidates)
    return {"tatqa_em": scores["em"], "tatqa_f1": scores["f1"], "tatqa_scale_accuracy": scores["scale_accuracy"],
            "tatqa_gold": os.path.abspath(gold_path) if gold_path else "labels"}


def format_table(metrics: Dict[str, object]) -> str:
    names = {"bleu": "BLEU-4 (mean sentence, nltk)", "rouge_l": "ROUGE-L F1",
             "rouge_lsum": f"ROUGE-Lsum F1 (sentences: {metrics.get('rouge_lsum_sentences')})",
             "corpus_bleu": "corpus BLEU (sacrebleu)",
             "bertscore_f1": f"BERTScore F1 ({metrics.get('bertscore_model')})",
             "tatqa_em": "TAT-QA exact match", "tatqa_f1": "TAT-QA F1 (numeracy-aware)",
             "tatqa_scale_accuracy": "TAT-QA scale accuracy"}
    rows = [(label, metrics[key]) for key, label in names.items() if key in metrics]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{label:<{width}}  {value:.4f}" for label, value in rows]
    lines.append(f"({metrics['n']} pairs, {metrics['empty_predictions']} empty predictions)")
    return "\n".join(lines)


def evaluate(args: EvalArgs) -> Dict[str, object]:
    """Read the predictions, pick the task, score: the metrics dict the CLI prints and writes."""
    rows = load_prediction_rows(args.predictions, args.pred_field, args.label_field)
    references, candidates = [r["label"] for r in rows], [r["predict"] for r in rows]
    task = detect_task(rows) if args.task == "auto" else args.task
    if task != "tatqa" and args.tatqa_gold:
        raise ValueError("--tatqa_gold given but the prompts are not TAT-QA questions: pass --task tatqa")
    tatqa: Dict[str, object] = {}
    if task == "tatqa":  # before the slow text metrics: a wrong --tatqa_gold fails at once
        start = time.perf_counter()
        tatqa = score_tatqa_answers(references, candidates, args.tatqa_gold)
        tatqa["seconds"] = round(time.perf_counter() - start, 3)
    metrics = score_all(references, candidates, args)  # for TAT-QA too: the text metrics stay comparable
    if tatqa:
        metrics["seconds"]["tatqa"] = tatqa.pop("seconds")
        metrics.update(tatqa, task="tatqa")
    metrics["predictions"] = os.path.abspath(args.predictions)
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        metrics = evaluate(args)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.predictions)), "metrics.json")
        write_json_atomic(out, metrics)
    except (ValueError, OSError) as exc:  # OSError: FileNotFoundError, an unwritable --out
        return commandline.fail(exc)
    print(format_table(metrics))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

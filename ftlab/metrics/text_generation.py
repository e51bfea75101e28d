"""Score generated text against references: BLEU-4, ROUGE-L, ROUGE-Lsum, BERTScore (and corpus BLEU
in the CLI); TAT-QA answers by exact match and numeracy-aware F1.

    uv run eval.py saves/samsum/predict/generated_predictions.jsonl [--out metrics.json]
        [--bertscore_model facebook/bart-large | --no_bertscore]
    uv run eval.py saves/tatqa/predict/generated_predictions.jsonl [--task tatqa]
        [--tatqa_gold $DATA_DIR/tatqa/tatqa_dataset_test_gold.json]

Reads LLaMA-Factory's `generated_predictions.jsonl` (one `{"prompt", "predict", "label"}` object
a line), prints a table and writes the metrics as JSON (atomically). Every metric is a float in
[0, 1] and counts *words*, never characters (LLaMA-Factory's own scorer counts BLEU on characters).

Definitions (the course's):
- `compute_bleu`: the mean over pairs of nltk's sentence-level BLEU-4 (uniform weights) on
  whitespace tokens, case-sensitive, no smoothing. Without smoothing a pair with no matching
  4-gram (e.g. any candidate shorter than 4 words) scores ~0: nltk returns 0 (no unigram match)
  or a tiny float (1e-77 with one n-gram order unmatched, 1e-155 with two) after its "0 counts of
  n-gram overlaps" warning, which we silence. So short outputs pull the mean down hard;
  `corpus_bleu` (sacrebleu) pools n-gram counts over the whole set and is the figure papers quote.
- `compute_rouge`: the mean over pairs of rouge-score's ROUGE-L F1 (longest common subsequence;
  its tokenizer lowercases and keeps only [a-z0-9] runs; Porter stemming on by default).
- `compute_rouge_lsum`: the mean over pairs of rouge-score's ROUGE-Lsum F1 (the union LCS of each
  reference sentence against all candidate sentences, so sentence order matters less). Sentences
  are the summary's lines; a line is further split after . ! or ? followed by a space (a regex:
  nltk's punkt model, which rouge-score's own `split_summaries` needs, is not installed offline;
  `sentence_splitter()` says which one runs and the CLI reports it).
- TAT-QA (`--task tatqa`, chosen automatically when the prompts hold lfdata's TAT-QA
  instruction): exact match and F1 of `tatqa_metric` (numbers with commas, percentages, scale words,
  "(1,234)" negatives, answer lists in any order), gold from the label text or, with
  `--tatqa_gold`, from the raw TAT-QA file (answer + scale + answer type); the text metrics above
  are computed as well.
- `compute_bertscore`: the mean over pairs of bert-score's F1 (greedy cosine matching of
  contextual token embeddings), scorer `facebook/bart-large` by default; any local model folder
  or Hub id works (offline: a local folder, e.g. the name `minilm`).
A pair whose prediction or reference is empty scores 0 (with one warning for all such pairs).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from ftio import read_jsonl, write_json_atomic

logger = logging.getLogger("eval")

DEFAULT_BERTSCORE_MODEL = "facebook/bart-large"

# Scores one list of non-empty pairs -> one score per pair.
PairScorer = Callable[[List[str], List[str]], List[float]]


# ---------------------------------------------------------------- input checks and the pair loop
def _check_pairs(references: Sequence[str], candidates: Sequence[str]) -> None:
    if len(references) != len(candidates):
        raise ValueError(
            f"references has {len(references)} items but candidates has {len(candidates)}: "
            "pass one candidate per reference")
    if len(references) == 0:
        raise ValueError("no pairs to score: references and candidates are empty")
    for name, items in (("references", references), ("candidates", candidates)):
        bad = next((i for i, x in enumerate(items) if x is not None and not isinstance(x, str)), None)
        if bad is not None:
            raise ValueError(f"{name}[{bad}] is {type(items[bad]).__name__}, not str: pass text")


def _mean_over_pairs(references: Sequence[str], candidates: Sequence[str], scorer: PairScorer,
                     metric: str) -> float:
    """Mean of `scorer` over all pairs; pairs with an empty side score 0 (one warning)."""
    _check_pairs(references, candidates)
    keep = [i for i, (r, c) in enumerate(zip(references, candidates))
            if r is not None and c is not None and r.strip() and c.strip()]
    n_empty = len(references) - len(keep)
    if n_empty:
        logger.warning("%s: %d of %d pairs have an empty prediction or reference; they score 0",
                       metric, n_empty, len(references))
    if not keep:
        return 0.0
    scores = scorer([references[i] for i in keep], [candidates[i] for i in keep])
    return float(sum(scores)) / len(references)


# ---------------------------------------------------------------- BLEU
def _bleu_pairs(references: List[str], candidates: List[str]) -> List[float]:
    from nltk.translate.bleu_score import sentence_bleu

    with warnings.catch_warnings():
        # nltk warns once per pair without a matching n-gram order; the module doc explains the ~0.
        warnings.simplefilter("ignore", UserWarning)
        return [sentence_bleu([r.split()], c.split()) for r, c in zip(references, candidates)]


def compute_bleu(references: Sequence[str], candidates: Sequence[str]) -> float:
    """Mean sentence-level BLEU-4 (nltk, whitespace tokens, no smoothing), in [0, 1]."""
    return _mean_over_pairs(references, candidates, _bleu_pairs, "BLEU")


def compute_corpus_bleu(references: Sequence[str], candidates: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU (13a tokenizer, pooled n-gram counts), scaled to [0, 1]."""
    import sacrebleu

    _check_pairs(references, candidates)
    return sacrebleu.corpus_bleu([c or "" for c in candidates], [[r or "" for r in references]]).score / 100


# ---------------------------------------------------------------- ROUGE-L
def compute_rouge(references: Sequence[str], candidates: Sequence[str], use_stemmer: bool = True) -> float:
    """Mean ROUGE-L F1 (rouge-score), in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)

    def pairs(refs: List[str], cands: List[str]) -> List[float]:
        return [scorer.score(r, c)["rougeL"].fmeasure for r, c in zip(refs, cands)]

    return _mean_over_pairs(references, candidates, pairs, "ROUGE-L")


# ---------------------------------------------------------------- ROUGE-Lsum
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _punkt_available() -> bool:
    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab/english")
        return True
    except (ImportError, LookupError):
        return False


def sentence_splitter() -> str:
    """'nltk-punkt' when nltk's punkt data is on disk, else 'regex' (split after . ! ? + space)."""
    return "nltk-punkt" if _punkt_available() else "regex"


def split_sentences(text: str, splitter: Optional[str] = None) -> str:
    """`text` with one sentence a line (ROUGE-Lsum's input): existing lines kept, each line split further."""
    splitter = splitter or sentence_splitter()
    if splitter == "nltk-punkt":
        from nltk.tokenize import sent_tokenize

        split = sent_tokenize
    else:
        split = _SENTENCE_END.split
    return "\n".join(s.strip() for line in text.splitlines() for s in split(line) if s.strip())


def compute_rouge_lsum(references: Sequence[str], candidates: Sequence[str], use_stemmer: bool = True) -> float:
    """Mean ROUGE-Lsum F1 (rouge-score, summaries split into sentences by `split_sentences`), in [0, 1]."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=use_stemmer)
    splitter = sentence_splitter()

    def pairs(refs: List[str], cands: List[str]) -> List[float]:
        return [scorer.score(split_sentences(r, splitter), split_sentences(c, splitter))["rougeLsum"].fmeasure
                for r, c in zip(refs, cands)]

    return _mean_over_pairs(references, candidates, pairs, "ROUGE-Lsum")


# ---------------------------------------------------------------- BERTScore
def _resolve_scorer(model: str) -> str:
    """Embedded names (`minilm`) -> their local folder; Hub ids and paths pass through."""
    try:
        from models import resolve_model_name
    except ImportError:  # eval.py copied on its own next to the predictions
        return model
    try:
        return resolve_model_name(model)
    except ValueError as exc:  # offline and neither embedded, a folder nor cached
        raise ValueError(f"cannot load BERTScore model {model!r} ({exc}); pass a local model folder "
                         "(--bertscore_model minilm) or --no_bertscore") from None


def bertscore_num_layers(model: str) -> int:
    """The layer whose embeddings bert-score compares.

    Known scorers use bert-score's tuned layer (bart-large: 10 of 12); for any other model
    (a local folder, a new Hub id) bert-score has no entry and would raise KeyError, so we use
    its last layer: config.num_hidden_layers (BERT, Qwen, ...), encoder_layers (BART: only the
    encoder runs) or n_layers (DistilBERT).
    """
    from bert_score.utils import model2layers
    from transformers import AutoConfig

    if model in model2layers:
        return model2layers[model]
    config = AutoConfig.from_pretrained(model)
    for attr in ("encoder_layers", "num_hidden_layers", "n_layers"):
        if isinstance(getattr(config, attr, None), int):
            return getattr(config, attr)
    raise ValueError(f"cannot tell the number of layers of BERTScore model {model!r}: pass num_layers")


def compute_bertscore(references: Sequence[str], candidates: Sequence[str],
                      model: str = DEFAULT_BERTSCORE_MODEL, num_layers: Optional[int] = None,
                      batch_size: int = 32, device: Optional[str] = None) -> float:
    """Mean BERTScore F1 with scoring model `model` (Hub id, local folder or `minilm`), in [0, 1].

    Pairs go through the model `batch_size` at a time. Per-pair F1 is a cosine similarity, in
    [-1, 1] in theory; we clip it to [0, 1] (a negative match is as good as none).
    """
    path = _resolve_scorer(model)

    def pairs(refs: List[str], cands: List[str]) -> List[float]:
        from bert_score import BERTScorer

        try:
            layers = num_layers if num_layers is not None else bertscore_num_layers(path)
            scorer = BERTScorer(model_type=path, num_layers=layers, batch_size=batch_size, device=device)
        except OSError as exc:  # not on disk and no Hub access
            raise ValueError(
                f"cannot load BERTScore model {model!r} ({str(exc).splitlines()[0]}); offline, pass a "
                "local model folder (--bertscore_model minilm) or --no_bertscore") from exc
        # Some saved tokenizers carry model_max_length = 1e30; truncate at the model's positions.
        max_pos = getattr(scorer._model.config, "max_position_embeddings", None)
        if max_pos and scorer._tokenizer.model_max_length > max_pos:
            scorer._tokenizer.model_max_length = max_pos
        _, _, f1 = scorer.score(cands, refs, batch_size=batch_size)  # f1: (n_pairs,)
        return f1.clamp(0.0, 1.0).tolist()

    return _mean_over_pairs(references, candidates, pairs, "BERTScore")


# ---------------------------------------------------------------- predictions file
def load_prediction_rows(path: str, pred_field: str = "predict", label_field: str = "label") -> List[Dict[str, str]]:
    """Read LLaMA-Factory's generated_predictions.jsonl -> [{"prompt", "predict", "label"}] (stripped text)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"predictions file {path!r} not found: pass the generated_predictions.jsonl "
                                "written by `llamafactory-cli train <predict yaml>` or `inference.py predict`")
    rows = []
    for lineno, row in read_jsonl(path):
        missing = [k for k in (pred_field, label_field) if k not in row]
        if missing:
            raise ValueError(f"{path} line {lineno}: missing field(s) {missing}; each line needs "
                             f"{pred_field!r} and {label_field!r} (set --pred_field/--label_field)")
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


# The opening words of lfdata.TATQA_INSTRUCTION (not imported: eval.py also runs on its own).
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
    from transformers import HfArgumentParser

    parser = HfArgumentParser(EvalOptions, description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help=EvalArgs.__dataclass_fields__["predictions"].metadata["help"])
    opts, rest = parser.parse_args_into_dataclasses(args=argv)
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
    import tatqa_metric

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
    args = parse_args(argv)
    try:
        metrics = evaluate(args)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.predictions)), "metrics.json")
        write_json_atomic(out, metrics)
    except (ValueError, OSError) as exc:  # OSError: FileNotFoundError, an unwritable --out
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(metrics))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

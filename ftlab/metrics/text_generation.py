"""Text-generation metrics: BLEU-4, ROUGE-L, ROUGE-Lsum, BERTScore, corpus BLEU (the course's
`compute_bleu` / `compute_rouge` / `compute_bertscore`, re-exported by the root eval.py).

Every metric is a float in [0, 1] and counts *words*, never characters (LLaMA-Factory's own scorer
counts BLEU on characters). The CLI that scores a predictions file is ftlab/llm/scoring.py (`uv run eval.py`).

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
- TAT-QA answers: exact match and F1 of ftlab/metrics/tatqa.py (numbers with commas, percentages,
  scale words, "(1,234)" negatives, answer lists in any order); the CLI picks that task when the
  prompts hold the TAT-QA instruction, and computes the text metrics above as well.
- `compute_bertscore`: the mean over pairs of bert-score's F1 (greedy cosine matching of
  contextual token embeddings), scorer `facebook/bart-large` by default; any local model folder
  or Hub id works (offline: a local folder, e.g. the name `minilm`).
A pair whose prediction or reference is empty scores 0 (with one warning for all such pairs).
"""
from __future__ import annotations

import logging
import re
import warnings
from typing import Callable, List, Optional, Sequence

from ftlab.models.checkpoints import resolve_model_name

# Imported inside functions: each metric's library (nltk, sacrebleu, rouge-score, bert-score) loads in its own function: scoring one metric never pays for the others.

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

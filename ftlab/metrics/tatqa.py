"""TAT-QA exact match and numeracy-aware F1 for answers given as text (a causal LM's output).

    from ftlab.metrics.tatqa import parse_answer, em_f1, score_tatqa
    em_f1(parse_answer("1,234 million"), parse_answer("1234 million"))   # (1.0, 1.0)
    score_tatqa(golds=["12.5%", "A, B"], preds=["12.5 percent", "B, A"])  # {"em": 1.0, "f1": 1.0, ...}

An own implementation of the logic of the official scorer (`tatqa_metric.py` + `tatqa_utils.py`
of NExTplusplus/TAT-QA, which is DROP's scorer adapted); no code is copied from it.

Followed from the official scorer:
- An answer is a list of spans plus one scale ("", thousand, million, billion, percent).
- A span that is a number is compared as a number: commas, currency signs and quotes are dropped,
  "(1,234)" is negative, a "%" inside the span makes it a percentage; the value is rounded to 2
  decimals, multiplied by the scale (thousand 1e3, million 1e6, billion 1e9, percent 0.01) and
  written with 4 decimals. So "3 million" == "3,000,000" and "12.5%" == "12.5 percent" == "0.125",
  and a wrong scale ("3 thousand" for 3 million) is a different number: EM 0.
- Other spans: lower-cased, punctuation and articles (a, an, the) removed, number tokens inside
  written as numbers; the scale word, if any, is appended.
- Exact match: the normalized spans are the same, in any order.
- F1: token-bag F1; when the gold answer is a number (official: answer types arithmetic and count)
  F1 = EM, no partial credit; each question's F1 is rounded to 2 decimals as the official scorer does.
- The reported "scale" accuracy: the prediction's scale equals the gold scale (a raw gold span that
  carries its own scale, "$0.5 million" with scale "", counts as million).
- A single bare number predicted without a scale is also tried unrounded, so "0.125" matches
  12.5 percent (the official `add_percent_pred`); the best reading counts.

Simplified or changed:
- Text in, not (answer list, scale) pairs: `parse_answer` splits the text on ", " (a comma and a
  space, so "1,234" stays one number), and reads the scale from a trailing "%", "percent",
  "thousand", "million" or "billion" (the format of `tatqa_answer` below, which the LLaMA-Factory
  records' outputs use and the prompt asks for). A gold span that itself contains ", " is therefore split too, unless the gold comes from the
  raw dataset (`gold_answer`, `load_raw_gold`); a prediction is also read as one span, best counts.
- F1 over several spans: each span is its own token bag and the bags are aligned one to one
  (DROP's `_align_bags`, Hungarian assignment, mean over max(#gold, #pred) spans), with DROP's
  number check (a gold bag with numbers scores 0 against a predicted bag that has none of them).
  The official TAT-QA code joins all spans into one string (one bag) and skips the number check.
- Without the raw dataset (text gold) "the gold is a number" means a single span that is a number;
  the official scorer uses the answer type, so a numeric *span* answer ("22,330") gets partial F1
  there and not here. `load_raw_gold` gives the real answer types.
- "(1,234)" is -1234 here; the official regex misses the comma and reads +1234.
- No date parsing and no "hundred" scale.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

# Imported inside functions: scipy's assignment solver loads only for multi-span F1.

SCALES = {"": 1.0, "thousand": 1e3, "million": 1e6, "billion": 1e9, "percent": 0.01}
NUMERIC_TYPES = ("arithmetic", "count")  # official answer types scored with F1 = EM

_SCALE_SUFFIX = re.compile(r"\s*(%|\bper\s?cent|\bthousand|\bmillion|\bbillion)\s*$", re.IGNORECASE)
_SPAN_SPLIT = re.compile(r",\s+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_CURRENCY = str.maketrans("", "", "$€£¥")
_NOT_IN_NUMBER = str.maketrans("", "", "'\",()")
_ARTICLES = {"a", "an", "the"}
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class Answer:
    spans: Tuple[str, ...]        # raw span texts
    scale: str = ""               # one of SCALES
    numeric: Optional[bool] = None  # gold only: F1 = EM (arithmetic/count); None = decide from the spans


# ---------------------------------------------------------------- parsing
def _split_scale(text: str) -> Tuple[str, str]:
    """'12.5 %' -> ('12.5', 'percent'); '3 million' -> ('3', 'million'); no scale -> (text, '')."""
    m = _SCALE_SUFFIX.search(text)
    if not m or not text[:m.start()].strip():
        return text, ""
    word = m.group(1).lower().replace(" ", "")
    return text[:m.start()].rstrip(), "percent" if word in ("%", "percent") else word


def parse_answer(text: Optional[str]) -> Answer:
    """Model output or alpaca label -> spans + scale ('A, B million': both spans in millions)."""
    text = (text or "").strip().replace("\u2212", "-").rstrip(".").strip()
    body, scale = _split_scale(text)
    spans = tuple(s.strip() for s in _SPAN_SPLIT.split(body) if s.strip())
    return Answer(spans, scale)


def gold_answer(answer: Any, scale: str = "", answer_type: Optional[str] = None) -> Answer:
    """A raw TAT-QA answer (list of spans, number or count) with its scale and type."""
    spans = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
    if answer_type == "count":
        spans = [str(int(float(spans[0])))]
    numeric = answer_type in NUMERIC_TYPES if answer_type is not None else None
    return Answer(tuple(spans), scale or "", numeric)


# ---------------------------------------------------------------- normalisation
def to_number(span: str) -> Optional[Tuple[float, bool]]:
    """(value, has_percent_sign) when `span` is one number ('$(1,234)' -> (-1234.0, False)), else None."""
    s = span.strip()
    percent = s.endswith("%")
    s = s.rstrip("%").translate(_CURRENCY).strip()
    negative = s.startswith("(") and s.endswith(")")  # accounting style: "(1,234)", "$(1,234)"
    core = s.translate(_NOT_IN_NUMBER).strip()
    if not core or not _NUMBER.fullmatch(core):
        return None
    value = float(core)
    return (-abs(value) if negative else value), percent


def _number_text(value: float, scale: str) -> str:
    # The official order: round to 2 decimals, then apply the scale; 4 decimals, no "-0.0000".
    out = "%.4f" % (round(value, 2) * SCALES[scale])
    return "0.0000" if out == "-0.0000" else out


def _normalize_text_span(span: str) -> List[str]:
    tokens = []
    for tok in span.lower().split():
        num = to_number(tok)
        if num is not None:
            tokens.append(_number_text(num[0], "percent" if num[1] else ""))
            continue
        tok = tok.translate(_PUNCT)
        if tok and tok not in _ARTICLES:
            tokens.append(tok)
    return tokens


def normalize_span(span: str, scale: str = "") -> str:
    """One span in comparable form: a number as '%.4f' of value x scale, text as clean tokens (+ scale)."""
    body, own_scale = _split_scale(span)
    num = to_number(body)
    if num is not None:
        return _number_text(num[0], "percent" if num[1] else (own_scale or scale))
    tokens = _normalize_text_span(body)
    scale = own_scale or scale
    return " ".join(tokens + ([scale] if scale and tokens else []))


def normalized_spans(answer: Answer) -> List[str]:
    return [n for n in (normalize_span(s, answer.scale) for s in answer.spans) if n]


# ---------------------------------------------------------------- scoring
def _is_number_token(tok: str) -> bool:
    return bool(_NUMBER.fullmatch(tok))


def _bag_f1(pred: set, gold: set) -> float:
    gold_numbers = {t for t in gold if _is_number_token(t)}
    if gold_numbers and not gold_numbers & pred:  # DROP: the numbers must match
        return 0.0
    common = len(pred & gold)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _aligned_f1(pred: List[set], gold: List[set]) -> float:
    """DROP's alignment: best one-to-one span pairing, mean over max(#gold, #pred)."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    scores = np.array([[_bag_f1(p, g) for p in pred] for g in gold])  # (gold, pred)
    rows, cols = linear_sum_assignment(-scores)
    return float(scores[rows, cols].sum()) / max(len(gold), len(pred))


def _pred_alternatives(pred: Answer) -> List[List[str]]:
    """Readings of the prediction, the best of which counts: its normalized spans; all its text as one
    span (a gold span may contain ", "); a single bare number without a scale also unrounded
    (official `add_percent_pred`: '0.1234' matches 12.34 with scale percent, which is 0.1234)."""
    out = [normalized_spans(pred)]
    if len(pred.spans) > 1:
        out.append(normalized_spans(Answer((", ".join(pred.spans),), pred.scale)))
    num = to_number(pred.spans[0]) if len(pred.spans) == 1 and not pred.scale else None
    if num is not None and not num[1]:
        out.append(["%.4f" % num[0]])
    return out


def _em_f1_spans(p: List[str], g: List[str], numeric: bool) -> Tuple[float, float]:
    if not p or not g:
        return 0.0, 0.0
    em = float(sorted(p) == sorted(g))
    if numeric:
        return em, em
    f1 = _aligned_f1([set(s.split()) for s in p], [set(s.split()) for s in g])
    return em, round(f1, 2)


def em_f1(pred: Answer, gold: Answer) -> Tuple[float, float]:
    """(exact match, F1) of one question, both in [0, 1]; F1 rounded to 2 decimals (official)."""
    g = normalized_spans(gold)
    numeric = gold.numeric
    if numeric is None:  # text gold: a single number counts as arithmetic/count
        numeric = len(g) == 1 and _is_number_token(g[0])
    return max(_em_f1_spans(p, g, numeric) for p in _pred_alternatives(pred))


def effective_scale(answer: Answer) -> str:
    """The answer's scale, else the one written in its last span (raw gold '$0.5 million', scale '')."""
    if answer.scale or not answer.spans:
        return answer.scale
    return _split_scale(answer.spans[-1])[1]


def score_tatqa(golds: Sequence[Any], preds: Sequence[str]) -> Dict[str, float]:
    """Mean EM, F1 and scale accuracy; a gold is label text or an `Answer` (from the raw data)."""
    if len(golds) != len(preds):
        raise ValueError(f"golds has {len(golds)} items but preds has {len(preds)}: pass one prediction per gold")
    if not golds:
        raise ValueError("no pairs to score: golds and preds are empty")
    em = f1 = scale = 0.0
    for gold, text in zip(golds, preds):
        g = gold if isinstance(gold, Answer) else parse_answer(gold)
        p = parse_answer(text)
        e, f = em_f1(p, g)
        em, f1, scale = em + e, f1 + f, scale + (effective_scale(p) == effective_scale(g))
    n = len(golds)
    return {"em": em / n, "f1": f1 / n, "scale_accuracy": scale / n}


# ---------------------------------------------------------------- the raw dataset as gold
def load_raw_gold(path: str) -> List[Tuple[Answer, str]]:
    """(gold Answer, label text) per question of a raw TAT-QA file (e.g. tatqa_dataset_test_gold.json),
    in the order of lfdata's records (the export): contexts in file order, questions by their `order`."""
    with open(path, encoding="utf-8") as fh:
        contexts = json.load(fh)
    if not isinstance(contexts, list):
        raise ValueError(f"{path}: expected a JSON list of {{table, paragraphs, questions}} (raw TAT-QA)")
    out = []
    for i, ctx in enumerate(contexts):
        if not isinstance(ctx, dict) or not isinstance(ctx.get("questions"), list):
            raise ValueError(f"{path}: context {i} has no list of questions (raw TAT-QA expected)")
        for q in sorted(ctx["questions"], key=lambda q: q.get("order", 0)):
            if "answer" not in q:
                raise ValueError(f"{path}: question {q.get('uid', '?')} has no answer: pass the *_gold file")
            out.append((gold_answer(q["answer"], q.get("scale", ""), q.get("answer_type")),
                        tatqa_answer(q["answer"], q.get("scale", ""))))
    return out


def match_raw_gold(labels: Sequence[str], raw: Sequence[Tuple[Answer, str]], path: str) -> List[Answer]:
    """The raw golds for `labels` (the first len(labels) questions, e.g. LLaMA-Factory's max_samples);
    every label must be the export's text of its question, else the files do not belong together."""
    if len(labels) > len(raw):
        raise ValueError(f"{len(labels)} predictions but {path} has only {len(raw)} questions")
    for i, (label, (_, text)) in enumerate(zip(labels, raw)):
        if label.strip() != text.strip():
            raise ValueError(f"prediction {i + 1}'s label {label.strip()!r} is not question {i + 1} of "
                             f"{path} ({text!r}): pass the raw file the predictions were exported from")
    return [answer for answer, _ in raw[:len(labels)]]


def _format_number(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def tatqa_answer(answer: Any, scale: str = "") -> str:
    """TAT-QA answer as text: lists joined with ', ', floats without a trailing .0, scale appended
    ('%' for percent, ' million' ...)."""
    text = ", ".join(_format_number(a) for a in answer) if isinstance(answer, list) else _format_number(answer)
    if not scale:
        return text
    return f"{text}%" if scale == "percent" else f"{text} {scale}"

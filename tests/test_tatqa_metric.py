"""tatqa_metric: exact match and numeracy-aware F1 on hand-made TAT-QA answers (values worked by hand)."""
import json
import os

import pytest

from ftlab.metrics import tatqa as tm
from ftlab.metrics.tatqa import Answer, em_f1, gold_answer, parse_answer

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def score(pred: str, gold) -> tuple:
    return em_f1(parse_answer(pred), gold if isinstance(gold, Answer) else parse_answer(gold))


def test_parse_answer_reads_spans_and_scale():
    # ", " splits spans; a comma inside a number does not; the trailing scale is the list's.
    assert parse_answer("1,234, 5,678 million") == Answer(("1,234", "5,678"), "million")
    assert parse_answer("12.5%") == Answer(("12.5",), "percent")
    assert parse_answer(" 12.5 per cent.") == Answer(("12.5",), "percent")
    assert parse_answer("Current, Non-current") == Answer(("Current", "Non-current"), "")
    assert parse_answer("") == Answer((), "")


def test_numbers_are_normalized():
    # round(value, 2) * scale, written with 4 decimals
    assert tm.normalize_span("1,234") == "1234.0000"
    assert tm.normalize_span("$(1,234.5)") == "-1234.5000"
    assert tm.normalize_span("3", "million") == "3000000.0000"
    assert tm.normalize_span("12.5", "percent") == "0.1250"      # 12.5 x 0.01
    assert tm.normalize_span("(66)%") == "-0.6600"               # a raw TAT-QA span
    assert tm.normalize_span("The Modified, retrospective method") == "modified retrospective method"


@pytest.mark.parametrize("pred, gold", [
    ("1,234", "1234"),                                  # thousands separator
    ("12.5%", "12.5 percent"),                          # percent sign vs word
    ("12.5 percent", gold_answer(12.5, "percent", "arithmetic")),
    ("3 million", gold_answer(3, "million", "arithmetic")),   # scale word vs raw answer + scale
    ("3,000,000", gold_answer(3, "million", "arithmetic")),   # both 3000000.0000 (official: value x scale)
    ("(1,234)", "-1234"),                               # accounting negative
    ("-1234", gold_answer(["(1,234)"], "", "span")),
    ("0.125", "12.5%"),                                 # a bare fraction read unrounded (add_percent_pred)
    ("Non-current, Current", gold_answer(["Current", "Non-current"], "", "multi-span")),  # any order
    ("2018, 2019 thousand", "2019, 2018 thousand"),
])
def test_equivalent_answers_match_exactly(pred, gold):
    assert score(pred, gold) == (1.0, 1.0)


@pytest.mark.parametrize("pred, gold", [
    ("3 thousand", gold_answer(3, "million", "arithmetic")),  # 3000.0000 vs 3000000.0000
    ("3 million", "3 thousand"),
    ("12.5", "12.5%"),                                  # 12.5000 (and unrounded 12.5000) vs 0.1250
    ("1234", "(1,234)"),                                # sign
    ("0.12", "12.5%"),                                  # 0.1200 vs 0.1250
])
def test_wrong_value_or_scale_scores_zero(pred, gold):
    assert score(pred, gold) == (0.0, 0.0)


def test_partial_credit():
    # One of two gold spans: bags {2019} and {2018}; the best pairing scores 1 + 0, over max(2, 1) = 2.
    assert score("2019", gold_answer(["2019", "2018"], "", "multi-span")) == (0.0, 0.5)
    # "modified method" vs "modified retrospective method": P = 2/2, R = 2/3, F1 = 2PR/(P+R) = 0.8
    assert score("the modified method", "the modified retrospective method") == (0.0, 0.8)
    # P = 2/2, R = 2/4 -> F1 = 2/3, rounded to 2 decimals like the official scorer
    assert score("net sales", "net sales revenue growth") == (0.0, 0.67)


def test_numeric_gold_gets_no_partial_credit():
    # Arithmetic gold: F1 = EM. Bags {1234.0000, dollars} vs {1234.0000}.
    assert score("1,234 dollars", gold_answer(1234, "", "arithmetic")) == (0.0, 0.0)
    assert score("1,234 dollars", "1234") == (0.0, 0.0)  # text gold: one number counts as arithmetic
    # A span answer keeps token F1 (official): P = 1/2, R = 1/1 -> 2/3 -> 0.67
    assert score("1,234 dollars", gold_answer(["1,234"], "", "span")) == (0.0, 0.67)


def test_gold_numbers_must_appear_in_the_prediction():
    # DROP's number check: "revenue" overlaps, but the gold's 2019 is not predicted -> 0.
    assert score("2018 revenue", "2019 revenue") == (0.0, 0.0)


def test_empty_prediction_scores_zero():
    assert score("", "12") == (0.0, 0.0)
    assert score("   ", "Current") == (0.0, 0.0)


def test_score_tatqa_means():
    golds = ["12.5%", "3 million", "Current, Non-current", "the modified retrospective method"]
    preds = ["12.5 percent", "3 thousand", "Non-current, Current", "the modified method"]
    # EM 1, 0, 1, 0; F1 1, 0, 1, 0.8; scales percent/percent, thousand/million, ''/'', ''/''
    assert tm.score_tatqa(golds, preds) == pytest.approx({"em": 2 / 4, "f1": 2.8 / 4, "scale_accuracy": 3 / 4})
    with pytest.raises(ValueError, match="golds has 1 items but preds has 2"):
        tm.score_tatqa(["1"], ["1", "2"])


def test_raw_gold_follows_the_export_order():
    path = os.path.join(FIXTURES, "tatqa", "tatqa_dataset_test_gold.json")
    raw = tm.load_raw_gold(path)
    # The fixture's first context: questions by `order`; answers in lfdata.tatqa_answer's text.
    assert [text for _, text in raw[:3]] == ["relate solely to revenue from contracts with customers",
                                              "66.8 million", "Current, Non-current"]
    assert raw[1][0] == Answer(("66.8",), "million", False)  # a span: partial F1 allowed
    labels = [text for _, text in raw]
    golds = tm.match_raw_gold(labels[:4], raw, path)
    assert tm.score_tatqa(golds, labels[:4]) == {"em": 1.0, "f1": 1.0, "scale_accuracy": 1.0}
    with pytest.raises(ValueError, match=r"prediction 2's label '66\.8' is not question 2"):
        tm.match_raw_gold([labels[0], "66.8"], raw, path)


def test_raw_gold_count_and_arithmetic_are_numeric(tmp_path):
    ctx = {"table": {"table": [["a"]]}, "paragraphs": [], "questions": [
        {"uid": "q1", "order": 2, "question": "?", "answer": 2, "answer_type": "count", "scale": ""},
        {"uid": "q2", "order": 1, "question": "?", "answer": -3.62, "answer_type": "arithmetic",
         "scale": "percent"}]}
    path = tmp_path / "gold.json"
    path.write_text(json.dumps([ctx]))
    raw = tm.load_raw_gold(str(path))
    assert [text for _, text in raw] == ["-3.62%", "2"]  # sorted by `order`
    assert raw[0][0] == Answer(("-3.62",), "percent", True) and raw[1][0] == Answer(("2",), "", True)
    assert em_f1(parse_answer("(3.62)%"), raw[0][0]) == (1.0, 1.0)

"""eval.py: BLEU / ROUGE-L / ROUGE-Lsum / corpus BLEU against hand-computed values, BERTScore on a
tiny local scorer, the predictions-file reader, the TAT-QA mode and the CLI (table, atomic JSON,
one-line errors)."""
import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ftlab.data import llamafactory as lfdata
from ftlab.llm import scoring as ev
from ftlab.metrics import text_generation as tg

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]

# Three (reference, candidate) pairs, worked by hand below.
REFS = ["the cat sat on the mat", "he went to the store yesterday", "good morning everyone"]
CANDS = ["the cat sat on a mat", "he went to the store", "good morning"]

# BLEU-4 = BP * (p1 p2 p3 p4)^(1/4), clipped n-gram precisions, BP = exp(1 - r/c) when c < r.
# Pair 1 (c = r = 6, BP = 1):
#   1-grams the cat sat on a mat       -> 5 of 6 in the reference ("a" is not)   p1 = 5/6
#   2-grams the-cat cat-sat sat-on on-a a-mat -> the-cat cat-sat sat-on          p2 = 3/5
#   3-grams the-cat-sat cat-sat-on sat-on-a on-a-mat -> the first two            p3 = 2/4
#   4-grams the-cat-sat-on cat-sat-on-a sat-on-a-mat -> the first                p4 = 1/3
#   BLEU = (5/6 * 3/5 * 2/4 * 1/3)^(1/4) = (1/12)^(1/4) = 0.537285
BLEU_1 = (1 / 12) ** 0.25
# Pair 2: a 5-word prefix of the 6-word reference: p1..p4 = 5/5, 4/4, 3/3, 2/2 = 1,
#   BP = exp(1 - 6/5) = exp(-0.2) = 0.818731
BLEU_2 = math.exp(-0.2)
# Pair 3: 2 words have no 3- or 4-grams: without smoothing nltk returns ~0 (here 1e-155).
BLEU_3 = 0.0

# ROUGE-L F1 = 2PR / (P + R), P = LCS / len(candidate), R = LCS / len(reference).
# Pair 1: LCS "the cat sat on mat" = 5 -> P = R = 5/6 -> F = 5/6
# Pair 2: LCS = 5 -> P = 5/5, R = 5/6 -> F = 2 * (5/6) / (11/6) = 10/11
# Pair 3: LCS = 2 -> P = 2/2, R = 2/3 -> F = 2 * (2/3) / (5/3) = 4/5
ROUGE = [5 / 6, 10 / 11, 4 / 5]


def test_bleu_matches_hand_computation():
    assert tg.compute_bleu(REFS[:1], CANDS[:1]) == pytest.approx(0.537284966, abs=1e-9)
    assert tg.compute_bleu(REFS[1:2], CANDS[1:2]) == pytest.approx(0.818730753, abs=1e-9)
    assert tg.compute_bleu(REFS[2:], CANDS[2:]) < 1e-50  # the no-smoothing ~0
    assert tg.compute_bleu(REFS, CANDS) == pytest.approx((BLEU_1 + BLEU_2 + BLEU_3) / 3, abs=1e-9)


def test_bleu_counts_words_case_sensitively():
    # Character-level BLEU would give "cat" vs "car" credit; word-level gives none.
    assert tg.compute_bleu(["a small black cat"], ["a small black car"]) < 1e-50
    assert tg.compute_bleu(["The cat sat down"], ["the cat sat down"]) < 1e-50  # no 4-gram match
    assert tg.compute_bleu(["the cat sat down"], ["the cat sat down"]) == pytest.approx(1.0)


def test_rouge_l_matches_hand_computation():
    for ref, cand, want in zip(REFS, CANDS, ROUGE):
        assert tg.compute_rouge([ref], [cand]) == pytest.approx(want, abs=1e-12)
    assert tg.compute_rouge(REFS, CANDS) == pytest.approx(sum(ROUGE) / 3, abs=1e-12)
    # rouge-score lowercases and drops punctuation: these are the same 4 tokens.
    assert tg.compute_rouge(["The cat, sat down."], ["the cat sat down"]) == pytest.approx(1.0)


def test_split_sentences_regex():
    text = "Amanda baked cookies. She will bring Jerry some tomorrow!  OK?\nBye"
    # Existing lines stay lines; inside a line, a break after . ! or ? and whitespace.
    assert tg.split_sentences(text, "regex") == \
        "Amanda baked cookies.\nShe will bring Jerry some tomorrow!\nOK?\nBye"
    assert tg.split_sentences("3.5 kg, e.g. flour", "regex") == "3.5 kg, e.g.\nflour"  # the regex's limit
    assert tg.sentence_splitter() == ("nltk-punkt" if tg._punkt_available() else "regex")


def test_rouge_lsum_matches_hand_computation():
    ref = "the cat sat. the dog ran."
    # Same two sentences, swapped. ROUGE-L on the whole token sequences: LCS("the cat sat the dog ran",
    # "the dog ran the cat sat") = 3 ("the dog ran") -> P = R = 3/6 -> F = 0.5.
    # ROUGE-Lsum: each reference sentence's union LCS over the candidate sentences: 3 + 3 hits of 6
    # -> P = R = 1 -> F = 1.
    assert tg.compute_rouge([ref], ["the dog ran. the cat sat."]) == pytest.approx(0.5)
    assert tg.compute_rouge_lsum([ref], ["the dog ran. the cat sat."]) == pytest.approx(1.0)
    # Candidate "the cat ran." (3 tokens): "the cat sat" unions to {the, cat} = 2 hits; "the dog ran"
    # unions to {the, ran}, but the candidate's one "the" is used up -> 1 hit. Hits 3: P = 3/3,
    # R = 3/6 -> F = 2 * 1 * 0.5 / 1.5 = 2/3.
    assert tg.compute_rouge_lsum([ref], ["the cat ran."]) == pytest.approx(2 / 3)
    # One-sentence texts: ROUGE-Lsum = ROUGE-L.
    assert tg.compute_rouge_lsum(REFS, CANDS) == pytest.approx(sum(ROUGE) / 3, abs=1e-12)
    assert tg.compute_rouge_lsum(["", REFS[1]], ["x", CANDS[1]]) == pytest.approx(ROUGE[1] / 2)


def test_corpus_bleu_pools_counts():
    # Pairs 1 + 2 pooled: p1 = (5+5)/(6+5), p2 = (3+4)/(5+4), p3 = (2+3)/(4+3), p4 = (1+2)/(3+2);
    # c = 11, r = 12 -> BP = exp(1 - 12/11).
    want = math.exp(1 - 12 / 11) * (10 / 11 * 7 / 9 * 5 / 7 * 3 / 5) ** 0.25
    assert tg.compute_corpus_bleu(REFS[:2], CANDS[:2]) == pytest.approx(want, abs=1e-9)


def test_empty_prediction_scores_zero_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="eval"):
        bleu = tg.compute_bleu(REFS[:2] + ["x y z"], CANDS[:2] + [""])
        rouge = tg.compute_rouge(["", REFS[1]], [CANDS[0], CANDS[1]])
    assert bleu == pytest.approx((BLEU_1 + BLEU_2) / 3, abs=1e-9)
    assert rouge == pytest.approx(ROUGE[1] / 2, abs=1e-12)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("BLEU: 1 of 3 pairs have an empty" in w for w in warnings)
    assert any("ROUGE-L: 1 of 2 pairs have an empty" in w for w in warnings)
    assert tg.compute_rouge(["", " "], ["", "a"]) == 0.0


@pytest.mark.parametrize("fn", [tg.compute_bleu, tg.compute_rouge, tg.compute_rouge_lsum, tg.compute_corpus_bleu])
def test_bad_lists_are_one_line_errors(fn):
    with pytest.raises(ValueError, match=r"references has 2 items but candidates has 1"):
        fn(["a b", "c d"], ["a b"])
    with pytest.raises(ValueError, match="no pairs to score"):
        fn([], [])
    with pytest.raises(ValueError, match=r"candidates\[1\] is int, not str"):
        fn(["a", "b"], ["a", 3])


def test_bertscore_tiny_local_scorer(tiny_models):
    scorer = tiny_models("bert")
    score = tg.compute_bertscore(REFS, CANDS, model=scorer, batch_size=2)
    assert 0.0 <= score <= 1.0
    # Identical texts: every token matches itself, cosine 1 -> F1 = 1.
    assert tg.compute_bertscore(REFS, REFS, model=scorer) == pytest.approx(1.0, abs=1e-5)
    # An empty candidate scores 0 and pulls the mean down by its share.
    assert tg.compute_bertscore(REFS, REFS[:2] + [""], model=scorer) == pytest.approx(2 / 3, abs=1e-5)


def test_bertscore_num_layers(tiny_models):
    assert tg.bertscore_num_layers("facebook/bart-large") == 10  # bert-score's tuned layer
    assert tg.bertscore_num_layers(tiny_models("bert")) == 2  # unknown: its last layer
    assert tg.bertscore_num_layers(tiny_models("bart")) == 1  # BART: encoder_layers


def test_bertscore_unloadable_model_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="cannot load BERTScore model .*--no_bertscore"):
        tg.compute_bertscore(["a b"], ["a b"], model=str(tmp_path / "no_such_model"))


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_load_predictions(tmp_path):
    path = _write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "p", "predict": "the cat sat on a mat", "label": "the cat sat on the mat\n"},
        {"prompt": "p", "predict": None, "label": "x"}])
    refs, cands = ev.load_predictions(path)
    assert refs == ["the cat sat on the mat", "x"]  # LLaMA-Factory's trailing "\n" stripped
    assert cands == ["the cat sat on a mat", ""]


@pytest.mark.parametrize("content, match", [
    ('{"predict": "a"}\n', r"p.jsonl line 1: missing field\(s\) \['label'\]"),
    ('{"predict": "a", "label": "b"}\nnot json\n', r"p.jsonl line 2: not valid JSON"),
    ("\n", "has no lines to score"),
])
def test_load_predictions_bad_files(tmp_path, content, match):
    (tmp_path / "p.jsonl").write_text(content)
    with pytest.raises(ValueError, match=match):
        ev.load_predictions(str(tmp_path / "p.jsonl"))


def test_cli_writes_table_and_json(tmp_path, capsys):
    pred = _write_jsonl(tmp_path / "generated_predictions.jsonl",
                        [{"prompt": "", "predict": c, "label": r} for r, c in zip(REFS, CANDS)])
    assert ev.main([pred, "--no_bertscore"]) == 0
    out = capsys.readouterr().out
    assert "BLEU-4 (mean sentence, nltk)" in out and "ROUGE-L F1" in out and "BERTScore" not in out
    assert f"ROUGE-Lsum F1 (sentences: {tg.sentence_splitter()})" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())  # default: next to the input
    assert metrics["n"] == 3 and metrics["task"] == "summary"
    assert metrics["bleu"] == pytest.approx((BLEU_1 + BLEU_2) / 3, abs=1e-9)
    assert metrics["rouge_l"] == pytest.approx(sum(ROUGE) / 3, abs=1e-12)
    assert metrics["rouge_lsum"] == pytest.approx(sum(ROUGE) / 3, abs=1e-12)  # one sentence each
    assert 0 < metrics["corpus_bleu"] < 1
    assert set(metrics["seconds"]) == {"imports", "bleu", "rouge_l", "rouge_lsum", "corpus_bleu"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_cli_bertscore_to_out(tmp_path, tiny_models, capsys):
    pred = _write_jsonl(tmp_path / "p.jsonl", [{"predict": c, "label": r} for r, c in zip(REFS, CANDS)])
    out = tmp_path / "sub" / "m.json"
    assert ev.main([pred, "--out", str(out), "--bertscore_model", tiny_models("bert")]) == 0
    metrics = json.loads(out.read_text())
    assert 0 <= metrics["bertscore_f1"] <= 1 and metrics["bertscore_model"] == tiny_models("bert")
    assert "BERTScore F1" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path):
    missing = tmp_path / "nope.jsonl"
    proc = subprocess.run([sys.executable, "eval.py", str(missing), "--no_bertscore"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: predictions file")
    assert "Traceback" not in proc.stderr
    with pytest.raises(ValueError, match="--bertscore_model and --no_bertscore exclude each other"):
        ev.parse_args([str(missing), "--no_bertscore", "--bertscore_model", "minilm"])


def test_tatqa_marker_is_the_export_instruction():
    assert lfdata.TATQA_INSTRUCTION.startswith(ev.TATQA_MARKER)


def _tatqa_rows(labels, preds):
    prompt = f"<|im_start|>user\n{lfdata.TATQA_INSTRUCTION}\nTable: ...<|im_end|>\n<|im_start|>assistant\n"
    return [{"prompt": prompt, "predict": p, "label": label + "\n"} for label, p in zip(labels, preds)]


def test_cli_tatqa_mode_is_detected(tmp_path, capsys):
    labels = ["12.5%", "3 million", "Current, Non-current", "the modified retrospective method"]
    preds = ["12.5 percent", "3 thousand", "Non-current, Current", "the modified method"]
    pred = _write_jsonl(tmp_path / "generated_predictions.jsonl", _tatqa_rows(labels, preds))
    assert ev.main([pred, "--no_bertscore"]) == 0  # auto: every prompt holds the TAT-QA instruction
    out = capsys.readouterr().out
    assert "TAT-QA exact match" in out and "TAT-QA F1 (numeracy-aware)" in out and "ROUGE-L F1" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["seconds"]) == {"imports", "bleu", "rouge_l", "rouge_lsum", "corpus_bleu", "tatqa"}
    # EM 1, 0, 1, 0; F1 1, 0, 1, 0.8 ("modified method": P 2/2, R 2/3); scale wrong on the 2nd only.
    assert metrics["task"] == "tatqa" and metrics["n"] == 4 and metrics["tatqa_gold"] == "labels"
    assert metrics["tatqa_em"] == pytest.approx(0.5)
    assert metrics["tatqa_f1"] == pytest.approx(2.8 / 4)
    assert metrics["tatqa_scale_accuracy"] == pytest.approx(0.75)
    # --task summary forces the text metrics on the same file.
    assert ev.main([pred, "--task", "summary", "--no_bertscore", "--out", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["task"] == "summary" and "tatqa_em" not in summary
    assert summary["rouge_l"] == metrics["rouge_l"]


def test_cli_tatqa_gold_from_the_raw_file(tmp_path, capsys):
    gold = str(FIXTURES / "tatqa" / "tatqa_dataset_test_gold.json")
    # The fixture's first questions (export order): a text span, 66.8 million, [Current, Non-current].
    labels = ["relate solely to revenue from contracts with customers", "66.8 million", "Current, Non-current"]
    preds = ["relate solely to revenue", "66,800 thousand", "Non-current, Current"]
    pred = _write_jsonl(tmp_path / "p.jsonl", _tatqa_rows(labels, preds))
    assert ev.main([pred, "--tatqa_gold", gold, "--no_bertscore"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # 1: a span: token bags {relate, solely, to, revenue} vs those 4 + {from, contracts, with, customers}:
    #    P = 4/4, R = 4/8 -> F1 = 2/3, rounded 0.67; EM 0.
    # 2: 66,800 x 1e3 = 66.8 x 1e6 -> EM 1 (scale differs: thousand vs million); 3: same spans -> EM 1.
    assert metrics["tatqa_gold"] == gold
    assert metrics["tatqa_em"] == pytest.approx(2 / 3)
    assert metrics["tatqa_f1"] == pytest.approx((0.67 + 1 + 1) / 3)
    assert metrics["tatqa_scale_accuracy"] == pytest.approx(2 / 3)
    bad = _write_jsonl(tmp_path / "bad.jsonl", _tatqa_rows(["66.8 million"], ["1"]))
    assert ev.main([bad, "--tatqa_gold", gold, "--no_bertscore"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: prediction 1's label '66.8 million' is not question 1") and err.count("\n") == 1


def test_tatqa_gold_needs_tatqa_prompts(tmp_path, capsys):
    pred = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Summarize", "predict": "a", "label": "b"}])
    assert ev.main([pred, "--tatqa_gold", str(tmp_path / "g.json")]) == 2
    assert "--tatqa_gold given but the prompts are not TAT-QA questions" in capsys.readouterr().err


@pytest.mark.slow
def test_real_samsum_test_set_scores_itself(tmp_path):
    """The 819 real SAMSum test summaries scored against themselves: ROUGE-L is exactly 1, and
    BLEU-4 is the share of summaries with at least 4 words (shorter ones have no 4-gram: ~0)."""
    import csv

    from tests.conftest import real_data_dir

    data_dir = real_data_dir()
    if data_dir is None:
        pytest.skip("set DATA_DIR to the real data (../shared/data)")
    with open(Path(data_dir) / "samsum" / "test.csv", encoding="utf-8", newline="") as f:
        summaries = [row["summary"].strip() for row in csv.DictReader(f)]
    assert len(summaries) == 819
    pred = _write_jsonl(tmp_path / "p.jsonl", [{"predict": s, "label": s} for s in summaries])
    assert ev.main([pred, "--no_bertscore"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    long_enough = sum(len(s.split()) >= 4 for s in summaries)
    assert metrics["n"] == 819 and metrics["rouge_l"] == pytest.approx(1.0)
    assert metrics["rouge_lsum"] == pytest.approx(1.0)
    assert metrics["bleu"] == pytest.approx(long_enough / 819, abs=1e-9)
    assert metrics["corpus_bleu"] == pytest.approx(1.0)

"""ftlab/analysis/baseline.py: frozen features + LinearSVC on fixture data with a tiny BERT; pooling arithmetic."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch

from ftlab.analysis import baseline, report

FIXTURES = str(Path(__file__).parent / "fixtures")


def test_pooling_matches_hand_arithmetic():
    # hidden (B=2, T=3, H=2); second row has one pad token (mask 0) at the end
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
                           [[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert baseline.pool_cls(hidden, mask).tolist() == [[1.0, 2.0], [1.0, 1.0]]
    # row 0: ((1+3+5)/3, (2+4+6)/3) = (3, 4); row 1 ignores the pad: ((1+3)/2, (1+5)/2) = (2, 3)
    assert baseline.pool_mean(hidden, mask).tolist() == [[3.0, 4.0], [2.0, 3.0]]
    assert baseline.pool_last(hidden, mask).tolist() == [[5.0, 6.0], [3.0, 5.0]]


def test_unknown_pooling_is_rejected():
    with pytest.raises(ValueError, match="unknown --pooling 'max'; valid: cls, mean, last"):
        baseline.get_pooling("max")


@pytest.fixture(scope="module")
def bert(tiny_models):
    return tiny_models("bert")


def run_baseline(tmp_path, model, **kw) -> dict:
    args = baseline.BaselineArguments(model_name_or_path=model, data_dir=FIXTURES, output_dir=str(tmp_path / "svm"),
                                      batch_size=16, **kw)
    record = baseline.run(args)
    assert json.loads((tmp_path / "svm" / "run.json").read_text()) == record
    return record


def test_svm_run_json_has_the_train_shape(tmp_path, bert):
    rec = run_baseline(tmp_path, bert, dataset_name="restaurant_sup", pooling="mean", seed=3, validation="dev")
    assert (rec["method"], rec["dataset"], rec["seed"], rec["model"]) == ("svm", "restaurant_sup", 3, bert)
    # 3 polarities x hidden 32 weights + 3 biases = 99 trainable; total adds the frozen encoder
    encoder = sum(p.numel() for p in baseline.load_encoder(bert, torch.device("cpu"))[2].parameters())
    assert rec["params"]["trainable"] == 99
    assert rec["params"]["total"] == encoder + 99
    assert rec["params"]["trainable_pct"] == pytest.approx(100 * 99 / (encoder + 99))
    test = rec["metrics"]["test"]
    assert set(test) == {"accuracy", "micro_f1", "macro_f1", "weight_f1", "loss"}
    assert all(0.0 <= test[k] <= 1.0 for k in ("accuracy", "micro_f1", "macro_f1", "weight_f1"))
    assert test["micro_f1"] == pytest.approx(test["accuracy"])  # single-label: micro F1 = accuracy
    # fixture: 66 train rows with the dev file as validation (the default hold-out keeps 59)
    assert rec["data"]["train_samples"] == 66 and rec["data"]["num_labels"] == 3
    # C chosen on the 9 dev-file rows from the default grid: the kept SVM is the one the grid scored
    grid = rec["training"]["C_validation"]
    assert {"0.001", "0.01", "0.1", "1", "10"} <= set(grid) and rec["training"]["C_metric"] == "accuracy"
    chosen = rec["settings"]["C"]
    assert rec["settings"] == {"pooling": "mean", "C": chosen}
    assert chosen == baseline.choose_c({float(c): v for c, v in grid.items()})
    assert rec["metrics"]["validation"]["accuracy"] == pytest.approx(grid[f"{chosen:g}"])
    assert rec["memory"]["how"] in ("cpu_peak_rss_minus_baseline", "cuda_max_memory_allocated")
    assert rec["time"]["train_seconds"] > 0 and rec["memory"]["baseline_bytes"] > 0
    assert rec["memory"]["peak_bytes_with_eval"] >= rec["memory"]["peak_bytes"]
    # lands in the same report as train.py runs
    rep = report.build_report([str(tmp_path)], str(tmp_path / "out"), plots=False)
    assert [(g.method, g.dataset) for g in rep.groups] == [("svm", "restaurant_sup")]


def test_binary_set_with_validation(tmp_path, bert):
    rec = run_baseline(tmp_path, bert, dataset_name="rotten_tomatoes", pooling="cls")
    assert rec["params"]["trainable"] == 32 + 1  # binary LinearSVC: one weight row + one bias
    assert set(rec["metrics"]) == {"validation", "test"}  # fixture split 80 / 10 / 10
    assert rec["data"]["train_samples"] == 80


def test_features_keep_input_order(bert):
    # texts are batched sorted by length; the rows must come back in the input order
    path, tok, model = baseline.load_encoder(bert, torch.device("cpu"))
    args = baseline.BaselineArguments(batch_size=2, bf16=False)
    texts = ["a much longer sentence about food and service", "short", "medium length text"]
    together, _ = baseline.extract_features(texts, tok, model, baseline.pool_cls, args, torch.device("cpu"))
    for i, t in enumerate(texts):
        alone, _ = baseline.extract_features([t], tok, model, baseline.pool_cls, args, torch.device("cpu"))
        assert together[i] == pytest.approx(alone[0], abs=1e-5)


def test_cli_unknown_dataset_is_a_one_line_error(tmp_path, bert, capsys):
    code = baseline.main(["--model_name_or_path", bert, "--dataset_name", "nope", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "nope" in err
    assert not (tmp_path / "run.json").exists()


def test_cli_bad_class_weight_is_a_one_line_error(tmp_path, bert, capsys):
    code = baseline.main(["--model_name_or_path", bert, "--class_weight", "inverse", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: --class_weight 'inverse' is not one of: none, balanced"
    assert not (tmp_path / "run.json").exists()


def test_choose_c_takes_the_best_validation_score_and_the_smaller_c_on_ties():
    assert baseline.choose_c({0.01: 0.70, 0.1: 0.80, 1.0: 0.80, 10.0: 0.75}) == 0.1
    assert baseline.choose_c({10.0: 0.9, 0.001: 0.5}) == 10.0
    assert baseline.parse_c_grid("1, 0.1,0.1,10") == (0.1, 1.0, 10.0)  # sorted, duplicates dropped


def test_search_c_extends_a_grid_whose_best_is_at_its_edge():
    def peak_at(c0):  # validation score falling with the distance in decades from c0
        return lambda c: -abs(math.log10(c) - math.log10(c0))

    grid = (0.001, 0.01, 0.1, 1.0, 10.0)
    best, scores = baseline.search_c(grid, peak_at(0.1))  # interior: nothing added
    assert best == 0.1 and list(scores) == list(grid)
    best, scores = baseline.search_c(grid, peak_at(1e-5))  # 1e-4, 1e-5, then 1e-6 shows 1e-5 is the peak
    assert best == pytest.approx(1e-5) and len(scores) == 8 and min(scores) == pytest.approx(1e-6)
    best, scores = baseline.search_c(grid, peak_at(1e-9))  # at most 3 decades further: stops at 1e-6
    assert best == pytest.approx(1e-6) and len(scores) == 8
    best, scores = baseline.search_c(grid, peak_at(1e3))  # the large side: 100, 1000, then 1e4
    assert best == pytest.approx(1e3) and max(scores) == pytest.approx(1e4)


@pytest.mark.parametrize("grid", ["", "0,1", "0.1,abc", "-1"])
def test_bad_c_grid_is_rejected(grid):
    with pytest.raises(ValueError, match="--C_grid .*positive numbers"):
        baseline.BaselineArguments(C_grid=grid)


def test_non_positive_fixed_c_is_rejected():
    with pytest.raises(ValueError, match=r"^--C 0.0: LinearSVC needs a positive C \(e.g. 0.1\), or leave it unset$"):
        baseline.BaselineArguments(C=0.0)


def test_fixed_c_skips_the_grid(tmp_path, bert):
    rec = run_baseline(tmp_path, bert, dataset_name="rotten_tomatoes", C=0.05)
    assert rec["settings"]["C"] == 0.05 and "C_validation" not in rec["training"]


def test_set_without_validation_takes_c_1_and_says_so(tmp_path, bert, caplog):
    with caplog.at_level(logging.WARNING, logger="baseline"):
        rec = run_baseline(tmp_path, bert, dataset_name="restaurant_fs")
    assert rec["settings"]["C"] == 1.0 and set(rec["metrics"]) == {"test"}
    assert "no validation split to choose C on: C=1 (pass --C" in caplog.text


def test_cli_bad_selection_metric_is_a_one_line_error(tmp_path, bert, capsys):
    code = baseline.main(["--model_name_or_path", bert, "--metric_for_best_model", "loss",
                          "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == ("error: --metric_for_best_model 'loss' cannot pick C; "
                                         "use one of: accuracy, micro_f1, macro_f1, weight_f1")

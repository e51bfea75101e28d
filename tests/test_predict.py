"""ftlab/runs/predict.py: every method's run folder predicts as its run did, merged exports equal the run, one-line errors.

Tiny random BERT runs on the restaurant_sup fixtures (ABSA: `term [SEP] sentence`), trained in-process
by train.main; Trainer.predict is wrapped to keep the run's own test logits for comparison.
"""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ftlab.data import datasets as dataHelper
from ftlab.models import build
from ftlab.runs import predict
from ftlab.train import steps as train
from ftlab.train.trainer import FtTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
METHODS = ["full", "head", "lora", "lora_scratch", "adapter"]
TRAIN = ["--dataset_name", "restaurant_sup", "--data_dir", FIXTURES, "--max_steps", "4", "--learning_rate", "1e-2",
         "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--report_to", "none"]


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    """{method: (run folder, the run's own test logits from FtTrainer.predict, in dataset order)}."""
    root = tmp_path_factory.mktemp("runs")
    out, captured = {}, {}
    original = FtTrainer.predict

    def keep_logits(self, dataset, *args, **kwargs):
        output = original(self, dataset, *args, **kwargs)
        captured["logits"] = output.predictions
        return output

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FtTrainer, "predict", keep_logits)
        for method in METHODS:
            folder = str(root / method)
            assert train.main(["--model_name_or_path", tiny_models("bert"), "--method", method,
                               "--output_dir", folder, *TRAIN]) == 0
            out[method] = (folder, np.asarray(captured.pop("logits")))
    return out


@pytest.fixture(scope="module")
def test_csv(tmp_path_factory):
    """The fixture test split as a CSV (text as dataHelper builds it, label names), like a user would write it."""
    split = dataHelper.get_dataset("restaurant_sup", sep_token="[SEP]", data_dir=FIXTURES)["test"]
    names = split.features["label"].names
    path = tmp_path_factory.mktemp("data") / "test.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([row["text"], names[row["label"]]] for row in split)
    return str(path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def one_error_line(err):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


# Logits as the run computed them (the same batches: longest first): fp32 to 1e-4; under bf16 autocast (the
# default on an AVX512-BF16/AMX CPU, FTLAB_BF16=1 anywhere) a logit may land one bf16 step (2^-8 of its size:
# 2.4e-4 at 0.05) away
RUN_LOGITS_TOLERANCE = {False: dict(rtol=0, atol=1e-4), True: dict(rtol=2 ** -7, atol=1e-3)}


@pytest.mark.precision
@pytest.mark.parametrize("method", METHODS)
def test_run_folder_predicts_what_the_run_predicted(runs, test_csv, tmp_path, capsys, method):
    folder, run_logits = runs[method]
    record = read_json(os.path.join(folder, "run.json"))
    run = predict.load_run(folder)
    assert run.label_names == ["negative", "neutral", "positive"] and run.text_format.kind == "absa"
    items = predict.items_from_file(run, predict.PredictArguments(file=test_csv))
    logits = predict.predict_logits(run, [i.model_input for i in items])
    # same examples, same batches, same autocast as train.py's evaluation (the precision this run trained in)
    assert run.bf16 == record["config"]["bf16"] == build.bf16_supported()
    np.testing.assert_allclose(logits, run_logits, **RUN_LOGITS_TOLERANCE[run.bf16])
    out = tmp_path / "predictions.jsonl"
    assert predict.main([folder, "--file", test_csv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    rows = read_jsonl(out)
    run_rows = read_jsonl(os.path.join(folder, "predictions_test.jsonl"))
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in run_rows]
    accuracy = np.mean([r["prediction"] == r["label"] for r in rows])
    assert accuracy == pytest.approx(record["metrics"]["test"]["accuracy"], abs=1e-12)
    assert f"accuracy {record['metrics']['test']['accuracy']:.4f}" in err and "s per 1,000 texts" in err


def amplify_trained_deltas(run):
    """Scale LoRA B / adapter up-projections so that a wrong merge could not hide in tiny numbers."""
    changed = 0
    with torch.no_grad():
        for name, p in run.model.named_parameters():
            if "lora_B" in name or "adapter_up" in name:
                p.add_(torch.randn_like(p) * 2.0)
                changed += 1
    return changed


@pytest.mark.parametrize("method", METHODS)
def test_merged_export_equals_the_unmerged_run(runs, test_csv, tmp_path, method):
    folder, _ = runs[method]
    run = predict.load_run(folder)
    texts = [i.model_input for i in predict.items_from_file(run, predict.PredictArguments(file=test_csv))]
    plain_before = predict.predict_logits(run, texts, bf16=False)
    assert (amplify_trained_deltas(run) > 0) == (method in ("lora", "lora_scratch", "adapter"))
    unmerged = predict.predict_logits(run, texts, bf16=False)
    if method in ("lora", "lora_scratch", "adapter"):
        assert np.abs(unmerged - plain_before).max() > 1e-3  # the deltas matter (10x the tolerance)
    export = tmp_path / "export"
    info = predict.export_merged(run, str(export))
    model, tokenizer = predict.load_export(str(export))
    batch = tokenizer(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
    with torch.no_grad():
        merged = model(**batch).logits.numpy()
    assert np.abs(merged - unmerged).max() < 1e-4
    assert info["check"]["max_abs_logit_diff"] < 1e-4
    assert info["loader"] == ("adapters" if method == "adapter" else "transformers")
    config = read_json(export / "config.json")
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert read_json(export / "tokenizer_config.json")["model_max_length"] == 128  # the run's max_length
    if method in ("lora", "lora_scratch"):  # merged: plain BERT weights only
        from safetensors import safe_open
        with safe_open(str(export / "model.safetensors"), "pt") as f:
            assert not [k for k in f.keys() if "lora" in k or "base_layer" in k]
    card = (export / "README.md").read_text()
    assert card.startswith("---\n") and "pipeline_tag: text-classification" in card


def test_exports_load_in_a_fresh_process_without_ftlab(runs, tmp_path):
    """pipeline("text-classification") on the exports, ftlab not importable (adapter: with the adapters
    library, as its model card says); same labels and scores as ftlab/runs/predict.py."""
    texts = ["food [SEP] The food was great but the service was slow.", "battery [SEP] The battery lasts all day."]
    expected = {}
    for method in ("lora", "lora_scratch", "full", "adapter"):
        run = predict.load_run(runs[method][0])
        amplify_trained_deltas(run)
        export = str(tmp_path / method)
        predict.export_merged(run, export)
        probs = predict.softmax(predict.predict_logits(run, texts, bf16=False))
        expected[export] = [(run.label_names[int(p.argmax())], float(p.max())) for p in probs]
    script = ("import json, sys\n"
              "try:\n    import predict\n    sys.exit('ftlab is importable')\nexcept ImportError:\n    pass\n"
              "import os\n"
              "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline\n"
              "def load(f):\n"  # the model card's lines: plain transformers, or the adapters library
              "    if not os.path.isdir(f + '/adapter'):\n        return pipeline('text-classification', model=f)\n"
              "    import adapters\n    model = AutoModelForSequenceClassification.from_pretrained(f)\n"
              "    adapters.init(model)\n    model.load_adapter(f + '/adapter', use_safetensors=True)\n"
              "    model.set_active_adapters(list(model.adapters_config.adapters)[0])\n"
              "    return pipeline('text-classification', model=model, tokenizer=AutoTokenizer.from_pretrained(f))\n"
              "folders, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
              "print(json.dumps({f: [(r['label'], r['score']) for r in load(f)(texts, truncation=True)] "
              "for f in folders}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(list(expected)), json.dumps(texts)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    for folder, rows in expected.items():
        assert [label for label, _ in got[folder]] == [label for label, _ in rows]
        np.testing.assert_allclose([s for _, s in got[folder]], [s for _, s in rows], atol=1e-5)


def test_texts_on_the_command_line(runs, capsys):
    folder = runs["lora"][0]
    assert predict.main([folder, "food\tThe food was great", "--batch_size", "1"]) == 0
    out, err = capsys.readouterr()
    label, probability, text = out.strip().split("\t", 2)
    assert label in ("negative", "neutral", "positive") and 1 / 3 <= float(probability) <= 1
    assert text == "food\tThe food was great" and "1 texts in" in err
    assert predict.main([folder, "The service was slow.", "--term", "service"]) == 0
    assert capsys.readouterr().out.count("\n") == 1


def test_absa_and_mrpc_text_formats():
    absa = predict.TextFormat("absa", "[SEP]")
    assert absa.format("food\tThe food was great") == "food [SEP] The food was great"
    assert absa.format("The food was great", term="food") == "food [SEP] The food was great"
    assert absa.format("food [SEP] The food was great") == "food [SEP] The food was great"  # already formatted
    with pytest.raises(ValueError, match="ABSA texts: give TERM<sep>SENTENCE"):
        absa.format("no term here")
    pair = predict.TextFormat("pair", "</s>", dataHelper.MRPC_PROMPT, part_separator=" || ")
    assert pair.format("A man sings. || A man is singing.") == "A man sings. </s> A man is singing."
    assert predict.TextFormat("plain", "[SEP]").format("a\tb") == "a\tb"
    assert predict.TextFormat("absa", "[SEP]", raw=True).format("x") == "x"
    assert [predict.data_kind(n) for n in ("restaurant_sup", "laptop_fs", "mrpc", "bbc_news",
                                           "restaurant_sup,laptop_sup", "restaurant_sup,acl_sup")] == \
        ["absa", "absa", "pair", "plain", "absa", "plain"]


def test_file_columns_and_formats(runs, tmp_path, capsys):
    folder = runs["full"][0]
    run = predict.load_run(folder)
    tsv = tmp_path / "absa.tsv"
    tsv.write_text("term\tsentence\tlabel\nfood\tThe food was great\t2\nwaiter\tThe waiter was rude\tnegative\n")
    items = predict.items_from_file(run, predict.PredictArguments(file=str(tsv)))
    assert [i.model_input for i in items] == ["food [SEP] The food was great", "waiter [SEP] The waiter was rude"]
    assert [i.gold for i in items] == ["positive", "negative"]  # ids and names
    lines = tmp_path / "texts.txt"
    lines.write_text("food [SEP] great\n\nservice [SEP] slow\n")
    out = tmp_path / "out.csv"
    assert predict.main([folder, "--file", str(lines), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["text"] for r in rows] == ["food [SEP] great", "service [SEP] slow"]
    assert set(rows[0]) == {"index", "text", "prediction", "probability"}


@pytest.mark.parametrize("make,argv,message", [
    (None, ["{tmp}/nope", "x"], "error: no such folder: "),
    ("empty_dir", ["{tmp}/d", "x"], "error: no run.json in "),
    (None, ["{run}"], "error: nothing to do: give TEXT"),
    ("csv", ["{run}", "--file", "{tmp}/f.csv", "--text_column", "review"],
     "error: {tmp}/f.csv: unknown column 'review'"),
    ("empty_csv", ["{run}", "--file", "{tmp}/e.csv"], "error: {tmp}/e.csv: empty file"),
    (None, ["{run}", "--file", "{tmp}/missing.csv"], "error: no such file: "),
    (None, ["{run}", "no term"], "error: this run was trained on ABSA texts"),
    ("bad_label", ["{run}", "--file", "{tmp}/l.csv"], "error: label column holds names the run does not know"),
])
def test_bad_input_is_one_error_line(runs, tmp_path, capsys, make, argv, message):
    tmp = str(tmp_path)
    if make == "empty_dir":
        (tmp_path / "d").mkdir()
    elif make == "csv":
        (tmp_path / "f.csv").write_text("text,label\nfood [SEP] ok,positive\n")
    elif make == "empty_csv":
        (tmp_path / "e.csv").write_text("")
    elif make == "bad_label":
        (tmp_path / "l.csv").write_text("text,label\nfood [SEP] ok,delicious\n")
    argv = [a.format(tmp=tmp, run=runs["head"][0]) for a in argv]
    assert predict.main(argv) == 2
    assert one_error_line(capsys.readouterr().err).startswith(message.format(tmp=tmp))


def test_merge_to_refuses_a_non_empty_folder(runs, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    assert predict.main([runs["head"][0], "--merge_to", str(tmp_path / "x")]) == 2
    assert "--overwrite true" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"

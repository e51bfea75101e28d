"""ftlab/runs/modelcard.py: the README.md of a run folder and of a merged export, metadata parsed by huggingface_hub."""
import json
import os

import pytest
from huggingface_hub import ModelCard

from ftlab.methods.registry import get_method
from ftlab.runs import modelcard, predict
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


@pytest.fixture(scope="module")
def run_dir(tiny_models, tmp_path_factory):
    """A tiny LoRA run on the ABSA fixtures, its card written as train.py will (after run.json)."""
    folder = str(tmp_path_factory.mktemp("card") / "run")
    args = train.parse_args(["--model_name_or_path", tiny_models("bert"), "--dataset_name", "restaurant_sup",
                             "--data_dir", FIXTURES, "--max_steps", "3", "--per_device_train_batch_size", "8",
                             "--disable_tqdm", "true", "--report_to", "none", "--output_dir", folder])
    record = train.run(*args)
    modelcard.write_model_card(folder, record)
    return folder


def read_record(folder):
    with open(os.path.join(folder, "run.json")) as f:
        return json.load(f)


def test_run_card_holds_what_the_weights_are(run_dir):
    record = read_record(run_dir)
    card = ModelCard.load(os.path.join(run_dir, "README.md"))
    data = card.data
    assert data.pipeline_tag == "text-classification" and data.library_name == "peft"
    assert data.base_model is None  # a local folder is not a Hub id (the body names it)
    assert "lora" in data.tags and "ftlab" in data.tags
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("test", "accuracy")] == pytest.approx(record["metrics"]["test"]["accuracy"], abs=1e-6)
    assert results[("test", "f1")] == pytest.approx(record["metrics"]["test"]["macro_f1"], abs=1e-6)
    text = card.text
    assert f"`lora` fine-tune of `{record['model']}` on `restaurant_sup`" in text
    sizes = next(line for line in text.splitlines() if line.startswith("- split sizes: "))
    assert "train 59" in sizes and "test 36" in sizes  # restaurant fixture: 66 train rows, 7 held out; run.json, else predictions_test.jsonl
    assert "- labels (3): negative, neutral, positive" in text
    assert "lora_r 8, lora_alpha 16, lora_dropout 0.1" in text
    assert f"- trainable parameters: {record['params']['trainable']:,} of {record['params']['total']:,}" in text
    lr = record["config"]["learning_rate"]  # lora's default (ftlab/methods/registry.py), as the card must show it
    assert lr == get_method("lora").learning_rate
    assert f"| learning_rate | {lr:g} |" in text and "| max_steps | 3 |" in text
    assert f"| test | {record['metrics']['test']['accuracy']:.4f} |" in text
    assert f"transformers {record['versions']['transformers']}" in text and "- machine: cpu" in text
    assert "Input format: `TERM [SEP] SENTENCE`" in text
    assert "## Limitations" in text and "truncated" in text


def test_majority_class_behaviour_is_stated():
    predictions = [{"prediction": "positive", "label": lab} for lab in ["positive"] * 13 + ["negative"] * 7]
    notes = modelcard.majority_notes(predictions)
    assert notes == ["Majority-class behaviour: it predicts 'positive' for 20 of 20 test texts; 'positive' is "
                     "65.0% of the test labels, so accuracy says little here."]
    mixed = predictions[:10] + [{"prediction": "negative", "label": "negative"}] * 10
    assert modelcard.majority_notes(mixed) == []
    record = {"dataset": "x", "metrics": {"test": {"accuracy": 0.65, "macro_f1": 0.26}}, "data": {"train_samples": 50}}
    notes = modelcard.limitations(record, predictions, None)
    assert any("rarer classes are mostly missed" in n for n in notes)
    assert any("only 50 examples" in n for n in notes)


def test_hub_ids():
    assert modelcard.base_model_id("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert modelcard.base_model_id("bert-base-uncased") == "bert-base-uncased"
    assert modelcard.base_model_id("Qwen/Qwen1.5-0.5B") == "Qwen/Qwen1.5-0.5B"
    assert modelcard.base_model_id("/tmp/x/bert") is None
    assert modelcard.dataset_hub_ids("rotten_tomatoes") == ["cornell-movie-review-data/rotten_tomatoes"]
    assert modelcard.dataset_hub_ids("bbc_news") == []  # embedded, no Hub copy


def test_export_card_says_how_it_was_merged(run_dir, tmp_path):
    run = predict.load_run(run_dir)
    export = tmp_path / "bert-absa"
    info = predict.export_merged(run, str(export))
    card = ModelCard.load(str(export / "README.md"))
    assert card.data.library_name == "transformers" and "merged" in card.data.tags
    assert card.data.model_name == "bert-absa"
    assert "peft LoRA merged into the base (merge_and_unload)" in card.text
    assert f"pipeline(\"text-classification\", model={str(export)!r})" in card.text
    assert f"{info['check']['max_abs_logit_diff']:.2e} on {info['check']['texts']} test texts" in card.text


def test_cli_rewrites_cards_and_rejects_non_runs(run_dir, tmp_path, capsys):
    os.remove(os.path.join(run_dir, "README.md"))
    assert modelcard.main([run_dir]) == 0
    assert os.path.isfile(os.path.join(run_dir, "README.md"))
    assert modelcard.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run.json in") and err.count("\n") == 1

"""Head-only training on cached features (ftlab/speed/headcache.py): same logits as the model, same method."""
import json
import os

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from ftlab.methods.registry import MethodArguments, apply_head, count_parameters
from ftlab.speed import headcache
from ftlab.train import steps as train
from tests.test_train import QUICK, read_run, run_main

TEXTS = ["a short one", "a somewhat longer example sentence here", "mid length text", "x"]


def _tokenized(tokenizer):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b", "c"])})
    data = DatasetDict({"train": Dataset.from_dict({"text": TEXTS, "label": [0, 1, 2, 1]}, features=features)})
    return train.tokenize_data(data, tokenizer, max_length=16)


@pytest.mark.parametrize("kind", ["bert", "distilbert", "qwen2", "llama"])
def test_feature_head_gives_the_models_own_logits(tiny_models, kind):
    # eval mode, fp32: the body once + the head on its output == the whole model on the tokens, padding
    # included (the 4 texts have different lengths, so every batch but the longest row is padded)
    tokenizer, model = train.get_model(tiny_models(kind), 3)
    model = apply_head(model, MethodArguments(method="head")).eval()
    tokenized = _tokenized(tokenizer)
    feats = headcache.compute_features(model, tokenized["train"], tokenizer, batch_size=3)
    assert feats.shape == (4, model.config.hidden_size) and feats.dtype == torch.float32
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
        got = headcache.FeatureHead(model).eval()(feats).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_feature_head_trains_the_models_head_and_nothing_else(tiny_models):
    tokenizer, model = train.get_model(tiny_models("bert"), 3)
    model = apply_head(model, MethodArguments(method="head"))
    head = headcache.FeatureHead(model)
    # the optimizer sees exactly the head's trainable parameters: those of the model's classifier
    assert {id(p) for p in head.parameters() if p.requires_grad} == {
        id(p) for p in model.parameters() if p.requires_grad}
    assert sum(p.numel() for p in head.parameters() if p.requires_grad) == count_parameters(model)[0]
    assert all(k.startswith("parts.") for k in head.state_dict())  # checkpoints hold the head only
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=0.5)
    out = head(torch.randn(4, model.config.hidden_size), labels=torch.tensor([0, 1, 2, 1]))
    out.loss.backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.weight", "classifier.bias"}


def test_unsupported_architecture_says_so(tiny_models):
    _, model = train.get_model(tiny_models("bart"), 3)
    assert not headcache.supports(model)
    _, model = train.get_model(tiny_models("bert"), 3)
    assert headcache.supports(model)


def test_head_run_on_cached_features_saves_the_whole_model(tiny_models, tmp_path, capsys):
    out = tmp_path / "head"
    quick = [a for a in QUICK if a not in ("--max_steps", "3")]
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "acl_sup",
                            "--method", "head", "--output_dir", str(out), *quick, "--num_train_epochs", "3",
                            "--learning_rate", "1e-2", "--seed", "3")
    assert code == 0, err
    record = read_run(out)
    assert record["settings"] == {"cache_features": True}
    assert record["training"]["epochs"] == 3.0 and record["training"]["steps"] == 45  # 120 rows / batch 8 x 3
    assert record["params"]["total"] > 10 * record["params"]["trainable"] > 0
    # the body's pass over train counts as training time; samples/s over that whole time
    feature_seconds = record["time"]["feature_seconds"]
    assert set(feature_seconds) == {"train", "validation", "test"} and feature_seconds["train"] > 0
    assert record["time"]["train_seconds"] > feature_seconds["train"]
    assert record["time"]["samples_per_second"] == pytest.approx(120 * 3 / record["time"]["train_seconds"])
    # the saved folder is the whole model, reloadable, and it scores validation as the run did
    reloaded = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    original = AutoModelForSequenceClassification.from_pretrained(tiny_models("bert"), num_labels=5)
    body = {k: v for k, v in reloaded.state_dict().items() if k.startswith("bert.") and "pooler" not in k}
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in body.items())  # the body never moved
    tokenizer = train.load_tokenizer(str(out))
    data, _ = train.load_data("acl_sup", tokenizer.sep_token, data_dir=QUICK[1])
    val = data["validation"]
    with torch.no_grad():
        logits = reloaded(**tokenizer(list(val["text"]), truncation=True, max_length=128, padding=True,
                                      return_tensors="pt")).logits
    accuracy = (logits.argmax(-1) == torch.tensor(list(val["label"]))).float().mean().item()
    assert accuracy == pytest.approx(record["metrics"]["validation"]["accuracy"], abs=1e-6)


def test_head_without_the_cache_runs_step_by_step(tiny_models, tmp_path, capsys):
    out = tmp_path / "head_steps"
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "acl_sup",
                            "--method", "head", "--output_dir", str(out), *QUICK, "--head_cache_features", "false")
    assert code == 0, err
    record = read_run(out)
    assert record["settings"] == {"cache_features": False} and record["training"]["steps"] == 3
    assert os.path.isfile(out / "model.safetensors")
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]

"""Adding a data set and adding a method, done once each, as DESIGN.md says (the edit counts there).

A data set: one reader (when the release format is new) + one RELEASES line + one DATASETS line in
ftlab/data/datasets.py. A method: one apply function + one METHODS line in ftlab/methods/registry.py. Here both are
registered from the test (monkeypatch) and run end to end through train.py on a tiny model.
"""
import json

import torch

from ftlab.data import datasets as dh
from ftlab.methods import registry as methods
from ftlab.methods.registry import Method, set_trainable
from ftlab.train import steps as train
from tests.test_train import QUICK, read_run


def _read_toy(folder: str):
    """A toy release: one 'label<TAB>text' line per example in train.tsv / test.tsv."""
    names = ["no", "yes"]
    splits = {}
    for split in ("train", "test"):
        with open(f"{folder}/{split}.tsv", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
        splits[split] = [{"label": names.index(label), "text": text} for label, text in rows]
    return names, splits


def apply_bitfit(model, args):
    """BitFit (Ben Zaken et al. 2022): only the bias terms (and the new head) train."""
    heads = methods.head_module_names(model)
    set_trainable(model, lambda name: name.endswith(".bias") or name.split(".", 1)[0] in heads)
    return model


def test_a_toy_data_set_and_a_toy_method_run_through_train(tmp_path, monkeypatch, tiny_models, capsys):
    data_dir = tmp_path / "data"
    (data_dir / "toy").mkdir(parents=True)
    for split, n in (("train", 12), ("test", 6)):
        lines = [f"{'yes' if i % 2 else 'no'}\t{'good' if i % 2 else 'bad'} thing number {i}" for i in range(n)]
        (data_dir / "toy" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
    # the two registry lines of a new data set
    monkeypatch.setitem(dh.RELEASES, "toy", dh.Release("toy", ("train.tsv", "test.tsv"), _read_toy, "made by the test"))
    monkeypatch.setitem(dh.DATASETS, "toy_sup", dh.DatasetSpec("toy", dh._build_plain, "toy yes/no"))
    # the one registry line of a new method
    monkeypatch.setitem(methods.METHODS, "bitfit", Method("bitfit", apply_bitfit, 1e-3, "biases and head"))

    dd = dh.get_dataset("toy_sup", data_dir=str(data_dir))
    assert {s: len(ds) for s, ds in dd.items()} == {"train": 12, "test": 6}
    assert dd["train"].features["label"].names == ["no", "yes"] and dd["train"][1]["label"] == 1

    model_dir = tiny_models("bert")
    out = tmp_path / "run"
    argv = ["--model_name_or_path", model_dir, "--dataset_name", "toy_sup", "--method", "bitfit",
            "--output_dir", str(out), *QUICK, "--data_dir", str(data_dir)]
    assert train.main(argv) == 0, capsys.readouterr().err
    rec = read_run(out)
    assert (rec["dataset"], rec["method"], rec["config"]["learning_rate"]) == ("toy_sup", "bitfit", 1e-3)
    # trainable = every bias of the tiny BERT + the 2-class head (32 x 2 + 2)
    _, fresh = train.get_model(model_dir, 2)
    biases = sum(p.numel() for n, p in fresh.named_parameters() if n.endswith(".bias") and not n.startswith("classifier"))
    assert rec["params"]["trainable"] == biases + 32 * 2 + 2
    # after 3 steps only biases and the head moved
    from transformers import AutoModelForSequenceClassification

    trained = AutoModelForSequenceClassification.from_pretrained(str(out))
    base = dict(fresh.named_parameters())
    changed = {n for n, p in trained.named_parameters()
               if not n.startswith("classifier") and not torch.equal(p, base[n])}
    assert changed and all(n.endswith(".bias") for n in changed), sorted(changed)[:5]
    assert json.loads((out / "run.json").read_text())["metrics"]["test"]["accuracy"] >= 0.0

"""predict.py is safe by default: a run folder cannot turn on code execution or pickle loading.

A copied run folder whose run.json says trust_remote_code and whose config.json / tokenizer_config.json
map the model and tokenizer to a .py file that writes a marker file when imported (the audit of issue 35:
predict.py executed it). Tiny random BERT runs on the restaurant_sup fixtures, trained once per module.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from ftlab.runs import predict
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TEXT = "The food was great"


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    """{method: run folder} of 2-step runs."""
    root = tmp_path_factory.mktemp("safety_runs")
    out = {}
    for method in ("full", "lora", "lora_scratch"):
        out[method] = str(root / method)
        assert train.main(["--model_name_or_path", tiny_models("bert"), "--method", method, "--output_dir",
                           out[method], "--dataset_name", "restaurant_sup", "--data_dir", FIXTURES, "--max_steps", "2",
                           "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--report_to", "none"]) == 0
    return out


def copy_run(folder, dest):
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("checkpoint-*"))
    return str(dest)


def edit_json(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def malicious_copy(folder, dest, marker, model_type=None):
    """The run folder with run.json trust_remote_code and auto_map entries pointing at evil.py."""
    dest = copy_run(folder, dest)
    with open(os.path.join(dest, "evil.py"), "w") as f:
        f.write(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code ran')\n"
                "from transformers import BertConfig, BertForSequenceClassification, BertTokenizer\n"
                "class EvilConfig(BertConfig):\n    model_type = 'evil_bert'\n"
                "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n"
                "class EvilTokenizer(BertTokenizer):\n    pass\n")
    edit_json(os.path.join(dest, "run.json"), lambda r: r["config"].update(trust_remote_code=True))
    edit_json(os.path.join(dest, "config.json"), lambda c: c.update(
        auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForSequenceClassification": "evil.EvilModel"},
        **({"model_type": model_type} if model_type else {})))
    edit_json(os.path.join(dest, "tokenizer_config.json"),
              lambda c: c.update(auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]}))
    return dest


def run_cli(args, tmp_path):
    """predict.py in a fresh process; remote code, if any runs, is copied into tmp_path, not ~/.cache."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    return subprocess.run([sys.executable, "-m", "ftlab", "predict", *args], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_json_and_auto_map_run_no_code(runs, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    evil = malicious_copy(runs["full"], tmp_path / "evil", marker)
    assert predict.main([runs["full"], TEXT, "--term", "food"]) == 0
    clean = capsys.readouterr().out
    assert predict.main([evil, TEXT, "--term", "food"]) == 0
    out, err = capsys.readouterr()
    assert not marker.exists()
    assert out == clean  # the folder's own weights, built by transformers' BERT code
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and os.path.join(evil, "evil.py") in warning[0] and "--trust_remote_code" in warning[0]
    proc = run_cli([evil, "--term", "food", TEXT], tmp_path)  # a fresh process, as a user runs it
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not marker.exists() and proc.stdout == clean
    assert not (tmp_path / "modules").exists()  # nothing was even copied for import


def test_only_the_users_flag_runs_the_folders_code(runs, tmp_path):
    """The marker mechanism works: --trust_remote_code (the user's choice) imports evil.py."""
    marker = tmp_path / "MARKER"
    evil = malicious_copy(runs["full"], tmp_path / "evil", marker)
    proc = run_cli([evil, TEXT, "--term", "food", "--trust_remote_code"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.read_text() == "code ran"
    assert f"warning: --trust_remote_code: running {os.path.join(evil, 'evil.py')}" in proc.stderr


def test_a_model_type_that_only_its_code_defines_is_refused(runs, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    evil = malicious_copy(runs["full"], tmp_path / "evil", marker, model_type="evil_bert")
    assert predict.main([evil, TEXT, "--term", "food"]) == 2
    out, err = capsys.readouterr()
    assert not marker.exists() and out == ""
    (line,) = err.strip().splitlines()  # long paths may cut the middle of the line, never its ends
    assert line.startswith(f"error: {evil}: model type 'evil_bert' exists only")
    assert line.endswith("(evil.py): pass --trust_remote_code if you trust it")


def pickle_copy(folder, dest):
    """The run folder with its safetensors weights re-saved as pickle files only."""
    from safetensors.torch import load_file

    dest = copy_run(folder, dest)
    for safe, pickled in (("model.safetensors", "pytorch_model.bin"), ("adapter_model.safetensors", "adapter_model.bin")):
        path = os.path.join(dest, safe)
        if os.path.isfile(path):
            torch.save(load_file(path), os.path.join(dest, pickled))
            os.remove(path)
    return dest


@pytest.mark.parametrize("method,weights", [("full", "pytorch_model.bin"), ("lora", "adapter_model.bin"),
                                            ("lora_scratch", "pytorch_model.bin")])
def test_pickle_weights_need_allow_pickle(runs, tmp_path, capsys, method, weights):
    folder = pickle_copy(runs[method], tmp_path / method)
    assert predict.main([runs[method], TEXT, "--term", "food"]) == 0
    expected = capsys.readouterr().out
    assert predict.main([folder, TEXT, "--term", "food"]) == 2
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert out == "" and line.startswith(f"error: {folder}: pickle weights only")
    assert line.endswith(f"({weights}), which can run code when loaded: pass --allow_pickle if you trust the folder")
    assert predict.main([folder, TEXT, "--term", "food", "--allow_pickle"]) == 0
    assert capsys.readouterr().out == expected  # the same weights, from the pickle file


def test_the_base_model_is_named_before_it_loads(runs, tmp_path, capsys):
    record = predict.read_run(runs["lora"])
    assert predict.main([runs["lora"], TEXT, "--term", "food"]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first == f"base model: {record['model_path']} (local folder; named in {runs['lora']}/run.json)"
    folder = copy_run(runs["lora"], tmp_path / "lora")
    edit_json(os.path.join(folder, "run.json"), lambda r: r.update(model="someone/unknown-base", model_path=None))
    assert predict.main([folder, TEXT, "--term", "food"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"base model: someone/unknown-base (Hub id: fetched unless cached; named in {folder}/run.json)"
    assert len(lines) == 2 and lines[1].startswith("error: ") and "someone/unknown-base" in lines[1]

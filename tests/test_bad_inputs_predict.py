"""predict.py's bad inputs: each is ONE `error:` line on stderr, exit 2, no traceback, nothing written.

Every case runs main() in-process on copies of two tiny 2-step runs (full and lora on the restaurant_sup
fixtures, trained once per session); a few run as a user would, in a fresh process.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ftlab.runs import predict
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


@pytest.fixture(scope="session")
def run_folders(tiny_models, tmp_path_factory):
    """{method: run folder} of 2-step full and lora runs (read-only for the tests: cases edit copies)."""
    root = tmp_path_factory.mktemp("bad_input_runs")
    out = {}
    for method in ("full", "lora"):
        out[method] = str(root / method)
        assert train.main(["--model_name_or_path", tiny_models("bert"), "--method", method, "--output_dir",
                           out[method], "--dataset_name", "restaurant_sup", "--data_dir", FIXTURES, "--max_steps", "2",
                           "--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--report_to", "none"]) == 0
    return out


def copy_run(folder, dest, edit=None):
    """A copy of a run folder (no checkpoints); edit(dest) changes it."""
    shutil.copytree(folder, dest, ignore=shutil.ignore_patterns("checkpoint-*"))
    if edit:
        edit(str(dest))
    return str(dest)


def edit_run_json(change):
    def edit(folder):
        path = os.path.join(folder, "run.json")
        with open(path) as f:
            record = json.load(f)
        change(record)
        with open(path, "w") as f:
            json.dump(record, f)
    return edit


def truncate(name):
    def edit(folder):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
    return edit


def write(name, data):
    def edit(folder):
        with open(os.path.join(folder, name), "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
    return edit


def lacking(key):
    return edit_run_json(lambda r: r.pop(key))


# name -> how the case's input is made in tmp: (file name, content) or (run to copy, edit of the copy)
INPUT_FILES = {
    "x.xyz": "text\nfood [SEP] ok\n",
    "bin.txt": bytes(range(128, 256)) * 4,
    "latin.csv": "text\nfood [SEP] caf\u00e9\n".encode("latin-1"),
    "nul.txt": b"food [SEP] ok\x00\x00\x01\n",
    "f.csv": "text,label\nfood [SEP] ok,positive\n",
    "gap.csv": "text,label\nfood [SEP] ok,positive\n,negative\n",
    "labels.csv": "text,label\nfood [SEP] ok,delicious\n",
}
RUN_COPIES = {
    "trunc_model": ("full", truncate("model.safetensors")),
    "trunc_adapter": ("lora", truncate("adapter_model.safetensors")),
    "no_weights": ("full", lambda d: os.remove(os.path.join(d, "model.safetensors"))),
    "no_method": ("full", lacking("method")),
    "svm_run": ("full", edit_run_json(lambda r: r.update(method="svm"))),
    "lora_no_model": ("lora", lacking("model")),
    "bad_max_length": ("full", edit_run_json(lambda r: r["config"].update(max_length="long"))),
    "bad_run_json": ("full", write("run.json", '{"method": "full", ')),
    "nonsense_type": ("full", write("config.json", '{"model_type": "nonsense"}')),
}

CASES = [  # (id, argv with {run} {lora} {tmp}, the start of the error line)
    ("empty text", ["{run}", "", "--term", "food"], "error: text 1 is empty"),
    ("blank text after options", ["{run}", "--term", "food", "   "], "error: text 1 is empty"),
    ("empty term", ["{run}", "The food", "--term", ""], "error: --term is empty"),
    ("unknown file type", ["{run}", "--file", "{tmp}/x.xyz", "--term", "food", "--out", "{tmp}/o.jsonl"],
     "error: --file {tmp}/x.xyz: unknown file type '.xyz'; supported: .csv, .tsv, .jsonl"),
    ("binary file", ["{run}", "--file", "{tmp}/bin.txt", "--out", "{tmp}/o.jsonl"],
     "error: {tmp}/bin.txt: not UTF-8 text (byte 0x80 at offset 0)"),
    ("latin-1 csv", ["{run}", "--file", "{tmp}/latin.csv"], "error: {tmp}/latin.csv: not UTF-8 text"),
    ("NUL bytes", ["{run}", "--file", "{tmp}/nul.txt"], "error: {tmp}/nul.txt: a binary file (NUL bytes)"),
    ("unknown --text_column", ["{run}", "--file", "{tmp}/f.csv", "--text_column", "review", "--out", "{tmp}/o.csv"],
     "error: {tmp}/f.csv: unknown column 'review' (columns: text, label)"),
    ("empty cell", ["{run}", "--file", "{tmp}/gap.csv", "--out", "{tmp}/o.csv"],
     "error: {tmp}/gap.csv: row 2 has an empty text"),
    ("unknown label name", ["{run}", "--file", "{tmp}/labels.csv", "--out", "{tmp}/o.jsonl"],
     "error: label column holds names the run does not know: ['delicious']"),
    ("unknown --out type", ["{run}", "--file", "{tmp}/f.csv", "--out", "{tmp}/o.xlsx"],
     "error: --out {tmp}/o.xlsx: unknown file type '.xlsx'; supported: .jsonl, .csv"),
    ("--out is --file", ["{run}", "--file", "{tmp}/f.csv", "--out", "{tmp}/f.csv"],
     "error: --out {tmp}/f.csv is the --file itself"),
    ("--batch_size 0", ["{run}", "food [SEP] ok", "--batch_size", "0"], "error: --batch_size 0: must be >= 1"),
    ("--batch_size -1", ["{run}", "food [SEP] ok", "--batch_size", "-1"], "error: --batch_size -1: must be >= 1"),
    ("--device gpu0", ["{run}", "food [SEP] ok", "--device", "gpu0"], "error: --device 'gpu0': not a device"),
    ("--text_format", ["{run}", "food [SEP] ok", "--text_format", "json"], "error: --text_format must be auto or raw"),
    ("unknown option", ["{run}", "food [SEP] ok", "--bogus", "3"], "error: unrecognized arguments: --bogus 3"),
    ("nothing to do", ["{run}"], "error: nothing to do: give TEXT"),
    ("texts and --file", ["{run}", "x", "--file", "{tmp}/f.csv"], "error: give texts or --file, not both"),
    ("truncated model weights", ["{tmp}/trunc_model", "food [SEP] ok"],
     "error: {tmp}/trunc_model/model.safetensors: truncated or corrupt weights"),
    ("truncated adapter weights", ["{tmp}/trunc_adapter", "food [SEP] ok"],
     "error: {tmp}/trunc_adapter/adapter_model.safetensors: truncated or corrupt weights"),
    ("no weights", ["{tmp}/no_weights", "food [SEP] ok"], "error: {tmp}/no_weights: no model weights"),
    ("not a run folder", ["{tmp}", "food [SEP] ok"], "error: no run.json in"),
    ("no such folder", ["{tmp}/nope", "food [SEP] ok"], "error: no such folder: {tmp}/nope"),
    ("run.json without method", ["{tmp}/no_method", "food [SEP] ok"], "error: {tmp}/no_method: method None keeps no"),
    ("svm run", ["{tmp}/svm_run", "food [SEP] ok"], "error: {tmp}/svm_run: method 'svm' keeps no model"),
    ("lora run.json without model", ["{tmp}/lora_no_model", "food [SEP] ok"],
     "error: {tmp}/lora_no_model/run.json names no base model"),
    ("max_length not a number", ["{tmp}/bad_max_length", "food [SEP] ok"],
     "error: run.json config.max_length is 'long', not a positive integer"),
    ("truncated run.json", ["{tmp}/bad_run_json", "food [SEP] ok"], "error: {tmp}/bad_run_json/run.json: invalid JSON"),
    ("unknown model type", ["{tmp}/nonsense_type", "food [SEP] ok"],
     "error: {tmp}/nonsense_type/config.json: unknown model type 'nonsense'"),
    ("ABSA text without term", ["{run}", "no term here"], "error: this run was trained on ABSA texts"),
]


def make_inputs(tmp_path, run_folders, argv):
    """The files and run copies that argv names, made in tmp_path."""
    for name, content in INPUT_FILES.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for name, (method, edit) in RUN_COPIES.items():
        if any(f"{{tmp}}/{name}" == a for a in argv):
            copy_run(run_folders[method], tmp_path / name, edit)


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, names in os.walk(folder) for f in names)


def only_error_line(err):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert len(lines[0]) <= len("error: ") + predict.ERROR_CHARS, lines[0]
    return lines[0]


@pytest.mark.parametrize("argv,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_writes_nothing(run_folders, tmp_path, capsys, argv, message):
    make_inputs(tmp_path, run_folders, argv)
    before, run_files = files_under(tmp_path), files_under(run_folders["full"])
    tmp = str(tmp_path)
    argv = [a.format(tmp=tmp, run=run_folders["full"]) for a in argv]
    assert predict.main(argv) == 2
    out, err = capsys.readouterr()
    assert only_error_line(err).startswith(message.format(tmp=tmp)) and out == ""
    assert files_under(tmp_path) == before and files_under(run_folders["full"]) == run_files


def run_cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "ftlab", "predict", *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=300)


def test_texts_and_options_in_any_order(run_folders, capsys):
    run = run_folders["full"]
    assert predict.main([run, "The food was great", "--term", "food", "The waiter was rude"]) == 0
    expected = capsys.readouterr().out
    assert len(expected.splitlines()) == 2
    for argv in ([run, "--term", "food", "The food was great", "The waiter was rude"],
                 ["--term", "food", run, "The food was great", "The waiter was rude"]):
        assert predict.main(argv) == 0
        assert capsys.readouterr().out == expected


def test_a_user_sees_one_line_in_a_fresh_process(run_folders, tmp_path):
    """Library warnings (torch, transformers) stay off stderr: the error is the only line, the rows the only output."""
    proc = run_cli([run_folders["full"], "--term", "food", ""], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert only_error_line(proc.stderr) == "error: text 1 is empty: give the sentence to classify"
    proc = run_cli([run_folders["full"], "--term", "food", "The food was great"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    label, probability, text = proc.stdout.strip().split("\t")
    assert label in ("negative", "neutral", "positive") and text == "The food was great"
    assert [line.split(" ")[:3] for line in proc.stderr.splitlines()] == [["1", "texts", "in"]]  # timing only


def test_help_works(tmp_path):
    proc = run_cli(["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--trust_remote_code" in proc.stdout and "--allow_pickle" in proc.stdout and "run_dir" in proc.stdout

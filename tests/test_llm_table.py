"""labs/llm_table.py: the LLM lab tables from hand-made run files, and the batched-vs-alone comparison."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from labs import llm_table

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def jsonl(path: Path, rows) -> str:
    write(path, "".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def fake_training(folder: Path, method: str, trainable: str, total: str, runtime: float, steps: int, kb: int) -> None:
    write(folder / f"{method}_train.log", f"[INFO] trainable params: {trainable} || all params: {total} || trainable%: x\n")
    write(folder / f"{method}_train_results.json", json.dumps({"train_runtime": runtime, "train_loss": 1.25}))
    write(folder / f"{method}_trainer_state.json", json.dumps({"global_step": steps}))
    write(folder / f"{method}_train_time.txt", f"\tMaximum resident set size (kbytes): {kb}\n\tExit status: 0\n")


def fake_scores(folder: Path, name: str, metrics: dict, per_minute: float) -> None:
    write(folder / name / "metrics.json", json.dumps(metrics))
    write(folder / name / "predict_results.json", json.dumps({"samples_per_minute": per_minute}))


def test_tatqa_table_reads_every_file(tmp_path):
    fake_training(tmp_path, "lora", "2,442,240", "136,957,248", 800.0, 16, 4 * 1024 * 1024)
    fake_training(tmp_path, "full", "134,515,008", "134,515,008", 960.0, 16, 6 * 1024 * 1024)
    for name, em, f1 in (("base", 0.01, 0.05), ("lora", 0.1, 0.2), ("full", 0.125, 0.25)):
        fake_scores(tmp_path, name, {"tatqa_em": em, "tatqa_f1": f1, "n": 300}, 12.5)
    assert llm_table.main(["tatqa", str(tmp_path)]) == 0
    rows = (tmp_path / "table.md").read_text().splitlines()
    assert rows[2].startswith("| base | - | - | - | - | - | - | 0.0100 | 0.0500 | 300 | 12.5 |")
    # 2,442,240 / 136,957,248 = 1.78 %; 800 s / 16 steps = 50.0 s/step; 4 GiB of RSS
    assert rows[3].startswith("| lora | 2,442,240 (1.78%) | 16 | 50.0 | 1.250 | 4.00 GiB | ")
    assert rows[4].startswith("| full | 134,515,008 (100.00%) | 16 | 60.0 | 1.250 | 6.00 GiB | ")
    assert rows[4].endswith("| 0.1250 | 0.2500 | 300 | 12.5 |")
    # ftlab/analysis/memory_estimate.py's estimate for the yamls' micro-batch 2 x cutoff 1024 sits beside each measured peak
    for row, method in ((rows[3], "lora"), (rows[4], "full")):
        assert row.split("|")[7].strip() == f"{llm_table.memory_estimate(method, 2, 1024) / 1024 ** 3:.2f} GiB"
    assert llm_table.memory_estimate("lora", 2, 1024) != llm_table.memory_estimate("full", 2, 1024)


def test_samsum_table_and_missing_runs(tmp_path):
    fake_scores(tmp_path, "lora", {"n": 819, "bleu": 0.02, "rouge_l": 0.31, "rouge_lsum": 0.3, "bertscore_f1": 0.6},
                40.0)
    assert llm_table.main(["samsum", str(tmp_path)]) == 0
    rows = (tmp_path / "table.md").read_text().splitlines()
    assert rows[2:] == ["| lora | 819 | 0.0200 | 0.3100 | 0.3000 | 0.6000 | 40.0 |"]  # no base run: no row


def test_first_difference_counts_whitespace_tokens():
    assert llm_table.first_difference("a b c d", "a b x d") == 2
    assert llm_table.first_difference("a b", "a b c") == 2  # one is a prefix of the other
    assert llm_table.first_difference("x", "y") == 0


def test_same_counts_differing_predictions(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", [{"prompt": "p1", "predict": "Amy is late ."},
                                     {"prompt": "p2", "predict": "Bob calls ."},
                                     {"prompt": "p3", "predict": "x y z"}])
    b = jsonl(tmp_path / "b.jsonl", [{"prompt": "p1", "predict": "Amy is late ."},
                                     {"prompt": "p2", "predict": "Bob calls Ann ."},
                                     {"prompt": "p3", "predict": "w y z"}])
    assert llm_table.compare_predictions(a, b) == {"n": 3, "differ": 2, "first_difference_tokens": [0, 2]}
    c = jsonl(tmp_path / "c.jsonl", [{"prompt": "other", "predict": ""}])
    with pytest.raises(ValueError, match="do not hold the same prompts"):
        llm_table.compare_predictions(a, c)


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert llm_table.main(["same", str(tmp_path / "no.jsonl"), str(tmp_path / "no.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("script", ["labs/samsum_smollm2.sh", "labs/tatqa_lora_vs_full.sh"])
def test_lab_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (ROOT / script).read_text()
    assert "set -euo pipefail" in text and "llm_table.py" in text and "source \"$ROOT/labs/llm_lab.sh\"" in text


def test_lf_train_writes_the_layout_llm_table_reads(tmp_path):
    """labs/llm_lab.sh's lf_train: log, GNU time, train results and state copied as OUT/<method>_train_*,
    which llm_table reads back (a stand-in for llamafactory-cli writes the output folder)."""
    sft = tmp_path / "sft"
    fake = tmp_path / "fake_python"
    fake.write_text(f"#!/usr/bin/env bash\nmkdir -p {sft}\necho '{{\"train_runtime\": 32.0, \"train_loss\": 1.5}}' > "
                    f"{sft}/train_results.json\necho '{{\"global_step\": 4}}' > {sft}/trainer_state.json\n"
                    "echo 'trainable params: 10 || all params: 40 || trainable%: 25.0'\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    script = f"set -euo pipefail; OUT={out}; PYTHON={fake}; source {ROOT}/labs/llm_lab.sh; lf_train lora x.yaml {sft}"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lora_train.log", "lora_train_results.json", "lora_train_time.txt",
                                                      "lora_trainer_state.json"]
    row = llm_table.train_row(str(out), "lora", 2, 1024)
    assert (row["steps"], row["s_per_step"], row["trainable"], row["total"]) == (4, 8.0, 10, 40)
    assert row["peak_rss"] > 0  # GNU time's Maximum resident set size of the stand-in

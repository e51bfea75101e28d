"""inference.py on a tiny random Qwen2 and the fixture SAMSum / TAT-QA files."""
import csv
import json
import os
import re

import pytest

import inference
from tests.conftest import real_data_dir

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _samsum_test_rows():
    with open(os.path.join(FIXTURES, "samsum", "test.csv"), newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_load_sample_is_the_alpaca_record():
    rows = _samsum_test_rows()
    rec = inference.load_sample("samsum", "test", len(rows) - 1, FIXTURES)
    assert rec["output"] == rows[-1]["summary"]
    assert rec["input"] == rows[-1]["dialogue"].replace("\r\n", "\n")
    assert rec["instruction"]


def test_messages_join_instruction_and_input_like_llamafactory():
    rec = {"instruction": "Summarize.", "input": "A: hi\nB: bye", "output": "x"}
    assert inference.build_messages(rec) == [{"role": "user", "content": "Summarize.\nA: hi\nB: bye"}]
    assert inference.build_messages({"instruction": "Q?", "input": ""}, system="Be brief.") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]


@pytest.mark.parametrize("argv, message", [
    (["--sid", "4"], r"--sid 4 is out of range for samsum test: valid 0\.\.3 \(4 samples\)"),
    (["--sid", "-1"], r"--sid -1 is out of range for samsum test: valid 0\.\.3"),
    (["--dataset", "imdb"], r"unknown dataset 'imdb'; valid: samsum, tatqa"),
    (["--dataset", "tatqa", "--split", "validation"], r"--split 'validation' does not exist for tatqa; valid: test, train"),
])
def test_bad_input_is_a_one_line_error(argv, message, capsys, tiny_models):
    rc = inference.main(["--model_name_or_path", tiny_models("qwen2", causal=True), "--data_dir", FIXTURES] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: ")
    assert re.search(message, err)


@pytest.mark.parametrize("dataset", ["samsum", "tatqa"])
def test_cli_prints_prompt_answer_reference(dataset, tiny_models, capsys):
    model_dir = tiny_models("qwen2", causal=True)
    argv = ["--model_name_or_path", model_dir, "--dataset", dataset, "--sid", "1",
            "--data_dir", FIXTURES, "--max_new_tokens", "5"]
    assert inference.main(argv) == 0
    out = capsys.readouterr().out
    record = inference.load_sample(dataset, "test", 1, FIXTURES)
    prompt = out.split("=== answer")[0]
    # The tiny model's Qwen chat template: the user turn, then the opened assistant turn.
    assert f"<|im_start|>user\n{record['instruction']}\n{record['input']}<|im_end|>\n<|im_start|>assistant\n" in prompt
    assert out.rstrip().endswith(f"=== reference ===\n{record['output']}")

    # Greedy and deterministic: the printed answer is the model's own greedy continuation.
    model, tok = inference.load_model(model_dir)
    full = inference.render_prompt(tok, inference.build_messages(record))
    answer = inference.generate_answer(model, tok, full, max_new_tokens=5)
    assert f"=== answer ({model_dir}) ===\n{answer}\n=== reference" in out
    assert len(tok(answer, add_special_tokens=False)["input_ids"]) <= 5 + 2  # 5 new tokens (+ re-split)


def test_generate_passes_attention_mask_and_pad(tiny_models, monkeypatch):
    model, tok = inference.load_model(tiny_models("qwen2", causal=True))
    assert tok.pad_token == tok.eos_token  # set by load_model: Qwen-style tokenizers have none
    seen = {}
    real_generate = model.generate

    def spy(**kw):
        seen.update(kw)
        return real_generate(**kw)

    monkeypatch.setattr(model, "generate", spy)
    inference.generate_answer(model, tok, "<|im_start|>user\nhi<|im_end|>\n", max_new_tokens=2)
    assert seen["attention_mask"].tolist() == [[1] * seen["input_ids"].shape[1]]
    assert seen["do_sample"] is False and seen["pad_token_id"] == tok.eos_token_id


@pytest.mark.slow
@pytest.mark.skipif(real_data_dir() is None, reason="needs the real data (DATA_DIR)")
def test_smollm2_on_real_samsum(capsys):
    assert inference.main(["--model_name_or_path", "smollm2", "--sid", "0", "--data_dir", real_data_dir(),
                           "--max_new_tokens", "24"]) == 0
    out = capsys.readouterr().out
    assert "<|im_start|>system\nYou are a helpful AI assistant named SmolLM" in out
    answer = out.split("=== answer (smollm2) ===\n")[1].split("\n=== reference")[0]
    assert answer.strip()  # a real model says something

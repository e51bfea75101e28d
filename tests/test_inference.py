"""ftlab/llm/inference.py on a tiny random Qwen2 and the fixture SAMSum / TAT-QA files."""
import csv
import json
import os
import re

import pytest
import torch

from ftlab.llm import inference
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


# ---------------------------------------------------------------- predict: batched generation
def test_pad_left_puts_pads_first_with_mask_zero():
    ids, mask = inference.pad_left([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_decode_stops_at_the_first_stop_token(tiny_models):
    _, tok = inference.load_model(tiny_models("qwen2", causal=True))
    eos = tok.eos_token_id
    hello = tok("hello", add_special_tokens=False)["input_ids"]
    # generate() pads finished rows with pad (= eos here): everything from the first stop is dropped.
    assert inference.decode_new_tokens(tok, hello + [eos] + hello, [eos]) == "hello"
    assert inference.stop_token_ids(tok) == [eos]  # no additional special tokens in the tiny tokenizer


def _fixture_prompts(tok):
    records = (inference.load_records("samsum", "test", FIXTURES)
               + inference.load_records("tatqa", "test", FIXTURES)[:2])
    return records, inference.encode_prompts(tok, records)


@pytest.mark.parametrize("bf16", [False, True])
def test_batched_greedy_equals_one_at_a_time(tiny_models, bf16):
    model, tok = inference.load_model(tiny_models("qwen2", causal=True))
    records, prompts = _fixture_prompts(tok)
    lengths = [len(p) for p in prompts]
    assert len(set(lengths)) == len(lengths)  # every batch needs padding: no two prompts the same length
    kwargs = inference.generation_kwargs(tok, inference.PredictArguments(output_dir="x", max_new_tokens=6))
    alone = [inference.generate_batch(model, tok, [p], kwargs, bf16)[0] for p in prompts]
    for sort in (True, False):  # batches of 4 + 2, longest first or in file order
        batched = inference.generate_all(model, tok, prompts, kwargs, batch_size=4, bf16=bf16, sort_by_length=sort)
        assert batched == alone
    assert all(alone)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_continuous_batching_equals_one_at_a_time(tiny_models, batch_size):
    """Rows leave when they stop and new prompts join a running batch (caches of other lengths, left-padded):
    in fp32 every answer is the one generate() gives the prompt alone. A token that the first prompt's
    answer holds at position 3 is made a stop word, so that row leaves early and a refill happens."""
    model, tok = inference.load_model(tiny_models("qwen2", causal=True))
    records, prompts = _fixture_prompts(tok)
    kwargs = inference.generation_kwargs(tok, inference.PredictArguments(output_dir="x", max_new_tokens=7))
    first = model.generate(input_ids=torch.tensor([prompts[0]]), attention_mask=torch.ones(1, len(prompts[0]), dtype=torch.long),
                           **kwargs)[0, len(prompts[0]):].tolist()
    kwargs["eos_token_id"] = kwargs["eos_token_id"] + [first[3]]
    alone = [inference.generate_batch(model, tok, [p], kwargs)[0] for p in prompts]
    assert alone[0] == tok.decode(first[:first.index(first[3])], skip_special_tokens=True).strip()
    for sort in (True, False):
        assert inference.generate_continuous(model, tok, prompts, kwargs, batch_size, sort_by_length=sort) == alone


def test_predict_uses_continuous_batching_only_for_plain_greedy(tiny_models):
    model, _ = inference.load_model(tiny_models("qwen2", causal=True))
    args = inference.PredictArguments(output_dir="x")
    assert inference.plain_greedy(model, args)
    assert not inference.plain_greedy(model, inference.PredictArguments(output_dir="x", do_sample=True))
    model.generation_config.repetition_penalty = 1.2  # a logits processor the plain argmax loop lacks
    assert not inference.plain_greedy(model, args)


def test_prepare_for_generation_bf16_weights_and_eager_attention_keep_batched_equal(tiny_models):
    """predict's speed settings: bf16 weights (no per-token casts), eager attention on the CPU; a padded
    row still answers as it does alone (the tiny model has no near-ties at these prompts)."""
    model, tok = inference.load_model(tiny_models("qwen2", causal=True))
    assert model.config._attn_implementation == "sdpa"
    assert inference.prepare_for_generation(model, bf16=True) == "eager"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    _, prompts = _fixture_prompts(tok)
    kwargs = inference.generation_kwargs(tok, inference.PredictArguments(output_dir="x", max_new_tokens=6))
    alone = [inference.generate_batch(model, tok, [p], kwargs)[0] for p in prompts]
    assert inference.generate_all(model, tok, prompts, kwargs, batch_size=4) == alone
    model32, _ = inference.load_model(tiny_models("qwen2", causal=True))
    assert inference.prepare_for_generation(model32, bf16=False, attn_implementation="sdpa") == "sdpa"
    assert {p.dtype for p in model32.parameters()} == {torch.float32}


def test_adapter_is_merged_for_generation(tiny_models, tmp_path):
    """--adapter_name_or_path: the LoRA is merged (plain linears at generation), with the unmerged logits."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base_dir = tiny_models("qwen2", causal=True)
    torch.manual_seed(0)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                          LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    model, tok = inference.load_model(base_dir, str(tmp_path / "adapter"))
    assert not isinstance(model, PeftModel) and not any("lora" in n for n, _ in model.named_parameters())
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        merged, unmerged = model(ids).logits, lora.eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base_dir)(ids).logits
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    assert (merged - plain).abs().max() > 1e-3  # the adapter does change the model


def test_padding_without_mask_changes_the_answers(tiny_models):
    """The control that makes the test above meaningful: pads that the model attends to do change
    the greedy answer, so equality there means the mask (and the positions derived from it) work."""
    model, tok = inference.load_model(tiny_models("qwen2", causal=True))
    _, prompts = _fixture_prompts(tok)
    prompts = prompts[:4]
    kwargs = inference.generation_kwargs(tok, inference.PredictArguments(output_dir="x", max_new_tokens=6))
    alone = [inference.generate_batch(model, tok, [p], kwargs)[0] for p in prompts]
    ids, _ = inference.pad_left(prompts, tok.pad_token_id)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    unmasked = [inference.decode_new_tokens(tok, row, kwargs["eos_token_id"]) for row in out[:, ids.shape[1]:].tolist()]
    longest = max(range(4), key=lambda i: len(prompts[i]))
    assert unmasked[longest] == alone[longest]  # the one row without pads
    assert sum(u != a for u, a in zip(unmasked, alone)) == 3  # every padded row changes


@pytest.mark.parametrize("dataset", ["samsum", "tatqa"])
def test_predict_writes_llamafactory_jsonl_that_eval_scores(dataset, tiny_models, tmp_path, capsys):
    from ftlab.llm import scoring as ev

    model_dir = tiny_models("qwen2", causal=True)
    out_dir = tmp_path / "pred"
    argv = ["predict", "--model_name_or_path", model_dir, "--dataset", dataset, "--data_dir", FIXTURES,
            "--max_samples", "3", "--batch_size", "2", "--max_new_tokens", "4", "--bf16", "false",
            "--output_dir", str(out_dir)]
    assert inference.main(argv) == 0
    assert "3 predictions in" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out_dir / "generated_predictions.jsonl").read_text().splitlines()]
    records = inference.load_records(dataset, "test", FIXTURES)[:3]
    _, tok = inference.load_model(model_dir)
    assert [list(r) for r in rows] == [["prompt", "predict", "label"]] * 3
    assert [r["label"] for r in rows] == [rec["output"] for rec in records]  # input order kept
    assert [r["prompt"] for r in rows] == [inference.render_prompt(tok, inference.build_messages(rec))
                                           for rec in records]
    results = json.loads((out_dir / "predict_results.json").read_text())
    assert results["n"] == 3 and results["batch_size"] == 2 and results["bf16"] is False
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []  # atomic writes
    assert ev.main([str(out_dir / "generated_predictions.jsonl"), "--no_bertscore"]) == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["task"] == ("tatqa" if dataset == "tatqa" else "summary") and metrics["n"] == 3


def test_predict_from_an_exported_file_with_llamafactory_template(tiny_models, tmp_path):
    from ftlab.data import llamafactory as lfdata

    lfdata.export_llamafactory("samsum", str(tmp_path / "lf"), data_dir=FIXTURES)
    _, tok = inference.load_model(tiny_models("qwen2", causal=True))
    records = inference.read_records_file(str(tmp_path / "lf" / "samsum_test.json"))[:1]
    template = inference.llamafactory_template(tok, "smollm2")
    (ids,) = inference.encode_prompts(tok, records, template=template)
    # LLaMA-Factory's smollm2 template: its default system message ends with a period.
    assert tok.decode(ids) == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                               f"Face.<|im_end|>\n<|im_start|>user\n{records[0]['instruction']}\n"
                               f"{records[0]['input']}<|im_end|>\n<|im_start|>assistant\n")
    # ... and its stop word joins the stop list, as in LLaMA-Factory's predict.
    assert tok.convert_tokens_to_ids("<|im_end|>") in inference.stop_token_ids(tok)


def test_sid_with_llamafactory_template_shows_the_trained_prompt(tiny_models, capsys):
    model_dir = tiny_models("qwen2", causal=True)
    assert inference.main(["--model_name_or_path", model_dir, "--dataset", "tatqa", "--sid", "1", "--data_dir",
                           FIXTURES, "--max_new_tokens", "4", "--template", "smollm2"]) == 0
    out = capsys.readouterr().out
    model, tok = inference.load_model(model_dir)
    record = inference.load_sample("tatqa", "test", 1, FIXTURES)
    (ids,) = inference.encode_prompts(tok, [record], template=inference.llamafactory_template(tok, "smollm2"))
    assert out.startswith(f"=== prompt (tatqa test #1) ===\n{tok.decode(ids)}\n=== answer")
    assert "trained by Hugging Face.<|im_end|>" in out  # LLaMA-Factory's system text, not the tokenizer's
    kwargs = dict(max_new_tokens=4, do_sample=False, num_beams=1, pad_token_id=tok.pad_token_id,
                  eos_token_id=inference.stop_token_ids(tok))
    (answer,) = inference.generate_batch(model, tok, [ids], kwargs)
    assert f"=== answer ({model_dir}) ===\n{answer}\n=== reference ===\n{record['output']}" in out


@pytest.mark.parametrize("argv, message", [
    ([], r"--output_dir is required"),
    (["--output_dir", "OUT", "--batch_size", "0"], r"--batch_size 0: give a positive number"),
    (["--output_dir", "OUT", "--dataset_file", "nope.json"], r"--dataset_file 'nope.json' not found"),
    (["--output_dir", "OUT", "--dataset", "imdb"], r"unknown dataset 'imdb'"),
])
def test_predict_bad_input_is_a_one_line_error(argv, message, tiny_models, tmp_path, capsys):
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    rc = inference.main(["predict", "--model_name_or_path", tiny_models("qwen2", causal=True),
                         "--data_dir", FIXTURES] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err)

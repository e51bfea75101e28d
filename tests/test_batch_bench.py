"""ftlab/analysis/batch_bench.py on a tiny random Qwen2 (hidden 32, 2 layers, 4 heads / 2 kv heads, head_dim 8)."""
import json
import os
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftlab.analysis import batch_bench

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# LoRA r=8 on q_proj (32 -> 32) and v_proj (32 -> 2 kv heads x 8 = 16), 2 layers:
# q: A 8x32 + B 32x8 = 512; v: A 8x32 + B 16x8 = 384; (512 + 384) x 2 layers = 1792.
TINY_LORA_PARAMS = 1792


def _args(model, **kw):
    base = dict(model_name_or_path=model, seq_len=16, steps=2, warmup_steps=1, isolate=False)
    return batch_bench.BenchArguments(**{**base, **kw})


def test_rows_for_every_method_and_batch_size(tiny_models):
    model = tiny_models("qwen2", causal=True)
    rows = batch_bench.run(_args(model, batch_sizes="1,2"))
    assert [(r["method"], r["batch_size"]) for r in rows] == [("lora", 1), ("lora", 2), ("full", 1), ("full", 2)]
    n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model).parameters())
    for r in rows:
        assert r["tokens_per_s"] == pytest.approx(r["batch_size"] * 16 / r["sec_per_step"])
        assert r["samples_per_s"] == pytest.approx(r["batch_size"] / r["sec_per_step"])
        assert r["memory_how"] == "cpu_peak_rss_minus_baseline" and r["steps"] == 2
        if r["method"] == "lora":
            assert (r["trainable"], r["total"]) == (TINY_LORA_PARAMS, n_params + TINY_LORA_PARAMS)
        else:
            assert r["trainable"] == r["total"] == n_params


def test_isolated_run_measures_its_own_peak(tiny_models, tmp_path, capsys):
    model = tiny_models("qwen2", causal=True)
    out = tmp_path / "bench.json"
    assert batch_bench.main(["--model_name_or_path", model, "--methods", "lora", "--batch_sizes", "2",
                             "--seq_len", "16", "--steps", "1", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["trainable"] == TINY_LORA_PARAMS and row["batch_size"] == 2
    # a fresh process: loading torch weights + a training step raise RSS above the baseline
    assert row["peak_bytes"] > 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[1] == "| method | batch | s/step | samples/s | tokens/s | peak memory | trainable params |"
    assert f"| lora | 2 | {row['sec_per_step']:.3f} |" in printed and "| 1,792 (" in printed


def test_samsum_blocks_are_packed_real_text(tiny_models):
    tok = AutoTokenizer.from_pretrained(tiny_models("qwen2", causal=True))
    args = _args("unused", data="samsum", data_dir=FIXTURES, seq_len=8)
    blocks = batch_bench.samsum_blocks(tok, args, 5)
    assert blocks.shape == (5, 8) and blocks.dtype == torch.long
    with open(os.path.join(FIXTURES, "samsum", "train.csv"), encoding="utf-8") as fh:
        fh.readline()
        first_dialogue_line = fh.readline().split(",", 1)[1].lstrip('"')
    # the blocks are consecutive tokens of "instruction\ndialogue..." of the first train record
    text = tok.decode(blocks.flatten())
    assert text.startswith("Summarize the following dialogue.\n" + first_dialogue_line[:10])


def test_format_table_by_hand():
    row = {"method": "lora", "batch_size": 4, "sec_per_step": 0.5, "samples_per_s": 8.0, "tokens_per_s": 2048.0,
           "peak_bytes": 3 * 2**29, "trainable": 50, "total": 1000}
    assert batch_bench.format_table([row, {"method": "full", "batch_size": 64, "error": "out of memory"}]).splitlines()[2:] == [
        "| lora | 4 | 0.500 | 8.00 | 2048 | 1.50 GiB | 50 (5.00%) |",
        "| full | 64 | out of memory |  |  |  |  |",
    ]


@pytest.mark.parametrize("argv, message", [
    (["--methods", "lora,qlora"], r"--methods 'lora,qlora': unknown \['qlora'\]; valid: full, lora"),
    (["--batch_sizes", "1,0"], r"--batch_sizes '1,0': give comma-separated positive integers"),
    (["--data", "imdb"], r"--data 'imdb': valid: synthetic, samsum"),
    (["--steps", "0"], r"--steps 0: give a positive number"),
])
def test_bad_input_is_a_one_line_error(argv, message, capsys):
    assert batch_bench.main(["--model_name_or_path", "unused"] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.match("error: " + message, err)

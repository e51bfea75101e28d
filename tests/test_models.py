"""ftlab/models/checkpoints.py: embedded names resolve; the SmolLM2 conversion is cached, atomic and correct."""
import json
import os

import pytest

from ftlab.models import checkpoints as models


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty FTLAB_CACHE and a fake converter that counts its calls."""
    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(out_dir):
        calls.append(out_dir)
        with open(os.path.join(out_dir, "config.json"), "w") as fh:
            json.dump({"model_type": "llama"}, fh)

    monkeypatch.setattr(models, "convert_smollm2", fake_convert)
    return tmp_path / "cache", calls


def test_minilm_resolves_to_packaged_bert():
    path = models.resolve_model_name("MiniLM ")
    with open(os.path.join(path, "config.json")) as fh:
        cfg = json.load(fh)
    assert (cfg["model_type"], cfg["num_hidden_layers"], cfg["hidden_size"]) == ("bert", 6, 384)


def test_other_names_pass_through_when_the_hub_is_reachable(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: True)
    assert models.resolve_model_name("Qwen/Qwen1.5-0.5B") == "Qwen/Qwen1.5-0.5B"
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: False)
    assert models.resolve_model_name(str(tmp_path)) == str(tmp_path)  # a local folder needs no Hub


@pytest.mark.parametrize("offline_var", [True, False])
def test_unreachable_hub_id_is_one_line_naming_the_model_and_the_fix(monkeypatch, offline_var):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    if offline_var:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.setitem(models._HUB_REACHABLE, "https://unreachable.invalid", False)
        monkeypatch.setenv("HF_ENDPOINT", "https://unreachable.invalid")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    with pytest.raises(ValueError) as err:
        models.resolve_model_name("bert-base-uncased")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cannot load model 'bert-base-uncased': not an embedded name")
    assert "--model_name_or_path minilm" in msg
    assert ("HF_HUB_OFFLINE" in msg) == offline_var and ("cannot be reached" in msg) != offline_var


def test_hub_reachable_is_false_offline_and_asks_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.hub_reachable() is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens here
    monkeypatch.setattr(models, "_HUB_REACHABLE", {})
    assert models.hub_reachable() is False
    assert models._HUB_REACHABLE == {"http://127.0.0.1:9": False}


def test_smollm2_resolves_into_cache_and_converts_once(cache):
    root, calls = cache
    first = models.resolve_model_name("smollm2")
    second = models.resolve_model_name("smollm2")
    assert first == second == str(root / "models" / "smollm2")
    assert len(calls) == 1  # the second resolve only read the marker
    assert calls[0] != first  # built elsewhere, then renamed into place
    assert models.is_complete(first)
    assert os.path.isfile(os.path.join(first, "config.json"))
    assert sorted(os.listdir(root / "models")) == ["smollm2"]  # no temp dirs left behind


def test_failed_conversion_leaves_no_half_written_dir(cache, monkeypatch):
    root, _ = cache

    def broken(out_dir):
        with open(os.path.join(out_dir, "model.safetensors"), "wb") as fh:
            fh.write(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "convert_smollm2", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        models.resolve_model_name("smollm2")
    assert os.listdir(root / "models") == []


def test_stale_or_old_format_copy_is_rebuilt(cache):
    root, calls = cache
    target = root / "models" / "smollm2"
    target.mkdir(parents=True)
    (target / "leftover.bin").write_bytes(b"x")  # a copy with no marker: not trusted
    models.resolve_model_name("smollm2")
    assert len(calls) == 1 and not (target / "leftover.bin").exists()
    (target / models.MARKER_FILE).write_text(json.dumps({"format": models.CONVERSION_FORMAT - 1}))
    models.resolve_model_name("smollm2")
    assert len(calls) == 2 and models.is_complete(target)
    assert sorted(os.listdir(root / "models")) == ["smollm2"]


def test_prepare_cli_prints_path_and_links(cache, tmp_path, monkeypatch, capsys):
    root, calls = cache
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert models.main(["prepare", "smollm2"]) == 0
    assert models.main(["prepare", "smollm2"]) == 0  # re-linking an existing link is fine
    target = str(root / "models" / "smollm2")
    assert capsys.readouterr().out.split() == [target, target]
    link = work / "local_models" / "smollm2"
    assert link.is_symlink() and os.readlink(link) == target
    assert len(calls) == 1


def test_prepare_cli_rejects_unknown_name(capsys):
    assert models.main(["prepare", "gpt5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown embedded model 'gpt5'") and "minilm, smollm2" in err


@pytest.mark.slow
def test_real_smollm2_conversion(tmp_path, monkeypatch):
    """The real GGUF -> HF conversion (~20-40 s): weights, tokenizer fixes, chat template, output."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("FTLAB_CACHE", str(tmp_path))
    path = models.resolve_model_name("smollm2")
    assert models.is_complete(path)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    # GPT-2 style: no BOS prepended; eos <|im_end|> (id 2) doubles as pad, like the Hub tokenizer.
    assert tok("Hello, world!")["input_ids"] == [19556, 28, 905, 17]
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|im_end|>", "<|im_start|>")
    assert tok.eos_token_id == model.generation_config.eos_token_id == 2
    prompt = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                      "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    # The dequantized weights are a working model, not noise.
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

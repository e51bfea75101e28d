"""ftlab/analysis/memory_estimate.py: parameter counts against instantiated models, byte terms against hand arithmetic,
the activation formula against Korthikanti et al., errors, --json and --compare."""
import json

import pytest
import torch
import transformers

from ftlab.analysis import memory_estimate as memory
from ftlab.analysis.memory_estimate import NF4_BYTES_PER_PARAM, Settings, build_arch, estimate

AUTO_CLASSES = {
    "seq_cls": transformers.AutoModelForSequenceClassification,
    "causal_lm": transformers.AutoModelForCausalLM,
    "base": transformers.AutoModel,
}


def meta_count(cfg, task: str, num_labels: int = 3) -> int:
    """Parameters of the real model class, built on the meta device (no memory, no download)."""
    cfg.num_labels = num_labels
    cls = AUTO_CLASSES[task]
    if task == "causal_lm" and cfg.model_type == "bart":
        cls = transformers.AutoModelForSeq2SeqLM
    with torch.device("meta"):
        model = cls.from_config(cfg)
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


# ---------------------------------------------------------------- parameter counts
REAL = [("bert-base-uncased", "seq_cls"), ("bert-base-uncased", "base"), ("distilbert-base-uncased", "seq_cls"),
        ("roberta-base", "seq_cls"), ("bart-base", "seq_cls"), ("bart-base", "causal_lm"),
        ("qwen1.5-0.5b", "causal_lm"), ("qwen1.5-0.5b", "seq_cls"), ("qwen2.5-0.5b", "causal_lm"),
        ("llama-3-8b", "causal_lm"), ("llama-3-8b", "seq_cls"), ("llama-3-70b", "causal_lm"),
        ("llama-3.2-1b", "causal_lm"), ("mistral-7b", "causal_lm")]


@pytest.mark.parametrize("name,task", REAL)
def test_param_count_real_configs_match_meta_models(name, task):
    cfg = memory.builtin_config(name)
    assert build_arch(cfg, task, 3).total_params == meta_count(cfg, task)


def test_param_count_known_published_sizes():
    # Published sizes: Llama-3-70B 70.55B, Llama-3-8B 8.03B, BERT-base 109.48M.
    assert build_arch(memory.builtin_config("llama-3-70b")).total_params == 70_553_706_496
    assert build_arch(memory.builtin_config("llama-3-8b")).total_params == 8_030_261_248
    assert build_arch(memory.builtin_config("bert-base-uncased"), "base").total_params == 109_482_240


@pytest.mark.parametrize("kind,causal", [("bert", False), ("distilbert", False), ("bart", False),
                                         ("qwen2", True), ("llama", True), ("qwen2", False)])
def test_param_count_tiny_models(tiny_models, kind, causal):
    folder = tiny_models(kind, causal=causal)
    cfg = memory.load_config(folder)
    tasks = ["seq_cls", "base"] + (["causal_lm"] if kind in ("qwen2", "llama", "bart") else [])
    for task in tasks:
        assert build_arch(cfg, task, 3).total_params == meta_count(cfg, task), task
    # and the saved weights of the bare/causal model itself
    cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    saved = sum(p.numel() for p in cls.from_pretrained(folder).parameters())
    assert build_arch(cfg, "causal_lm" if causal else "base").total_params == saved


@pytest.mark.parametrize("config,name", [("seq_bn", "pfeiffer"), ("double_seq_bn", "houlsby"), ("par_bn", "parallel")])
def test_adapter_count_matches_adapters_library(tiny_models, config, name):
    import adapters

    folder = tiny_models("bert")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)
    adapters.init(model)
    model.add_adapter("a", config=adapters.AdapterConfig.load(config, reduction_factor=4))
    added = sum(p.numel() for n, p in model.named_parameters() if "adapters" in n)
    arch = build_arch(memory.load_config(folder), "seq_cls", 3)
    parts = memory.trainable_parts(arch, Settings(method="adapter", adapter_config=name, reduction_factor=4))
    # hidden 32, bottleneck 8: (32*8 + 8) + (8*32 + 32) = 552 per adapter, 2 layers
    assert added == parts["added"] == 552 * 2 * (2 if name == "houlsby" else 1)


@pytest.mark.parametrize("kind,causal", [("bert", False), ("llama", True)])
def test_adapter_train_layernorm_count_matches_train_py(tiny_models, kind, causal):
    """ftlab/analysis/memory_estimate.py's trainable count with --adapter_train_layernorm equals the model train.py builds."""
    from ftlab.methods import registry as methods
    from ftlab.models.build import get_model

    folder = tiny_models(kind, causal=causal)
    _, model = get_model(folder, 3)
    args = methods.MethodArguments(method="adapter", adapter_train_layernorm=True)
    model = methods.get_method("adapter").apply(model, args)
    built = methods.count_parameters(model)[0]
    arch = build_arch(memory.load_config(folder), "seq_cls", 3)
    parts = memory.trainable_parts(arch, Settings(method="adapter", adapter_train_layernorm=True))
    assert parts["base"] + parts["added"] == built
    # hidden 32, 2 layers: BERT 5 LayerNorms x (weight + bias) = 320; Llama 5 RMSNorm weights = 160
    plain = memory.trainable_parts(arch, Settings(method="adapter", adapter_train_layernorm=False))
    assert parts["base"] - plain["base"] == {"bert": 320, "llama": 160}[kind]


def test_embedded_minilm_count():
    arch = build_arch(memory.load_config("minilm"), "base")
    assert arch.total_params == 22_713_216  # all-MiniLM-L6-v2 with pooler


# ---------------------------------------------------------------- byte terms by hand
def small_bert():
    return transformers.BertConfig(vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, max_position_embeddings=16, type_vocab_size=2)


# embeddings (100 + 16 + 2) * 8 + LN 16 = 960; layer: q,k,v,o 4 * (64 + 8) = 288, fc1 8*16+16 = 144,
# fc2 16*8+8 = 136, 2 LN 32 -> 600; pooler 72; classifier 8*2+2 = 18.  Total 1650.
TOTAL, LINEARS, HEAD = 1650, 288 + 144 + 136, 18


def test_small_config_count_by_hand():
    arch = build_arch(small_bert(), "seq_cls", 2)
    assert arch.total_params == TOTAL == meta_count(small_bert(), "seq_cls", 2)


def test_full_fp32_terms_by_hand():
    est = estimate(build_arch(small_bert(), "seq_cls", 2), Settings(method="full", dtype="fp32", batch_size=1,
                                                                     seq_len=4))
    assert est.trainable_params == 1650
    assert est.weights == 1650 * 4 == 6600
    assert est.gradients == 1650 * 4
    assert est.optimizer == 1650 * 8  # AdamW m + v in fp32
    assert est.weight_copies == 0


def test_full_bf16_mixed_terms_by_hand():
    est = estimate(build_arch(small_bert(), "seq_cls", 2), Settings(method="full", dtype="bf16"))
    assert est.weights == 1650 * 4  # fp32 masters
    assert est.weight_copies == (LINEARS + HEAD) * 2  # autocast's bf16 copies of the matmul weights
    assert est.gradients == 1650 * 4
    assert est.optimizer == 1650 * 8


def test_lora_terms_by_hand():
    # LoRA r=2 on query and value: 2 * (8 + 8) each -> 64; + the classifier (18) trains -> 82.
    est = estimate(build_arch(small_bert(), "seq_cls", 2),
                   Settings(method="lora", lora_r=2, dtype="fp32"))
    assert est.trainable_params == 82
    assert est.weights == (1650 - 18) * 4 + 82 * 4
    assert est.gradients == 82 * 4
    assert est.optimizer == 82 * 8


def test_lora_weight_copies_by_hand():
    arch = build_arch(small_bert(), "seq_cls", 2)
    # base loaded in bf16: only the fp32 trainables (classifier 18, LoRA 64) get cached bf16 casts
    bf16_base = estimate(arch, Settings(method="lora", lora_r=2, dtype="bf16"))
    assert bf16_base.weights == (1650 - 18) * 2 + 82 * 4
    assert bf16_base.weight_copies == (18 + 64) * 2
    # base loaded in fp32 (train.py on CPU): every frozen matmul weight's cast is saved for backward
    fp32_base = estimate(arch, Settings(method="lora", lora_r=2, dtype="bf16", weights_dtype="fp32"))
    assert fp32_base.weight_copies == (LINEARS + 18 + 64) * 2


def test_qlora_and_8bit_terms_by_hand():
    est = estimate(build_arch(small_bert(), "seq_cls", 2),
                   Settings(method="qlora", lora_r=2, dtype="bf16", optimizer="adamw_8bit"))
    assert NF4_BYTES_PER_PARAM == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256))
    # block linears in NF4; the other frozen params (embeddings, norms, pooler) in bf16; LoRA fp32
    assert est.weights == int(LINEARS * NF4_BYTES_PER_PARAM + (1650 - 18 - LINEARS) * 2 + 82 * 4)
    assert est.optimizer == int(82 * (2 + 8 / 2048))


def test_zero3_partitions_by_hand():
    s = Settings(method="full", dtype="bf16", zero=3, gpus=4)
    est = estimate(build_arch(small_bert(), "seq_cls", 2), s)
    # DeepSpeed: bf16 weights 2 + bf16 grads 2 + fp32 master/m/v 12, each divided over 4 GPUs
    assert (est.weights, est.gradients, est.optimizer) == (1650 * 2 // 4, 1650 * 2 // 4, 1650 * 12 // 4)
    one = estimate(build_arch(small_bert(), "seq_cls", 2), Settings(method="full", dtype="bf16", zero=1, gpus=4))
    assert (one.weights, one.gradients, one.optimizer) == (1650 * 2, 1650 * 2, 1650 * 12 // 4)


def test_sgd_and_head_have_no_state_for_frozen():
    arch = build_arch(small_bert(), "seq_cls", 2)
    assert estimate(arch, Settings(method="full", optimizer="sgd")).optimizer == 0
    head = estimate(arch, Settings(method="head", dtype="fp32"))
    assert head.trainable_params == 18 and head.gradients == 18 * 4 and head.optimizer == 18 * 8


# ---------------------------------------------------------------- activations
def test_activation_formula_reduces_to_korthikanti():
    # GPT-style layer (I = 4h, dropout, eager attention, 16-bit everything): sbh(34 + 5as/h).
    h, a, s_len = 64, 4, 32
    cfg = transformers.BertConfig(hidden_size=h, num_attention_heads=a, intermediate_size=4 * h,
                                  num_hidden_layers=1)
    arch = build_arch(cfg, "base")
    # full fine-tuning with 16-bit weights (ZeRO keeps the fp32 masters in the optimizer): a 16-bit stream
    s = Settings(method="full", seq_len=s_len, attention="eager", dtype="bf16", zero=1, gpus=1)
    plan = memory.Plan(arch, s, memory.precision_of(s), arch.total_params, 0)
    assert plan.stream == 2 and plan.lora_targets == []
    per_token = memory.block_activation_bytes(arch.blocks[0], plan)
    assert per_token == h * (34 + 5 * a * s_len / h)


def test_activations_scale_and_methods_order():
    arch = build_arch(memory.builtin_config("llama-3-8b"))
    act = {b: estimate(arch, Settings(method="lora", batch_size=b, seq_len=1024)).activations for b in (1, 2)}
    assert act[2] > act[1]
    full = estimate(arch, Settings(method="full", seq_len=1024)).activations
    ckpt = estimate(arch, Settings(method="full", seq_len=1024, gradient_checkpointing=True)).activations
    assert ckpt < full / 4  # the (b, s, vocab) logits stay: 8*1024*128256*10 B = 10.5 GB
    head = estimate(arch, Settings(method="head", seq_len=1024)).activations
    assert head < ckpt


def test_llama_70b_full_lora_qlora_order():
    arch = build_arch(memory.builtin_config("llama-3-70b"))
    tot = {m: estimate(arch, Settings(method=m, batch_size=1, seq_len=2048, gradient_checkpointing=True)).total
           for m in ("full", "lora", "qlora")}
    assert tot["full"] > 16 * 70e9 > tot["lora"] > 140e9 > tot["qlora"] > 35e9
    z3 = estimate(arch, Settings(method="full", batch_size=1, seq_len=2048, gradient_checkpointing=True,
                                 zero=3, gpus=8))
    assert z3.weights + z3.gradients + z3.optimizer == pytest.approx(16 * arch.total_params / 8, rel=1e-6)


# ---------------------------------------------------------------- config sources
def test_config_sources(tmp_path, tiny_models):
    folder = tiny_models("llama", causal=True)
    assert memory.load_config(folder).model_type == "llama"
    assert memory.load_config(f"{folder}/config.json").model_type == "llama"
    assert memory.load_config("meta-llama/Meta-Llama-3-70B").hidden_size == 8192
    with pytest.raises(FileNotFoundError, match="no config.json"):
        memory.load_config(str(tmp_path))


def test_unknown_model_offline_lists_builtins():
    with pytest.raises(ValueError, match=r"unknown model 'no-such-model'.*llama-3-70b.*config\.json"):
        memory.load_config("no-such-model")


@pytest.mark.parametrize("kwargs,match", [
    ({"batch_size": 0}, "batch_size must be a positive number"),
    ({"seq_len": -5}, "seq_len must be a positive number"),
    ({"method": "prefix"}, "unknown method 'prefix'; valid: full, head, lora"),
    ({"zero": 4}, "zero must be a ZeRO stage"),
    ({"gpus": -1}, "gpus must be >= 0"),
    ({"method": "lora", "lora_target_modules": ["nope"]}, "match no linear layer"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate(build_arch(small_bert(), "seq_cls", 2), Settings(**kwargs))


def test_cli_errors_are_one_line(capsys):
    assert memory.main(["llama-3-8b", "--zero", "2", "--gpus", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ZeRO partitions over GPUs") and err.count("\n") == 1
    assert memory.main(["nowhere-model"]) == 2
    assert "built-in:" in capsys.readouterr().err
    assert memory.main(["bert-base-uncased", "--batch_size", "-1"]) == 2
    assert "batch_size must be a positive number" in capsys.readouterr().err


def test_cli_json_keys(capsys):
    assert memory.main(["llama-3-8b", "--method", "lora", "--batch_size", "2", "--seq_len", "512", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("weights", "gradients", "optimizer", "activations", "total", "trainable_params"):
        assert isinstance(out[key], int), key
    assert out["total"] == sum(out[k] for k in ("weights", "weight_copies", "gradients", "optimizer",
                                                "activations", "overhead"))
    assert out["trainable_params"] == 32 * 8 * (4096 + 4096 + 4096 + 1024)  # q_proj + v_proj, r=8


def test_cli_text(capsys):
    assert memory.main(["llama-3-70b", "--method", "full", "--zero", "3", "--gpus", "8"]) == 0
    out = capsys.readouterr().out
    assert "per GPU of 8" in out and "total" in out and "optimizer" in out


# ---------------------------------------------------------------- --compare
def write_run(folder, model, method, batch, peak, how="cpu_peak_rss_minus_baseline", **config):
    folder.mkdir(parents=True)
    run = {"schema": 1, "method": method, "model": model, "model_path": model,
           "config": {"model_name_or_path": model, "method": method, "per_device_train_batch_size": batch,
                      "max_length": 64, "lora_r": 4, "bf16": True, **config},
           "memory": {"peak_bytes": peak, "how": how, "baseline_bytes": 1},
           "data": {"train_samples": 10, "num_labels": 3, "max_length": 64, "mean_tokens": 30.0},
           "training": {"per_device_train_batch_size": batch, "bf16": True, "gradient_checkpointing": False},
           "device": "cpu" if how.startswith("cpu") else "cuda (NVIDIA H100 80GB HBM3)"}
    (folder / "run.json").write_text(json.dumps(run))
    return str(folder)


def test_compare_hand_made_runs(tmp_path, tiny_models, capsys):
    model = tiny_models("bert")
    a = write_run(tmp_path / "a", model, "lora", 4, 50_000_000)
    b = write_run(tmp_path / "b", model, "full", 8, 60_000_000, how="cuda_max_memory_allocated")
    rows = [memory.compare_run(a), memory.compare_run(b)]
    arch = build_arch(memory.load_config(model), "seq_cls", 3)
    expect_a = estimate(arch, Settings(method="lora", batch_size=4, seq_len=64, dtype="bf16", weights_dtype="fp32",
                                       lora_r=4, gpus=0))
    assert rows[0]["estimated"] == expect_a.total
    assert rows[0]["ratio"] == pytest.approx(expect_a.total / 50_000_000)
    expect_b = estimate(arch, Settings(method="full", batch_size=8, seq_len=64, dtype="bf16", weights_dtype="fp32",
                                       lora_r=4, gpus=1))
    assert rows[1]["estimated"] == expect_b.total - expect_b.overhead  # allocated: no CUDA context
    assert memory.main(["--compare", a, b]) == 0
    out = capsys.readouterr().out
    assert f"{rows[0]['ratio']:.2f}" in out and "est/meas" in out


def test_compare_uses_longest_example_when_recorded(tmp_path, tiny_models):
    model = tiny_models("bert")
    folder = write_run(tmp_path / "a", model, "head", 4, 10_000_000)
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert memory.settings_from_run(run)[1].seq_len == 64  # no max_tokens: the truncation length
    run["data"]["max_tokens"] = 40
    (tmp_path / "a" / "run.json").write_text(json.dumps(run))
    assert memory.compare_run(folder)["seq_len"] == 40


def test_compare_reads_the_peak_micro_batch_of_a_token_budget_run(tmp_path, tiny_models):
    folder = write_run(tmp_path / "a", tiny_models("bert"), "full", 4, 10_000_000)
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    run["data"]["max_tokens"] = 40
    run["config"]["per_device_train_batch_size"] = 32
    run["config"]["micro_batch_tokens"] = 512  # 32 x 40 = 1,280 tokens: 3 pieces of ceil(32 / 3) = 11 rows
    (tmp_path / "a" / "run.json").write_text(json.dumps(run))
    row = memory.compare_run(folder)
    assert (row["batch_size"], row["seq_len"]) == (11, 40)
    run["config"]["micro_batch_tokens"] = 2048  # fits: the whole batch
    (tmp_path / "a" / "run.json").write_text(json.dumps(run))
    assert memory.compare_run(folder)["batch_size"] == 32


def test_compare_errors(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no run.json"):
        memory.compare_run(str(tmp_path))
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"config": {}, "memory": {}}))
    with pytest.raises(ValueError, match="no memory.peak_bytes"):
        memory.compare_run(str(folder))
    assert memory.main(["--compare", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no run.json")

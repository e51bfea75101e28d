"""ftlab/methods/registry.py on tiny random models: which parameters train, how many, and LoRA-from-scratch maths.

Tiny models (tests/tiny.py): hidden d = 32, 2 transformer layers (BART: 1 encoder + 1 decoder),
3 labels here. Qwen2/Llama: 4 query heads and 2 key/value heads of size 8, so v_proj is 32 -> 16.
"""
import pytest
import torch
from torch import nn

from ftlab.methods import registry as methods
from ftlab.methods.registry import LoRALinear, MethodArguments, count_parameters, get_method
from ftlab.models.build import get_model
from ftlab.speed.frozen_bf16 import cast_frozen_linears

D, LABELS, R, RF = 32, 3, 8, 4  # RF: train.py's default reduction factor
BOTTLENECK = D // RF  # 8

# Hand-computed per architecture: head parameters and the (in, out) shapes LoRA wraps by default.
HEAD = {
    "bert": D * LABELS + LABELS,                                # classifier
    "distilbert": (D * D + D) + (D * LABELS + LABELS),          # pre_classifier + classifier
    "bart": (D * D + D) + (D * LABELS + LABELS),                # classification_head.dense + out_proj
    "qwen2": D * LABELS,                                        # score (no bias)
    "llama": D * LABELS,
}
LORA_SHAPES = {
    "bert": [(D, D)] * 4,             # query, value x 2 layers
    "distilbert": [(D, D)] * 4,       # q_lin, v_lin x 2 layers
    "bart": [(D, D)] * 6,             # q_proj, v_proj in encoder self-attn, decoder self- and cross-attn
    "qwen2": [(D, D), (D, 16)] * 2,   # q_proj 32->32, v_proj 32->16 (GQA) x 2 layers
    "llama": [(D, D), (D, 16)] * 2,
}
ADAPTER_LAYERS = 2  # BART: 1 encoder + 1 decoder layer
# One bottleneck adapter: down (d x b + b) + up (b x d + d).
ONE_ADAPTER = (D * BOTTLENECK + BOTTLENECK) + (BOTTLENECK * D + D)
KINDS = list(HEAD)
TRAINED = ["full", "head", "lora", "lora_scratch", "adapter"]


# The body's norms (--adapter_train_layernorm, default true), hand-counted on the tiny models (2 layers, d = 32):
# BERT: embeddings' LayerNorm + 2 a layer (after attention, after the FFN), weight and bias each;
# DistilBERT the same as BERT (sa_layer_norm, output_layer_norm); BART (1 encoder + 1 decoder layer): each
# stack's layernorm_embedding, the encoder layer's 2 and the decoder layer's 3 (self-attention, cross-attention,
# final), weight and bias each; Llama / Qwen2: RMSNorm before attention and before the MLP in each layer + the
# final norm, weight only.
NORM_PARAMS = {"bert": (1 + 2 * 2) * 2 * D, "distilbert": (1 + 2 * 2) * 2 * D, "bart": (1 + 2 + 1 + 3) * 2 * D,
               "llama": (2 * 2 + 1) * D, "qwen2": (2 * 2 + 1) * D}


def expected_trainable(kind: str, method: str, total: int, adapter_config: str = "houlsby",
                       norms: bool = True) -> int:
    """Hand-counted trainable parameters; adapter defaults: houlsby with the body's norms (train.py's)."""
    if method == "full":
        return total
    if method == "head":
        return HEAD[kind]
    if method in ("lora", "lora_scratch"):
        return sum(R * (i + o) for i, o in LORA_SHAPES[kind]) + HEAD[kind]  # A: r x in, B: out x r
    # houlsby: after attention and after FFN; parallel: one beside the FFN
    per_layer = {"pfeiffer": 1, "houlsby": 2, "parallel": 1}[adapter_config]
    return ADAPTER_LAYERS * per_layer * ONE_ADAPTER + HEAD[kind] + (NORM_PARAMS[kind] if norms else 0)


@pytest.fixture(scope="module")
def load(tiny_models):
    def _load(kind: str):
        torch.manual_seed(0)
        tokenizer, model = get_model(tiny_models(kind), LABELS)
        return tokenizer, model
    return _load


def batch(tokenizer, kind: str = "bert"):
    texts = ["The food was great", "the service was slow and the waiter was rude", "I love this laptop",
             "a terrible ending"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    enc["labels"] = torch.tensor([0, 1, 2, 1])
    if kind != "bert":  # the byte-level tiny tokenizers return token_type_ids their models do not take
        enc.pop("token_type_ids", None)
    return enc


def train_steps(model, enc, steps: int = 3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(**enc).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss.item()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", TRAINED)
def test_method_trains_only_intended_parameters(load, kind, method):
    tokenizer, model = load(kind)
    args = MethodArguments(method=method)
    model = get_method(method).apply(model, args)
    trainable, total = count_parameters(model)
    assert trainable == expected_trainable(kind, method, total)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    loss = train_steps(model, batch(tokenizer, kind))
    assert loss == loss  # not NaN
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == trainable_names


@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("config", ["houlsby", "pfeiffer", "parallel"])
def test_adapter_config_count(load, kind, config):
    _, model = load(kind)
    args = MethodArguments(method="adapter", adapter_config=config, adapter_train_layernorm=False)
    model = get_method("adapter").apply(model, args)
    trainable, total = count_parameters(model)
    assert trainable == expected_trainable(kind, "adapter", total, config, norms=False)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_adapter_train_layernorm_adds_only_the_norms(load, kind):
    """Houlsby et al. 2019's recipe: adapters, head and the body's norms train; every other base weight stays."""
    tokenizer, model = load(kind)
    args = MethodArguments(method="adapter", adapter_config="houlsby", adapter_train_layernorm=True)
    model = get_method("adapter").apply(model, args)
    trainable, total = count_parameters(model)
    assert trainable == expected_trainable(kind, "adapter", total, "houlsby", norms=False) + NORM_PARAMS[kind]
    trainable_names = {n for n, p in model.named_parameters() if p.requires_grad}
    base_trained = {n for n in trainable_names if "adapter" not in n and not n.startswith(("classifier", "score"))}
    assert base_trained and all("norm" in n.lower() for n in base_trained)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, batch(tokenizer, kind))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed == trainable_names
    assert get_method("adapter").settings(args)["train_layernorm"] is True


def test_adapter_train_layernorm_without_norms_is_a_clear_error(load):
    _, model = load("bert")
    for module in list(model.bert.modules()):  # a body without norms: every LayerNorm replaced by Identity
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(module, child_name, nn.Identity())
    with pytest.raises(ValueError, match="no LayerNorm/RMSNorm found in model type 'bert'; "
                                         "set --adapter_train_layernorm false"):
        get_method("adapter").apply(model, MethodArguments(method="adapter", adapter_train_layernorm=True))


def test_parallel_adapter_adds_beside_the_ffn_scaled_by_4(load):
    """He et al. 2022's parallel adapter: layer output = the pretrained path + 4 x up(relu(down(x))) with x
    the FFN's input: one adapter per layer, in the FFN's output module, scaling 4. With the up projections
    zeroed the hidden states are the frozen model's; a non-zero one moves them."""
    tokenizer, model = load("bert")
    inputs = {k: v for k, v in batch(tokenizer).items() if k != "labels"}
    model.eval()
    with torch.no_grad():
        frozen = model.bert(**inputs).last_hidden_state  # (4, seq, 32)
    model = get_method("adapter").apply(model, MethodArguments(method="adapter", adapter_config="parallel"))
    adapters_found = {n for n, _ in model.named_modules() if n.endswith("adapters.ftlab")}
    assert len(adapters_found) == ADAPTER_LAYERS and all(".output." in n for n in adapters_found)
    assert {model.get_submodule(n).scaling for n in adapters_found} == {4.0}
    model.eval()
    ups = [p for name, p in model.named_parameters() if "adapter_up" in name]
    with torch.no_grad():
        for p in ups:
            p.zero_()
        torch.testing.assert_close(model.bert(**inputs).last_hidden_state, frozen)
        # only the last layer's adapter non-zero: the move goes through that layer's output LayerNorm once
        last_up = model.get_submodule(sorted(adapters_found)[-1]).adapter_up
        last_up.weight.normal_(0, 0.5)
        moved = model.bert(**inputs).last_hidden_state
        assert (moved - frozen).abs().max() > 1e-2


def test_lora_rank_and_targets_change_count(load):
    _, model = load("bert")
    args = MethodArguments(method="lora", lora_r=4, lora_target_modules="query,key,value")
    model = get_method("lora").apply(model, args)
    assert count_parameters(model)[0] == 6 * 4 * (D + D) + HEAD["bert"]


def test_lora_scratch_equals_base_at_init_and_merge_is_exact(load):
    tokenizer, model = load("bert")
    enc = batch(tokenizer)
    enc.pop("labels")
    model.eval()
    with torch.no_grad():
        base = model(**enc).logits
        model = get_method("lora_scratch").apply(model, MethodArguments(method="lora_scratch"))
        model.eval()
        assert torch.equal(model(**enc).logits, base)  # B = 0: the update B A is exactly zero
        layers = methods.lora_layers(model)
        assert len(layers) == 4
        for layer in layers:
            nn.init.normal_(layer.lora_B)  # a trained-looking update
        unmerged = model(**enc).logits
        assert not torch.allclose(unmerged, base)
        weights = [layer.base.weight.clone() for layer in layers]
        methods.merge_lora(model)
        merged = model(**enc).logits
        torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
        merged_weights = [layer.base.weight.clone() for layer in layers]
        methods.merge_lora(model)  # idempotent: a second merge adds nothing
        assert all(torch.equal(layer.base.weight, w) for layer, w in zip(layers, merged_weights))
        methods.unmerge_lora(model)
        methods.unmerge_lora(model)
        for layer, w in zip(layers, weights):
            torch.testing.assert_close(layer.base.weight, w, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(**enc).logits, unmerged, atol=1e-5, rtol=0)


def test_lora_linear_matches_the_formula():
    torch.manual_seed(0)
    base = nn.Linear(5, 3)
    layer = LoRALinear(base, r=2, alpha=6, dropout=0.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(4, 5)
    # h = W0 x + b + (alpha / r) B A x, written out with the shapes of the paper
    expected = x @ base.weight.T + base.bias + 3.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)
    assert layer.lora_A.shape == (2, 5) and layer.lora_B.shape == (3, 2)
    assert not base.weight.requires_grad and layer.lora_A.requires_grad
    layer.reset_parameters()
    assert torch.count_nonzero(layer.lora_B) == 0 and torch.count_nonzero(layer.lora_A) > 0


def test_head_is_everything_outside_the_base_model(load):
    assert methods.head_module_names(load("distilbert")[1]) == ["pre_classifier", "classifier"]
    assert methods.head_module_names(load("bart")[1]) == ["classification_head"]
    assert methods.head_module_names(load("qwen2")[1]) == ["score"]


def test_untrained_pooler_of_a_sentence_transformers_checkpoint_trains_with_the_head(load, tmp_path):
    from ftlab.models import checkpoints as models

    # all-MiniLM-L6-v2 pools by mean over tokens (1_Pooling/config.json); its BERT pooler is a random
    # init with zero bias, so the classifier, which reads that pooler, gets it as part of the head
    assert models.untrained_pooler(models.minilm_path()) is True
    _, minilm = get_model("minilm", 3)
    assert minilm.config.untrained_pooler is True
    assert methods.head_module_names(minilm) == ["classifier", "bert.pooler"]
    head = methods.bind_method(methods.MethodArguments(method="head")).apply(minilm)
    # pooler 384 x 384 + 384, classifier 384 x 3 + 3
    assert methods.count_parameters(head)[0] == 384 * 384 + 384 + 384 * 3 + 3
    # a BERT without sentence-transformers pooling keeps its (pretrained) pooler frozen
    tok, bert = load("bert")
    assert methods.head_module_names(bert) == ["classifier"]
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert models.untrained_pooler(str(tmp_path)) is False  # CLS pooling: the pooler is the model's own


def test_count_parameters_counts_tied_weights_once():
    lin = nn.Linear(4, 4, bias=False)
    model = nn.Sequential(lin, nn.Linear(4, 2))
    model.append(lin)  # the same module twice: its weight is shared
    model[1].weight.requires_grad_(False)
    assert count_parameters(model) == (16 + 2, 16 + 8 + 2)


def test_bad_target_modules_list_existing_linear_names(load):
    _, model = load("bert")
    with pytest.raises(ValueError, match=r"\['qkv'\] match no Linear module.*existing Linear module names: "
                                         r"dense, key, query, value"):
        get_method("lora").apply(model, MethodArguments(method="lora", lora_target_modules="query,qkv"))


def test_unknown_method_and_adapter_config(load):
    with pytest.raises(ValueError, match=r"unknown method 'dora'; did you mean lora, qlora\?$"):
        get_method("dora")  # the nearest names; none near: the registry's
    with pytest.raises(ValueError, match="unknown method 'xyz'; valid: full, head, lora, lora_scratch, adapter, qlora"):
        get_method("xyz")
    _, model = load("bert")
    with pytest.raises(ValueError, match="unknown --adapter_config 'lora'; valid: pfeiffer"):
        get_method("adapter").apply(model, MethodArguments(method="adapter", adapter_config="lora"))


def test_qlora_runs_where_bitsandbytes_quantizes():
    # the locked bitsandbytes quantizes to NF4 on the CPU too; its refusal: tests/test_qlora_cpu.py
    assert get_method("qlora").check("qlora") is None


def test_qlora_load_settings():
    method = get_method("qlora")
    kwargs = method.load_kwargs(MethodArguments(method="qlora"))
    quant = kwargs["quantization_config"]
    assert quant.load_in_4bit and quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_use_double_quant
    assert method.training_overrides == {"optim": "paged_adamw_8bit"}
    assert method.settings(MethodArguments(method="qlora"))["lora_r"] == 8


@pytest.mark.parametrize("forced, expected", [("0", torch.float32), ("1", torch.bfloat16)])
def test_nf4_weights_compute_in_bf16_only_where_the_cpu_runs_it(monkeypatch, forced, expected):
    """An AVX2 CPU emulates bf16 matmuls (80 s a SmolLM2 step against 4.7 s in fp32): qlora follows train.py's
    bf16 rule ($FTLAB_BF16 forces it either way) for both the compute dtype and the unquantized weights."""
    if torch.cuda.is_available():
        pytest.skip("the rule under test is the CPU's")
    monkeypatch.setenv("FTLAB_BF16", forced)
    kwargs = get_method("qlora").load_kwargs(MethodArguments(method="qlora"))
    assert kwargs["quantization_config"].bnb_4bit_compute_dtype == expected
    assert kwargs["torch_dtype"] == expected


@pytest.mark.parametrize("method", ["lora", "lora_scratch", "adapter", "head"])
def test_frozen_linears_in_bf16_give_the_same_autocast_steps(load, method):
    """Holding frozen Linear weights in bf16 changes no number under bf16 autocast (autocast casts them
    to bf16 at every use anyway): same logits, same losses over 3 steps, same trained weights; the
    trainable parameters stay float32 and only frozen Linear modules are cast."""
    def trained(cast: bool):
        tokenizer, model = load("bert")
        model = get_method(method).apply(model, MethodArguments(method=method))
        cast_mods = cast_frozen_linears(model, torch.bfloat16) if cast else []
        enc = batch(tokenizer)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.eval()
            logits = model(**enc).logits.float()
            losses = [train_steps(model, enc, 1) for _ in range(3)]
        return model, cast_mods, logits, losses

    load("bert")  # builds the tiny model once (its random init draws from the seeded RNG)
    plain, none_cast, logits, losses = trained(cast=False)
    fast, cast_mods, fast_logits, fast_losses = trained(cast=True)
    assert not none_cast and cast_mods and all(isinstance(m, nn.Linear) for m in cast_mods)
    assert torch.equal(fast_logits, logits) and fast_losses == losses
    for (name, p), (_, q) in zip(plain.named_parameters(), fast.named_parameters()):
        if p.requires_grad:
            assert q.dtype == torch.float32 and torch.equal(p, q), name
        elif any(p is getattr(m, "weight", None) for m in plain.modules() if isinstance(m, nn.Linear)):
            assert q.dtype == torch.bfloat16 and torch.equal(p.to(torch.bfloat16), q), name
    # full fine-tuning has no frozen Linear: nothing is cast
    tokenizer, model = load("bert")
    assert cast_frozen_linears(get_method("full").apply(model, MethodArguments()), torch.bfloat16) == []


@pytest.mark.parametrize("kind,expected,wrapped", [
    # tiny BERT's pooler is pretrained (not a head module): it is one of the base model's linears
    ("bert", ["query", "key", "value", "dense"], 2 * 6 + 1),
    ("distilbert", ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"], 2 * 6),
    ("llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 2 * 7),
])
def test_all_linear_wraps_every_base_model_linear(load, kind, expected, wrapped):
    _, model = load(kind)
    assert methods.all_linear_targets(model) == expected
    lora = get_method("lora").apply(model, MethodArguments(method="lora", lora_target_modules="all-linear"))
    assert sum(1 for n, _ in lora.named_modules() if n.endswith(".lora_A.default")) == wrapped


def test_pooler_that_trains_with_the_head_is_not_a_lora_target(load):
    _, model = load("bert")
    model.config.untrained_pooler = True  # as get_model marks all-MiniLM-L6-v2
    targets = methods.all_linear_targets(model)
    assert "dense" not in targets and "pooler.dense" not in targets
    assert not any(methods._matches("bert.pooler.dense", [t]) for t in targets)
    assert methods._matches("bert.encoder.layer.0.attention.output.dense", targets)


def test_lora_defaults_to_all_linear_through_bind_method():
    args = MethodArguments(method="lora")
    assert methods.bind_method(args).settings()["lora_target_modules"] == "all-linear"
    assert MethodArguments(method="lora_scratch").lora_target_modules is None
    kept = MethodArguments(method="lora", lora_target_modules="query,value")
    assert methods.bind_method(kept).args.lora_target_modules == "query,value"

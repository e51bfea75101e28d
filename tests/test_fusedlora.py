"""ftlab/speed/fusedlora.py: peft's LoRA Linear as one autograd node: the same outputs, gradients and masks as peft's modules
with FastDropout, peft's own forward wherever the fused path was not measured, train.py's wiring, the lab."""
import copy
import pickle

import pytest
import torch
from torch import nn

from ftlab.methods import registry as methods
from ftlab.models.build import get_model
from ftlab.speed import fusedlora
from ftlab.speed.fastdropout import FastDropout, keep_mask, keep_scale, use_fast_dropout
from ftlab.speed.fusedlora import _FusedLora, takes_fused_path, use_fused_lora
from tests.test_bench import load_lab
from tests.test_fastdropout import _built_model


def _lora_model(tiny_models, dropout: float = 0.1):
    """A tiny BERT with peft LoRA on all linear layers (the method's defaults), FastDropout, B made non-zero."""
    torch.manual_seed(0)
    _, model = get_model(tiny_models("bert"), 3)
    model = methods.bind_method(methods.MethodArguments(method="lora", lora_dropout=dropout)).apply(model)
    use_fast_dropout(model)
    for name, module in model.named_modules():
        if name.endswith("lora_B.default"):  # B starts at zero: make the LoRA path (and A's gradient) real
            nn.init.normal_(module.weight, std=0.2)
    return model.train()


def _batch(model, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(5, model.config.vocab_size, (4, 9), generator=g),
            "attention_mask": torch.ones(4, 9, dtype=torch.long), "labels": torch.tensor([0, 1, 2, 1])}


def _forward_backward(model, batch, seed: int):
    torch.manual_seed(seed)
    out = model(**batch)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.logits.detach(), grads


def test_gradients_pass_gradcheck_without_dropout():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)  # [batch, tokens, in]
    w, b = torch.randn(7, 5, dtype=torch.float64), torch.randn(7, dtype=torch.float64)  # frozen base
    a = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)  # A: [r, in]
    bm = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)  # B: [out, r]
    assert torch.autograd.gradcheck(lambda x, a, bm: _FusedLora.apply(x, w, b, a, bm, 1.5, 0.0), (x, a, bm))


def test_one_layer_computes_lora_with_fastdropouts_mask_by_hand():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 16, requires_grad=True)
    w, b = torch.randn(6, 16), torch.randn(6)
    a, bm = torch.randn(2, 16, requires_grad=True), torch.randn(6, 2, requires_grad=True)
    torch.manual_seed(5)
    y = _FusedLora.apply(x, w, b, a, bm, 2.0 * keep_scale(0.3), 0.3)
    torch.manual_seed(5)
    mask = keep_mask((12, 16), 0.3).view(3, 4, 16)  # the same draw: FastDropout's stream
    assert 0 < mask.sum() < mask.numel()
    dropped = x * mask * keep_scale(0.3)  # nn.Dropout's arithmetic: kept values / (1 - p)
    expected = x @ w.t() + b + 2.0 * (dropped @ a.t() @ bm.t())  # Hu et al. eq. 3, scale alpha / r = 2
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(y)
    fused = torch.autograd.grad(y, (x, a, bm), grad)
    plain = torch.autograd.grad(expected, (x, a, bm), grad)
    for f, p in zip(fused, plain):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-5)
    # a dropped input element gets only the frozen path's gradient
    frozen_only = (grad.reshape(-1, 6) @ w).view(3, 4, 16)
    assert torch.allclose(fused[0][~mask], frozen_only[~mask], atol=1e-5)


def _fused_copy_matches_peft(peft_model, atol: float):
    """A fused copy of `peft_model`: its logits and gradients on one batch and seed equal peft's modules';
    returns (fused model, batch, its logits, how many layers were fused)."""
    fused = copy.deepcopy(peft_model)
    count = use_fused_lora(fused)
    batch = _batch(peft_model)
    logits, grads = _forward_backward(peft_model, batch, seed=3)
    fused_logits, fused_grads = _forward_backward(fused, batch, seed=3)
    torch.testing.assert_close(fused_logits, logits, rtol=1e-5, atol=atol)
    assert grads.keys() == fused_grads.keys() and any(".lora_A." in n for n in grads)
    for name in grads:
        torch.testing.assert_close(fused_grads[name], grads[name], rtol=1e-4, atol=atol)
    return fused, batch, fused_logits, count


@pytest.mark.parametrize("dropout", [0.1, 0.0])  # 0: the merged-weight path
def test_a_model_gives_peft_outputs_and_gradients_with_the_same_masks(tiny_models, dropout):
    fused, batch, fused_logits, count = _fused_copy_matches_peft(_lora_model(tiny_models, dropout), atol=1e-6)
    assert count == 13 and use_fused_lora(fused) == 0  # every LoRA Linear, once
    other, _ = _forward_backward(fused, batch, seed=4)  # other masks: the dropouts really run
    assert not torch.allclose(other, fused_logits)


@pytest.mark.parametrize("arch", ["distilbert", "qwen2", "llama"])
def test_the_merged_paths_strided_outputs_serve_other_architectures(tiny_models, arch):
    """Without dropout the node returns a strided view (o's first out columns): each architecture's attention and
    MLP code reshapes it as it does a Linear's output, with peft's outputs and gradients."""
    torch.manual_seed(0)
    _, model = get_model(tiny_models(arch), 3)
    model = methods.bind_method(methods.MethodArguments(method="lora", lora_dropout=0.0)).apply(model)
    for name, module in model.named_modules():
        if name.endswith("lora_B.default"):
            nn.init.normal_(module.weight, std=0.2)
    assert _fused_copy_matches_peft(model.train(), atol=1e-5)[3] > 0


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_the_node_keeps_x_itself_not_a_dropped_copy(p):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 16, requires_grad=True)
    w, b = torch.randn(6, 16), torch.randn(6)
    a, bm = torch.randn(2, 16, requires_grad=True), torch.randn(6, 2, requires_grad=True)
    y = _FusedLora.apply(x, w, b, a, bm, 2.0, p)
    saved = y.grad_fn.saved_tensors
    assert saved[0].data_ptr() == x.data_ptr()  # x's own storage: q/k/v reading one input share it
    lanes = saved[2]
    assert (lanes is None) if p == 0 else (lanes.dtype == torch.int16 and lanes.numel() == x.numel())
    big = [t for t in saved if t is not None and t.numel() >= x.numel() and t.data_ptr() != x.data_ptr()]
    assert big == ([] if p == 0 else [lanes])  # nothing else as large as x is kept


def test_only_lora_weights_and_the_head_train_and_both_paths_take_the_same_steps(tiny_models):
    peft_model = _lora_model(tiny_models)
    fused = copy.deepcopy(peft_model)
    use_fused_lora(fused)
    before = {n: p.detach().clone() for n, p in fused.named_parameters()}
    for model in (peft_model, fused):
        torch.manual_seed(7)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for step in range(3):
            model(**_batch(model, seed=step)).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    after = dict(fused.named_parameters())
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(".lora_" in n or "modules_to_save" in n for n in changed)
    assert any(".lora_A." in n for n in changed) and any(".lora_B." in n for n in changed)
    # the same updates: Adam divides by sqrt(v), so float32 rounding of near-zero gradients can move a weight
    # by a little more; 1% of the largest update (3 steps of lr 1e-2: ~0.03) is far below a wrong gradient's
    for name, p in peft_model.named_parameters():
        moved = (p.detach() - before[name]).abs().max().item()
        assert (after[name].detach() - p.detach()).abs().max().item() <= 0.01 * max(moved, 1e-6), name


def test_peft_forward_runs_wherever_the_fused_path_was_not_measured(tiny_models):
    model = _lora_model(tiny_models)
    use_fused_lora(model)
    layer = next(m for m in model.modules() if isinstance(m, fusedlora.fused_lora_class()))
    x = torch.randn(2, 3, layer.in_features)
    assert takes_fused_path(layer, x, (), {}) == ("default", 0.1)
    with torch.no_grad():
        assert takes_fused_path(layer, x, (), {}) is None  # evaluation: nothing to gain
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert takes_fused_path(layer, x, (), {}) is None  # bf16 autocast: not measured
    assert takes_fused_path(layer, x.double(), (), {}) is None
    assert takes_fused_path(layer, x, (), {"adapter_names": ["default"]}) is None  # mixed adapter batches
    layer.lora_dropout["default"].__class__ = nn.Dropout  # torch's bernoulli stream: keep it
    assert takes_fused_path(layer, x, (), {}) is None
    layer.lora_dropout["default"].eval()
    assert takes_fused_path(layer, x, (), {}) == ("default", 0.0)  # no dropout drawn: the same function
    layer.lora_dropout["default"].__class__ = FastDropout
    layer.lora_dropout["default"].train()
    layer.lora_dropout["default"].p = 1.0  # everything dropped: no 1 / (1 - p); FastDropout's own x * 0
    assert takes_fused_path(layer, x, (), {}) is None
    layer.lora_dropout["default"].p = 0.1
    layer.get_base_layer().weight.requires_grad_(True)  # a trained base: its gradient is not computed here
    assert takes_fused_path(layer, x, (), {}) is None
    layer.get_base_layer().weight.requires_grad_(False)
    layer.merge()
    assert takes_fused_path(layer, x, (), {}) is None
    with torch.no_grad():  # merged: peft's forward, the merged weight alone
        torch.testing.assert_close(layer(x), layer.get_base_layer()(x))


def test_use_fused_lora_keeps_the_state_dict_and_leaves_other_models_alone(tiny_models):
    model = _lora_model(tiny_models)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    use_fused_lora(model)
    after = model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    _, plain = get_model(tiny_models("bert"), 3)
    assert use_fused_lora(plain) == 0
    layer = next(m for m in model.modules() if type(m) is fusedlora.fused_lora_class())
    copied = pickle.loads(pickle.dumps(layer))  # torch.save(model) pickles the class by name
    assert type(copied) is fusedlora.FusedLoraLinear and torch.equal(copied.lora_A["default"].weight,
                                                                     layer.lora_A["default"].weight)


def test_train_py_fuses_lora_by_default_and_not_on_request(tiny_models, tmp_path):
    cls = fusedlora.fused_lora_class()
    fused = _built_model(tiny_models, tmp_path / "fused", "--method", "lora")
    plain = _built_model(tiny_models, tmp_path / "plain", "--method", "lora", "--fused_lora", "false")
    assert sum(type(m) is cls for m in fused.modules()) == 13
    assert not any(type(m) is cls for m in plain.modules())
    assert (tmp_path / "fused" / "adapter_model.safetensors").is_file()  # peft still saves the fused model


def test_lora_ceiling_lab_builds_five_setups_and_prints_the_ceiling(tiny_models, capsys):
    lab = load_lab("lora_ceiling")
    floor = lab.build_floor(tiny_models("bert"))
    trainable = [n for n, p in floor.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(".bias") or n.startswith(("classifier", "bert.pooler")) for n in trainable)
    assert any(".attention.self.query.bias" in n for n in trainable)
    assert lab.main(["--model", tiny_models("bert"), "--batch", "2", "--tokens", "5", "--rounds", "2",
                     "--steps", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "x |" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| full", "| lora_peft", "| lora_fused", "| lora_fused_p0", "| floor"]
    assert lab.build_lora_fused_p0(tiny_models("bert")).base_model.model.bert.encoder.layer[0].attention.self.query \
        .lora_dropout["default"].__class__ is nn.Identity  # the p = 0 row really runs without dropout
    assert "the ceiling (free A/B): " in out and "without dropout (merged path) " in out
    assert "LoRA's dropout masks alone (13 a step" in out

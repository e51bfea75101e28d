"""ftlab/speed/narrowlinear.py: the same products and gradients as nn.Linear, the fast path only where it was measured,
peft's lora_B modules swapped by train.py, the from-scratch LoRA layer on the same backward."""
import torch
import torch.nn.functional as F
from torch import nn

from ftlab.methods import registry as methods
from ftlab.models.build import get_model
from ftlab.speed import narrowlinear
from ftlab.speed.narrowlinear import NarrowInputLinear, _NarrowLinear, narrow_linear, takes_fast_path, use_narrow_linear
from tests.test_bench import load_lab
from tests.test_fastdropout import _built_model


def test_gradients_pass_gradcheck_for_a_3d_input():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)  # [batch, tokens, r]
    w = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)  # [out, r]
    assert torch.autograd.gradcheck(_NarrowLinear.apply, (x, w))


def test_float32_values_and_gradients_match_nn_linear():
    torch.manual_seed(1)
    x = torch.randn(4, 30, 8, requires_grad=True)  # N = 120 rows of r = 8
    w = torch.randn(1536, 8, requires_grad=True)
    grad = torch.randn(4, 30, 1536)
    assert takes_fast_path(x, w)
    y = narrow_linear(x, w)
    y.backward(grad)
    fast_x, fast_w = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    reference = F.linear(x, w)
    reference.backward(grad)
    assert torch.equal(y, reference)  # the forward is F.linear itself
    assert fast_x.shape == x.shape and fast_w.shape == w.shape
    # the same sums in another order: against the float64 products, the fast gradients are as close as
    # nn.Linear's own (float32 rounding of sums of 1,536 and 120 terms)
    g64 = grad.double().reshape(-1, 1536)
    exact_x = (g64 @ w.detach().double()).reshape(x.shape)
    exact_w = g64.t() @ x.detach().double().reshape(-1, 8)
    for fast, plain, exact in ((fast_x, x.grad, exact_x), (fast_w, w.grad, exact_w)):
        fast_error = (fast.double() - exact).abs().max().item()
        plain_error = (plain.double() - exact).abs().max().item()
        assert fast_error <= 1e-6 * exact.abs().max().item() and fast_error <= 4 * plain_error


def test_fast_path_only_for_float32_cpu_training_without_autocast_up_to_r_8():
    x, w = torch.randn(6, 8), torch.randn(16, 8)
    assert takes_fast_path(x, w)
    assert not takes_fast_path(torch.randn(6, 9), torch.randn(16, 9))  # r = 9: not measured faster
    assert not takes_fast_path(x.double(), w.double())
    with torch.no_grad():
        assert not takes_fast_path(x, w)  # evaluation: nothing to gain
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not takes_fast_path(x, w)  # oneDNN's bf16 kernels: not measured
        y = narrow_linear(x, w)
    assert y.dtype == torch.bfloat16  # autocast's own F.linear ran


def test_use_narrow_linear_swaps_only_the_lora_b_modules_of_a_peft_model(tiny_models, monkeypatch):
    torch.manual_seed(0)
    _, model = get_model(tiny_models("bert"), 3)
    model = methods.bind_method(methods.MethodArguments(method="lora")).apply(model)
    b_modules = [m for name, m in model.named_modules() if name.endswith("lora_B.default")]
    assert len(b_modules) == 13  # 2 layers x 6 linear layers + the pooler
    keys = list(model.state_dict())
    assert use_narrow_linear(model) == 13
    assert all(type(m) is NarrowInputLinear for m in b_modules)
    assert sum(type(m) is NarrowInputLinear for m in model.modules()) == 13  # lora_A (8 outputs, not inputs) stays
    assert list(model.state_dict()) == keys
    calls = []
    real = _NarrowLinear.apply
    monkeypatch.setattr(_NarrowLinear, "apply", lambda *a: calls.append(1) or real(*a))
    ids, labels = torch.tensor([[2, 5, 9, 3], [2, 7, 8, 6]]), torch.tensor([1, 0])
    model.train()(input_ids=ids, labels=labels).loss.backward()
    assert len(calls) == 13
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    assert len(calls) == 13  # no gradients: nn.Linear's own path


def _trained_lora(tiny_models, swap: bool):
    """Three AdamW steps of peft LoRA (dropout off) on a tiny BERT; B starts at zero, so steps 2-3 exercise
    both gradients of B's layer. Returns the state before and after."""
    torch.manual_seed(0)
    _, model = get_model(tiny_models("bert"), 3)
    model = methods.bind_method(methods.MethodArguments(method="lora", lora_dropout=0.0)).apply(model)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    if swap:
        use_narrow_linear(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, labels = torch.tensor([[2, 5, 9, 3, 4], [2, 7, 8, 6, 3]]), torch.tensor([1, 2])
    model.train()
    for _ in range(3):
        optimizer.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
    return before, model.state_dict()


def test_training_with_the_swap_changes_the_same_weights_by_the_same_amounts(tiny_models):
    before, plain = _trained_lora(tiny_models, swap=False)
    _, fast = _trained_lora(tiny_models, swap=True)
    changed = {k for k in before if not torch.equal(before[k], fast[k])}
    assert changed and all("lora_" in k or "classifier" in k or "pooler" in k for k in changed)
    assert any("lora_B" in k for k in changed) and any("lora_A" in k for k in changed)
    assert not any(".base_layer." in k for k in changed)  # the frozen weights stay as they were
    for k in before:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-4, atol=1e-5)


def test_lora_from_scratch_keeps_its_gradients(monkeypatch):
    torch.manual_seed(2)
    layer = methods.LoRALinear(nn.Linear(12, 20), r=4, alpha=8)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(3, 5, 12)
    calls = []
    real = _NarrowLinear.apply
    monkeypatch.setattr(_NarrowLinear, "apply", lambda *a: calls.append(1) or real(*a))
    layer(x).sum().backward()
    assert calls == [1]
    grads = layer.lora_A.grad.clone(), layer.lora_B.grad.clone()
    layer.zero_grad()
    # the layer's formula before narrow_linear: the same update B A x, the same gradients
    (layer.base(x) + (x @ layer.lora_A.t() @ layer.lora_B.t()) * layer.scaling).sum().backward()
    torch.testing.assert_close(grads[0], layer.lora_A.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], layer.lora_B.grad, rtol=1e-5, atol=1e-5)


def test_train_py_swaps_lora_b_by_default_and_not_on_request(tiny_models, tmp_path):
    fast = _built_model(tiny_models, tmp_path / "fast", "--method", "lora")
    plain = _built_model(tiny_models, tmp_path / "plain", "--method", "lora", "--fast_lora_backward", "false")
    assert sum(isinstance(m, NarrowInputLinear) for m in fast.modules()) == 13
    assert not any(isinstance(m, NarrowInputLinear) for m in plain.modules())
    assert narrowlinear.MAX_IN_FEATURES == methods.MethodArguments().lora_r  # the default rank takes the path


def test_lora_backward_lab_switches_the_b_modules_and_prints_both_setups(tiny_models, capsys):
    lab = load_lab("lora_backward")
    model, _, b_modules = lab.build(tiny_models("bert"), 0.1)
    assert len(b_modules) == 13 and all(m.weight.abs().sum() > 0 for m in b_modules)  # B made non-zero
    lab.use(b_modules, NarrowInputLinear)
    assert all(type(m) is NarrowInputLinear for m in b_modules)
    lab.use(b_modules, nn.Linear)
    assert all(type(m) is nn.Linear for m in b_modules)
    assert lab.main(["--model", tiny_models("bert"), "--batch", "2", "--tokens", "5", "--rounds", "2",
                     "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "13 B matrices" in out and "batch 2 x 5 tokens, fp32" in out
    rows = [line for line in out.splitlines() if line.startswith(("| nn.Linear", "| narrowlinear"))]
    assert len(rows) == 2 and all("of 2 |" in r for r in rows)
    assert "nn.Linear / narrowlinear median step: " in out

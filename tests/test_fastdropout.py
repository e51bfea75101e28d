"""ftlab/speed/fastdropout.py: the mask's rate and independence, torch's dropout arithmetic, and train.py's wiring."""
import json

import pytest
import torch
import transformers
from torch import nn

from ftlab.analysis import bench
from ftlab.methods import registry as methods
from ftlab.models import build
from ftlab.models.build import get_model
from ftlab.speed import fastdropout
from ftlab.speed.fastdropout import FastDropout, drop_threshold, fast_dropout, keep_mask, use_fast_dropout
from ftlab.train import steps as train
from tests.test_bench import _tiny_argv, load_lab


def test_threshold_rounds_p_to_a_multiple_of_1_over_32768():
    assert drop_threshold(0.1) == 3277  # 0.1 x 32768 = 3276.8
    assert drop_threshold(0.0) == 0 and drop_threshold(1.0) == 32768 and drop_threshold(0.5) == 16384


def test_mask_keeps_1_minus_p_in_both_lanes_of_a_draw():
    torch.manual_seed(0)
    mask = keep_mask((1000, 1000), 0.1).view(-1)
    assert mask.dtype == torch.bool and mask.shape == (1_000_000,)
    # each half of a 31-bit draw is a lane: a lane with fewer random bits would keep far more than 0.9
    # (sd of a rate over 500,000 elements: sqrt(0.9 x 0.1 / 5e5) = 0.00042; 0.002 is ~5 sd)
    expected = 1 - 3277 / 32768
    for lane in (mask[0::2], mask[1::2]):
        assert lane.float().mean().item() == pytest.approx(expected, abs=0.002)
    # neighbours (the two lanes of one draw) are independent: both kept at rate ~0.81
    pairs = mask.view(-1, 2)
    assert (pairs[:, 0] & pairs[:, 1]).float().mean().item() == pytest.approx(expected ** 2, abs=0.003)


def test_random_lanes_are_the_15_low_bits_of_each_half_of_an_int32_draw():
    torch.manual_seed(7)
    lanes = fastdropout.random_lanes(3)  # two draws, the second one's high half unused
    torch.manual_seed(7)
    draws = torch.empty(2, dtype=torch.int32).random_().tolist()
    expected = [(d >> (16 * k)) & 0x7FFF for d in draws for k in range(2)][:3]
    assert lanes.dtype == torch.int16 and lanes.tolist() == expected


def test_mask_repeats_with_the_seed_and_odd_sizes_work():
    torch.manual_seed(3)
    a = keep_mask((7, 3), 0.3)
    torch.manual_seed(3)
    b = keep_mask((7, 3), 0.3)
    torch.manual_seed(4)
    c = keep_mask((7, 3), 0.3)
    assert a.shape == (7, 3) and torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_gradient_follow_torch_dropout_arithmetic(dtype):
    torch.manual_seed(1)
    x = torch.randn(64, 48, dtype=dtype, requires_grad=True)
    torch.manual_seed(2)
    y = fast_dropout(x, 0.25)
    torch.manual_seed(2)
    kept = keep_mask(x.shape, 0.25)
    scale = 32768 / (32768 - 8192)  # p = 0.25 exactly: 4/3
    # kept entries: x times the scale as a float scalar (one rounding, as torch's own CPU dropout does)
    assert torch.equal(y, x.detach().mul(kept.to(dtype)).mul_(scale)) and y.dtype == dtype
    assert torch.equal(y[~kept], torch.zeros_like(y[~kept]))
    y.sum().backward()
    # the gradient: the same mask times the same scale (4/3 rounded to the dtype, as 1 x 4/3 is on both sides)
    assert torch.equal(x.grad, kept.to(dtype) * torch.tensor(scale, dtype=dtype))


def test_backward_keeps_only_the_bool_mask():
    # torch's own dropout keeps a 1-byte mask for the backward; x.mul(mask.to(dtype)) would keep it in x's dtype
    # (4 bytes an element for eager attention's float32 probabilities)
    saved = []
    x = torch.randn(8, 4, 6, 6, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fast_dropout(x, 0.1)
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(torch.bool, (8, 4, 6, 6))]
    torch.manual_seed(5)
    xd = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    state = torch.get_rng_state()

    def same_mask_dropout(t):
        torch.set_rng_state(state)  # gradcheck calls it many times: the same mask each time
        return fast_dropout(t, 0.3)

    assert torch.autograd.gradcheck(same_mask_dropout, (xd,)) and y.shape == x.shape


def test_module_is_dropout_in_eval_p0_p1_and_off_the_cpu():
    x = torch.randn(4, 5)
    d = FastDropout(0.1)
    assert isinstance(d, nn.Dropout) and d.p == 0.1
    assert torch.equal(d.eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))
    assert FastDropout(0.5).train()(torch.ones(3, device="meta")).device.type == "meta"  # torch's path


def test_use_fast_dropout_swaps_every_dropout_of_a_lora_model_and_keeps_its_weights(tiny_models):
    torch.manual_seed(0)
    _, model = get_model(tiny_models("bert"), 3)
    model = methods.bind_method(methods.MethodArguments(method="lora")).apply(model)
    before = sum(type(m) is nn.Dropout for m in model.modules())
    lora_dropouts = sum(1 for name, m in model.named_modules() if name.endswith("lora_dropout.default"))
    assert lora_dropouts == 13  # all linear layers: 2 BERT layers x (q, k, v, attn out, intermediate, out) + pooler
    keys = list(model.state_dict())
    model.eval()
    ids = torch.tensor([[2, 5, 9, 3]])
    reference = model(input_ids=ids).logits
    assert use_fast_dropout(model) == before and before >= lora_dropouts + 2
    assert sum(type(m) is nn.Dropout for m in model.modules()) == 0
    assert list(model.state_dict()) == keys and torch.equal(model(input_ids=ids).logits, reference)
    model.train()
    model(input_ids=ids, labels=torch.tensor([1])).loss.backward()  # trains through the new masks


def _built_model(tiny_models, tmp_path, *more):
    models = []
    argv = _tiny_argv(tiny_models, tmp_path, "--max_steps", "1", "--max_train_samples", "8", *more)
    with bench.on_trainer_built(lambda trainer, tokenized: models.append(trainer.model)):
        train.run(*train.parse_args(argv))
    return models[0]


def test_train_py_uses_fast_dropout_by_default_and_torch_dropout_on_request(tiny_models, tmp_path):
    fast = _built_model(tiny_models, tmp_path / "fast")
    plain = _built_model(tiny_models, tmp_path / "plain", "--fast_dropout", "false")
    assert any(isinstance(m, FastDropout) for m in fast.modules())
    assert not any(isinstance(m, FastDropout) for m in plain.modules())
    assert any(type(m) is nn.Dropout for m in plain.modules())


def test_attention_for_picks_eager_only_for_cpu_fast_dropout_on_a_model_that_drops_attention():
    bert = transformers.BertConfig(attention_probs_dropout_prob=0.1)
    assert build.attention_for(bert, None, cpu_fast_dropout=True) == "eager"
    assert build.attention_for(bert, None, cpu_fast_dropout=False) is None  # CUDA, or torch's dropout
    assert build.attention_for(bert, "sdpa", cpu_fast_dropout=True) == "sdpa"  # the user's choice wins
    assert build.attention_for(transformers.BertConfig(attention_probs_dropout_prob=0.0), None, True) is None
    assert build.attention_for(transformers.Qwen2Config(), None, True) is None  # no BERT attention dropout


def test_eager_attention_computes_what_sdpa_does_and_its_dropout_becomes_fast(tiny_models, monkeypatch):
    real = fastdropout.keep_mask
    path = tiny_models("bert")
    torch.manual_seed(0)
    _, eager = get_model(path, 3, cpu_fast_dropout=True)
    torch.manual_seed(0)
    _, sdpa = get_model(path, 3, attn_implementation="sdpa", cpu_fast_dropout=True)
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    ids = torch.tensor([[2, 5, 9, 3, 0, 0], [2, 7, 8, 6, 4, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(eager.eval()(input_ids=ids, attention_mask=mask).logits,
                                   sdpa.eval()(input_ids=ids, attention_mask=mask).logits, rtol=1e-5, atol=1e-6)
    # eager BERT drops attention probabilities with its Dropout module (one per layer, 2 layers): FastDropout
    # draws those masks; SDPA drops inside the kernel (dropout_p, torch's bernoulli), out of FastDropout's reach
    shapes = {}
    for name, model in (("eager", eager), ("sdpa", sdpa)):
        drawn = shapes[name] = []
        monkeypatch.setattr(fastdropout, "keep_mask", lambda shape, p, drawn=drawn: drawn.append(tuple(shape))
                            or real(shape, p))
        use_fast_dropout(model)
        model.train()(input_ids=ids, attention_mask=mask)
    probabilities = (2, 2, 6, 6)  # [batch, heads, query, key]
    assert shapes["eager"].count(probabilities) == 2 and probabilities not in shapes["sdpa"]
    assert [s for s in shapes["eager"] if s != probabilities] == shapes["sdpa"]  # the other dropouts: the same


def test_train_py_records_the_attention_it_trained_with(tiny_models, tmp_path):
    assert _built_model(tiny_models, tmp_path / "auto").config._attn_implementation == "eager"
    with open(tmp_path / "auto" / "run.json") as f:
        assert json.load(f)["config"]["attn_implementation"] == "eager"  # the kernel used, not the flag's None
    assert _built_model(tiny_models, tmp_path / "plain", "--fast_dropout", "false").config._attn_implementation \
        == "sdpa"
    assert _built_model(tiny_models, tmp_path / "asked", "--attn_implementation", "sdpa").config._attn_implementation \
        == "sdpa"


def test_attention_lab_counts_3_bytes_less_per_dropped_element_and_prints_both_kernels(tiny_models, capsys):
    """labs/attention_kernels.py: the bool mask saves 1 byte an element where the float mask saved 4 (fp32).
    Tiny BERT (hidden 32, 2 layers, 2 heads), batch 2 x 5 tokens, eager: dropout on the embeddings [2, 5, 32],
    per layer the attention probabilities [2, 2, 5, 5], the attention output and the FFN output [2, 5, 32],
    and the pooled [CLS] before the classifier [2, 32]: 320 + 2 x (100 + 320 + 320) + 64 = 1,864 elements."""
    lab = load_lab("attention_kernels")
    model, _ = lab.build(tiny_models("bert"), "eager")
    batch = lab.make_batch(model, 2, 5)
    torch.manual_seed(0)
    bool_mask = lab.saved_bytes(model, batch, bf16=False)
    with lab.float_mask():
        torch.manual_seed(0)
        float_mask = lab.saved_bytes(model, batch, bf16=False)
    assert float_mask - bool_mask == 3 * 1864
    assert fastdropout.fast_dropout is fast_dropout  # float_mask() puts the real one back
    assert fastdropout._MaskedScale.__name__ == "_MaskedScale"
    assert lab.main(["--model", tiny_models("bert"), "--batch", "2", "--tokens", "5", "--rounds", "2",
                     "--steps", "1", "--bf16", "false"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| eager", "| sdpa"))]
    assert [r.split(" | ")[0] for r in rows] == ["| eager", "| sdpa"]
    assert all(r.endswith(" |") and "of 2" in r for r in rows)

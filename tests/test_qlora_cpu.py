"""qlora on the CPU (bitsandbytes' CPU backend): NF4 base + LoRA + head train, the run reloads through
predict.py, and the merged bf16 export loads with `pipeline()` (tiny Llama and Qwen2 from a config)."""
import gc
import json
import os

import bitsandbytes as bnb
import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from ftlab.methods import registry as methods
from ftlab.runs import predict
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
KINDS = ("llama", "qwen2")
TRAINED = ("lora_", "modules_to_save")  # peft's LoRA weights and its trained copy of the head (score)

pytestmark = pytest.mark.skipif(methods.bnb_4bit_problem("cuda" if torch.cuda.is_available() else "cpu") is not None,
                                reason="bitsandbytes cannot quantize to NF4 here")


class WeightSnapshot(TrainerCallback):
    """Every state_dict tensor (NF4 bytes and their quantization constants included) before and after training."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module", params=KINDS)
def qlora_run(request, tiny_models, tmp_path_factory):
    """(kind, run folder, snapshot) of 3 qlora steps on the MRPC fixture."""
    out = tmp_path_factory.mktemp(f"qlora_{request.param}") / "run"
    args = train.parse_args([
        "--model_name_or_path", tiny_models(request.param), "--dataset_name", "mrpc", "--data_dir", FIXTURES,
        "--method", "qlora", "--max_steps", "3", "--per_device_train_batch_size", "8", "--learning_rate", "1e-2",
        "--max_length", "64", "--disable_tqdm", "true", "--report_to", "none", "--output_dir", str(out)])
    snapshot = WeightSnapshot()
    train.run(*args, callbacks=[snapshot])
    return request.param, str(out), snapshot


def saved_predictions(run_dir):
    with open(os.path.join(run_dir, "predictions_test.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["text"] for r in rows], [r["prediction"] for r in rows]


def test_only_lora_and_head_weights_change(qlora_run):
    _, run_dir, snap = qlora_run
    # every block linear is a bitsandbytes NF4 layer (2 layers x q k v o gate up down)
    assert len(snap.quantized) == 14
    changed = {k for k in snap.before if not torch.equal(snap.before[k], snap.after[k])}
    assert changed and all(any(t in k for t in TRAINED) for k in changed), sorted(changed)
    assert any("lora_B" in k for k in changed) and any("score.modules_to_save" in k for k in changed)
    nf4 = [f"{name}.weight" for name in snap.quantized]  # packed 4-bit weights (their constants: more uint8 keys)
    assert all(snap.before[k].dtype == torch.uint8 for k in nf4) and not changed & set(nf4)
    record = json.load(open(os.path.join(run_dir, "run.json")))
    assert record["method"] == "qlora" and (record["device"] == "cpu" or torch.cuda.is_available()) and record["training"]["steps"] == 3
    assert record["config"]["optim"] == "paged_adamw_8bit"


def test_reloaded_run_predicts_the_saved_labels(qlora_run):
    _, run_dir, _ = qlora_run
    run = predict.load_run(run_dir, predict.PredictArguments(device="cpu"))
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in run.model.modules()) == 14  # a 4-bit base again
    texts, labels = saved_predictions(run_dir)
    predicted = [run.label_names[i] for i in predict.predict_logits(run, texts).argmax(axis=1)]
    assert predicted == labels


def test_merged_export_loads_with_pipeline_and_agrees(qlora_run, tmp_path):
    from transformers import pipeline

    kind, run_dir, _ = qlora_run
    run = predict.load_run(run_dir, predict.PredictArguments(device="cpu"))
    texts, _ = saved_predictions(run_dir)
    logits = predict.predict_logits(run, texts)
    info = predict.export_merged(run, str(tmp_path / "merged"))
    assert "dequantized to bf16" in info["how"]
    config = json.load(open(tmp_path / "merged" / "config.json"))
    assert "quantization_config" not in config and config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    classify = pipeline("text-classification", model=str(tmp_path / "merged"), device="cpu", top_k=None)
    scores = classify(texts, truncation=True)
    probs = np.array([[next(s["score"] for s in row if s["label"] == name) for name in run.label_names]
                      for row in scores])
    agree = float(np.mean(probs.argmax(axis=1) == logits.argmax(axis=1)))
    # the pipeline's probabilities against predict.py's: the export holds the NF4 weights dequantized to bf16
    prob_diff = float(np.abs(probs - predict.softmax(logits)).max())
    print(f"{kind}: agreement {agree:.3f} on {len(texts)} texts; export max |logit diff| "
          f"{info['check']['max_abs_logit_diff']:.2e}; pipeline max |prob diff| {prob_diff:.2e}")
    assert agree >= 0.95
    assert info["check"]["max_abs_logit_diff"] < 0.05 and prob_diff < 0.02


def mapped(path):
    with open("/proc/self/maps", encoding="utf-8") as f:
        return any(line.rstrip().endswith(path) for line in f)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads Linux's /proc/self/maps")
def test_qlora_lets_go_of_the_mapped_checkpoint(tiny_models):
    """After the NF4 load the checkpoint's file mapping (every full-precision page the quantizer read) is released."""
    from ftlab.models.build import get_model

    path = tiny_models("llama")
    checkpoint = os.path.realpath(os.path.join(path, "model.safetensors"))
    args = methods.MethodArguments(method="qlora")
    _, model = get_model(path, 2, load_kwargs=methods.qlora_load_kwargs(args))
    assert mapped(checkpoint)  # the embeddings are views of it
    embeddings = model.get_input_embeddings().weight.detach().clone()
    copied = methods.own_unquantized_weights(model)
    gc.collect()
    assert not mapped(checkpoint)
    assert copied == sum(t.numel() for t in [*model.parameters(), *model.buffers()]
                         if not isinstance(t, bnb.nn.Params4bit))
    assert torch.equal(model.get_input_embeddings().weight, embeddings)


def test_bitsandbytes_without_a_4bit_backend_is_one_line(monkeypatch, tiny_models, tmp_path, capsys):
    import bitsandbytes.functional as bnbf

    def no_backend(*args, **kwargs):
        raise NotImplementedError("no kernel for 'cpu'\nsecond line of a library's advice")

    monkeypatch.setattr(bnbf, "quantize_4bit", no_backend)
    methods.bnb_4bit_problem.cache_clear()
    try:
        code = train.main(["--model_name_or_path", tiny_models("llama"), "--dataset_name", "mrpc", "--data_dir",
                           FIXTURES, "--method", "qlora", "--output_dir", str(tmp_path / "o"), "--report_to", "none"])
    finally:
        methods.bnb_4bit_problem.cache_clear()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err
    assert "bitsandbytes" in lines[0] and "no kernel for 'cpu'" in lines[0] and ">= 0.46" in lines[0]
    assert "second line" not in lines[0] and lines[0].endswith("or use --method lora")
    assert not (tmp_path / "o").exists()

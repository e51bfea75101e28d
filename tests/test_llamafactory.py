"""llamafactory_yaml/: every YAML is LLaMA-Factory-valid (keys, templates, data set names from
dataHelper's export), and the offline YAMLs run end to end on a tiny random Qwen2:
SAMSum LoRA SFT -> merge (export) -> predict -> eval.py, and one TAT-QA LoRA step -> predict -> eval.py.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftlab.data import llamafactory as lfdata
from ftlab.llm import scoring as ev

ROOT = Path(__file__).resolve().parents[1]
YAML_DIR = ROOT / "llamafactory_yaml"
FIXTURES = ROOT / "tests" / "fixtures"
SECTIONS = ["### model", "### method", "### dataset", "### output", "### train"]

# file -> (kind, template, model path, data set key, data set names)
YAMLS = {
    "qwen1_5_0_5b_lora_sft_samsum.yaml": ("train", "qwen", "Qwen/Qwen1.5-0.5B", "dataset", ["samsum_train"]),
    "qwen1_5_0_5b_lora_sft_samsum_merge.yaml": ("export", "qwen", "Qwen/Qwen1.5-0.5B", None, []),
    "qwen1_5_0_5b_lora_sft_samsum_predict.yaml": ("predict", "qwen", "saves/qwen1_5-0_5b/lora/merged_samsum",
                                                  "eval_dataset", ["samsum_test"]),
    "llama3_8b_lora_sft_tatqa.yaml": ("train", "llama3", "meta-llama/Meta-Llama-3-8B-Instruct", "dataset",
                                      ["tatqa_train"]),
    "llama3_8b_full_sft_tatqa.yaml": ("train", "llama3", "meta-llama/Meta-Llama-3-8B-Instruct", "dataset",
                                      ["tatqa_train"]),
    "smollm2_lora_sft_samsum.yaml": ("train", "smollm2", "local_models/smollm2", "dataset", ["samsum_train"]),
    "smollm2_lora_sft_samsum_merge.yaml": ("export", "smollm2", "local_models/smollm2", None, []),
    "smollm2_lora_sft_samsum_predict.yaml": ("predict", "smollm2", "saves/smollm2/lora/merged_samsum",
                                             "eval_dataset", ["samsum_test"]),
    "smollm2_lora_sft_tatqa.yaml": ("train", "smollm2", "local_models/smollm2", "dataset", ["tatqa_train"]),
    "smollm2_full_sft_tatqa.yaml": ("train", "smollm2", "local_models/smollm2", "dataset", ["tatqa_train"]),
}


def load_yaml(name: str) -> dict:
    return yaml.safe_load((YAML_DIR / name).read_text())


@pytest.fixture(scope="module")
def lf_data(tmp_path_factory):
    """dataHelper's LLaMA-Factory export of the SAMSum and TAT-QA fixtures."""
    out = tmp_path_factory.mktemp("lf_data")
    written = lfdata.export_llamafactory("all", str(out), data_dir=str(FIXTURES))
    assert sorted(written) == ["samsum_test", "samsum_train", "samsum_validation", "tatqa_test", "tatqa_train"]
    return out


# ---------------------------------------------------------------- static checks (no training)
def test_every_yaml_is_listed():
    assert sorted(p.name for p in YAML_DIR.glob("*.yaml")) == sorted(YAMLS)


@pytest.mark.parametrize("name", sorted(YAMLS))
def test_yaml_layout(name):
    kind, template, model, data_key, datasets = YAMLS[name]
    text = (YAML_DIR / name).read_text()
    header = text.split("\n###", 1)[0]
    assert f"llamafactory-cli {'export' if kind == 'export' else 'train'} llamafactory_yaml/{name}" in header
    want = ["### model", "### export"] if kind == "export" else SECTIONS[:4]
    positions = [text.index(s) for s in want]
    assert positions == sorted(positions), f"{name}: sections out of order"
    cfg = load_yaml(name)
    # One line to change the model: a single scalar key.
    assert cfg["model_name_or_path"] == model and text.count("model_name_or_path:") == 1
    assert cfg["template"] == template
    if data_key:
        assert cfg[data_key].split(",") == datasets and cfg["dataset_dir"] == "lf_data"
    if cfg.get("bf16") and model.startswith(("local_models", "saves/smollm2")):
        assert cfg["use_cpu"] is True  # LLaMA-Factory refuses bf16 on CPU without it
    assert cfg.get("report_to", "none") == "none"


def test_course_settings():
    cfg = load_yaml("qwen1_5_0_5b_lora_sft_samsum.yaml")
    assert (cfg["cutoff_len"], cfg["lora_target"], cfg["max_samples"], cfg["finetuning_type"]) == (
        2048, "all", 3000, "lora")
    assert "knkarthick/samsum" in (YAML_DIR / "qwen1_5_0_5b_lora_sft_samsum.yaml").read_text()
    # merge -> predict: the predict YAML reads what the merge YAML writes, which merges the SFT output.
    sft, merge = cfg["output_dir"], load_yaml("qwen1_5_0_5b_lora_sft_samsum_merge.yaml")
    assert merge["adapter_name_or_path"] == sft
    assert load_yaml("qwen1_5_0_5b_lora_sft_samsum_predict.yaml")["model_name_or_path"] == merge["export_dir"]
    smol_merge = load_yaml("smollm2_lora_sft_samsum_merge.yaml")
    assert smol_merge["adapter_name_or_path"] == load_yaml("smollm2_lora_sft_samsum.yaml")["output_dir"]
    assert load_yaml("smollm2_lora_sft_samsum_predict.yaml")["model_name_or_path"] == smol_merge["export_dir"]


def test_full_sft_uses_zero3():
    lora, full = load_yaml("llama3_8b_lora_sft_tatqa.yaml"), load_yaml("llama3_8b_full_sft_tatqa.yaml")
    assert (lora["finetuning_type"], full["finetuning_type"]) == ("lora", "full")
    ds = json.loads((ROOT / full["deepspeed"]).read_text())
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # The study compares methods: same data, template, cutoff and epochs.
    for key in ("dataset", "template", "cutoff_len", "max_samples", "num_train_epochs", "seed"):
        assert lora[key] == full[key], key


def test_smollm2_tatqa_study_differs_only_in_the_method():
    """labs/tatqa_lora_vs_full.sh compares methods: same data, order, batch, steps; LoRA keys and lr differ."""
    lora, full = load_yaml("smollm2_lora_sft_tatqa.yaml"), load_yaml("smollm2_full_sft_tatqa.yaml")
    assert (lora["finetuning_type"], full["finetuning_type"]) == ("lora", "full")
    differ = {k for k in set(lora) | set(full) if lora.get(k) != full.get(k)}
    assert differ == {"finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "learning_rate",
                      "output_dir", "save_only_model"}
    assert full["learning_rate"] == lora["learning_rate"] / 10
    assert lora["output_dir"] == "saves/smollm2/lora/sft_tatqa" and full["output_dir"] == "saves/smollm2/full/sft_tatqa"


@pytest.mark.parametrize("name", sorted(YAMLS))
def test_yaml_accepted_by_llamafactory(name, lf_data):
    """LLaMA-Factory's own parsers take every key (a typo fails), and every data set name and
    template resolves against dataHelper's export."""
    from llamafactory.data.parser import get_dataset_list
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams.parser import _INFER_ARGS, _TRAIN_ARGS
    from transformers import HfArgumentParser

    kind, template, _, data_key, datasets = YAMLS[name]
    cfg = load_yaml(name)
    # No GPU and no DeepSpeed here: check those keys' values above, the rest by parsing.
    if kind != "export":
        cfg.update(bf16=False, use_cpu=True)
    cfg.pop("deepspeed", None)
    parser = HfArgumentParser(_INFER_ARGS if kind == "export" else _TRAIN_ARGS)
    parser.parse_dict(cfg, allow_extra_keys=False)
    assert template in TEMPLATES
    if data_key:
        attrs = get_dataset_list(cfg[data_key].split(","), str(lf_data))
        assert [a.dataset_name for a in attrs] == [f"{d}.json" for d in datasets]


def test_unregistered_dataset_is_one_line_error(lf_data):
    from llamafactory.data.parser import get_dataset_list

    with pytest.raises(ValueError, match=r"^Undefined dataset samsum_trian in dataset_info.json.$"):
        get_dataset_list(["samsum_trian"], str(lf_data))


# ---------------------------------------------------------------- end to end on a tiny Qwen2
# One subprocess per pipeline runs LLaMA-Factory's console entry point (`llamafactory.cli:main`,
# what the `llamafactory-cli` script calls) once per command with the command's argv: the same code
# path as `llamafactory-cli train X.yaml k=v`, paying LLaMA-Factory's ~20 s import only once.
_DRIVER = """
import json, sys
from llamafactory.cli import main
for argv in json.loads(sys.argv[1]):
    sys.argv = ["llamafactory-cli", *argv]
    main()
"""
NEEDS_PREDICT_METRICS = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("jieba", "rouge_chinese")),
    reason="LLaMA-Factory's predict_with_generate requires jieba and rouge-chinese (its `metrics` extra)")


def run_llamafactory(commands, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k != "FORCE_TORCHRUN"}  # one CPU process, no torchrun
    env.update(WANDB_MODE="disabled", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(commands)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _overrides(**kv):
    return [f"{k}={v}" for k, v in kv.items()]


def _score(pred_file: Path, tiny_models, tmp_path) -> dict:
    out = tmp_path / "metrics.json"
    assert ev.main([str(pred_file), "--out", str(out), "--bertscore_model", tiny_models("bert")]) == 0
    metrics = json.loads(out.read_text())
    for key in ("bleu", "rouge_l", "corpus_bleu", "bertscore_f1"):
        assert 0.0 <= metrics[key] <= 1.0, key
    return metrics


def _read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _train_loss(out_dir: Path, steps: int) -> None:
    log = _read_jsonl(out_dir / "trainer_log.jsonl")
    losses = [row["loss"] for row in log if "loss" in row]
    assert log[-1]["current_steps"] == steps and losses and all(math.isfinite(x) for x in losses)


@pytest.mark.slow
@NEEDS_PREDICT_METRICS
def test_samsum_lora_merge_predict_eval(tmp_path, lf_data, tiny_models):
    from safetensors.torch import load_file

    base = tiny_models("qwen2", causal=True)
    sft, merged, pred = tmp_path / "sft", tmp_path / "merged", tmp_path / "pred"
    data = dict(dataset_dir=lf_data, cutoff_len=256)
    run_llamafactory([
        ["train", str(YAML_DIR / "smollm2_lora_sft_samsum.yaml"), *_overrides(
            model_name_or_path=base, output_dir=sft, max_samples=20, max_steps=3, per_device_train_batch_size=2,
            gradient_accumulation_steps=1, logging_steps=1, plot_loss="false", **data)],
        ["export", str(YAML_DIR / "smollm2_lora_sft_samsum_merge.yaml"), *_overrides(
            model_name_or_path=base, adapter_name_or_path=sft, export_dir=merged)],
        ["train", str(YAML_DIR / "smollm2_lora_sft_samsum_predict.yaml"), *_overrides(
            model_name_or_path=merged, output_dir=pred, max_samples=4, max_new_tokens=8,
            per_device_eval_batch_size=4, **data)],
    ], cwd=tmp_path)

    _train_loss(sft, steps=3)
    assert (sft / "adapter_model.safetensors").is_file()
    # Merged: plain weights (no LoRA tensors), and the trained update is in them (LoRA B starts at 0,
    # so an unchanged q_proj would mean the adapter was not merged).
    before, after = load_file(Path(base) / "model.safetensors"), load_file(merged / "model.safetensors")
    assert not [k for k in after if "lora" in k]
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not (before[key].float() == after[key].float()).all()

    rows = _read_jsonl(pred / "generated_predictions.jsonl")
    test = json.loads((lf_data / "samsum_test.json").read_text())
    assert [r["label"].strip() for r in rows] == [t["output"].strip() for t in test[:4]]
    assert _score(pred / "generated_predictions.jsonl", tiny_models, tmp_path)["n"] == 4


@pytest.mark.slow
@NEEDS_PREDICT_METRICS
def test_tatqa_lora_step_predict_eval(tmp_path, lf_data, tiny_models):
    base = tiny_models("qwen2", causal=True)
    yaml_path = str(YAML_DIR / "smollm2_lora_sft_tatqa.yaml")
    sft, pred = tmp_path / "sft", tmp_path / "pred"
    common = dict(model_name_or_path=base, dataset_dir=lf_data, cutoff_len=512, max_samples=2)
    run_llamafactory([
        ["train", yaml_path, *_overrides(output_dir=sft, max_steps=1, per_device_train_batch_size=2,
                                         gradient_accumulation_steps=1, logging_steps=1, plot_loss="false",
                                         **common)],
        # The predict command from the YAML's header.
        ["train", yaml_path, *_overrides(
            do_train="false", do_predict="true", predict_with_generate="true", eval_dataset="tatqa_test",
            adapter_name_or_path=sft, output_dir=pred, max_new_tokens=8, **common)],
    ], cwd=tmp_path)
    _train_loss(sft, steps=1)
    rows = _read_jsonl(pred / "generated_predictions.jsonl")
    test = json.loads((lf_data / "tatqa_test.json").read_text())
    assert [r["label"].strip() for r in rows] == [t["output"] for t in test[:2]]
    _score(pred / "generated_predictions.jsonl", tiny_models, tmp_path)

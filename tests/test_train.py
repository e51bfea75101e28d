"""train.py: named steps, run.json, bad input, config files, resume and 2 processes (tiny models, fixtures)."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from ftlab.data.datasets import DATASETS
from ftlab.methods.registry import METHODS, MethodArguments, bind_method, get_method
from ftlab.metrics.classification import compute_metrics
from ftlab.models import build
from ftlab.models.checkpoints import resolve_model_name
from ftlab.train import arguments
from ftlab.train import trainer as ft_trainer
from ftlab.train import steps as train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
QUICK = ["--data_dir", FIXTURES, "--max_steps", "3", "--per_device_train_batch_size", "8",
         "--disable_tqdm", "true", "--report_to", "none"]


def run_main(capsys, *argv):
    code = train.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    """The one `error: ...` line of stderr. Log lines may precede it (transformers logs at INFO once
    train.py configured logging, e.g. "Offline mode: forcing local_files_only=True"); a traceback may not."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def read_run(path):
    with open(os.path.join(path, "run.json")) as f:
        return json.load(f)


def test_compute_metrics_matches_hand_values():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = [0, 1, 2, 1, 1, 2]
    logits = np.eye(3)[preds]
    # per-class F1 = 2tp / (2tp + fp + fn): class 0: 2/4, class 1: 4/5, class 2: 2/3; supports 3, 2, 1
    f1 = [0.5, 0.8, 2 / 3]
    expected = {"accuracy": 4 / 6, "micro_f1": 4 / 6, "macro_f1": sum(f1) / 3,
                "weight_f1": (3 * f1[0] + 2 * f1[1] + 1 * f1[2]) / 6}
    assert compute_metrics((logits, labels)) == pytest.approx(expected, abs=1e-12)
    # BART-style outputs: (logits, encoder states)
    assert compute_metrics(((logits, np.zeros((6, 2, 4))), labels)) == pytest.approx(expected, abs=1e-12)


def test_main_writes_run_record(tiny_models, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name",
                                 "rotten_tomatoes", "--output_dir", str(out), *QUICK)
    assert code == 0, err
    record = read_run(out)
    assert f"run record: {out / 'run.json'}" in stdout and stdout.count("test: accuracy") == 1
    for key in ("schema", "config", "seed", "method", "model", "model_path", "dataset", "settings", "versions",
                "device", "world_size", "metrics", "params", "time", "memory", "data", "training", "finished_at"):
        assert key in record
    assert (record["method"], record["dataset"], record["seed"], record["world_size"]) == \
        ("lora", "rotten_tomatoes", 42, 1)
    assert record["settings"] == {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                                  "lora_target_modules": "all-linear"}
    assert record["config"]["learning_rate"] == get_method("lora").learning_rate  # the lora default
    assert record["config"]["lora_target_modules"] == "all-linear"  # ftlab/analysis/memory_estimate.py --compare reads it
    # LoRA r=8, A (8 x in) + B (out x 8), on all linear layers of 2 layers (hidden 32, FFN 64): query, key,
    # value, attention output 32->32 (4 x 8 x 64), FFN up 32->64 and down 64->32 (2 x 8 x 96); the tiny
    # model's pooler 32->32 (pretrained, so part of the base model: 8 x 64); + classifier 32x2+2
    assert record["params"]["trainable"] == 2 * (4 * 8 * 64 + 2 * 8 * 96) + 8 * 64 + 66
    assert set(record["metrics"]) == {"validation", "test"}
    for split in record["metrics"].values():
        assert set(split) == {"accuracy", "micro_f1", "macro_f1", "weight_f1", "loss"}
        assert all(0 <= split[k] <= 1 for k in ("accuracy", "macro_f1"))
    assert record["training"]["steps"] == 3 and record["data"]["train_samples"] == 80
    assert record["data"]["num_labels"] == 2 and 0 < record["data"]["mean_tokens"] <= 128
    assert record["time"]["tokens_per_second"] == pytest.approx(
        record["time"]["samples_per_second"] * record["data"]["mean_tokens"])
    assert record["memory"]["how"] == "cpu_peak_rss_minus_baseline" and record["memory"]["peak_bytes"] > 0
    rows = (out / "predictions_test.jsonl").read_text().splitlines()
    data, _ = train.load_data("rotten_tomatoes", "[SEP]", data_dir=FIXTURES)
    names = data["test"].features["label"].names
    assert [json.loads(r)["label"] for r in rows] == [names[i] for i in data["test"]["label"]]  # dataset order
    # a second run into the same folder is refused ...
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name",
                            "rotten_tomatoes", "--output_dir", str(out), *QUICK)
    assert code == 2 and one_error_line(err).startswith("error: output dir") and "--overwrite_output_dir" in err


@pytest.mark.parametrize("kind,method,extra", [
    ("distilbert", "head", []),
    ("bart", "adapter", ["--adapter_config", "houlsby"]),
    ("qwen2", "lora_scratch", []),
    ("llama", "full", []),
])
def test_main_trains_each_architecture(tiny_models, tmp_path, capsys, kind, method, extra):
    out = tmp_path / kind
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models(kind), "--dataset_name", "restaurant_sup",
                            "--method", method, "--output_dir", str(out), *extra, *QUICK)
    assert code == 0, err
    record = read_run(out)
    assert record["training"]["steps"] == 3 and record["method"] == method
    assert list(record["metrics"]) == ["validation", "test"]  # restaurant_sup: validation = 10% of train
    assert record["data"]["num_labels"] == 3


def test_get_model_sets_pad_tokens(tiny_models):
    tokenizer, model = train.get_model(tiny_models("qwen2"), 3)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    tokenizer, model = train.get_model(tiny_models("bart"), 2, label_names=["neg", "pos"])
    assert tokenizer.pad_token == "<pad>" and model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.id2label == {0: "neg", 1: "pos"}


def test_minilm_resolves_to_the_embedded_model():
    tokenizer, model = train.get_model("minilm", 2)
    assert model.name_or_path == resolve_model_name("minilm")
    assert model.config.vocab_size == len(tokenizer) == 30522
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6


def test_validation_flag_picks_the_dev_file_or_the_holdout(tiny_models, tmp_path, capsys):
    sizes = {v: {s: len(d) for s, d in train.load_data("restaurant_sup", "[SEP]", FIXTURES, validation=v)[0].items()}
             for v in (None, "holdout", "dev")}
    assert sizes[None] == sizes["holdout"] == {"train": 59, "validation": 7, "test": 36}
    assert sizes["dev"] == {"train": 66, "validation": 9, "test": 36}
    out = tmp_path / "dev"
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "restaurant_sup",
                            "--validation", "dev", "--output_dir", str(out), *QUICK)
    assert code == 0, err
    record = read_run(out)
    assert record["config"]["validation"] == "dev" and record["data"]["split_sizes"]["validation"] == 9
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "acl_sup",
                            "--validation", "dev", "--output_dir", str(tmp_path / "acl"), *QUICK)
    assert code == 2 and one_error_line(err).startswith(
        "error: unknown option(s) ['validation'] for acl_sup; accepted: none")


def test_tokenize_data_pads_dynamically_and_truncates(tiny_models):
    data, num_labels = train.load_data("restaurant_sup", "[SEP]", data_dir=FIXTURES)
    assert num_labels == 3 and set(data) == {"train", "validation", "test"}
    assert "[SEP]" in data["train"][0]["text"]
    tokenizer = train.load_tokenizer(tiny_models("bert"))
    tokenized = train.tokenize_data(data, tokenizer, max_length=12)
    lengths = {len(ids) for ids in tokenized["train"]["input_ids"]}
    assert max(lengths) == 12 and len(lengths) > 1  # truncated, not padded
    assert set(tokenized["train"].column_names) == {"label", "input_ids", "token_type_ids", "attention_mask"}
    padded = train.tokenize_data(data, tokenizer, max_length=12, pad_to_max_length=True)
    assert {len(ids) for ids in padded["train"]["input_ids"]} == {12}


def test_epoch_seeded_sampler_is_reproducible_and_groups_lengths():
    lengths = list(np.random.default_rng(0).integers(5, 100, size=400))
    epoch = {"n": 0}
    sampler = ft_trainer.EpochSeededSampler(lengths, 8, seed=1, epoch_fn=lambda: epoch["n"], group_by_length=True)
    first = list(sampler)
    assert sorted(first) == list(range(400)) and list(sampler) == first
    epoch["n"] = 1
    assert list(sampler) != first

    def padding(order):  # padded tokens in batches of 8
        return sum(8 * max(lengths[i] for i in order[k:k + 8]) - sum(lengths[i] for i in order[k:k + 8])
                   for k in range(0, 400, 8))

    random_order = list(ft_trainer.EpochSeededSampler(lengths, 8, 1, lambda: 0, group_by_length=False))
    assert padding(first) < padding(random_order) / 3


def test_config_file_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset_name": "restaurant_sup", "method": "full", "num_train_epochs": 3,
                                    "lora_r": 4}))
    model_args, data_args, method_args, run_args, targs = train.parse_args([str(path), "--seed", "7"])
    assert (data_args.dataset_name, method_args.method, method_args.lora_r) == ("restaurant_sup", "full", 4)
    assert (targs.num_train_epochs, targs.seed, model_args.model_name_or_path) == (3, 7, "minilm")
    path.write_text(yaml.safe_dump({"methd": "full"}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'methd'; did you mean method\?"):
        train.parse_args([str(path)])
    with pytest.raises(FileNotFoundError, match="config file .*nope.yaml not found"):
        train.parse_args([str(tmp_path / "nope.yaml")])


def test_training_defaults_resolve(monkeypatch):
    *_, targs = train.parse_args([])
    assert targs.bf16 == build.bf16_supported()
    assert targs.report_to == []  # WANDB_MODE=disabled in tests
    assert targs.group_by_length and targs.load_best_model_at_end and targs.eval_strategy == "epoch"
    assert targs.learning_rate is None and targs.auto_output_dir
    assert targs.dataloader_pin_memory is torch.cuda.is_available()  # pinning serves host-to-GPU copies only
    assert train.parse_args(["--dataloader_pin_memory", "true"])[-1].dataloader_pin_memory is True


@pytest.mark.parametrize("method", ["full", "head", "lora", "adapter"])
def test_schedule_defaults_come_from_the_method_registry_and_flags_win(method):
    model_args, data_args, method_args, _, targs = train.parse_args(["--method", method,
                                                                     "--dataset_name", "restaurant_sup"])
    assert targs.num_train_epochs is None and targs.learning_rate is None
    bound = bind_method(method_args)
    train.finalize_training_args(targs, model_args, data_args, bound, has_validation=True)
    assert (targs.num_train_epochs, targs.learning_rate) == (METHODS[method].epochs, METHODS[method].learning_rate)
    model_args, data_args, method_args, _, targs = train.parse_args(
        ["--method", method, "--num_train_epochs", "7", "--learning_rate", "3e-4"])
    train.finalize_training_args(targs, model_args, data_args, bind_method(method_args), has_validation=True)
    assert (targs.num_train_epochs, targs.learning_rate) == (7, 3e-4)


@pytest.mark.parametrize("argv, epochs, max_length", [
    ([], 2, 64),  # the first command: bbc_news's lora schedule (results/first_command)
    (["--max_length", "96"], 2, 96),  # a flag wins over the set's schedule
    (["--num_train_epochs", "5"], 5, 64),
    (["--method", "full"], METHODS["full"].epochs, 128),  # the set sets no schedule for full
    (["--dataset_name", "restaurant_sup"], METHODS["lora"].epochs, 128),
    (["--dataset_name", "bbc_news,restaurant_sup"], METHODS["lora"].epochs, 128),  # aggregations: none
])
def test_a_sets_schedule_fills_the_flags_left_unset(argv, epochs, max_length):
    model_args, data_args, method_args, _, targs = train.parse_args(argv)
    assert data_args.max_length is None or "--max_length" in argv
    bound = train.bind_for_run(method_args, data_args)
    train.finalize_training_args(targs, model_args, data_args, bound, has_validation=True)
    assert (targs.num_train_epochs, data_args.max_length) == (epochs, max_length)
    # bbc_news's lora schedule is also without dropout (results/lora_cheaper_than_full); other sets keep 0.1
    first_command = data_args.dataset_name == "bbc_news" and method_args.method == "lora"
    assert bound.args.lora_dropout == (0.0 if first_command else 0.1)


def test_lora_dropout_comes_from_the_sets_schedule_where_the_flag_is_unset(monkeypatch):
    assert bind_method(MethodArguments(method="lora")).args.lora_dropout == 0.1  # DEFAULT_LORA_DROPOUT
    assert bind_method(MethodArguments(method="lora"), {"lora_dropout": 0.0}).args.lora_dropout == 0.0
    flag = MethodArguments(method="lora", lora_dropout=0.2)
    assert bind_method(flag, {"lora_dropout": 0.0}).args.lora_dropout == 0.2  # the user's flag wins
    spec = DATASETS["restaurant_sup"]  # run() binds with the set's schedule for the method
    no_dropout = dataclasses.replace(spec, schedules={"lora": {"lora_dropout": 0.0}})
    monkeypatch.setitem(DATASETS, "restaurant_sup", no_dropout)
    _, data_args, method_args, _, _ = train.parse_args(["--dataset_name", "restaurant_sup"])
    assert train.bind_for_run(method_args, data_args).settings()["lora_dropout"] == 0.0
    _, data_args, method_args, _, _ = train.parse_args(["--dataset_name", "restaurant_sup", "--method", "lora_scratch"])
    assert train.bind_for_run(method_args, data_args).args.lora_dropout == 0.1  # the schedule is lora's only


@pytest.mark.parametrize("argv,message", [
    (["--method", "dora"], "error: unknown method 'dora'; did you mean lora, qlora?"),
    (["--dataset_name", "nosuchset"], "error: unknown dataset 'nosuchset'"),
    (["--model_name_or_path", "/no/such/model"], "error: cannot load model '/no/such/model'"),
    (["--lora_target_modules", "qkv"], "error: LoRA target modules ['qkv'] match no Linear module"),
])
def test_bad_input_is_a_one_line_error(tiny_models, tmp_path, capsys, argv, message):
    model = [] if "--model_name_or_path" in argv else ["--model_name_or_path", tiny_models("bert")]
    code, _, err = run_main(capsys, *model, "--output_dir", str(tmp_path / "o"), *QUICK, *argv)
    assert code == 2
    assert one_error_line(err).startswith(message), err


def test_bad_input_in_a_fresh_process_prints_exactly_one_line(tiny_models, tmp_path):
    """What a user sees: in-process tests share logging state, a new process does not."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--model_name_or_path", tiny_models("bert"),
                           "--output_dir", str(tmp_path / "o"), *QUICK, "--dataset_name", "nosuchset"],
                          capture_output=True, text=True, env=_subprocess_env(), cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [one_error_line(proc.stderr)], proc.stderr
    assert proc.stderr.startswith("error: unknown dataset 'nosuchset'")


def _subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    env.pop("FTLAB_CRASH_AT_STEP", None)
    return env


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(tiny_models, tmp_path, capsys):
    args = ["--model_name_or_path", tiny_models("bert"), "--dataset_name", "rotten_tomatoes", "--method", "full",
            "--learning_rate", "3e-3", "--max_steps", "8", "--per_device_train_batch_size", "16",
            "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
            "--load_best_model_at_end", "false", "--data_dir", FIXTURES, "--disable_tqdm", "true",
            "--report_to", "none"]
    code, _, err = run_main(capsys, *args, "--output_dir", str(tmp_path / "whole"))
    assert code == 0, err
    # 5 steps per epoch: killed at step 7 (epoch 2), after the checkpoint of step 6
    crashed = subprocess.run([sys.executable, "train.py", *args, "--output_dir", str(tmp_path / "cut")], cwd=ROOT,
                             env=dict(_subprocess_env(), FTLAB_CRASH_AT_STEP="7"), capture_output=True, text=True)
    assert crashed.returncode == 1, crashed.stderr[-2000:]
    assert not (tmp_path / "cut" / "run.json").exists() and (tmp_path / "cut" / "checkpoint-6").is_dir()
    code, _, err = run_main(capsys, *args, "--output_dir", str(tmp_path / "cut"), "--resume_from_checkpoint", "true")
    assert code == 0, err
    whole, resumed = read_run(tmp_path / "whole"), read_run(tmp_path / "cut")
    assert resumed["metrics"] == whole["metrics"]
    history = [json.loads((tmp_path / r / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
               for r in ("whole", "cut")]
    assert [h.get("eval_loss") for h in history[0]] == [h.get("eval_loss") for h in history[1]]


@pytest.mark.slow
def test_two_processes_write_one_record(tiny_models, tmp_path):
    out = tmp_path / "ddp"
    import socket

    with socket.socket() as sock:  # a free port: another run on 29500 (a second test suite) must not collide
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), "train.py",
                           "--model_name_or_path", tiny_models("bert"), "--dataset_name", "rotten_tomatoes",
                           "--output_dir", str(out), *QUICK], cwd=ROOT, env=_subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run record:") == 1  # rank 0 only
    record = read_run(out)
    assert record["world_size"] == 2 and record["training"]["steps"] == 3
    assert record["training"]["epochs"] == pytest.approx(3 * 8 * 2 / 80)  # 2 processes x batch 8 per step


def test_main_config_is_the_default_run():
    def settings(args):
        model_args, data_args, method_args, _, targs = args
        train.finalize_training_args(targs, model_args, data_args, train.bind_for_run(method_args, data_args),
                                     has_validation=True)
        keys = ("num_train_epochs", "learning_rate", "per_device_train_batch_size", "eval_strategy", "save_strategy",
                "load_best_model_at_end", "metric_for_best_model", "group_by_length", "seed", "warmup_ratio", "optim")
        return (model_args.model_name_or_path, data_args.dataset_name, data_args.max_length, method_args,
                [getattr(targs, k) for k in keys])

    from_file = train.parse_args([os.path.join(ROOT, "configs", "main.yaml")])
    assert settings(from_file) == settings(train.parse_args([]))
    assert from_file[-1].learning_rate == get_method("lora").learning_rate
    # bbc_news's own lora schedule (results/first_command), not lora's 15 epochs at 128 tokens, and without
    # dropout (results/lora_cheaper_than_full)
    assert (from_file[-1].num_train_epochs, from_file[1].max_length, from_file[2].lora_dropout) == (2, 64, 0.0)


def test_early_stopping_stops_when_validation_stops_improving(tiny_models, tmp_path, capsys):
    # learning rate 0: the validation accuracy never improves after the first evaluation, so with
    # patience 1 the run stops at the second epoch's evaluation instead of running 6 epochs
    out = tmp_path / "es"
    quick = [a for a in QUICK if a not in ("--max_steps", "3")]
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "acl_sup",
                            "--method", "head", "--output_dir", str(out), *quick, "--num_train_epochs", "6",
                            "--learning_rate", "0", "--early_stopping_patience", "1", "--warmup_ratio", "0")
    assert code == 0, err
    record = read_run(out)
    assert record["training"]["epochs"] == 2.0  # 120 train rows / batch 8 = 15 steps an epoch
    assert record["training"]["steps"] == 30 and record["config"]["early_stopping_patience"] == 1


def test_early_stopping_without_validation_trains_the_whole_schedule(tiny_models, tmp_path, capsys):
    # a grid passes one patience to every set (run_sup.sh): a set without validation (imdb, the _fs sets) trains on
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "imdb",
                            "--output_dir", str(tmp_path / "o"), *QUICK, "--early_stopping_patience", "2")
    assert code == 0, err
    assert "no validation split: --early_stopping_patience 2 ignored" in err
    record = read_run(tmp_path / "o")
    assert record["training"]["steps"] == 3 and record["config"]["early_stopping_patience"] is None


def test_balanced_class_weights_match_hand_values():
    # 6 examples, 3 classes, counts 3/2/1 and a 4th class absent: w_c = 6 / (4 * count_c), absent -> 0
    w = ft_trainer.balanced_class_weights([0, 0, 0, 1, 1, 2], 4)
    assert w.tolist() == pytest.approx([6 / 12, 6 / 8, 6 / 4, 0.0])


def test_weighted_loss_is_the_hand_weighted_cross_entropy(tiny_models, tmp_path):
    import torch
    from transformers import AutoTokenizer

    path = tiny_models("bert")
    tokenizer = AutoTokenizer.from_pretrained(path)
    _, model = train.get_model(path, 3, tokenizer=tokenizer)
    targs = train.FtTrainingArguments(output_dir=str(tmp_path), report_to="none", eval_strategy="no",
                                      save_strategy="no", load_best_model_at_end=False, use_cpu=True, bf16=False)
    weights = torch.tensor([0.5, 2.0, 1.0])
    trainer = ft_trainer.FtTrainer(model=model, args=targs, class_weights=weights)
    batch = tokenizer(["a b c", "d e", "f"], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 1])
    loss = trainer.compute_loss(model, {**batch, "labels": labels})
    with torch.no_grad():
        logp = torch.log_softmax(model(**batch).logits.float(), -1)
    ce = -logp[torch.arange(3), labels]  # per-example cross-entropy
    expected = (0.5 * ce[0] + 2.0 * ce[1] + 2.0 * ce[2]) / (0.5 + 2.0 + 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # without weights: the model's own mean loss
    plain = ft_trainer.FtTrainer(model=model, args=targs).compute_loss(model, {**batch, "labels": labels})
    assert plain.item() == pytest.approx(ce.mean().item(), rel=1e-5)


@pytest.mark.parametrize("method", ["full", "head"])  # head: the weighted loss on cached features too
def test_class_weight_flag_trains_and_is_recorded(tiny_models, tmp_path, capsys, method):
    out = tmp_path / "cw"
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--dataset_name", "acl_sup",
                            "--method", method, "--output_dir", str(out), *QUICK, "--class_weight", "balanced",
                            "--metric_for_best_model", "macro_f1")
    assert code == 0, err
    config = read_run(out)["config"]
    assert (config["class_weight"], config["metric_for_best_model"]) == ("balanced", "macro_f1")
    code, _, err = run_main(capsys, "--model_name_or_path", tiny_models("bert"), "--output_dir",
                            str(tmp_path / "o"), *QUICK, "--class_weight", "inverse")
    assert code == 2
    assert one_error_line(err) == "error: --class_weight 'inverse' is not one of: none, balanced"


def test_fused_adamw_default_is_the_same_update_as_adamw(tiny_models, tmp_path):
    """The default optimizer (torch's fused AdamW) moves the weights as HF's adamw_torch does: 3 steps of
    the tiny BERT through Trainer with each, same seed and batches, end within float32 rounding."""
    from safetensors.torch import load_file

    assert train.parse_args([])[-1].optim == "adamw_torch_fused"
    weights = {}
    for optim in ("adamw_torch", "adamw_torch_fused"):
        code = train.main(["--model_name_or_path", tiny_models("bert"), "--dataset_name", "restaurant_sup",
                           "--method", "full", "--output_dir", str(tmp_path / optim), *QUICK, "--optim", optim,
                           "--bf16", "false", "--weight_decay", "0.01"])
        assert code == 0
        weights[optim] = load_file(str(tmp_path / optim / "model.safetensors"))
        assert read_run(tmp_path / optim)["config"]["optim"] == optim
    a, b = weights["adamw_torch"], weights["adamw_torch_fused"]
    assert set(a) == set(b)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    # and the 3 steps did move the body (lr 5e-5 x 3 Adam steps ~ 1e-4 a weight): the equality is not trivial
    start = load_file(os.path.join(tiny_models("bert"), "model.safetensors"))
    moved = [k for k in start if f"bert.{k}" in a and (a[f"bert.{k}"] - start[k]).abs().max().item() > 5e-5]
    assert len(moved) > len(start) // 2


def test_pad_to_multiple_of_rounds_batches_up_and_leaves_outputs_unchanged(tiny_models):
    """--pad_to_multiple_of 8: every training batch's length is the next multiple of 8 above its longest
    example (fewer distinct matmul shapes); the attention mask hides the extra pads, so the tiny BERT's
    logits equal those of the batch padded to its longest example."""
    import torch

    data, _ = train.load_data("restaurant_sup", "[SEP]", data_dir=FIXTURES)
    tokenizer, model = train.get_model(tiny_models("bert"), 3)
    model.eval()
    tokenized = train.tokenize_data(data, tokenizer, max_length=64)
    rows = [tokenized["train"][i] for i in range(6)]
    longest = max(len(r["input_ids"]) for r in rows)
    batches = {}
    for multiple in (None, 8):
        args = train.parse_args(["--output_dir", "unused", "--report_to", "none", "--bf16", "false"]
                                + ([] if multiple is None else ["--pad_to_multiple_of", str(multiple)]))[-1]
        trainer = train.build_trainer(model, tokenizer, tokenized, args)
        batches[multiple] = trainer.data_collator(rows)
    assert batches[None]["input_ids"].shape == (6, longest)
    assert batches[8]["input_ids"].shape == (6, -(-longest // 8) * 8)
    if longest % 8:  # the fixture's longest row is not already a multiple of 8: real extra pads
        assert batches[8]["input_ids"].shape[1] > longest
    with torch.no_grad():
        logits = {k: model(**{n: t for n, t in b.items() if n != "labels"}).logits for k, b in batches.items()}
    torch.testing.assert_close(logits[8], logits[None], atol=1e-5, rtol=1e-5)


def test_an_fp32_run_after_a_bf16_run_in_one_process_stays_fp32(monkeypatch, tmp_path):
    """transformers sets ACCELERATE_MIXED_PRECISION=bf16 for a bf16 run and keeps it for a later fp32 one, whose
    Trainer would then autocast to bf16 (seen: ftlab/analysis/bench.py's in-process naive setup, tests on a CPU without bf16
    units). train.py's arguments set it per run, back to what the launcher set when the run is fp32."""
    import torch
    import transformers

    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)  # restored after the test
    flags = ["--output_dir", str(tmp_path), "--report_to", "none", "--eval_strategy", "no", "--save_strategy", "no",
             "--load_best_model_at_end", "false"]
    seen = []
    for bf16 in ("true", "false"):
        *_, targs = train.parse_args(["--bf16", bf16, *flags])
        accelerator = transformers.Trainer(model=torch.nn.Linear(2, 2), args=targs).accelerator
        seen.append((os.environ["ACCELERATE_MIXED_PRECISION"], accelerator.mixed_precision, accelerator.native_amp))
    assert seen == [("bf16", "bf16", True), ("no", "no", False)]
    monkeypatch.setattr(arguments, "LAUNCH_MIXED_PRECISION", "fp16")  # `accelerate launch --mixed_precision fp16`
    train.parse_args(["--bf16", "false", *flags])
    assert os.environ["ACCELERATE_MIXED_PRECISION"] == "fp16"


def test_evaluation_reads_longest_first_and_predict_keeps_dataset_order(tiny_models):
    """The eval sampler batches the test split longest first (each batch pads to about its own length);
    predict() returns logits and labels in dataset order, equal to one example at a time."""
    import torch

    data, _ = train.load_data("restaurant_sup", "[SEP]", data_dir=FIXTURES)
    tokenizer, model = train.get_model(tiny_models("bert"), 3)
    model.eval()
    tokenized = train.tokenize_data(data, tokenizer, max_length=64)
    test = tokenized["test"].select(range(12))
    args = train.parse_args(["--output_dir", "unused", "--report_to", "none", "--bf16", "false",
                             "--per_device_eval_batch_size", "5"])[-1]
    trainer = train.build_trainer(model, tokenizer, tokenized, args)
    lengths = [len(ids) for ids in test["input_ids"]]
    assert len(set(lengths)) > 1 and lengths != sorted(lengths, reverse=True)  # the order has work to do
    order = list(trainer._get_eval_sampler(test))
    assert sorted(order) == list(range(12))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    output = trainer.predict(test)
    with torch.no_grad():
        one_by_one = torch.cat([model(input_ids=torch.tensor([row["input_ids"]]),
                                      attention_mask=torch.tensor([row["attention_mask"]])).logits for row in test])
    torch.testing.assert_close(torch.as_tensor(output.predictions), one_by_one, atol=1e-5, rtol=1e-5)
    assert output.label_ids.tolist() == test["label"]
    assert output.metrics["test_accuracy"] == pytest.approx(
        float(np.mean(one_by_one.argmax(-1).numpy() == np.asarray(test["label"]))))

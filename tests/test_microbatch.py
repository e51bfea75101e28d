"""ftlab/speed/microbatch.py and FtTrainer.training_step: a long batch in token-budget pieces gives the batch's gradient."""
import json

import pytest
import torch
import transformers

from ftlab.analysis import bench
from ftlab.speed import microbatch
from ftlab.train import steps as train
from ftlab.train import trainer as ft_trainer
from tests.test_bench import _tiny_argv


def _batch(lengths, width=None, labels=None):
    """Right-padded ids/mask/token types for rows of the given real lengths (ids 5.., pad 0)."""
    width = width or max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.arange(5, 5 + n)
        mask[row, :n] = 1
    labels = torch.tensor(labels if labels is not None else [row % 2 for row in range(len(lengths))])
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids), "labels": labels}


def test_split_batch_cuts_rows_evenly_and_trims_each_piece_s_padding_tail():
    batch = _batch([6, 5, 3, 2, 1])  # 5 x 6 = 30 padded tokens
    chunks = microbatch.split_batch(batch, 12)  # ceil(30 / 12) = 3 pieces of ceil(5 / 3) = 2 rows
    assert [c["input_ids"].shape for c in chunks] == [(2, 6), (2, 3), (1, 1)]
    assert [c["labels"].tolist() for c in chunks] == [[0, 1], [0, 1], [0]]
    assert all(c["attention_mask"].shape == c["token_type_ids"].shape == c["input_ids"].shape for c in chunks)
    assert torch.equal(chunks[1]["input_ids"], torch.tensor([[5, 6, 7], [5, 6, 0]]))
    assert sum(int(c["attention_mask"].sum()) for c in chunks) == 17  # every real token kept


def test_split_batch_leaves_a_fitting_batch_whole_and_never_cuts_a_row():
    batch = _batch([4, 3])
    whole = microbatch.split_batch(batch, 8)
    assert len(whole) == 1 and whole[0]["input_ids"] is batch["input_ids"]
    assert len(microbatch.split_batch(batch, 0)) == 1  # 0 / None: off
    rows = microbatch.split_batch(_batch([10, 9]), 4)  # 20 tokens, a row is 10 > 4: one row a piece
    assert [c["input_ids"].shape for c in rows] == [(1, 10), (1, 9)]
    left = _batch([3, 2])
    left["attention_mask"] = left["attention_mask"].flip(1)  # left padding: nothing trails, nothing trimmed
    assert [c["input_ids"].shape[1] for c in microbatch.split_batch(left, 3)] == [3, 3]
    assert microbatch.split_batch({"features": torch.zeros(4, 16), "labels": torch.zeros(4)}, 2)[0]["features"] \
        .shape == (4, 16)  # cached head features carry no token ids: whole


def test_piece_rows_is_what_split_batch_cuts():
    assert microbatch.piece_rows(32, 92, 2048) == 16  # 2,944 tokens: 2 pieces of 16 rows (1,472 tokens)
    assert microbatch.piece_rows(32, 64, 2048) == 32  # 2,048: fits
    assert microbatch.piece_rows(5, 6, 12) == 2 and microbatch.piece_rows(2, 10, 4) == 1
    assert microbatch.piece_rows(32, 92, None) == microbatch.piece_rows(32, 92, 0) == 32


def test_loss_shares_are_example_shares_or_class_weight_shares():
    chunks = microbatch.split_batch(_batch([6, 5, 3, 2, 1], labels=[0, 1, 1, 1, 0]), 12)
    assert microbatch.loss_shares(chunks) == pytest.approx([0.4, 0.4, 0.2])
    # weights w = (1, 3): pieces sum 1+3 = 4, 3+3 = 6, 1 -> of 11
    assert microbatch.loss_shares(chunks, torch.tensor([1.0, 3.0])) == pytest.approx([4 / 11, 6 / 11, 1 / 11])


def _trainer(tmp_path, micro_batch_tokens, class_weights=None):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, num_labels=2, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)  # no dropout: no random draws to differ
    model = transformers.BertForSequenceClassification(config)
    args = train.FtTrainingArguments(output_dir=str(tmp_path), micro_batch_tokens=micro_batch_tokens, use_cpu=True,
                                     report_to="none", bf16=False, eval_strategy="no",
                                     save_strategy="no", load_best_model_at_end=False)
    trainer = ft_trainer.FtTrainer(model=model, args=args, class_weights=class_weights)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop; training_step reads it
    return trainer


@pytest.mark.parametrize("class_weights", [None, torch.tensor([1.0, 3.0])])
def test_training_step_in_pieces_gives_the_whole_batch_s_loss_and_gradient(tmp_path, class_weights):
    batch = _batch([9, 8, 8, 5, 3, 2, 2], labels=[0, 1, 1, 0, 1, 0, 1])  # 7 x 9 = 63 padded tokens
    grads, losses = [], []
    for budget in (None, 20):  # 20: ceil(63 / 20) = 4 pieces of 2, 2, 2, 1 rows
        trainer = _trainer(tmp_path / str(budget), budget, class_weights)
        losses.append(trainer.training_step(trainer.model, dict(batch)).item())
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, whole in grads[0].items():
        torch.testing.assert_close(grads[1][name], whole, rtol=1e-5, atol=1e-7, msg=name)
    assert trainer.loss_share == 1.0  # restored after the pieces


def test_train_py_splits_batches_over_2048_padded_tokens_by_default():
    assert train.FtTrainingArguments(output_dir="x", use_cpu=True, report_to="none").micro_batch_tokens == 2048


def test_train_py_in_pieces_takes_the_same_sgd_steps_and_records_the_budget(tiny_models, tmp_path, monkeypatch):
    """Two plain SGD steps (an update proportional to the gradient, so a wrong loss share would show; Adam's
    first steps would hide it) on the tiny BERT with its dropout off: the same weight changes in pieces.
    In fp32 on every CPU: bf16 autocast rounds the two ways' sums differently, beyond rtol 1e-3."""
    original = train.get_model

    def without_dropout(*args, **kwargs):
        config, model = original(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return config, model

    monkeypatch.setattr(train, "get_model", without_dropout)
    pieces = []
    split = microbatch.split_batch

    def counted(inputs, max_tokens):
        out = split(inputs, max_tokens)
        pieces.append(len(out))
        return out

    monkeypatch.setattr(microbatch, "split_batch", counted)
    deltas = {}
    for name, more in (("whole", ("--micro_batch_tokens", "0")), ("pieces", ("--micro_batch_tokens", "16"))):
        start, models = {}, []

        def keep(trainer, tokenized):
            models.append(trainer.model)
            start.update({n: p.detach().clone() for n, p in trainer.model.named_parameters()})

        argv = _tiny_argv(tiny_models, tmp_path / name, "--max_steps", "2", "--max_train_samples", "8",
                          "--per_device_train_batch_size", "4", "--optim", "sgd", "--learning_rate", "0.5",
                          "--warmup_ratio", "0", "--eval_strategy", "no", "--save_strategy", "no",
                          "--load_best_model_at_end", "false", "--bf16", "false", *more)  # fp32: rtol 1e-3
        with bench.on_trainer_built(keep):
            train.run(*train.parse_args(argv))
        deltas[name] = {n: p.detach() - start[n] for n, p in models[0].named_parameters()}
        with open(tmp_path / name / "run.json") as f:
            assert json.load(f)["config"]["micro_batch_tokens"] == int(more[1])
    assert pieces[:2] == [1, 1] and min(pieces[2:4]) >= 2  # the budget run did split its batches
    moved = [n for n, d in deltas["whole"].items() if d.abs().max() > 1e-4]
    assert "classifier.weight" in moved and len(moved) > 10
    for n in moved:
        torch.testing.assert_close(deltas["pieces"][n], deltas["whole"][n], rtol=1e-3, atol=1e-6, msg=n)

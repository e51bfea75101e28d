"""Head-only schedule sweep on cached features: validation accuracy / macro-F1 per epoch and learning rate.

    DATA_DIR=../shared/data uv run labs/head_sweep.py --dataset_name acl_sup --lrs 1e-3 3e-3 1e-2 --epochs 40

The frozen body runs once (headcache.compute_features); each learning rate then trains a fresh copy of
the model's head (AdamW, 6% linear warm-up then linear decay over --epochs, batch 32, seed 1) and prints
validation figures at a few epochs and the best epoch. Only validation is read: this is how
The head schedule of ftlab/methods/registry.py was chosen. It is the same loop train.py runs on cached features, without
Trainer's per-epoch checkpointing, so a 40-epoch sweep of three rates takes seconds after the features.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys

import torch

from ftlab.methods.registry import MethodArguments, apply_head
from ftlab.metrics.classification import classification_scores
from ftlab.speed import headcache
from ftlab.train import steps as train


def sweep_one(model, feats, labels, val_feats, val_labels, lr: float, epochs: int, batch: int = 32):
    """[(epoch, accuracy, macro_f1)] on validation after every epoch, one fresh head per call."""
    torch.manual_seed(1)
    head = headcache.FeatureHead(copy.deepcopy(model))
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * -(-len(feats) // batch)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm))))
    out = []
    for epoch in range(1, epochs + 1):
        head.train()
        for idx in torch.randperm(len(feats)).split(batch):
            loss = head(feats[idx], labels=labels[idx]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        head.eval()
        with torch.no_grad():
            pred = head(val_feats).logits.argmax(-1).numpy()
        scores = classification_scores(pred, val_labels.numpy())
        out.append((epoch, scores["accuracy"], scores["macro_f1"]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_name", default="acl_sup")
    parser.add_argument("--model_name_or_path", default="minilm")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    data, num_labels = train.load_data(args.dataset_name, data_dir=os.environ.get("DATA_DIR"))
    tokenizer, model = train.get_model(args.model_name_or_path, num_labels, tokenizer=None)
    model = apply_head(model, MethodArguments(method="head"))
    tokenized = train.tokenize_data(data, tokenizer)
    bf16 = train.bf16_supported()
    x, y = headcache.compute_features(model, tokenized["train"], tokenizer, bf16=bf16), torch.tensor(data["train"]["label"])
    vx = headcache.compute_features(model, tokenized["validation"], tokenizer, bf16=bf16)
    vy = torch.tensor(data["validation"]["label"])
    print(f"{args.dataset_name}: features train {tuple(x.shape)}, validation {tuple(vx.shape)}")
    print("| lr | epoch 3 | epoch 10 | epoch 20 | last | best epoch (validation accuracy / macro-F1) |")
    print("|---|---|---|---|---|---|")
    for lr in args.lrs:
        curve = sweep_one(model, x, y, vx, vy, lr, args.epochs)
        cell = lambda e: f"{curve[e - 1][1]:.3f} / {curve[e - 1][2]:.3f}" if e <= len(curve) else "–"  # noqa: E731
        best = max(curve, key=lambda row: row[1])
        print(f"| {lr:g} | {cell(3)} | {cell(10)} | {cell(20)} | {cell(len(curve))} | "
              f"{best[0]}: {best[1]:.3f} / {best[2]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

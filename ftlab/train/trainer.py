"""The Trainer of train.py: `FtTrainer` (class-weighted loss, micro-batches, an epoch-seeded sampler that
a resumed run replays exactly) and `build_trainer`, which wires it to the data, the metrics and the callbacks.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from accelerate.utils import DistributedType
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)
from transformers.trainer_pt_utils import get_length_grouped_indices
from transformers.trainer_utils import IntervalStrategy, PredictionOutput

from ftlab.metrics.classification import compute_metrics
from ftlab.speed import microbatch

logger = logging.getLogger("ftlab.train")


def balanced_class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """(num_labels,) float32 weights n / (num_labels x count_c); a class absent from train weighs 0."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_labels).astype(np.float64)
    weights = np.divide(len(labels), num_labels * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


class CrashAtStep(TrainerCallback):
    """Test hook (FTLAB_CRASH_AT_STEP=N): die like a killed process at the end of step N."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os._exit(1)


class EpochSeededSampler(torch.utils.data.Sampler):
    """Training order drawn from seed + epoch (random, or length-grouped batches).

    HF's samplers draw from the global RNG or from an epoch counter that accelerate resets when a
    resumed run skips batches; the epoch comes here from the trainer state instead, so a resumed run
    sees exactly the batches of an uninterrupted one.
    """

    def __init__(self, lengths: List[int], batch_size: int, seed: int, epoch_fn: Callable[[], int],
                 group_by_length: bool):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.epoch_fn, self.group_by_length = epoch_fn, group_by_length

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch_fn())
        if self.group_by_length:  # megabatches of 50 batches sorted by length, HF's recipe
            return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
        return iter(torch.randperm(len(self.lengths), generator=generator).tolist())


class FtTrainer(Trainer):
    def __init__(self, *args, class_weights: Optional[torch.Tensor] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = class_weights  # (num_labels,) or None: the model's own (unweighted) loss

    loss_share = 1.0  # this micro-batch's weight in its batch's mean loss (training_step)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """A batch over --micro_batch_tokens padded tokens runs as micro-batches whose losses, weighted by
        their share, sum to the batch's: the same gradient with a smaller activation peak (ftlab/speed/microbatch.py)."""
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:  # DeepSpeed steps in backward
            return super().training_step(model, inputs, num_items_in_batch)
        chunks = microbatch.split_batch(inputs, self.args.micro_batch_tokens)
        if len(chunks) == 1:
            return super().training_step(model, inputs, num_items_in_batch)
        total = None
        for i, (chunk, share) in enumerate(zip(chunks, microbatch.loss_shares(chunks, self.class_weights))):
            # DDP: all-reduce gradients once, after the last micro-batch's backward
            sync = contextlib.nullcontext() if i == len(chunks) - 1 or self.args.world_size <= 1 \
                else self.accelerator.no_sync(model)
            self.loss_share = share
            try:
                with sync:  # num_items_in_batch None: each piece's loss is its own mean, weighted by share
                    loss = super().training_step(model, chunk, None)
            finally:
                self.loss_share = 1.0
            total = loss if total is None else total + loss
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = self._loss(model, inputs, return_outputs, num_items_in_batch)
        if self.loss_share == 1.0:
            return out
        return (out[0] * self.loss_share, out[1]) if return_outputs else out * self.loss_share

    def _loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.class_weights is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")  # (batch,)
        outputs = model(**inputs)
        # (batch, classes) logits in fp32; torch's weighted mean: sum_i w[y_i] CE_i / sum_i w[y_i]
        loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels,
                                                 weight=self.class_weights.to(outputs.logits.device))
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        # cached head features (ftlab/speed/headcache.py) are one vector per example: every length is 1
        lengths = ([len(ids) for ids in dataset["input_ids"]] if "input_ids" in dataset.column_names
                   else [1] * len(dataset))
        return EpochSeededSampler(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                  self.args.seed, lambda: int((self.state.epoch or 0) + 1e-6),
                                  self.args.group_by_length)

    def _get_eval_sampler(self, eval_dataset):
        # Longest first: each batch pads to about its own length (SmolLM2 on MRPC's test split, batches of 64 in
        # dataset order, padded ~1/3 of their tokens). predict() puts its outputs back in dataset order.
        if self.args.world_size > 1:
            return None
        order = self._eval_order(eval_dataset)
        return torch.utils.data.SequentialSampler(eval_dataset) if order is None else order.tolist()

    def _eval_order(self, dataset) -> Optional[np.ndarray]:
        """The order the eval sampler reads `dataset` in; None for dataset order (several processes: HF's
        distributed sampler; cached head features: one vector an example)."""
        if self.args.world_size > 1 or "input_ids" not in getattr(dataset, "column_names", ()):
            return None
        return microbatch.longest_first([len(ids) for ids in dataset["input_ids"]])

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix: str = "test") -> PredictionOutput:
        """Trainer.predict, its predictions and label ids in dataset order (the sampler read longest first)."""
        output = super().predict(test_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        order = self._eval_order(test_dataset)
        if order is None:
            return output
        inverse = np.argsort(order)  # row i of the output is example order[i]

        def in_dataset_order(x):
            return tuple(in_dataset_order(t) for t in x) if isinstance(x, tuple) else None if x is None else x[inverse]

        return PredictionOutput(predictions=in_dataset_order(output.predictions),
                                label_ids=in_dataset_order(output.label_ids), metrics=output.metrics)


def build_trainer(model, tokenizer, tokenized, training_args: TrainingArguments,
                  early_stopping_patience: Optional[int] = None, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
    eval_dataset = tokenized["validation"] if "validation" in tokenized else None
    callbacks = list(callbacks)
    if os.environ.get("FTLAB_CRASH_AT_STEP"):
        callbacks.append(CrashAtStep(int(os.environ["FTLAB_CRASH_AT_STEP"])))
    if early_stopping_patience:
        if eval_dataset is None or training_args.eval_strategy == IntervalStrategy.NO:
            raise ValueError("--early_stopping_patience needs a validation split and evaluation (this set has no "
                             "validation split: add --validation_from_train 0.1)")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience))
    on_features = "input_ids" not in tokenized["train"].column_names  # headcache.feature_splits
    class_weights = None
    if getattr(training_args, "class_weight", "none") == "balanced":
        class_weights = balanced_class_weights(tokenized["train"]["label"], model.config.num_labels)
        logger.info("class weights (balanced): %s", [round(w, 3) for w in class_weights.tolist()])
    return FtTrainer(model=model, args=training_args, train_dataset=tokenized["train"], eval_dataset=eval_dataset,
                     processing_class=tokenizer,
                     data_collator=default_data_collator if on_features else DataCollatorWithPadding(
                         tokenizer, pad_to_multiple_of=getattr(training_args, "pad_to_multiple_of", None)),
                     compute_metrics=compute_metrics, callbacks=callbacks, class_weights=class_weights)

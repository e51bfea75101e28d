#!/usr/bin/env bash
# Where a training step's time goes, and what each speed option buys (issue 12): bench.py's per-phase
# profile of train.py's defaults (full fine-tuning) beside the naive setup and the variants below, then
# one epoch of a whole run (evaluation, checkpoint, test scoring). Figures in OUT/*.md and OUT/*.json.
#
#   DATA_DIR=../shared/data labs/speed_profile.sh            # ~15 min on 2 cores; nothing else running
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

OUT="${OUT:-results/speed}"
DATASET="${DATASET:-restaurant_sup}"
STEPS="${STEPS:-40}"
PYTHON="${PYTHON:-uv run}"

cd "$ROOT"
mkdir -p "$OUT"
# shellcheck disable=SC2086  # PYTHON is a command line ("uv run"), split on purpose
$PYTHON bench.py \
    --dataset_name "$DATASET" \
    --steps "$STEPS" \
    --profile \
    --variant "adamw_unfused=--optim adamw_torch" \
    --variant "lora=--method lora --lora_target_modules query,value" \
    --variant "lora_frozen_bf16=--method lora --lora_target_modules query,value --frozen_bf16 true" \
    --variant "lora_no_dropout=--method lora --lora_target_modules query,value --lora_dropout 0" \
    --variant "lora_scratch=--method lora_scratch" \
    --variant "lora_all_linear=--method lora" \
    --variant "lora_all_linear_no_dropout=--method lora --lora_dropout 0" \
    --variant "adapter=--method adapter" \
    --out "$OUT/steps"
# shellcheck disable=SC2086
$PYTHON bench.py \
    --dataset_name "$DATASET" \
    --whole_run \
    --no_naive \
    --variant "lora=--method lora" \
    --out "$OUT/whole_run"
# torch.compile (inductor, dynamic shapes after the first recompile): its compile time is in the sums,
# the median step shows the steady state. Last, so a slow compile delays nothing above.
# shellcheck disable=SC2086
$PYTHON bench.py \
    --dataset_name "$DATASET" \
    --steps "$STEPS" \
    --profile \
    --no_naive \
    --variant "compile=--torch_compile true" \
    --out "$OUT/compile"

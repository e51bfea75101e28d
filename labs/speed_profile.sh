#!/usr/bin/env bash
# Where a training step's time goes, and what each speed option buys (issue 12): ftlab bench's per-phase
# profile of train.py's defaults (full fine-tuning) beside the naive setup and the variants below, then
# one epoch of a whole run (evaluation, checkpoint, test scoring), torch.compile, and last the headline:
# time to accuracy against the naive setup (3 seeds each). Figures in OUT/*.md and OUT/*.json.
#
#   DATA_DIR=../shared/data labs/speed_profile.sh            # ~80 min on 2 cores; nothing else running
#   TTA=0 DATA_DIR=../shared/data labs/speed_profile.sh      # ~15 min: without time to accuracy
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

OUT="${OUT:-results/speed}"
DATASET="${DATASET:-restaurant_sup}"
STEPS="${STEPS:-40}"
PYTHON="${PYTHON:-uv run}"
TTA="${TTA:-1}"                      # 0: skip time to accuracy (the naive setup's 3 seeds take ~50 min here)
TTA_MAX_EPOCHS="${TTA_MAX_EPOCHS:-5}"

cd "$ROOT"
mkdir -p "$OUT"
# shellcheck disable=SC2086  # PYTHON is a command line ("uv run"), split on purpose
$PYTHON -m ftlab bench \
    --dataset_name "$DATASET" \
    --steps "$STEPS" \
    --profile \
    --variant "adamw_unfused=--optim adamw_torch" \
    --variant "torch_dropout=--fast_dropout false" \
    --variant "lora=--method lora --lora_target_modules query,value" \
    --variant "lora_frozen_bf16=--method lora --lora_target_modules query,value --frozen_bf16 true" \
    --variant "lora_no_dropout=--method lora --lora_target_modules query,value --lora_dropout 0" \
    --variant "lora_scratch=--method lora_scratch" \
    --variant "lora_all_linear=--method lora" \
    --variant "lora_all_linear_no_dropout=--method lora --lora_dropout 0" \
    --variant "adapter=--method adapter" \
    --out "$OUT/steps"
# shellcheck disable=SC2086
$PYTHON -m ftlab bench \
    --dataset_name "$DATASET" \
    --whole_run \
    --no_naive \
    --variant "lora=--method lora" \
    --variant "torch_dropout=--fast_dropout false" \
    --variant "lora_torch_dropout=--method lora --fast_dropout false" \
    --out "$OUT/whole_run"
# torch.compile (inductor, dynamic shapes after the first recompile): its compile time is in the sums,
# the median step shows the steady state. Last, so a slow compile delays nothing above.
# shellcheck disable=SC2086
$PYTHON -m ftlab bench \
    --dataset_name "$DATASET" \
    --steps "$STEPS" \
    --profile \
    --no_naive \
    --variant "compile=--torch_compile true" \
    --out "$OUT/compile"
# Time to accuracy: the naive setup (fp32, batch 8, pad to 128, random batches, 3 epochs) per seed gives the
# test accuracy band; train.py's defaults per seed run until a test probe (every 1/4 epoch, measurement
# only) reaches it; wall time from process start, probes left out.
if [[ "$TTA" != 0 ]]; then
    # shellcheck disable=SC2086
    $PYTHON -m ftlab bench \
        --dataset_name "$DATASET" \
        --time_to_accuracy \
        --tta_max_epochs "$TTA_MAX_EPOCHS" \
        --out "$OUT/time_to_accuracy"
fi

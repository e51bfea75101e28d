#!/usr/bin/env bash
# Lab: Rotten Tomatoes sentence polarity: frozen features + linear SVM vs full fine-tuning vs LoRA,
# with validation and test columns (the set has both splits).
#
#   labs/rotten_tomatoes.sh                         # the course model, bert-base-uncased (Hub)
#   MODEL=minilm DATA_DIR=/work/shared/data labs/rotten_tomatoes.sh   # offline, embedded model
#
# Runs: OUTPUT_ROOT/rotten_tomatoes/<model>/<method>/seed<seed>; table and plots: OUTPUT_ROOT/report/.
# Every variable can be set from the environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

MODEL="${MODEL:-bert-base-uncased}"
DATASET="${DATASET:-rotten_tomatoes}"
METHODS="${METHODS:-svm full lora}"
SEEDS="${SEEDS:-1 2 3}"
POOLING="${POOLING:-mean}"         # SVM features: cls or mean
OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/labs/rotten_tomatoes}"
EPOCHS="${EPOCHS:-2}"
BATCH_SIZE="${BATCH_SIZE:-32}"
MAX_LENGTH="${MAX_LENGTH:-64}"     # one sentence each: 64 tokens cover nearly all
# Also EXTRA_ARGS, SVM_ARGS, REPORT_ARGS and PYTHON: see labs/grid.sh.

SVM_FLAGS=(
    --pooling "$POOLING"
)

# shellcheck source=grid.sh
source "$ROOT/labs/grid.sh"

run_grid "$DATASET" "$MODEL" "$METHODS"
make_report

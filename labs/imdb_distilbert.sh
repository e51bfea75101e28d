#!/usr/bin/env bash
# Lab: DistilBERT on IMDB (2,000 train / 500 test reviews): full fine-tuning vs head only vs LoRA
# written from scratch (methods.LoRALinear) on the attention query/value projections.
#
#   labs/imdb_distilbert.sh                         # the course model, distilbert-base-uncased (Hub)
#   MODEL=minilm DATA_DIR=/work/shared/data labs/imdb_distilbert.sh   # offline, embedded model
#
# Trainable parameters with distilbert-base-uncased and 2 labels: full 66,955,010, head 592,130
# (tests/test_grid.py checks both). Runs: OUTPUT_ROOT/imdb_2k/<model>/<method>/seed<seed>; table and
# plots: OUTPUT_ROOT/report/. Every variable can be set from the environment.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

MODEL="${MODEL:-distilbert-base-uncased}"
DATASET="${DATASET:-imdb_2k}"
METHODS="${METHODS:-full head lora_scratch}"
SEEDS="${SEEDS:-1 2 3}"
LORA_TARGETS="${LORA_TARGETS:-}"   # empty: the query/value projections (q_lin,v_lin on DistilBERT, query,value on BERT)
OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/labs/imdb}"
EPOCHS="${EPOCHS:-2}"
BATCH_SIZE="${BATCH_SIZE:-16}"
MAX_LENGTH="${MAX_LENGTH:-256}"    # reviews are long: 256 tokens keep most of the opinion
# Also EXTRA_ARGS, SVM_ARGS, REPORT_ARGS and PYTHON: see labs/grid.sh.

TRAIN_FLAGS=()
if [[ -n "$LORA_TARGETS" ]]; then
    TRAIN_FLAGS+=(--lora_target_modules "$LORA_TARGETS")
fi

# shellcheck source=grid.sh
source "$ROOT/labs/grid.sh"

run_grid "$DATASET" "$MODEL" "$METHODS"
make_report

#!/usr/bin/env bash
# Supervised fine-tuning grid: models x data sets x methods x seeds, then ftlab report.
#
#   ./run_sup.sh                                   # the course grid (Hub models, full fine-tuning)
#   MODELS=minilm METHODS="full head lora adapter svm" DATA_DIR=/work/shared/data ./run_sup.sh   # offline
#
# Each run writes OUTPUT_ROOT/<dataset>/<model basename>/<method>/seed<seed>/run.json. Re-running picks
# up where a killed grid stopped: finished runs are skipped, a run with a checkpoint resumes from it, the
# rest start (labs/grid.sh). Method "svm" runs ftlab baseline (frozen
# encoder + linear SVM). The tables and plots go to OUTPUT_ROOT/report/. Every variable below can be
# set from the environment; *_ARGS are split on whitespace.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODELS="${MODELS:-bert-base-uncased facebook/bart-base Qwen/Qwen1.5-0.5B}"
DATASETS="${DATASETS:-restaurant_sup acl_sup agnews_sup}"
METHODS="${METHODS:-full}"
SEEDS="${SEEDS:-1 2 3}"
OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/sup}"
EPOCHS="${EPOCHS-}"                  # empty: each method's most epochs (ftlab/methods/registry.py)
PATIENCE="${PATIENCE:-3}"            # early stopping: epochs without a better validation score (sets
                                     # without a validation split, the few-shot _fs sets, train every epoch)
BATCH_SIZE="${BATCH_SIZE:-32}"
MAX_LENGTH="${MAX_LENGTH:-128}"
# ACL-ARC: 51% of train is one class of six and the set is scored by macro-F1 (Gururangan et al. 2020):
# a class-balanced loss, and validation macro-F1 picks the epoch (chosen on validation: see README); the
# SVM takes the same class weights and validation macro-F1 picks its C.
TRAIN_ARGS_acl_sup="${TRAIN_ARGS_acl_sup---class_weight balanced --metric_for_best_model macro_f1}"
SVM_ARGS_acl_sup="${SVM_ARGS_acl_sup---class_weight balanced --metric_for_best_model macro_f1}"
# Also EXTRA_ARGS, SVM_ARGS, REPORT_ARGS and PYTHON: see labs/grid.sh.

TRAIN_FLAGS=(
    --early_stopping_patience "$PATIENCE"
)

# shellcheck source=labs/grid.sh
source "$ROOT/labs/grid.sh"

run_grid "$DATASETS" "$MODELS" "$METHODS"

make_report

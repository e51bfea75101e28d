#!/usr/bin/env bash
# Parameter-efficient fine-tuning: LoRA and adapters on each model, plus a LoRA (r, alpha) sweep
# on one model, all on AG News; then ftlab report.
#
#   ./run_peft.sh                                  # the course models (Hub)
#   MODELS=minilm DATA_DIR=/work/shared/data ./run_peft.sh   # offline, embedded model
#
# Runs go to OUTPUT_ROOT/<dataset>/<model basename>/<method>/seed<seed> and, for the sweep,
# .../lora_r<r>_a<alpha>/seed<seed>; re-running skips finished runs and resumes killed ones (labs/grid.sh).
# Every variable below can be set from the environment; *_ARGS are split on whitespace.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

MODELS="${MODELS:-bert-base-uncased facebook/bart-base Qwen/Qwen1.5-0.5B}"
DATASETS="${DATASETS:-agnews_sup}"
METHODS="${METHODS:-lora adapter}"
SEEDS="${SEEDS:-1 2 3}"
SWEEP_MODEL="${SWEEP_MODEL:-${MODELS%% *}}"        # the sweep runs on the first model
LORA_SWEEP="${LORA_SWEEP:-16:16 16:32 32:32 32:64 64:64}"   # r:alpha pairs, alpha/r in [1, 2]
OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/peft}"
EPOCHS="${EPOCHS:-3}"
BATCH_SIZE="${BATCH_SIZE:-16}"
MAX_LENGTH="${MAX_LENGTH:-128}"
# Also EXTRA_ARGS, SVM_ARGS, REPORT_ARGS and PYTHON: see labs/grid.sh.

# Check the sweep before the first (long) run: r:alpha integers with r <= alpha <= 2r.
for pair in $LORA_SWEEP; do
    if [[ ! "$pair" =~ ^([0-9]+):([0-9]+)$ ]] || ((BASH_REMATCH[1] < 1 || BASH_REMATCH[2] < BASH_REMATCH[1] || BASH_REMATCH[2] > 2 * BASH_REMATCH[1])); then
        echo "error: LORA_SWEEP entry '$pair' must be r:alpha with 1 <= r <= alpha <= 2r (e.g. 16:32)" >&2
        exit 2
    fi
done

# shellcheck source=labs/grid.sh
source "$ROOT/labs/grid.sh"

run_grid "$DATASETS" "$MODELS" "$METHODS"
for dataset in $DATASETS; do
    for pair in $LORA_SWEEP; do
        r="${pair%%:*}"
        alpha="${pair##*:}"
        run_seeds "$OUTPUT_ROOT/$dataset/$(model_tag "$SWEEP_MODEL")/lora_r${r}_a${alpha}" lora "$SWEEP_MODEL" "$dataset" \
            --lora_r "$r" \
            --lora_alpha "$alpha"
    done
done

make_report

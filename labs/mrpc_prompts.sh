#!/usr/bin/env bash
# Lab: MRPC paraphrase detection with a decoder + classification head, the seed lab's four prompts and
# recipe (LoRA r 8, alpha 16, dropout 0.1 on q_proj/v_proj, batch 8; NF4 QLoRA beside it). Each input is
# the seed's f"{prompt} Sentence 1: {s1} Sentence 2: {s2}", prompt one of:
#   none ""   perfect "Does sentence 1 mean the same as sentence 2?"
#   conflicting "Bob sent a message to Alice, which one is better?"   insufficient "Cut the crap, what's your GPA?"
# One table, a row per (method, prompt, training pairs); the choices (learning rate, epochs, pairs) and the
# table: results/mrpc_prompts/README.md.
#
#   DATA_DIR=../shared/data labs/mrpc_prompts.sh                    # the embedded SmolLM2, LoRA, 4 prompts x 3 seeds
#   METHODS=qlora PROMPTS=perfect DATA_DIR=../shared/data labs/mrpc_prompts.sh
#   MODEL=meta-llama/Meta-Llama-3-8B METHODS="lora qlora" LR=3e-4 EPOCHS=10 TRAIN_PAIRS=all \
#       labs/mrpc_prompts.sh                                        # the seed's GPU setting
#
# Runs: OUTPUT_ROOT/mrpc/<model>/<method>_prompt-<name>_pairs-<n>/seed<seed> (a killed grid resumes); table:
# OUTPUT_ROOT/report/ (`ftlab report --group_by config.prompt`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

MODEL="${MODEL:-smollm2}"
DATASET="${DATASET:-mrpc}"
METHODS="${METHODS:-lora}"
SEEDS="${SEEDS:-1 2 3}"
PROMPTS="${PROMPTS:-none perfect conflicting insufficient}"   # the seed's four (TEMPLATES below)
OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/labs/mrpc_prompts}"
TRAIN_PAIRS="${TRAIN_PAIRS:-1500}"   # chosen on a validation learning curve (results/mrpc_prompts); the first N of 3,668, or all
LR="${LR:-1e-3}"                     # chosen on validation over 3e-4 (the seed's): results/mrpc_prompts/README.md
EPOCHS="${EPOCHS:-3}"                # the most; each run keeps its best epoch on validation accuracy
BATCH_SIZE="${BATCH_SIZE:-8}"
MAX_LENGTH="${MAX_LENGTH:-160}"      # the longest prompt + pair is ~120 SmolLM2 tokens: nothing is cut
LORA_TARGETS="${LORA_TARGETS:-q_proj,v_proj}"
# Also EXTRA_ARGS, REPORT_ARGS and PYTHON: see labs/grid.sh.

# The seed's templates; "none" keeps the f-string's leading space, as the seed's inputs have it.
declare -A TEMPLATES=(
    [none]=" Sentence 1: {sentence1} Sentence 2: {sentence2}"
    [perfect]="Does sentence 1 mean the same as sentence 2? Sentence 1: {sentence1} Sentence 2: {sentence2}"
    [conflicting]="Bob sent a message to Alice, which one is better? Sentence 1: {sentence1} Sentence 2: {sentence2}"
    [insufficient]="Cut the crap, what's your GPA? Sentence 1: {sentence1} Sentence 2: {sentence2}"
)

PROMPT_NAMES="none perfect conflicting insufficient"  # TEMPLATES' keys in the seed's order
for prompt in $PROMPTS; do
    if [[ ! -v "TEMPLATES[$prompt]" ]]; then
        echo "error: unknown prompt '$prompt' in PROMPTS; valid: $PROMPT_NAMES" >&2
        exit 2
    fi
done
if [[ "$TRAIN_PAIRS" != all && ! "$TRAIN_PAIRS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: TRAIN_PAIRS '$TRAIN_PAIRS' must be a positive number of pairs or 'all'" >&2
    exit 2
fi

TRAIN_FLAGS=(
    --learning_rate "$LR"
    --lora_r 8 --lora_alpha 16 --lora_dropout 0.1 --lora_target_modules "$LORA_TARGETS"
)
if [[ "$TRAIN_PAIRS" != all ]]; then TRAIN_FLAGS+=(--max_train_samples "$TRAIN_PAIRS"); fi

# shellcheck source=grid.sh
source "$ROOT/labs/grid.sh"

for method in $METHODS; do
    for prompt in $PROMPTS; do
        run_seeds "$OUTPUT_ROOT/$DATASET/$(model_tag "$MODEL")/${method}_prompt-${prompt}_pairs-$TRAIN_PAIRS" \
            "$method" "$MODEL" "$DATASET" --prompt "${TEMPLATES[$prompt]}"
    done
done
make_report --group_by config.prompt

#!/usr/bin/env bash
# Lab: MRPC paraphrase detection with a decoder + classification head (LoRA, or QLoRA on a GPU),
# and four prompt templates around the sentence pair: none, the right task description, a
# misleading one, an unrelated one. One table, a row per (method, prompt).
#
#   labs/mrpc_prompts.sh                            # the course model, Qwen/Qwen1.5-0.5B (Hub)
#   METHODS="lora qlora" labs/mrpc_prompts.sh       # on a CUDA GPU
#   MODEL=smollm2 DATA_DIR=/work/shared/data labs/mrpc_prompts.sh   # offline (uv run ftlab models prepare smollm2)
#
# Runs: OUTPUT_ROOT/mrpc/<model>/<method>_prompt-<name>/seed<seed>; table: OUTPUT_ROOT/report/
# (ftlab report --group_by config.prompt puts each template on its own row).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

MODEL="${MODEL:-Qwen/Qwen1.5-0.5B}"
DATASET="${DATASET:-mrpc}"
METHODS="${METHODS:-lora}"
SEEDS="${SEEDS:-1 2 3}"
PROMPTS="${PROMPTS:-none right misleading unrelated}"
OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/labs/mrpc}"
EPOCHS="${EPOCHS:-2}"
BATCH_SIZE="${BATCH_SIZE:-16}"
MAX_LENGTH="${MAX_LENGTH:-160}"    # two sentences + the template
# Also EXTRA_ARGS, SVM_ARGS, REPORT_ARGS and PYTHON: see labs/grid.sh.

# Templates for dataHelper's mrpc prompt option ({sentence1}, {sentence2}; "none" = its default
# "{sentence1} {sep} {sentence2}").
declare -A TEMPLATES=(
    [right]="Do the following two sentences express the same meaning? Sentence 1: {sentence1} Sentence 2: {sentence2}"
    [misleading]="Does the second sentence contradict the first one? Sentence 1: {sentence1} Sentence 2: {sentence2}"
    [unrelated]="Translate the following text into French. {sentence1} {sentence2}"
)

for prompt in $PROMPTS; do
    if [[ "$prompt" != none && ! -v "TEMPLATES[$prompt]" ]]; then
        echo "error: unknown prompt '$prompt' in PROMPTS; valid: none ${!TEMPLATES[*]}" >&2
        exit 2
    fi
done

# shellcheck source=grid.sh
source "$ROOT/labs/grid.sh"

for method in $METHODS; do
    for prompt in $PROMPTS; do
        flags=()
        if [[ "$prompt" != none ]]; then flags=(--prompt "${TEMPLATES[$prompt]}"); fi
        run_seeds "$OUTPUT_ROOT/$DATASET/$(model_tag "$MODEL")/${method}_prompt-$prompt" "$method" "$MODEL" "$DATASET" \
            "${flags[@]}"
    done
done
make_report --group_by config.prompt

#!/usr/bin/env bash
# Lab: TAT-QA, LoRA vs full fine-tuning on the embedded SmolLM2-135M-Instruct (the course's Llama-3-8B
# study, CPU-sized). LLaMA-Factory trains both on the same 128 TAT-QA dev questions, same order, batch
# and steps (llamafactory_yaml/smollm2_{lora,full}_sft_tatqa.yaml); the base, LoRA and full models
# then answer the first N_TEST test_gold questions (`ftlab inference predict`: batched, greedy, the
# smollm2 template's prompt ids) and eval.py scores them (TAT-QA exact match / numeracy-aware F1
# against the raw gold file). Peak RSS of each training process comes from GNU time.
#
#   DATA_DIR=../shared/data labs/tatqa_lora_vs_full.sh
#   uv run labs/llm_table.py tatqa results/smollm2_tatqa      # the table again, from the files
#
# Writes OUT/<method>_train.log, _train_time.txt, _train_results.json, _trainer_state.json,
# OUT/<model>/{generated_predictions.jsonl,predict_results.json,metrics.json}, OUT/sids.md, OUT/table.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-results/smollm2_tatqa}"
METHODS="${METHODS:-lora full}"
N_TEST="${N_TEST:-300}"              # first N test_gold questions (file order)
BATCH_SIZE="${BATCH_SIZE:-8}"        # prompts per generate() call
MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-32}"
SIDS="${SIDS:-0 1 2}"                # questions shown side by side (`ftlab inference --sid`)

# shellcheck source=llm_lab.sh
source "$ROOT/labs/llm_lab.sh"
GOLD="$DATA_DIR/tatqa/tatqa_dataset_test_gold.json"

model_flags() {  # $1: base | lora | full -> `ftlab inference` flags for that model
    case "$1" in
        base) echo "--model_name_or_path smollm2" ;;
        lora) echo "--model_name_or_path smollm2 --adapter_name_or_path $SAVES/lora/sft_tatqa" ;;
        full) echo "--model_name_or_path $SAVES/full/sft_tatqa" ;;
    esac
}

predict() {  # $1: base | lora | full
    # shellcheck disable=SC2046
    $PYTHON -m ftlab inference predict $(model_flags "$1") \
        --dataset_file lf_data/tatqa_test.json \
        --template smollm2 \
        --max_samples "$N_TEST" \
        --max_new_tokens "$MAX_NEW_TOKENS" \
        --batch_size "$BATCH_SIZE" \
        --output_dir "$OUT/$1"
    $PYTHON eval.py "$OUT/$1/generated_predictions.jsonl" \
        --tatqa_gold "$GOLD" \
        --no_bertscore
}

side_by_side() {  # the answers of every model to the questions SIDS, as `ftlab inference` prints them
    for sid in $SIDS; do
        echo "## test_gold question $sid"
        for model in base $METHODS; do
            echo "### $model"
            echo '```'
            # shellcheck disable=SC2046
            $PYTHON -m ftlab inference $(model_flags "$model") --dataset tatqa --split test --sid "$sid" \
                --template smollm2 --max_new_tokens "$MAX_NEW_TOKENS" | sed -n '/^=== answer/,$p'
            echo '```'
        done
    done
}

prepare_smollm2 tatqa
for method in $METHODS; do
    lf_train "$method" "llamafactory_yaml/smollm2_${method}_sft_tatqa.yaml" "$SAVES/$method/sft_tatqa"
done
for model in base $METHODS; do
    predict "$model"
done
side_by_side > "$OUT/sids.md.tmp" && mv "$OUT/sids.md.tmp" "$OUT/sids.md"
$PYTHON labs/llm_table.py tatqa "$OUT"

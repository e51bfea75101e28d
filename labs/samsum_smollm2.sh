#!/usr/bin/env bash
# Lab: SAMSum summaries with the embedded SmolLM2-135M-Instruct, base vs LoRA SFT (the course's LLM
# part on a CPU). LLaMA-Factory trains LoRA (llamafactory_yaml/smollm2_lora_sft_samsum.yaml: 1,600
# dialogues, 200 steps) and merges it; `ftlab inference predict` answers every SAMSum test dialogue (819)
# with the base and the merged model (batched, greedy, the smollm2 template's prompt ids); eval.py
# scores BLEU-4, ROUGE-L, ROUGE-Lsum and BERTScore (embedded MiniLM scorer). Then the first SPEED_N
# dialogues are generated again one at a time (one generate() call each) and with continuous batching:
# dialogues/min of both, and how many outputs differ.
#
#   DATA_DIR=../shared/data labs/samsum_smollm2.sh
#   SKIP_TRAIN=1 labs/samsum_smollm2.sh               # predict and score an existing merged model
#   uv run labs/llm_table.py samsum results/smollm2_samsum
#
# Writes OUT/lora_train.log, _train_time.txt, _train_results.json, _trainer_state.json,
# OUT/{base,lora}/{generated_predictions.jsonl,predict_results.json,metrics.json},
# OUT/speed/batch{1,$BATCH_SIZE}/ and OUT/speed/same.json, OUT/table.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-results/smollm2_samsum}"
N_TEST="${N_TEST:-819}"              # SAMSum test has 819 dialogues
BATCH_SIZE="${BATCH_SIZE:-32}"       # prompts per generate() call (sorted by length)
MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-64}"
SPEED_N="${SPEED_N:-64}"             # dialogues for the one-at-a-time vs batched comparison (0: skip)
SKIP_TRAIN="${SKIP_TRAIN:-0}"

# shellcheck source=llm_lab.sh
source "$ROOT/labs/llm_lab.sh"
MERGED="$SAVES/lora/merged_samsum"

predict() {  # $1: output folder, $2: model, $3: how many, $4: batch size, then more `ftlab inference predict` flags
    local out=$1 model=$2 count=$3 batch=$4
    shift 4
    $PYTHON -m ftlab inference predict \
        --model_name_or_path "$model" \
        --dataset_file lf_data/samsum_test.json \
        --template smollm2 \
        --max_samples "$count" \
        --max_new_tokens "$MAX_NEW_TOKENS" \
        --batch_size "$batch" \
        --output_dir "$out" \
        "$@"
}

prepare_smollm2 samsum
if [ "$SKIP_TRAIN" != 1 ]; then
    lf_train lora llamafactory_yaml/smollm2_lora_sft_samsum.yaml "$SAVES/lora/sft_samsum"
    $PYTHON llamafactory-cli export llamafactory_yaml/smollm2_lora_sft_samsum_merge.yaml
fi
for model in base lora; do
    path="$MERGED"
    [ "$model" = base ] && path=smollm2
    predict "$OUT/$model" "$path" "$N_TEST" "$BATCH_SIZE"
    $PYTHON eval.py "$OUT/$model/generated_predictions.jsonl" --bertscore_model minilm
done
if [ "$SPEED_N" -gt 0 ]; then
    # one generate() call per dialogue (the baseline), then continuous batching (predict's default)
    predict "$OUT/speed/batch1" "$MERGED" "$SPEED_N" 1 --continuous_batching false
    predict "$OUT/speed/batch$BATCH_SIZE" "$MERGED" "$SPEED_N" "$BATCH_SIZE"
    $PYTHON labs/llm_table.py same "$OUT/speed/batch1/generated_predictions.jsonl" \
        "$OUT/speed/batch$BATCH_SIZE/generated_predictions.jsonl" > "$OUT/speed/same.json"
    cat "$OUT/speed/same.json"
fi
$PYTHON labs/llm_table.py samsum "$OUT"

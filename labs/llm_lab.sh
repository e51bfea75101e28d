# Sourced by the LLM labs (labs/samsum_smollm2.sh, labs/tatqa_lora_vs_full.sh): their shared setup
# (the repository as working folder; DATA_DIR, SAVES and PYTHON from the environment or these defaults)
# and steps, and the one place that writes the OUT/<method>_train_* layout labs/llm_table.py reads.
# Needs OUT (results folder) set by the caller.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$ROOT"
DATA_DIR="${DATA_DIR:-../shared/data}"
SAVES="${SAVES:-saves/smollm2}"      # LLaMA-Factory's output folders (adapters, merged and full models)
PYTHON="${PYTHON:-uv run}"
export DATA_DIR

prepare_smollm2() {  # $1: the data set to export for LLaMA-Factory (samsum, tatqa)
    mkdir -p "$OUT"
    $PYTHON -m ftlab models prepare smollm2
    $PYTHON dataHelper.py export "$1" --out lf_data
}

lf_train() {  # $1: method name in OUT, $2: LLaMA-Factory yaml, $3: that yaml's output_dir
    # GNU time: wall time and the training process's peak RSS (Maximum resident set size)
    /usr/bin/time -v -o "$OUT/$1_train_time.txt" \
        $PYTHON llamafactory-cli train "$2" > "$OUT/$1_train.log" 2>&1
    cp "$3/train_results.json" "$OUT/$1_train_results.json"
    cp "$3/trainer_state.json" "$OUT/$1_trainer_state.json"
}

#!/usr/bin/env bash
# The GPU check: what only a CUDA machine can test, in one script (< 8 minutes on one H100/H200).
#
#   ./gpu_check.sh                      # writes results/gpu/gpu_check.json and results/gpu/gpu_check.md
#   OUT=/tmp/gpu STEPS=20 ./gpu_check.sh
#
# 1. bf16 full fine-tuning and LoRA throughput on the embedded MiniLM (bbc_news, no data dir needed);
# 2. QLoRA (NF4 + double quantization, paged 8-bit AdamW) on the embedded SmolLM2 for MRPC
#    (DATA_DIR, default ../shared/data), a few dozen steps;
# 3. LLaMA-Factory LoRA SFT on SmolLM2 for a few steps (SAMSum, exported from DATA_DIR);
# 4. ftlab memory's estimate beside CUDA's measured peak (max_memory_allocated) for every train.py run.
# Without CUDA it stops at once with one line: the CPU paths are tested by `uv run pytest`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

OUT="${OUT:-$ROOT/results/gpu}"
WORK="${WORK:-$(mktemp -d /tmp/ftlab-gpu-XXXXXX)}"
DATA_DIR="${DATA_DIR:-$ROOT/../shared/data}"
STEPS="${STEPS:-40}"            # train.py optimizer steps per run
LF_STEPS="${LF_STEPS:-10}"      # LLaMA-Factory SFT steps
PYTHON="${PYTHON:-uv run}"      # how Python runs (tests: the current interpreter)
DRY_RUN="${DRY_RUN:-0}"         # 1: print the commands, run nothing (checks flags without a GPU)

cd "$ROOT"
export DATA_DIR WANDB_MODE=disabled HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

run() {
    echo "+ $*"
    if [[ "$DRY_RUN" != 1 ]]; then
        "$@"
    fi
}

if [[ "$DRY_RUN" != 1 ]]; then
    if ! $PYTHON python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "error: gpu_check.sh needs a CUDA GPU (torch.cuda.is_available() is False here); on a CPU run \`uv run pytest\`" >&2
        exit 2
    fi
fi
mkdir -p "$OUT" "$WORK"

# train_run NAME [train.py flags...]: one short run, its run.json under $WORK/NAME
train_run() {
    local name="$1"
    shift
    local -a common=(
        --max_steps "$STEPS"
        --eval_strategy no
        --save_strategy no
        --load_best_model_at_end false
        --report_to none
        --disable_tqdm true
        --bf16 true
        --output_dir "$WORK/$name"
        --overwrite_output_dir true
    )
    run $PYTHON train.py "${common[@]}" "$@"
}

# 1. MiniLM throughput: full vs LoRA, bf16 on CUDA
train_run minilm_full --model_name_or_path minilm --dataset_name bbc_news --method full
train_run minilm_lora --model_name_or_path minilm --dataset_name bbc_news --method lora

# 2. QLoRA on SmolLM2, MRPC (paged 8-bit AdamW comes with the method)
train_run smollm2_qlora_mrpc \
    --model_name_or_path smollm2 \
    --dataset_name mrpc \
    --method qlora \
    --per_device_train_batch_size 16 \
    --max_eval_samples 200

# 3. LLaMA-Factory LoRA SFT on SmolLM2 (the offline YAML, GPU overrides)
run $PYTHON -m ftlab models prepare smollm2
run $PYTHON dataHelper.py export samsum --out "$WORK/lf_data" --max_samples 200
lf_start=$(date +%s)
run $PYTHON llamafactory-cli train llamafactory_yaml/smollm2_lora_sft_samsum.yaml \
    dataset_dir="$WORK/lf_data" \
    output_dir="$WORK/lf_lora" \
    max_steps="$LF_STEPS" \
    use_cpu=false \
    bf16=true \
    report_to=none \
    overwrite_output_dir=true
lf_seconds=$(( $(date +%s) - lf_start ))

# 4. One JSON + one Markdown table: throughput, measured peak, estimate
run $PYTHON python - "$WORK" "$OUT" "$lf_seconds" <<'EOF'
import json, os, sys

from ftlab.analysis import memory_estimate as memory
from ftlab.hardware import device_name
from ftlab.io import write_atomic, write_json_atomic
from ftlab.runs.record import read_record

work, out, lf_seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for name in ("minilm_full", "minilm_lora", "smollm2_qlora_mrpc"):
    rec = read_record(os.path.join(work, name))
    cmp = memory.compare_run(os.path.join(work, name))
    rows.append({"run": name, "method": rec["method"], "samples_per_second": rec["time"]["samples_per_second"],
                 "train_seconds": rec["time"]["train_seconds"], "trainable": rec["params"]["trainable"],
                 "measured_peak_bytes": cmp["measured"], "estimated_bytes": cmp["estimated"],
                 "est_over_measured": cmp["ratio"], "test_accuracy": rec["metrics"]["test"].get("accuracy")})
lf = {}
state = os.path.join(work, "lf_lora", "trainer_state.json")
if os.path.isfile(state):
    with open(state) as f:
        log = json.load(f)["log_history"]
    lf = {"steps": max((e.get("step", 0) for e in log), default=0), "wall_seconds": lf_seconds,
          "last_loss": next((e["loss"] for e in reversed(log) if "loss" in e), None)}
result = {"device": device_name(), "runs": rows, "llamafactory_lora_sft": lf}
write_json_atomic(os.path.join(out, "gpu_check.json"), result)
lines = [f"GPU check on {result['device']}", "",
         "| run | method | samples/s | train s | trainable | measured peak MiB | estimate MiB | est/meas | test acc |",
         "|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['run']} | {r['method']} | {r['samples_per_second']:.1f} | {r['train_seconds']:.1f} | "
                 f"{r['trainable']:,} | {r['measured_peak_bytes'] / 2**20:,.0f} | {r['estimated_bytes'] / 2**20:,.0f} | "
                 f"{r['est_over_measured']:.2f} | {r['test_accuracy']:.4f} |")
lines += ["", f"LLaMA-Factory LoRA SFT (SmolLM2, SAMSum): {lf or 'no trainer_state.json'}"]
write_atomic(os.path.join(out, "gpu_check.md"), "\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "wrote $OUT/gpu_check.json and $OUT/gpu_check.md"

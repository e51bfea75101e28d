# Shared by run_sup.sh, run_peft.sh and labs/*.sh (source it, do not run it): one seeded run of
# train.py (or `ftlab baseline` for method "svm") and the report. Re-running a grid picks up where it stopped
# (`ftlab record state`): a run whose run.json is complete is skipped, one with a complete checkpoint resumes
# from it (--resume_from_checkpoint true), one with only a torn run.json / torn checkpoints starts again
# in its cleared folder (--overwrite_output_dir), the rest start.
#
# Expects from the script: ROOT (the repository), SEEDS, OUTPUT_ROOT, EPOCHS (empty: per method), BATCH_SIZE,
# MAX_LENGTH;
# optional arrays TRAIN_FLAGS / SVM_FLAGS with the script's own flags for every train.py /
# `ftlab baseline` run. Reads from the environment (all scripts):
EXTRA_ARGS="${EXTRA_ARGS:-}"     # more train.py flags, e.g. "--max_steps 4 --learning_rate 1e-4"
SVM_ARGS="${SVM_ARGS:-}"         # more `ftlab baseline` flags (method svm), e.g. "--pooling mean"
REPORT_ARGS="${REPORT_ARGS:-}"   # more `ftlab report` flags, e.g. "--metric macro_f1"
PYTHON="${PYTHON:-uv run}"       # how the Python scripts run (tests use the current interpreter)
LANES="${LANES:-1}"              # runs side by side, each on (cores / LANES) threads, its output in <run>.log
# GRID_NAME: the wandb group of the grid's runs (default: OUTPUT_ROOT's folder name).
# Per data set: TRAIN_ARGS_<set> / SVM_ARGS_<set> (the set's name with every character outside
# [A-Za-z0-9_] as _, e.g. TRAIN_ARGS_acl_sup) are added to every run of that set.
# *_ARGS are split on whitespace. Order on a command line: run flags, TRAIN_FLAGS|SVM_FLAGS,
# per-call flags (sweep settings, prompt), the set's flags, EXTRA_ARGS|SVM_ARGS: the last wins, so the
# environment overrides the script.

[[ -v TRAIN_FLAGS ]] || TRAIN_FLAGS=()
[[ -v SVM_FLAGS ]] || SVM_FLAGS=()
# EPOCHS empty: each method's own default (the registry in ftlab/methods/registry.py: the most epochs; validation picks one)
TRAIN_FLAGS=(
    ${EPOCHS:+--num_train_epochs "$EPOCHS"}
    --per_device_train_batch_size "$BATCH_SIZE"
    --max_length "$MAX_LENGTH"
    "${TRAIN_FLAGS[@]}"
)
SVM_FLAGS=(
    --max_length "$MAX_LENGTH"
    "${SVM_FLAGS[@]}"
)

if [[ ! "$LANES" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: LANES '$LANES' must be a positive number of runs side by side (e.g. LANES=2)" >&2
    exit 2
fi
# Two runs on one thread each train ~1.16x the samples a second of one run on both cores of a 2-core CPU
# (SmolLM2 LoRA, results/mrpc_prompts): small GEMMs scale less than linearly with threads.
LANE_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / LANES > 0 ? $(nproc) / LANES : 1 ))}"
LANE_FAILED=""  # LANES > 1: a file where each failed background run writes its folder
if (( LANES > 1 )); then
    LANE_FAILED="$(mktemp)"
    trap 'rm -f "$LANE_FAILED"' EXIT
fi

# Resolve OUTPUT_ROOT before the cd below, so a relative path means "from where you ran me".
OUTPUT_ROOT="$(realpath -m "$OUTPUT_ROOT")"
# The wandb group of every run of this grid (default: the output folder's name, e.g. sup_minilm).
GRID_NAME="${GRID_NAME:-$(basename "$OUTPUT_ROOT")}"
cd "$ROOT"

# facebook/bart-base -> bart-base; /tmp/x/bert/ -> bert
model_tag() {
    local m="${1%/}"
    echo "${m##*/}"
}

# run_one OUT_DIR METHOD MODEL DATASET SEED [more flags...]
run_one() {
    local out="$1" method="$2" model="$3" dataset="$4" seed="$5"
    shift 5
    local state resume=()
    # shellcheck disable=SC2086  # PYTHON is a command line ("uv run"), split on purpose
    state="$($PYTHON -m ftlab record state "$out")"
    case "$state" in
        finished) echo "skip (run.json complete): $out"; return 0 ;;
        resumable) resume=(--resume_from_checkpoint true) ;;
        partial) resume=(--overwrite_output_dir true) ;;
    esac
    local -a script=(train.py)
    local -a args=(
        --model_name_or_path "$model"
        --dataset_name "$dataset"
        --seed "$seed"
        --output_dir "$out"
    )
    local -a extra set_extra
    local set_var="${dataset//[^A-Za-z0-9_]/_}"
    if [[ "$method" == svm ]]; then
        script=(-m ftlab baseline)
        args+=("${SVM_FLAGS[@]}")
        set_var="SVM_ARGS_$set_var"
        read -r -a extra <<<"$SVM_ARGS"
    else  # baseline.py has no checkpoints and rewrites its folder: only train.py takes these
        args+=(--method "$method" "${resume[@]}" "${TRAIN_FLAGS[@]}")
        set_var="TRAIN_ARGS_$set_var"
        read -r -a extra <<<"$EXTRA_ARGS"
    fi
    read -r -a set_extra <<<"${!set_var:-}"
    # wandb (on unless WANDB_MODE=disabled or --report_to none; offline without a key): one group per
    # grid (GRID_NAME), the configuration as job type (the seeds `ftlab report` averages), the run's folder
    # as name: OUTPUT_ROOT/restaurant_sup/bert-base-uncased/lora/seed1 -> group <grid>, job type
    # restaurant_sup/bert-base-uncased/lora, name restaurant_sup/bert-base-uncased/lora/seed1
    local name="${out#"$OUTPUT_ROOT"/}"
    echo "run${resume:+ (${state}: ${resume[*]})}: ${script[*]} --method $method --model_name_or_path $model --dataset_name $dataset --seed $seed -> $out"
    # shellcheck disable=SC2086  # PYTHON is a command line ("uv run"), split on purpose
    WANDB_RUN_GROUP="${WANDB_RUN_GROUP:-$GRID_NAME}" WANDB_JOB_TYPE="${name%/seed*}" WANDB_NAME="$name" \
        $PYTHON "${script[@]}" "${args[@]}" "$@" "${set_extra[@]}" "${extra[@]}"
}

# start_run OUT_DIR METHOD MODEL DATASET SEED [more flags...]: run_one now (LANES 1), or in the background once
# fewer than LANES runs are going, on LANE_THREADS threads, its output in OUT_DIR.log
start_run() {
    if (( LANES == 1 )); then
        run_one "$@"
        return
    fi
    while (( $(jobs -rp | wc -l) >= LANES )); do wait -n || true; done
    local out="$1"
    mkdir -p "$(dirname "$out")"
    echo "start (lane of $LANES, $LANE_THREADS threads): $out (log: $out.log)"
    ( OMP_NUM_THREADS="$LANE_THREADS" run_one "$@" > "$out.log" 2>&1 || echo "$out" >> "$LANE_FAILED" ) &
}

# wait_runs: every background run has ended; exit 1 naming the failed ones (as a failed run ends LANES 1)
wait_runs() {
    wait
    if [[ -s "$LANE_FAILED" ]]; then
        echo "error: $(wc -l < "$LANE_FAILED") run(s) failed, see each one's log: $(sed 's/$/.log/' "$LANE_FAILED" | paste -sd ' ')" >&2
        exit 1
    fi
}

# run_seeds OUT_BASE METHOD MODEL DATASET [more flags...]: a run for every seed in SEEDS
run_seeds() {
    local base="$1" method="$2" model="$3" dataset="$4"
    shift 4
    local seed
    for seed in $SEEDS; do
        start_run "$base/seed$seed" "$method" "$model" "$dataset" "$seed" "$@"
    done
}

# run_grid DATASETS MODELS METHODS: run_seeds for every (data set, model, method) in the usual
# layout OUTPUT_ROOT/<dataset>/<model basename>/<method>/seed<seed> (the lists are whitespace-separated)
run_grid() {
    local dataset model method
    for dataset in $1; do
        for model in $2; do
            for method in $3; do
                run_seeds "$OUTPUT_ROOT/$dataset/$(model_tag "$model")/$method" "$method" "$model" "$dataset"
            done
        done
    done
}

# make_report [more `ftlab report` flags...]: tables and plots of everything under OUTPUT_ROOT
make_report() {
    wait_runs
    local -a extra
    read -r -a extra <<<"${REPORT_ARGS:-}"
    # shellcheck disable=SC2086
    $PYTHON -m ftlab report "$OUTPUT_ROOT" --out "$OUTPUT_ROOT/report" "$@" "${extra[@]}"
}

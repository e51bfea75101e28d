#!/usr/bin/env bash
# Copy the run.json files of grid output folders into one results folder (only run.json: no weights),
# keeping each run's relative path under a folder per source, so ftlab report can read them all:
#
#   labs/collect_records.sh results/acl_methods/run_records outputs/sup_minilm_v4 outputs/sup_minilm_v5
#
# Runs of one (set, method, settings) made under different protocols (e.g. with and without
# --class_weight) would be averaged together by ftlab report: collect only runs that belong together.
#   uv run ftlab report results/acl_methods/run_records --out results/acl_methods
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: labs/collect_records.sh DEST SOURCE [SOURCE ...]" >&2
    exit 2
fi
DEST="$1"
shift

for src in "$@"; do
    if [[ ! -d "$src" ]]; then
        echo "error: source folder $src does not exist" >&2
        exit 2
    fi
    name="$(basename "${src%/}")"
    count=0
    while IFS= read -r -d '' record; do
        rel="${record#"${src%/}"/}"
        mkdir -p "$DEST/$name/$(dirname "$rel")"
        cp "$record" "$DEST/$name/$rel"
        count=$((count + 1))
    done < <(find "$src" -name run.json -not -path "*/checkpoint-*" -print0)
    echo "$src: $count run.json -> $DEST/$name"
done

"""The LLaMA-Factory side's data: SAMSum and TAT-QA as alpaca records, in memory or as files.

    records("samsum", data_dir)             -> {"samsum_train": [...], "samsum_validation": [...], "samsum_test": [...]}
    records("tatqa", data_dir, max_samples=100)
    export_llamafactory("all", "lf_data")   -> alpaca JSON files + dataset_info.json entries

Each record is `{"instruction", "input", "output"}` (LLaMA-Factory's alpaca format, columns prompt /
query / response). The raw files are found as the classification sets' are (ftlab/data/readers.py: data
dir, else $DATA_DIR, else ./data; SAMSum falls back to its Hub copy), with the same one-line errors.
ftlab/llm/inference.py and ftlab/analysis/batch_bench.py read `records()` directly; `uv run dataHelper.py export` writes the files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from ftlab.data.readers import HubCopy, Release, default_data_dir, locate_source, read_json, read_table, required_field
from ftlab.io import write_json_atomic
from ftlab.metrics.tatqa import tatqa_answer  # the answer text the metric parses back

# Imported inside functions: `datasets.load_dataset` loads only for SAMSum's Hub copy.

SAMSUM_INSTRUCTION = "Summarize the following dialogue."
TATQA_INSTRUCTION = ("Answer the question about the financial report below, using its table and paragraphs. "
                     "Give only the answer: separate several answers with commas, and add the scale "
                     "(thousand, million, billion or %) when the figure has one.")


def _read_samsum(folder: str) -> Dict[str, List[dict]]:
    out = {}
    for split in ("train", "validation", "test"):
        path = os.path.join(folder, f"{split}.csv")
        out[split] = [{"dialogue": r["dialogue"], "summary": r["summary"]}
                      for _, r in read_table(path, ("id", "dialogue", "summary"))]
    return out


def _samsum_hub() -> Dict[str, List[dict]]:
    from datasets import load_dataset

    dd = load_dataset("knkarthick/samsum")
    return {s: [{"dialogue": d or "", "summary": m or ""} for d, m in zip(dd[s]["dialogue"], dd[s]["summary"])]
            for s in ("train", "validation", "test")}


def _samsum_entries(splits: Dict[str, List[dict]]) -> Dict[str, List[dict]]:
    return {f"samsum_{s}": [{"instruction": SAMSUM_INSTRUCTION, "input": r["dialogue"].replace("\r\n", "\n"),
                             "output": r["summary"]} for r in recs]
            for s, recs in splits.items()}


def _read_tatqa(folder: str) -> Dict[str, Any]:
    return {"train": (os.path.join(folder, "tatqa_dataset_dev.json"),
                      read_json(os.path.join(folder, "tatqa_dataset_dev.json"))),
            "test": (os.path.join(folder, "tatqa_dataset_test_gold.json"),
                     read_json(os.path.join(folder, "tatqa_dataset_test_gold.json")))}


def tatqa_input(context: dict, question: str) -> str:
    """Table rows as ' | '-joined cells, then the paragraphs in order, then the question."""
    rows = context["table"]["table"]
    table = "\n".join(" | ".join(str(c).strip() for c in row) for row in rows)
    paragraphs = "\n".join(p["text"] for p in sorted(context["paragraphs"], key=lambda p: p.get("order", 0)))
    return f"Table:\n{table}\n\nParagraphs:\n{paragraphs}\n\nQuestion: {question}"


def _tatqa_entries(splits: Dict[str, Any]) -> Dict[str, List[dict]]:
    out = {}
    for split, (path, contexts) in splits.items():
        if not isinstance(contexts, list):
            raise ValueError(f"{path}: expected a JSON list of {{table, paragraphs, questions}}")
        records = []
        for i, ctx in enumerate(contexts):
            where = f"{path} context {i}"
            for q in sorted(required_field(ctx, "questions", where), key=lambda q: q.get("order", 0)):
                qwhere = f"{where} question {q.get('uid', '?')}"
                records.append({"instruction": TATQA_INSTRUCTION,
                                "input": tatqa_input(ctx, required_field(q, "question", qwhere)),
                                "output": tatqa_answer(required_field(q, "answer", qwhere), q.get("scale", ""))})
        out[f"tatqa_{split}"] = records
    return out


@dataclass(frozen=True)
class ExportSpec:
    release: Release
    entries: Callable[[Any], Dict[str, List[dict]]]   # raw splits -> entry name -> alpaca records


EXPORTS: Dict[str, ExportSpec] = {
    "samsum": ExportSpec(Release("samsum", ("train.csv", "validation.csv", "test.csv"), _read_samsum,
                                 "the SAMSum CSVs of knkarthick/samsum (id, dialogue, summary)",
                                 HubCopy("knkarthick/samsum", loader=_samsum_hub)), _samsum_entries),
    "tatqa": ExportSpec(Release("tatqa", ("tatqa_dataset_dev.json", "tatqa_dataset_test_gold.json"), _read_tatqa,
                                "TAT-QA from https://github.com/NExTplusplus/TAT-QA (dataset_raw/)"), _tatqa_entries),
}


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _names(name: str) -> List[str]:
    names = sorted(EXPORTS) if name == "all" else [name]
    unknown = [n for n in names if n not in EXPORTS]
    if unknown:
        raise ValueError(f"unknown export {name!r}; valid: {', '.join(sorted(EXPORTS))}, all")
    return names


def records(name: str, data_dir: Optional[str] = None, max_samples: Optional[int] = None) -> Dict[str, List[dict]]:
    """Entry name (`samsum_test`, `tatqa_train` ...) -> alpaca records; `name` is samsum, tatqa or all.
    `max_samples` keeps the first N records of each entry."""
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples={max_samples}: give a positive number (or leave it out for all rows)")
    entries: Dict[str, List[dict]] = {}
    for n in _names(name):
        spec = EXPORTS[n]
        _, reader = locate_source(n, spec.release, default_data_dir(data_dir))
        entries.update(spec.entries(reader()))
    return {entry: recs[:max_samples] for entry, recs in entries.items()}


def export_llamafactory(name: str, out_dir: str = "lf_data", data_dir: Optional[str] = None,
                        max_samples: Optional[int] = None) -> List[str]:
    """Write alpaca JSON files `out_dir/<entry>.json` and merge their entries into
    `out_dir/dataset_info.json`; `name` is samsum, tatqa or all. Returns the entry names written."""
    _names(name)
    data_dir = default_data_dir(data_dir)
    if _inside(out_dir, data_dir):
        raise ValueError(f"--out {out_dir!r} is inside the data directory {data_dir!r}, which is read-only; "
                         "choose another folder (default lf_data)")
    entries = records(name, data_dir, max_samples)  # read everything before writing anything
    os.makedirs(out_dir, exist_ok=True)
    info_path = os.path.join(out_dir, "dataset_info.json")
    info = read_json(info_path) if os.path.isfile(info_path) else {}
    if not isinstance(info, dict):
        raise ValueError(f"{info_path}: expected a JSON object of dataset entries")
    for entry, recs in entries.items():
        write_json_atomic(os.path.join(out_dir, f"{entry}.json"), recs, indent=1)
        info[entry] = {"file_name": f"{entry}.json", "formatting": "alpaca",
                       "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    write_json_atomic(info_path, info, indent=1)
    return list(entries)

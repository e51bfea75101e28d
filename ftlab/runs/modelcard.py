"""Model cards: README.md with the Hugging Face model-card metadata block, for a run or a merged export.

    uv run ftlab modelcard RUN_DIR [RUN_DIR ...]           # (re)write RUN_DIR/README.md from its run.json
    write_model_card(folder, record)                    # train.py, after run.json
    write_model_card(folder, record, export=info)       # `ftlab predict` --merge_to

The card says what the weights are: base model, data set, labels and split sizes, method and its
settings, hyper-parameters, validation/test metrics, trainable parameters, training time and
machine, library versions, how to use it, and limitations read from the run (majority-class
predictions, weak minority classes, truncation, small training sets). The YAML block (base_model,
datasets, library_name, pipeline_tag, tags, model-index with the metrics) is what the Hub reads;
`huggingface_hub.ModelCard.load(folder + "/README.md")` parses it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

from ftlab import commandline
from ftlab.data.datasets import DATASETS, RELEASES, data_kind, dataset_label_names, sep_token_for
from ftlab.commandline import one_line_errors
from ftlab.io import read_jsonl, split_list, write_atomic
from ftlab.runs.record import read_record

# Imported inside functions: huggingface_hub's card classes and a tokenizer load only while a card is written.

CARD_FILE = "README.md"
HUB_IDS = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
METRIC_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "micro_f1": "micro-F1", "weight_f1": "weighted F1",
                "loss": "loss"}
MAJORITY_SHARE = 0.95  # one label in this share of the test predictions: majority-class behaviour
SMALL_TRAIN = 1000
HYPER_PARAMETERS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                    "gradient_accumulation_steps", "warmup_ratio", "weight_decay", "lr_scheduler_type", "optim",
                    "max_length", "seed", "bf16", "metric_for_best_model", "load_best_model_at_end")


# ---------------------------------------------------------------- facts from the run

def base_model_id(model: str) -> Optional[str]:
    """The Hub id of the base model: embedded names map to theirs, Hub ids pass, local folders give None."""
    if model in HUB_IDS:
        return HUB_IDS[model]
    if not model or os.path.exists(model) or model.startswith((".", "/", "~")) or model.count("/") > 1:
        return None
    return model


def dataset_hub_ids(dataset: str) -> List[str]:
    """Hub copies of the run's data sets (dataHelper's releases), where every set has one."""
    ids = []
    for name in split_list(dataset):
        spec = DATASETS.get(name)
        release = RELEASES.get(spec.release) if spec else None
        if release is None or release.hub is None:
            return []
        ids.append(release.hub.repo)
    return sorted(set(ids))


def read_predictions(run_dir: Optional[str]) -> List[dict]:
    path = os.path.join(run_dir or "", "predictions_test.jsonl")
    if not run_dir or not os.path.isfile(path):
        return []
    return [row for _, row in read_jsonl(path)]


def split_sizes(record: dict, predictions: Sequence[dict]) -> Dict[str, int]:
    """run.json data.split_sizes, else train from data.train_samples and test from the predictions file."""
    data = record.get("data") or {}
    if data.get("split_sizes"):
        return dict(data["split_sizes"])
    sizes = {"train": data["train_samples"]} if "train_samples" in data else {}
    if predictions:
        sizes["test"] = len(predictions)
    return sizes


def label_names_in(folder: str, record: dict) -> List[str]:
    """run.json data.label_names, else config.json's id2label, else the data set's ([] if unknown)."""
    data = record.get("data") or {}
    if data.get("label_names"):
        return list(data["label_names"])
    try:
        with open(os.path.join(folder, "config.json")) as f:
            id2label = json.load(f).get("id2label") or {}
        return [id2label[str(i)] for i in range(len(id2label))]
    except (OSError, ValueError, KeyError):
        return dataset_label_names(record)


def limitations(record: dict, predictions: Sequence[dict], export: Optional[dict]) -> List[str]:
    """What a user of these weights should know, read from the run's numbers and predictions."""
    notes = majority_notes(predictions)
    test = (record.get("metrics") or {}).get("test") or {}
    if test.get("accuracy") and test.get("macro_f1", 1.0) < 0.6 * test["accuracy"]:
        notes.append(f"Macro-F1 ({test['macro_f1']:.3f}) is far below accuracy ({test['accuracy']:.3f}): the "
                     "rarer classes are mostly missed.")
    data = record.get("data") or {}
    if data.get("train_samples", SMALL_TRAIN) < SMALL_TRAIN:
        notes.append(f"Trained on only {data['train_samples']} examples: expect high variance across seeds.")
    notes.append(f"Inputs longer than {data.get('max_length', 128)} tokens are truncated (the rest is not read).")
    notes.append(f"Trained on {record.get('dataset')} only (English); other domains or languages were not "
                 "evaluated.")
    if export and export.get("loader") == "adapters":
        notes.append("Not a plain model: the bottleneck adapter cannot be merged into the base weights; plain "
                     "`transformers` loads it without the adapter (wrong predictions). Use the adapters library.")
    return notes


def majority_notes(predictions: Sequence[dict]) -> List[str]:
    if not predictions:
        return []
    label, count = Counter(p["prediction"] for p in predictions).most_common(1)[0]
    if count < MAJORITY_SHARE * len(predictions):
        return []
    gold_share = sum(p.get("label") == label for p in predictions) / len(predictions)
    return [f"Majority-class behaviour: it predicts '{label}' for {count} of {len(predictions)} test texts; "
            f"'{label}' is {gold_share:.1%} of the test labels, so accuracy says little here."]


# ---------------------------------------------------------------- the card

def card_metadata(record: dict, title: str, export: Optional[dict]) -> str:
    """The YAML block (without the --- lines) through huggingface_hub's ModelCardData."""
    from huggingface_hub import EvalResult, ModelCardData

    method = record.get("method", "")
    if export:
        library = "adapter-transformers" if export.get("loader") == "adapters" else "transformers"
    else:
        library = {"lora": "peft", "qlora": "peft", "adapter": "adapter-transformers"}.get(method, "transformers")
    results = [EvalResult(task_type="text-classification", dataset_type=record.get("dataset", ""),
                          dataset_name=record.get("dataset", ""), dataset_split=split, metric_type=metric_type,
                          metric_value=round(float(values[key]), 6), metric_name=f"{split} {METRIC_NAMES[key]}",
                          metric_args={"average": "macro"} if key == "macro_f1" else None)
               for split, values in (record.get("metrics") or {}).items()
               for key, metric_type in (("accuracy", "accuracy"), ("macro_f1", "f1")) if key in values]
    tags = ["ftlab", "text-classification", method] + (["merged"] if export and library == "transformers" else [])
    data = ModelCardData(base_model=base_model_id(record.get("model", "")), library_name=library,
                         datasets=dataset_hub_ids(record.get("dataset", "")) or None, language="en",
                         pipeline_tag="text-classification", tags=tags, metrics=["accuracy", "f1"],
                         model_name=title, eval_results=results or None)
    return data.to_yaml()


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def usage_section(record: dict, folder: str, export: Optional[dict], sep: str) -> List[str]:
    lines = ["## Use", ""]
    if export is None:
        lines += ["```bash", f'uv run ftlab predict {folder} "a text to classify"', f"uv run ftlab predict {folder} "
                  "--merge_to exported/   # a plain Hugging Face model", "```"]
    elif export.get("loader") == "adapters":
        lines += ["```python", "import adapters", "from transformers import AutoModelForSequenceClassification, "
                  "AutoTokenizer, pipeline", "", f"FOLDER = {folder!r}",
                  "model = AutoModelForSequenceClassification.from_pretrained(FOLDER)  # warns: adapter weights unused",
                  "adapters.init(model)  # re-creates the adapter modules named in config.json",
                  'model.load_adapter(f"{FOLDER}/adapter", use_safetensors=True)',
                  "model.set_active_adapters(list(model.adapters_config.adapters)[0])",
                  'classify = pipeline("text-classification", model=model,',
                  '                    tokenizer=AutoTokenizer.from_pretrained(FOLDER))',
                  'classify(["a text to classify", "another one"], truncation=True)  # at the trained max_length',
                  "```"]
    else:
        lines += ["```python", "from transformers import pipeline", "",
                  f'classify = pipeline("text-classification", model={folder!r})',
                  'classify(["a text to classify", "another one"], truncation=True)  # at the trained max_length',
                  "```"]
    return lines + ["", input_format(record, sep), ""]


def separator_of(folder: str, record: dict) -> str:
    """The run's separator: run.json sep_token, else the saved tokenizer's (sep_token_for)."""
    config = record.get("config") or {}
    if config.get("sep_token"):
        return config["sep_token"]
    try:
        from transformers import AutoTokenizer

        # never the folder's own tokenizer code (auto_map): a run folder is data someone may hand you
        return sep_token_for(AutoTokenizer.from_pretrained(folder, trust_remote_code=False), None)
    except (OSError, ValueError):
        return "the tokenizer's sep token (else its eos token)"


def input_format(record: dict, sep: str) -> str:
    config = record.get("config") or {}
    kind = data_kind(record.get("dataset") or "")
    if kind == "absa":
        return f"Input format: `TERM {sep} SENTENCE` (the aspect term, the separator, then the sentence)."
    if kind == "pair":
        prompt = config.get("prompt") or "{sentence1} {sep} {sentence2}"
        return f"Input format: the sentence pair through the prompt `{prompt}` with sep = `{sep}`."
    return "Input format: the text as is."


def data_section(record: dict, labels: List[str], sizes: Dict[str, int]) -> List[str]:
    data = record.get("data") or {}
    size_text = ", ".join(f"{split} {n:,}" for split, n in sizes.items()) or "not recorded"
    lines = ["## Data", "", f"- data set: `{record.get('dataset')}` (ftlab dataHelper)", f"- split sizes: {size_text}",
             f"- labels ({data.get('num_labels', len(labels))}): {', '.join(labels) if labels else 'not recorded'}",
             f"- max_length: {data.get('max_length', 'n/a')} tokens; mean training example "
             f"{data.get('mean_tokens', 0):.1f} tokens", ""]
    return lines


def method_section(record: dict, export: Optional[dict]) -> List[str]:
    params = record.get("params") or {}
    settings = record.get("settings") or {}
    lines = ["## Method", "", f"- method: `{record.get('method')}`" +
             (" (" + ", ".join(f"{k} {v}" for k, v in settings.items()) + ")" if settings else ""),
             f"- trainable parameters: {params.get('trainable', 0):,} of {params.get('total', 0):,} "
             f"({params.get('trainable_pct', 0):.3g}%)"]
    if export:
        lines += [f"- export: {export.get('how')}", f"- source run: `{export.get('source_run')}`"]
        check = export.get("check") or {}
        if check:
            lines.append(f"- check: reloaded from disk, max |logit difference| vs the run "
                         f"{check['max_abs_logit_diff']:.2e} on {check['texts']} test texts")
    config = record.get("config") or {}
    rows = [(k, config[k]) for k in HYPER_PARAMETERS if k in config and config[k] not in (None, -1)]
    return lines + ["", "### Hyper-parameters", ""] + _table(("name", "value"), rows) + [""]


def results_section(record: dict) -> List[str]:
    metrics = record.get("metrics") or {}
    keys = [k for k in METRIC_NAMES if any(k in m for m in metrics.values())]
    rows = [[split] + [_fmt(values.get(k, "")) for k in keys] for split, values in metrics.items()]
    return ["## Results", ""] + _table(["split"] + [METRIC_NAMES[k] for k in keys], rows) + [""]


def training_section(record: dict) -> List[str]:
    time_, memory = record.get("time") or {}, record.get("memory") or {}
    training, config = record.get("training") or {}, record.get("config") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items())
    return ["## Training", "",
            f"- time: {time_.get('train_seconds', 0):.1f} s training ({training.get('steps', '?')} steps, "
            f"{training.get('epochs', 0):.2f} epochs), {time_.get('samples_per_second', 0):.1f} samples/s",
            f"- machine: {record.get('device', '?')}, {record.get('world_size', 1)} process(es), "
            f"{'bf16 autocast' if config.get('bf16') else 'fp32'}",
            f"- peak memory: {memory.get('peak_bytes', 0) / 2 ** 20:,.0f} MiB ({memory.get('how', '?')})",
            f"- finished: {record.get('finished_at', '?')}", f"- versions: {versions}", ""]


def card_title(record: dict) -> str:
    """model-dataset-method, as the wandb group names a run."""
    model = os.path.basename(os.path.normpath(record.get("model") or "model"))
    return f"{model}-{(record.get('dataset') or 'data').replace(',', '+')}-{record.get('method')}"


def render_card(folder: str, record: dict, export: Optional[dict] = None,
                label_names: Optional[List[str]] = None, name: Optional[str] = None) -> str:
    """The whole README.md text of a run folder or (with `export`) a merged export; `name`: where the
    folder will live (an export is written in a temporary folder first)."""
    source = export.get("source_run") if export else folder
    predictions = read_predictions(source)
    labels = label_names or label_names_in(source or folder, record)
    name = name or folder
    title = os.path.basename(os.path.normpath(name)) if export else card_title(record)
    kind = "merged export" if export and export.get("loader") == "transformers" else \
        "export" if export else "run"
    intro = (f"`{record.get('method')}` fine-tune of `{record.get('model')}` on `{record.get('dataset')}`, "
             f"made with ftlab's train.py ({kind}).")
    sep = (export or {}).get("sep") or separator_of(folder, record)
    body = [f"# {title}", "", intro, ""] + usage_section(record, name, export, sep)
    body += data_section(record, labels, split_sizes(record, predictions)) + method_section(record, export)
    body += results_section(record) + training_section(record)
    body += ["## Limitations", ""] + [f"- {note}" for note in limitations(record, predictions, export)]
    return f"---\n{card_metadata(record, title, export)}\n---\n\n" + "\n".join(body) + "\n"


def write_model_card(folder: str, record: dict, export: Optional[dict] = None,
                     label_names: Optional[List[str]] = None, name: Optional[str] = None) -> str:
    """Write folder/README.md atomically; returns its path."""
    path = os.path.join(folder, CARD_FILE)
    write_atomic(path, render_card(folder, record, export, label_names, name))
    return path


@one_line_errors()
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="(Re)write RUN_DIR/README.md, the model card, from its run.json.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run folder written by train.py")
    for folder in commandline.one_line(parser).parse_args(argv).run_dirs:
        print(write_model_card(folder, read_record(folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

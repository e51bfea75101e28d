"""Ask a trained run about new texts, or export it as a plain Hugging Face model.

    uv run ftlab predict RUN_DIR "Shares rose 5% after the results."          # label and probability per text
    uv run ftlab predict RUN_DIR --file test.csv --out predictions.jsonl       # a file (.csv .tsv .jsonl .txt)
    uv run ftlab predict RUN_DIR --merge_to exports/bbc-lora                   # plain HF model + tokenizer + card

RUN_DIR is a folder written by train.py (run.json + the saved model), of any method: full, head,
lora (peft adapter + the base model named in run.json), lora_scratch, adapter, qlora (CUDA only).
The tokenizer, label names, max_length, eval batch size and bf16 come from the run.

Text format (`--text_format auto`, the default) follows the run's data set:
- plain sets (bbc_news, rotten_tomatoes, imdb, acl_sup, agnews_sup ...): the text as is;
- ABSA sets (restaurant_*, laptop_*): "TERM<TAB>SENTENCE", or the sentence with `--term TERM`; it
  becomes "TERM SEP SENTENCE" with the run's separator (run.json sep_token, else the tokenizer's sep
  token, else eos), as dataHelper builds it; a file with `term` and `sentence` columns is read as such;
- MRPC: "SENTENCE1<TAB>SENTENCE2" (or `sentence1`/`sentence2` columns), put through the run's prompt.
`--part_separator` replaces the TAB (e.g. ' || ' on a command line). A text that already holds the
separator (the `text` column of dataHelper's splits) passes as is; `--text_format raw` passes every
text as is; aggregated sets of different kinds are read as plain.

Files: .csv, .tsv, .jsonl (one object per line) or .txt (one text per line); `--text_column` names
the text column (default `text`). A `label` column (names or ids) adds accuracy and macro-F1 on stderr.
Output: `--out X.jsonl` or `X.csv` (index, text, prediction, probability[, label]); without --out
one line per text on stdout: "label<TAB>probability<TAB>text". Timing goes to stderr.

`--merge_to DIR` writes a model that `AutoModelForSequenceClassification.from_pretrained(DIR)` and
`pipeline("text-classification", model=DIR)` load without ftlab: full/head as saved; lora (peft
`merge_and_unload`) and lora_scratch (B A alpha/r added to W) merged into the base; qlora merged
into an unquantized bf16 base. Bottleneck adapters (method adapter) cannot be merged: they add
up(relu(down(h))) inside each layer, a nonlinear function, not a weight change, and the adapters
library merges only LoRA and (IA)^3 adapters; DIR then holds the model with its adapter, loaded with
the `adapters` library (3 lines, in DIR/README.md). Every export is reloaded from disk and its
logits compared with the run's on a few test texts (printed); DIR/README.md is its model card.
Bad input (no such folder, not a run folder, unknown column, empty file) is one `error:` line, exit 2.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, HfArgumentParser

from ftlab.data.datasets import MRPC_PROMPT, data_kind, dataset_label_names, sep_token_for
from ftlab.io import read_jsonl, write_atomic
from ftlab.methods import registry as methods
from ftlab.methods.registry import MethodArguments
from ftlab.metrics.classification import classification_scores
from ftlab.models.build import bf16_supported, get_model
from ftlab.models.checkpoints import load_tokenizer
from ftlab.runs import modelcard
from ftlab.runs.record import read_record

# Imported inside functions: safetensors, adapters, peft and tqdm load only for the run folders / options that need them.

logger = logging.getLogger("ftlab.predict")

PROGRESS_MIN_TEXTS = 500  # a progress bar from this many texts on
CHECK_TEXTS = 16  # test texts the merged export is compared on
MERGE_TOLERANCE = 1e-4
LOADERS_NEEDING_CUDA = ("qlora",)
CANNED_TEXTS = ["This is a short test sentence.", "Another, rather different example text about sports."]


@dataclass
class PredictArguments:
    file: Optional[str] = field(default=None, metadata={
        "help": "Texts from a file: .csv, .tsv, .jsonl (objects) or .txt (one text per line)."})
    text_column: Optional[str] = field(default=None, metadata={
        "help": "Column with the text (default: text; ABSA term+sentence and MRPC sentence1+sentence2 "
                "columns are used when present)."})
    out: Optional[str] = field(default=None, metadata={
        "help": "Write the predictions of --file to this .jsonl or .csv (default: stdout lines)."})
    batch_size: Optional[int] = field(default=None, metadata={
        "help": "Texts per forward pass (default: the run's per_device_eval_batch_size)."})
    text_format: str = field(default="auto", metadata={
        "help": "auto (the run's data set format, see the module help) or raw (every text as is)."})
    term: Optional[str] = field(default=None, metadata={
        "help": "ABSA runs: the aspect term of every given text (then the text is the sentence)."})
    part_separator: str = field(default="\t", metadata={
        "help": "What splits TERM from SENTENCE (ABSA) or SENTENCE1 from SENTENCE2 (MRPC) in a text."})
    bf16: Optional[bool] = field(default=None, metadata={
        "help": "bf16 autocast; default: as the run trained, where this machine supports it."})
    device: Optional[str] = field(default=None, metadata={
        "help": "cpu, cuda, cuda:1 ... (default: cuda if available)."})
    merge_to: Optional[str] = field(default=None, metadata={
        "help": "Export a plain Hugging Face model (LoRA merged) + tokenizer + model card to this folder."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing --merge_to folder."})


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[str, List[str], PredictArguments]:
    parser = HfArgumentParser(PredictArguments, description="Predict with a train.py run, or export it.")
    parser.add_argument("run_dir", help="A run folder written by train.py (holds run.json).")
    parser.add_argument("texts", nargs="*", help="Texts to classify (see the module help for ABSA/MRPC).")
    args, extra = parser.parse_args_into_dataclasses(
        args=list(sys.argv[1:] if argv is None else argv), look_for_args_file=False)
    if args.text_format not in ("auto", "raw"):
        raise ValueError(f"--text_format must be auto or raw, not {args.text_format!r}")
    if not (extra.texts or args.file or args.merge_to):
        raise ValueError("nothing to do: give TEXT ..., --file F or --merge_to DIR")
    if extra.texts and args.file:
        raise ValueError("give texts or --file, not both")
    return extra.run_dir, list(extra.texts), args


# ---------------------------------------------------------------- the text format of a run

@dataclass
class TextFormat:
    """How a user's text becomes the model's input: kind plain | absa | pair, the separator, the prompt."""

    kind: str
    sep: str
    prompt: str = ""
    part_separator: str = "\t"
    raw: bool = False

    def join(self, first: str, second: str) -> str:
        first, second = first.strip(), second.strip()
        if self.kind == "absa":
            return f"{first} {self.sep} {second}"  # dataHelper._build_absa
        return self.prompt.format(sentence1=first, sentence2=second, sep=self.sep)

    def format(self, text: str, term: Optional[str] = None) -> str:
        if self.raw or self.kind == "plain":
            return text
        if self.kind == "absa" and term is not None:
            return self.join(term, text)
        if self.part_separator in text:
            first, second = text.split(self.part_separator, 1)
            return self.join(first, second)
        if self.sep in text:
            return text  # already in the training format
        shape = "TERM<sep>SENTENCE (or --term TERM)" if self.kind == "absa" else "SENTENCE1<sep>SENTENCE2"
        raise ValueError(f"this run was trained on {self.kind.upper()} texts: give {shape} with <sep> = "
                         f"{self.part_separator!r} (--part_separator), got {text[:60]!r}")


def text_format_of(record: dict, tokenizer, args: PredictArguments) -> TextFormat:
    config = record.get("config") or {}
    sep = sep_token_for(tokenizer, config.get("sep_token"))
    return TextFormat(data_kind(record.get("dataset") or config.get("dataset_name") or ""), sep,
                      config.get("prompt") or MRPC_PROMPT, args.part_separator, args.text_format == "raw")


# ---------------------------------------------------------------- loading a run

@dataclass
class LoadedRun:
    run_dir: str
    record: dict
    model: Any
    tokenizer: Any
    label_names: List[str]
    text_format: TextFormat
    device: torch.device
    bf16: bool
    max_length: int
    batch_size: int


def read_run(run_dir: str) -> dict:
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"no such folder: {run_dir}")
    record = read_record(run_dir)
    if record.get("method") not in MODEL_LOADERS:
        raise ValueError(f"{run_dir}: method {record.get('method')!r} keeps no model `ftlab predict` can load "
                         f"(it loads {', '.join(MODEL_LOADERS)} runs)")
    return record


def label_names_of(run_dir: str, record: dict) -> List[str]:
    """run.json data.label_names, else the run's config.json id2label, else the data set's names."""
    data = record.get("data") or {}
    if data.get("label_names"):
        return list(data["label_names"])
    config_file = os.path.join(run_dir, "config.json")
    if os.path.isfile(config_file):
        id2label = AutoConfig.from_pretrained(run_dir).id2label
        return [id2label[i] for i in range(len(id2label))]
    names = dataset_label_names(record)
    if not names:
        logger.warning("label names unknown (run.json has none, the data set cannot be loaded): LABEL_i")
    return names or [f"LABEL_{i}" for i in range(int(data.get("num_labels") or 2))]


def base_model_name(record: dict) -> str:
    """The model the run started from: its resolved folder when it still exists here, else its name."""
    path = record.get("model_path")
    return path if path and os.path.isdir(path) else record["model"]


def _model_args(record: dict):
    config = record.get("config") or {}
    return MethodArguments(**{f.name: config[f.name] for f in fields(MethodArguments) if f.name in config})


def _weights(run_dir: str) -> Dict[str, torch.Tensor]:
    """The saved state dict of a run folder (model.safetensors or its sharded index)."""
    from safetensors.torch import load_file

    single, index = os.path.join(run_dir, "model.safetensors"), os.path.join(run_dir, "model.safetensors.index.json")
    if os.path.isfile(single):
        return load_file(single)
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(os.path.join(run_dir, shard)).items()}
    raise ValueError(f"{run_dir}: no model weights (model.safetensors): was the run's model deleted?")


def load_weights(model, run_dir: str) -> None:
    """Load the run's weights into a rebuilt model; only tied aliases (one tensor, two names) may be absent."""
    state = _weights(run_dir)
    result = model.load_state_dict(state, strict=False)
    tensor_of = dict(model.named_parameters(remove_duplicate=False))
    loaded_ids = {id(tensor_of[k]) for k in state if k in tensor_of}
    missing = [k for k in result.missing_keys if k not in tensor_of or id(tensor_of[k]) not in loaded_ids]
    if missing or result.unexpected_keys:
        raise ValueError(f"{run_dir}: saved weights do not fit the rebuilt {type(model).__name__} "
                         f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")


def _empty_model(run_dir: str, record: dict):
    from transformers.modeling_utils import no_init_weights

    trust = bool((record.get("config") or {}).get("trust_remote_code"))
    config = AutoConfig.from_pretrained(run_dir, trust_remote_code=trust)
    with no_init_weights():  # every weight comes from the run folder
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=trust)


def load_plain(run_dir: str, record: dict, label_names: List[str]):
    """full, head: the run folder is a plain Hugging Face model."""
    trust = bool((record.get("config") or {}).get("trust_remote_code"))
    return AutoModelForSequenceClassification.from_pretrained(run_dir, trust_remote_code=trust)


def load_lora_scratch(run_dir: str, record: dict, label_names: List[str]):
    """The saved model with our LoRALinear layers put back where train.py put them."""
    model = methods.apply_lora_scratch(_empty_model(run_dir, record), _model_args(record))
    load_weights(model, run_dir)
    return model


def load_adapter(run_dir: str, record: dict, label_names: List[str]):
    """adapters.init re-creates the adapter modules named in config.json; the weights then load."""
    import adapters

    model = _empty_model(run_dir, record)
    adapters.init(model)
    load_weights(model, run_dir)
    model.set_active_adapters(list(model.adapters_config.adapters)[0])
    return model


def load_peft(run_dir: str, record: dict, label_names: List[str], quantized: bool = True,
              dtype: Optional[torch.dtype] = None):
    """The base model (run.json's model, built as train.py builds it) + the saved peft LoRA adapter."""
    from peft import PeftModel

    config = record.get("config") or {}
    load_kwargs = methods.qlora_load_kwargs(_model_args(record)) if record["method"] == "qlora" and quantized else {}
    if dtype is not None:
        load_kwargs["torch_dtype"] = dtype
    _, base = get_model(base_model_name(record), len(label_names), label_names, load_kwargs,
                        bool(config.get("trust_remote_code")))
    base.config.problem_type = "single_label_classification"
    return PeftModel.from_pretrained(base, run_dir)


MODEL_LOADERS = {"full": load_plain, "head": load_plain, "lora": load_peft, "qlora": load_peft,
                 "lora_scratch": load_lora_scratch, "adapter": load_adapter}


def pick_device(args: PredictArguments, method: str) -> torch.device:
    if method in LOADERS_NEEDING_CUDA and not torch.cuda.is_available():
        raise ValueError(f"method {method!r} runs on CUDA only (4-bit bitsandbytes base); no GPU here")
    return torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def use_bf16(args: PredictArguments, record: dict, device: torch.device) -> bool:
    """bf16 autocast as the run trained (run.json config.bf16) where this device supports it."""
    if args.bf16 is not None:
        return args.bf16
    trained = bool((record.get("config") or {}).get("bf16"))
    return trained and bf16_supported(device.type)


def load_run(run_dir: str, args: Optional[PredictArguments] = None) -> LoadedRun:
    """Everything needed to classify texts with a run folder: model (eval mode), tokenizer, format."""
    args = args or PredictArguments()
    record = read_run(run_dir)
    config = record.get("config") or {}
    device = pick_device(args, record["method"])
    label_names = label_names_of(run_dir, record)
    tokenizer = load_tokenizer(run_dir, bool(config.get("trust_remote_code")))
    model = MODEL_LOADERS[record["method"]](run_dir, record, label_names)
    if record["method"] not in LOADERS_NEEDING_CUDA:
        model.to(device)
    model.eval()
    return LoadedRun(run_dir, record, model, tokenizer, label_names, text_format_of(record, tokenizer, args),
                     device, use_bf16(args, record, device), int(config.get("max_length") or 128),
                     int(args.batch_size or config.get("per_device_eval_batch_size") or 64))


# ---------------------------------------------------------------- predicting

def predict_logits(run: LoadedRun, texts: Sequence[str], batch_size: Optional[int] = None,
                   bf16: Optional[bool] = None, progress: bool = False) -> np.ndarray:
    """(N, num_labels) float32 logits of model-ready texts, in order, batch by batch (dynamic padding,
    truncation at the run's max_length: what train.py's evaluation does)."""
    from tqdm.auto import tqdm

    batch_size = batch_size or run.batch_size
    autocast = run.bf16 if bf16 is None else bf16
    out = []
    bar = tqdm(total=len(texts), unit="text", disable=not progress, file=sys.stderr)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start:start + batch_size])
        encoded = run.tokenizer(chunk, truncation=True, max_length=run.max_length)
        batch = run.tokenizer.pad(encoded, return_tensors="pt").to(run.device)
        with torch.no_grad(), torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = run.model(**batch).logits
        out.append(logits.float().cpu().numpy())
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(out) if out else np.zeros((0, len(run.label_names)), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@dataclass
class Item:
    text: str  # as given (a file's text column, or its two columns joined by the part separator)
    model_input: str
    gold: Optional[str] = None


def items_from_texts(run: LoadedRun, texts: Sequence[str], term: Optional[str]) -> List[Item]:
    return [Item(t, run.text_format.format(t, term)) for t in texts]


def read_rows(path: str) -> List[dict]:
    """Rows of a .csv/.tsv (header), .jsonl (objects) or .txt (one text per line) file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".json"):
        rows = [row for _, row in read_jsonl(path)]
    else:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if ext in (".csv", ".tsv"):
                rows = list(csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ","))
            else:
                rows = [{"text": line.rstrip("\r\n")} for line in f if line.strip()]
    if not rows:
        raise ValueError(f"{path}: empty file (no texts)")
    return rows


def text_columns(run: LoadedRun, columns: Sequence[str], args: PredictArguments, path: str) -> List[str]:
    """The one text column, or the two part columns (ABSA term+sentence, MRPC sentence1+sentence2)."""
    pairs = {"absa": ["term", "sentence"], "pair": ["sentence1", "sentence2"]}
    wanted = [args.text_column or "text"]
    if not args.text_column and not run.text_format.raw and run.text_format.kind in pairs \
            and set(pairs[run.text_format.kind]) <= set(columns):
        wanted = pairs[run.text_format.kind]
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ValueError(f"{path}: unknown column {missing[0]!r} (columns: {', '.join(columns)}); "
                         "pick one with --text_column")
    return wanted


def items_from_file(run: LoadedRun, args: PredictArguments) -> List[Item]:
    rows = read_rows(args.file)
    columns = text_columns(run, list(rows[0]), args, args.file)
    items = []
    for row in rows:
        parts = [str(row.get(c) or "") for c in columns]
        if len(parts) == 2:
            item = Item(args.part_separator.join(parts), run.text_format.join(*parts))
        else:
            item = Item(parts[0], run.text_format.format(parts[0], args.term))
        item.gold = gold_name(row.get("label"), run.label_names)
        items.append(item)
    return items


def gold_name(value: Any, names: List[str]) -> Optional[str]:
    """A label cell as a label name: names pass, ids (int or digits) index the run's names."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text not in names and text.lstrip("-").isdigit() and 0 <= int(text) < len(names):
        return names[int(text)]
    return text


def classify(run: LoadedRun, items: List[Item], progress: bool = False) -> Tuple[List[dict], float]:
    """Prediction rows (index, text, prediction, probability[, label]) and the seconds they took."""
    start = time.perf_counter()
    probs = softmax(predict_logits(run, [i.model_input for i in items], progress=progress))
    seconds = time.perf_counter() - start
    rows = []
    for index, (item, p) in enumerate(zip(items, probs)):
        row = {"index": index, "text": item.text, "prediction": run.label_names[int(p.argmax())],
               "probability": round(float(p.max()), 6)}
        if item.gold is not None:
            row["label"] = item.gold
        rows.append(row)
    return rows, seconds


def label_scores(rows: List[dict], names: List[str]) -> Optional[dict]:
    """accuracy, macro-F1 ... of the rows with a gold label (None when no row has one)."""
    labelled = [r for r in rows if "label" in r]
    if not labelled:
        return None
    unknown = sorted({r["label"] for r in labelled} - set(names))
    if unknown:
        raise ValueError(f"label column holds names the run does not know: {unknown[:5]} (run labels: {names})")
    index = {n: i for i, n in enumerate(names)}
    result = classification_scores([index[r["prediction"]] for r in labelled], [index[r["label"]] for r in labelled])
    return {**result, "n": len(labelled)}


def write_rows(path: str, rows: List[dict]) -> None:
    if path.lower().endswith(".csv"):
        buffer = io.StringIO()
        columns = list(rows[0]) if rows else ["index", "text", "prediction", "probability"]
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(path, buffer.getvalue())
    else:
        write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def predict_command(run: LoadedRun, texts: List[str], args: PredictArguments) -> dict:
    """Classify the texts or the file; print or write the rows; timing and scores on stderr."""
    items = items_from_file(run, args) if args.file else items_from_texts(run, texts, args.term)
    rows, seconds = classify(run, items, progress=len(items) >= PROGRESS_MIN_TEXTS)
    if args.out:
        write_rows(args.out, rows)
    else:
        for r in rows:
            print(f"{r['prediction']}\t{r['probability']:.4f}\t{r['text']}")
    n = len(rows)
    print(f"{n} texts in {seconds:.2f} s ({1000 * seconds / max(n, 1):.2f} s per 1,000 texts; batch "
          f"{run.batch_size}, {'bf16' if run.bf16 else 'fp32'}, {run.device})"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
    result = label_scores(rows, run.label_names)
    if result:
        print(f"accuracy {result['accuracy']:.4f}, macro_f1 {result['macro_f1']:.4f} on the {result['n']} "
              "texts with a label", file=sys.stderr)
    return {"rows": rows, "seconds": seconds, "scores": result}


# ---------------------------------------------------------------- merged export

def unwrap_lora_scratch(model):
    """Fold every LoRALinear's B A alpha/r into its base weight and put the plain nn.Linear back."""
    methods.merge_lora(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, methods.LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.base)
    return model


def merged_model(run: LoadedRun) -> Tuple[Any, str, str]:
    """(model to save, how it loads: transformers | adapters, what was done) for the run's method."""
    method = run.record["method"]
    if method in ("full", "head"):
        return run.model, "transformers", "no merge needed: the run saved every weight of the model"
    if method == "lora":
        return run.model.merge_and_unload(), "transformers", "peft LoRA merged into the base (merge_and_unload)"
    if method == "qlora":
        dtype = torch.bfloat16
        model = load_peft(run.run_dir, run.record, run.label_names, quantized=False, dtype=dtype).merge_and_unload()
        return model, "transformers", ("LoRA merged into an unquantized bf16 base (the run trained on a 4-bit "
                                       "NF4 base: logits differ from the run by the quantization error)")
    if method == "lora_scratch":
        return unwrap_lora_scratch(run.model), "transformers", "our LoRA merged into the base: W + B A alpha/r"
    return run.model, "adapters", ADAPTER_NOT_MERGED


ADAPTER_NOT_MERGED = (
    "bottleneck adapters cannot be merged: each adds up(relu(down(h))) to a layer's output, a nonlinear "
    "function, not a change of existing weights (the adapters library's merge_adapter covers only LoRA and "
    "(IA)^3 adapters); saved with the adapter, loaded with the adapters library")


def check_texts(run: LoadedRun) -> List[str]:
    """Up to CHECK_TEXTS model-ready texts of the run's test predictions (canned ones otherwise)."""
    path = os.path.join(run.run_dir, "predictions_test.jsonl")
    texts = []
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line, _ in zip(f, range(CHECK_TEXTS)) if line.strip()]
    return texts or list(CANNED_TEXTS)


def load_export(folder: str, device: Optional[torch.device] = None):
    """A merged export loaded as a user would, without ftlab (the adapters library for adapter runs)."""
    from transformers import AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    adapter_dir = os.path.join(folder, "adapter")
    if os.path.isdir(adapter_dir):
        import adapters

        adapters.init(model)
        model.load_adapter(adapter_dir, use_safetensors=True)
        model.set_active_adapters(list(model.adapters_config.adapters)[0])
    return model.to(device or "cpu").eval(), AutoTokenizer.from_pretrained(folder)


def save_export(model, run: LoadedRun, loader: str, folder: str) -> None:
    model.config.id2label = dict(enumerate(run.label_names))
    model.config.label2id = {n: i for i, n in enumerate(run.label_names)}
    model.save_pretrained(folder, safe_serialization=True)
    run.tokenizer.model_max_length = run.max_length  # pipeline(..., truncation=True) cuts where training did
    run.tokenizer.save_pretrained(folder)
    if loader == "adapters":
        name = list(model.adapters_config.adapters)[0]
        model.save_adapter(os.path.join(folder, "adapter"), name, use_safetensors=True)


def export_merged(run: LoadedRun, folder: str, overwrite: bool = False) -> dict:
    """Write the merged model, reload it from disk, compare its logits with the run's; the model card."""
    if os.path.exists(folder) and os.listdir(folder) and not overwrite:
        raise ValueError(f"--merge_to {folder} exists and is not empty (pass --overwrite true to replace it)")
    texts = check_texts(run)
    before = predict_logits(run, texts, bf16=False)
    model, loader, how = merged_model(run)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(os.path.abspath(folder))}.")
    try:
        save_export(model, run, loader, tmp)
        exported = LoadedRun(**{**run.__dict__, "model": load_export(tmp, run.device)[0], "bf16": False})
        diff = float(np.abs(predict_logits(exported, texts) - before).max())
        info = {"source_run": os.path.abspath(run.run_dir), "loader": loader, "how": how, "sep": run.text_format.sep,
                "check": {"texts": len(texts), "max_abs_logit_diff": diff}}
        modelcard.write_model_card(tmp, run.record, export=info, label_names=run.label_names, name=folder)
        if os.path.exists(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def export_command(run: LoadedRun, args: PredictArguments) -> dict:
    info = export_merged(run, args.merge_to, args.overwrite)
    diff = info["check"]["max_abs_logit_diff"]
    print(f"exported {run.record['method']} run to {args.merge_to} ({info['how']}); reloaded from disk: "
          f"max |logit difference| vs the run {diff:.2e} on {info['check']['texts']} test texts", file=sys.stderr)
    if info["loader"] == "adapters":
        print(f"note: load it with the adapters library (see {args.merge_to}/README.md); "
              "plain transformers ignores the adapter weights", file=sys.stderr)
    if diff > MERGE_TOLERANCE and run.record["method"] != "qlora":
        print(f"warning: the export differs from the run by more than {MERGE_TOLERANCE:g}", file=sys.stderr)
    return info


def quiet_libraries() -> None:
    """Library warnings (peft, adapters, transformers) would bury the one-line error or the rows."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    for name in ("adapters", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        run_dir, texts, args = parse_args(argv)
        quiet_libraries()
        run = load_run(run_dir, args)
        if texts or args.file:
            predict_command(run, texts, args)
        if args.merge_to:
            export_command(run, args)
    except (ValueError, FileNotFoundError) as e:
        logger.debug("failed", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

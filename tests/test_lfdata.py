"""lfdata.records: the alpaca records in memory, the same that the export writes to files."""
import json
from pathlib import Path

import pytest

import dataHelper as course_data
from ftlab.data import llamafactory as lfdata

FIXTURES = str(Path(__file__).parent / "fixtures")


def test_records_equal_the_exported_files(tmp_path):
    recs = lfdata.records("all", FIXTURES)
    written = lfdata.export_llamafactory("all", str(tmp_path), data_dir=FIXTURES)
    assert sorted(written) == sorted(recs)
    for entry in written:
        assert json.loads((tmp_path / f"{entry}.json").read_text()) == recs[entry]
    first = recs["samsum_test"][0]
    assert set(first) == {"instruction", "input", "output"} and first["instruction"] == lfdata.SAMSUM_INSTRUCTION


def test_records_max_samples_and_errors():
    assert {k: len(v) for k, v in lfdata.records("samsum", FIXTURES, max_samples=2).items()} == {
        "samsum_train": 2, "samsum_validation": 2, "samsum_test": 2}
    with pytest.raises(ValueError, match="unknown export 'xsum'; valid: samsum, tatqa, all"):
        lfdata.records("xsum", FIXTURES)
    with pytest.raises(ValueError, match="max_samples=0"):
        lfdata.records("samsum", FIXTURES, max_samples=0)


def test_old_dataHelper_names_still_resolve():
    """The root dataHelper.py (the course's module) still offers the LLaMA-Factory names it re-exported."""
    assert course_data.export_llamafactory is lfdata.export_llamafactory
    assert course_data.tatqa_answer(12.5, "percent") == "12.5%"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        course_data.nope  # noqa: B018

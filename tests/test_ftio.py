import json
import os
import stat

import pytest

from ftlab import io as ftio
from ftlab.io import write_atomic, write_json_atomic


def test_write_atomic_text_bytes_and_mode(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_atomic(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert os.listdir(path.parent) == ["a.txt"]  # no temp file left behind


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # not JSON-serialisable: fails before any write
    with pytest.raises(TypeError):
        write_atomic(path, 123)  # neither str nor bytes: fails inside the temp-file write
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_read_jsonl_skips_a_byte_order_mark_and_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "caf\xc3\xa9"}\n\n{"text": "b"}\n')
    assert list(ftio.read_jsonl(str(path))) == [(1, {"text": "caf\u00e9"}), (3, {"text": "b"})]

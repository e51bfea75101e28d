"""The conftest fixture that keeps library log handlers off closed capture streams.

Seen in CI: a test under capsys left transformers' handler bound to its (then closed) stream at
INFO level; the next train.main() logged 'PyTorch: setting up devices' and its stderr began with
'--- Logging error ---' instead of the one-line 'error: ...'. The two tests run in file order.
"""
import logging
import sys

import train

_handler = logging.StreamHandler(sys.stderr)


def test_a_library_handler_bound_to_this_tests_stream(capsys):
    lg = logging.getLogger("transformers")
    _handler.stream = sys.stderr  # capsys's stream, closed when this test ends
    lg.addHandler(_handler)
    lg.setLevel(logging.INFO)


def test_b_next_test_still_gets_a_one_line_error(capsys, tmp_path):
    lg = logging.getLogger("transformers")
    try:
        code = train.main(["--method", "dora", "--output_dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and "error: unknown method 'dora'" in err, err[:300]
        assert "Logging error" not in err
    finally:
        lg.removeHandler(_handler)
        lg.setLevel(logging.WARNING)

"""The conftest helper that keeps library log handlers off closed capture streams.

Seen in CI: a test under capsys left transformers' handler bound to its (then closed) stream at
INFO level; the next train.main() logged 'PyTorch: setting up devices' and its stderr began with
'--- Logging error ---' instead of the one-line 'error: ...'. Here the closed stream is made on
purpose, in one test, so the order of tests does not matter.
"""
import io
import logging
import sys

from ftlab.train import steps as train
from tests.conftest import repoint_closed_log_streams


def test_a_handler_on_a_closed_stream_is_repointed_and_errors_stay_one_line(capsys, tmp_path):
    closed = io.StringIO()
    closed.close()
    handler = logging.StreamHandler(closed)
    lg = logging.getLogger("transformers")
    lg.addHandler(handler)
    lg.setLevel(logging.INFO)
    try:
        assert repoint_closed_log_streams() >= 1
        assert handler.stream is sys.stderr
        code = train.main(["--method", "dora", "--output_dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert code == 2 and "error: unknown method 'dora'" in err, err[:300]
        assert "Logging error" not in err
    finally:
        lg.removeHandler(handler)
        lg.setLevel(logging.WARNING)

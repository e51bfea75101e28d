import logging
import os
import sys

# Nothing in the test suite may wait on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from tests.tiny import make_tiny  # noqa: E402


def repoint_closed_log_streams() -> int:
    """Re-point logging handlers whose stream a finished test closed (capsys) at sys.stderr;
    returns how many were re-pointed.

    Libraries (transformers, LLaMA-Factory) create their StreamHandler once, bound to whatever
    sys.stderr is then; when that was an earlier test's capture stream, every later log line
    would print '--- Logging error ---' into the next test's stderr.
    """
    loggers = [logging.getLogger()] + [lg for lg in logging.root.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    count = 0
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", False):
                handler.stream = sys.stderr  # not setStream(): it flushes the closed stream
                count += 1
    return count


@pytest.fixture(autouse=True)
def _no_closed_log_streams():
    repoint_closed_log_streams()
    yield


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Build tiny random models lazily, once per session: `tiny_models("qwen2")` -> folder."""
    root = tmp_path_factory.mktemp("tiny_models")
    cache: dict = {}

    def get(kind: str, causal: bool = False) -> str:
        key = (kind, causal)
        if key not in cache:
            cache[key] = make_tiny(kind, root / f"{kind}{'_lm' if causal else ''}", causal=causal)
        return cache[key]

    return get


def real_data_dir():
    """The real data directory (../shared/data in CI) or None."""
    d = os.environ.get("DATA_DIR")
    if d and os.path.isfile(os.path.join(d, "README.md")) and os.path.isdir(os.path.join(d, "absa")):
        return d
    return None

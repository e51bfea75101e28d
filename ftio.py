"""Small helpers shared by every script: atomic file writes and comma-list splitting.

Atomic writes: a reader (or a crash) never sees half a file.

The data goes to a temp file in the target's folder (same file system, so the rename is atomic),
then `os.replace` swaps it in; on any error the temp file is removed and the old file stays.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, List, Optional, Union


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically, creating its folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Union[str, os.PathLike], obj: Any, indent: int = 2) -> None:
    """`obj` as JSON (UTF-8, non-ASCII kept, trailing newline), written atomically."""
    write_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def split_list(text: Optional[str]) -> List[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: the one way a comma-separated flag is read (None/'' -> [])."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]

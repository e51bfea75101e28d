"""Small helpers shared by every script: atomic file writes, folder locks, JSON-lines reading, comma-list splitting.

Atomic writes: a reader (or a crash) never sees half a file.

The data goes to a temp file in the target's folder (same file system, so the rename is atomic),
then `os.replace` swaps it in; on any error the temp file is removed and the old file stays. A process
killed between the two leaves the temp file (`.NAME.XXXXXXXX.tmp`): `remove_stray_temps` clears them.

Folder locks (`hold_folder`): one writer per folder, an OS lock the kernel drops when the process
ends, so a killed holder (kill -9 included) leaves no stale lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import re
import tempfile
from typing import Any, Iterator, List, Optional, Tuple, Union

TEMP_SUFFIX = ".tmp"
# write_atomic's temp names: "." + target name + "." + mkstemp's 8 random characters + ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$")
LOCK_FILE = ".lock"


def write_atomic(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically, creating its folder."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=TEMP_SUFFIX)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def remove_stray_temps(folder: str) -> List[str]:
    """Remove the temp files a killed `write_atomic` left in `folder` (its own files only); their names.
    Call it only while holding the folder (`hold_folder`): a live writer's temp file looks the same."""
    if not os.path.isdir(folder):
        return []
    stray = sorted(n for n in os.listdir(folder) if _TEMP_NAME.match(n) and os.path.isfile(os.path.join(folder, n)))
    for name in stray:
        os.remove(os.path.join(folder, name))
    return stray


class FolderInUse(ValueError):
    """Another live process holds the folder (`hold_folder`)."""


@contextlib.contextmanager
def hold_folder(folder: str, what: str = "folder", fix: str = "wait for it to end"):
    """Hold an exclusive lock on `folder` (created if missing) for the with-block: fcntl.flock on
    FOLDER/.lock, which holds the holder's pid. Another holder -> FolderInUse naming the folder, the pid and
    `fix`; `folder` a file -> ValueError. Nothing is written into a folder another process holds."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{what} {folder} is a file, not a folder: pass a folder path")
    os.makedirs(folder, exist_ok=True)
    fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise FolderInUse(f"{what} {folder} is in use by another run (pid {pid}); {fix}") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock (the file stays: a new holder reuses it)


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


def read_text(path: str) -> str:
    """The file's text, or '' when it cannot be read (/proc files, an optional ~/.netrc)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def read_jsonl(path: str) -> Iterator[Tuple[int, dict]]:
    """Yield (line number, object) for every non-empty line of a JSON-lines file (.gz too); a line
    that is not a JSON object raises one ValueError naming the file and the line. A UTF-8 byte-order
    mark (Windows editors write one) is skipped, as `ftlab predict`'s CSV reader does."""
    opener = (gzip.open(path, "rt", encoding="utf-8-sig") if path.endswith(".gz")
              else open(path, encoding="utf-8-sig"))
    try:
        with opener as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {line_no}: not valid JSON ({err.msg})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path} line {line_no}: expected a JSON object, got {type(obj).__name__}")
                yield line_no, obj
    except (gzip.BadGzipFile, EOFError) as err:
        raise ValueError(f"{path}: not a valid gzip file ({err})") from None

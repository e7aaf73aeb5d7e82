"""Atomic file writes (temp file in the same folder + fsync + rename). Torch-free."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int | None = None):
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_user_file(path: str | os.PathLike, kind: str = "file") -> bytes:
    """Bytes of a user-supplied file; a missing/unreadable one is an EdgeconvError naming it."""
    from edgeconv.errors import EdgeconvError

    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EdgeconvError(f"{path}: {kind} not found") from None
    except IsADirectoryError:
        raise EdgeconvError(f"{path}: is a directory, not a {kind}") from None
    except OSError as exc:
        raise EdgeconvError(f"{path}: cannot read {kind} ({exc.strerror or exc})") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

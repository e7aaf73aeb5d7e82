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


def _os_reason(path: Path, exc: OSError, kind: str) -> str:
    """What went wrong opening ``path``, in words (symbolic-link loops and dangling links
    are named as such, not as a missing file)."""
    import errno

    if exc.errno == errno.ELOOP:
        return f"{path}: a symbolic link loop, not a {kind}"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return f"{path}: a symbolic link to {os.readlink(path)!r}, which does not exist"
        return f"{path}: {kind} not found (no such file)"
    if isinstance(exc, IsADirectoryError):
        return _directory(path, kind)
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied (cannot read the {kind})"
    return f"{path}: cannot read {kind} ({exc.strerror or exc})"


def _directory(path: Path, kind: str) -> str:
    return f"{path}: is a directory, not a file (expected a {kind})"


def check_input_file(path: str | os.PathLike, kind: str = "file") -> Path:
    """``path`` if it is a readable regular, non-empty file; else one clear EdgeconvError."""
    from edgeconv.errors import EdgeconvError

    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise EdgeconvError(_os_reason(path, exc, kind)) from None
    import stat as _stat

    if _stat.S_ISDIR(st.st_mode):
        raise EdgeconvError(_directory(path, kind))
    if not _stat.S_ISREG(st.st_mode):
        raise EdgeconvError(f"{path}: not a regular file, not a {kind}")
    if st.st_size == 0:
        raise EdgeconvError(f"{path}: empty file, not a {kind}")
    return path


def read_regular_file(path: str | os.PathLike, kind: str = "file",
                      max_bytes: int = 1 << 30) -> bytes:
    """The bytes of ``path``, read once through one file descriptor: it must be a regular,
    non-empty file of at most ``max_bytes`` (a FIFO, device, directory or a file that grows
    past the cap is refused in one line, never read without bound or waited on)."""
    import errno
    import stat as _stat

    from edgeconv.errors import EdgeconvError

    path = Path(path)
    try:  # O_NONBLOCK: opening a FIFO for reading does not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise EdgeconvError(f"{path}: not a regular file, not a {kind}") from None
        raise EdgeconvError(_os_reason(path, exc, kind)) from None
    try:
        st = os.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            raise EdgeconvError(_directory(path, kind))
        if not _stat.S_ISREG(st.st_mode):
            raise EdgeconvError(f"{path}: not a regular file, not a {kind}")
        if st.st_size == 0:
            raise EdgeconvError(f"{path}: empty file, not a {kind}")
        if st.st_size > max_bytes:
            raise EdgeconvError(f"{path}: {st.st_size / 2**20:.0f} MiB, larger than the "
                                f"{max_bytes / 2**20:.0f} MiB limit for a {kind}")
        chunks, total = [], 0
        while total <= max_bytes:
            try:
                chunk = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            except OSError as exc:
                raise EdgeconvError(_os_reason(path, exc, kind)) from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise EdgeconvError(f"{path}: grew past the {max_bytes / 2**20:.0f} MiB limit for "
                                f"a {kind} while being read")
        if total == 0:
            raise EdgeconvError(f"{path}: empty file, not a {kind}")
        return b"".join(chunks)
    finally:
        os.close(fd)


#: largest image file read (a face crop is a few hundred KB; a 64 MiB photo is already odd)
MAX_IMAGE_BYTES = 64 << 20
#: largest text list read (pair lists)
MAX_TEXT_BYTES = 64 << 20


def read_user_file(path: str | os.PathLike, kind: str = "file",
                   max_bytes: int = 1 << 30) -> bytes:
    """Bytes of a user-supplied file through :func:`read_regular_file` (the one place user
    files are opened): regular files only (a FIFO, ``/dev/zero`` or a link to them is
    refused, never read without bound), at most ``max_bytes``; one-line EdgeconvError."""
    return read_regular_file(path, kind, max_bytes)


def read_text_file(path: str | os.PathLike, kind: str = "text file",
                   max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A user's text file (strict UTF-8, a leading byte-order mark removed)."""
    from edgeconv.errors import EdgeconvError

    data = read_regular_file(path, kind, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeconvError(f"{path}: not a UTF-8 {kind} (byte {exc.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def walk_files(folder: str | os.PathLike, skip_hidden: bool = True):
    """``(dirpath, filenames)`` of every folder below ``folder``, following symbolic links
    but visiting each real folder once (tracked by ``(st_dev, st_ino)``): a link loop or
    two links pointing at each other end the walk instead of extending it for ever."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            dirnames[:] = []
            continue
        seen.add(key)
        if skip_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        yield dirpath, filenames


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (after links); False for FIFOs, devices, folders, missing."""
    import stat as _stat

    try:
        return _stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


#: mode of reports and plots (readable by others, like the exported models)
REPORT_MODE = 0o644


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: str | os.PathLike, obj, mode: int | None = None) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n", mode)

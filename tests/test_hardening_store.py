"""Template store paths and file-system refusals: symlinks, foreign empty files, read-only and
busy stores, folders that cannot be entered. Each refusal is one StoreError and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeconv.runtime.store import StoreError, TemplateStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_cli import run_in_process  # noqa: E402


def unit(seed, dim=8):
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_dangling_symlink_refused_and_nothing_created(tmp_path):
    target = tmp_path / "elsewhere" / "t.db"
    target.parent.mkdir()
    link = tmp_path / "t.db"
    link.symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        TemplateStore(link)
    assert not target.exists() and os.path.islink(link)


def test_symlink_to_a_real_store_refused(tmp_path):
    real = tmp_path / "real.db"
    with TemplateStore(real) as s:
        s.enroll("alice", unit(0), "h", "m")
    link = tmp_path / "link.db"
    link.symlink_to(real)
    before = real.read_bytes()
    for create in (True, False):
        with pytest.raises(StoreError, match="symbolic link"):
            TemplateStore(link, create=create)
    assert real.read_bytes() == before


@pytest.mark.parametrize("create", [True, False])
def test_an_existing_empty_file_is_not_taken_over(tmp_path, create):
    p = tmp_path / "notes.db"
    p.write_bytes(b"")
    with pytest.raises(StoreError, match="empty file"):
        TemplateStore(p, create=create)
    assert p.read_bytes() == b"" and not Path(str(p) + "-wal").exists()


def test_new_store_is_complete_and_private_and_leaves_no_temp(tmp_path):
    p = tmp_path / "new" / "t.db"
    with TemplateStore(p) as s:
        assert len(s) == 0
    assert (p.stat().st_mode & 0o777) == 0o600 and (p.parent.stat().st_mode & 0o777) == 0o700
    assert sorted(x.name for x in p.parent.iterdir() if x.name.endswith(".tmp")) == []
    assert p.read_bytes().startswith(b"SQLite format 3\x00") and p.stat().st_size >= 512


def test_busy_store_retries_then_one_error_and_nothing_changes(tmp_path):
    p = tmp_path / "t.db"
    with TemplateStore(p) as s:
        s.enroll("alice", unit(0), "h", "m")
    other = sqlite3.connect(str(p), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")                    # another process holds the write lock
    try:
        with TemplateStore(p, timeout=0.2) as s:
            with pytest.raises(StoreError, match="busy: another process has held it locked"):
                s.enroll("bob", unit(1), "h", "m")
            assert "bob" not in s
    finally:
        other.execute("ROLLBACK")
        other.close()
    with TemplateStore(p) as s:
        s.enroll("bob", unit(1), "h", "m")              # free again: works
        assert len(s) == 2


def test_folder_that_cannot_be_entered(tmp_path, monkeypatch):
    p = tmp_path / "locked" / "t.db"
    real_lstat = os.lstat

    def lstat(path, *a, **k):
        if Path(path) == p:
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *a, **k)

    monkeypatch.setattr(os, "lstat", lstat)
    with pytest.raises(StoreError, match="cannot reach the template database .*Permission"):
        TemplateStore(p)


def _make_read_only(path):
    """chmod for ordinary users; root ignores modes, so use the immutable flag instead."""
    if os.geteuid() != 0:
        path.chmod(0o400)
        path.parent.chmod(0o500)
        return lambda: (path.parent.chmod(0o700), path.chmod(0o600))
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a file read-only for root")
    r = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"running as root and chattr +i is refused here ({r.stderr.strip()})")
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_store_one_line_and_unchanged(tmp_path):
    p = tmp_path / "store" / "t.db"
    with TemplateStore(p) as s:
        s.enroll("alice", unit(0), "h", "m")
    before = p.read_bytes()
    undo = _make_read_only(p)
    try:
        res = run_in_process("users", "remove", "alice", "--db", p)
        assert res.returncode == 2, res.stderr
        assert "read-only" in res.stderr and len(res.stderr.strip().splitlines()) == 1
        assert "Traceback" not in res.stderr
        assert p.read_bytes() == before
    finally:
        undo()


# ----------------------------------------------------------------------------- ORT telemetry
def _run_embedder(home: Path, env_value: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    if env_value is not None:
        env["ORT_DISABLE_TELEMETRY"] = env_value
    code = ("import sys; sys.path.insert(0, 'tests'); import _unlock_models as TM\n"
            "from edgeconv.runtime.embedder import Embedder\n"
            "import numpy as np\n"
            "Embedder(TM.model_dir() / 'face.onnx').embed(np.zeros((96, 96, 3), np.uint8))\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr


def test_onnxruntime_writes_no_device_id_or_telemetry(tmp_path):
    _run_embedder(tmp_path / "off", None)                # edgeconv's default
    assert not (tmp_path / "off" / ".cache" / "Microsoft").exists()
    _run_embedder(tmp_path / "on", "0")                  # the user opted in
    if not (tmp_path / "on" / ".cache" / "Microsoft").exists():
        pytest.skip("this onnxruntime records no telemetry at all: the switch is not exercised")
    assert (tmp_path / "on" / ".cache" / "Microsoft" / "DeveloperTools" / ".onnxruntime" /
            "deviceid").exists()

"""Template store and lock-out policy (no model needed: random unit embeddings)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.policy import IDENTIFY_SUBJECT, LockedOut, LockoutPolicy
from edgeconv.runtime.store import (ModelMismatch, StoreError, TemplateStore, UnknownUser,
                                    default_db_path)

REPO = Path(__file__).resolve().parent.parent
HASH_A, HASH_B = "a" * 64, "b" * 64


def unit(seed, dim=32):
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "store" / "templates.db"


def test_created_owner_only_even_with_permissive_umask(db):
    old = os.umask(0)
    try:
        with TemplateStore(db) as s:
            s.enroll("alice", unit(0), HASH_A, "m")
            wal = Path(str(db) + "-wal")
            if wal.exists():
                assert mode(wal) & 0o077 == 0
    finally:
        os.umask(old)
    assert mode(db) == 0o600
    assert mode(db.parent) == 0o700


def test_existing_folder_left_alone_and_open_does_not_create(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with TemplateStore(folder / "t.db"):
        pass
    assert mode(folder) == 0o755 and mode(folder / "t.db") == 0o600
    with pytest.raises(StoreError, match="no template database"):
        TemplateStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_durability_settings(db):
    with TemplateStore(db) as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_round_trip_only_embeddings_stored(db):
    with TemplateStore(db) as s:
        t = s.enroll("alice", 3 * unit(1), HASH_A, "tiny", num_images=3)
        assert np.isclose(np.linalg.norm(t.embedding), 1.0)
        s.enroll("bob", unit(2), HASH_A, "tiny")
        assert len(s) == 2 and "alice" in s and "carol" not in s
        got = s.get_for_model("alice", HASH_A)
        np.testing.assert_allclose(got.embedding, unit(1), atol=1e-6)
        assert got.num_images == 3 and got.model_name == "tiny"
        assert [t.user for t in s.templates(HASH_A)] == ["alice", "bob"]
        with pytest.raises(EdgeconvError, match="already enrolled"):
            s.enroll("alice", unit(3), HASH_A, "tiny")
        s.enroll("alice", unit(3), HASH_A, "tiny", replace=True)
        np.testing.assert_allclose(s.get("alice").embedding, unit(3), atol=1e-6)
        s.remove("bob")
        with pytest.raises(UnknownUser):
            s.get("bob")
        with pytest.raises(UnknownUser):
            s.remove("bob")
    # the blob is exactly dim float32 values: no image data anywhere
    con = sqlite3.connect(db)
    (blob,) = con.execute("SELECT embedding FROM templates WHERE user='alice'").fetchone()
    assert len(blob) == 32 * 4
    con.close()


def test_removed_template_bytes_do_not_linger(db):
    secret = unit(42, 64)
    with TemplateStore(db) as s:
        s.enroll("alice", secret, HASH_A, "m")
        s.enroll("bob", unit(1, 64), HASH_A, "m")
        s.remove("alice")
        s.enroll("bob", unit(2, 64), HASH_A, "m", replace=True)
        files = [db, Path(str(db) + "-wal")]
        blobs = b"".join(f.read_bytes() for f in files if f.exists())
    for needle in (secret.astype("<f4").tobytes(), unit(1, 64).astype("<f4").tobytes()):
        assert needle[:64] not in blobs


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 200])
def test_bad_user_names(db, name):
    with TemplateStore(db) as s, pytest.raises(EdgeconvError):
        s.enroll(name, unit(0), HASH_A, "m")


def test_bad_embeddings_refused(db):
    with TemplateStore(db) as s:
        for bad in (np.zeros(8), np.array([np.nan, 1.0]), np.array([])):
            with pytest.raises(EdgeconvError):
                s.enroll("alice", bad, HASH_A, "m")


def test_model_mismatch_refused(db):
    with TemplateStore(db) as s:
        s.enroll("alice", unit(0), HASH_A, "tiny_v1")
        with pytest.raises(ModelMismatch) as exc:
            s.get_for_model("alice", HASH_B, "tiny_v2")
    msg = str(exc.value)
    assert "tiny_v1" in msg and HASH_A[:12] in msg and HASH_B[:12] in msg and "--replace" in msg


def test_not_a_database(tmp_path):
    p = tmp_path / "t.db"
    p.write_text("hello, I am a text file\n" * 40)
    with pytest.raises(StoreError, match="not an SQLite file"):
        TemplateStore(p)
    d = tmp_path / "dir.db"
    d.mkdir()
    with pytest.raises(StoreError, match="directory"):
        TemplateStore(d)


def test_foreign_sqlite_database(tmp_path):
    p = tmp_path / "other.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE photos (id INTEGER, data BLOB)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an edgeconv template database"):
        TemplateStore(p)


def test_wrong_schema_version(db):
    TemplateStore(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99"):
        TemplateStore(db)


def test_truncated_and_corrupt_database(db, tmp_path):
    with TemplateStore(db) as s:
        for i in range(24):  # 2 KiB templates: a dozen pages
            s.enroll(f"user{i:03d}", unit(i, 512), HASH_A, "m")
    data = bytearray(db.read_bytes())
    assert len(data) > 5 * 4096
    trunc = tmp_path / "trunc.db"
    trunc.write_bytes(bytes(data[:300]))
    with pytest.raises(StoreError, match="truncated"):
        TemplateStore(trunc)
    # scribble over the middle pages (b-tree pages): integrity_check / malformed
    rng = np.random.default_rng(0)
    data[2 * 4096:len(data) - 4096] = rng.integers(0, 256, len(data) - 3 * 4096,
                                                   dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.db"
    bad.write_bytes(bytes(data))
    with pytest.raises(StoreError) as exc:
        TemplateStore(bad)
    assert "corrupt" in str(exc.value) or "not a usable" in str(exc.value)


def test_damaged_template_row(db):
    with TemplateStore(db) as s:
        s.enroll("alice", unit(0), HASH_A, "m")
        s.conn.execute("UPDATE templates SET embedding = ? WHERE user='alice'", (b"\0" * 12,))
        with pytest.raises(StoreError, match="damaged"):
            s.get("alice")


def test_group_readable_store_warns(db):
    TemplateStore(db).close()
    os.chmod(db, 0o644)
    with pytest.warns(UserWarning, match="accessible to other users"):
        TemplateStore(db).close()


def test_default_db_path(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECONV_HOME", str(tmp_path / "eh"))
    assert default_db_path() == tmp_path / "eh" / "templates.db"
    monkeypatch.delenv("EDGECONV_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "edgeconv" / "templates.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_db_path() == tmp_path / ".local" / "share" / "edgeconv" / "templates.db"


# ----------------------------------------------------------------------------- policy
class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_lockout_after_five_and_cooldown_grows(db):
    clock = Clock()
    with TemplateStore(db) as s:
        s.enroll("alice", unit(0), HASH_A, "m")
        p = LockoutPolicy(s, clock=clock)
        for i in range(4):
            assert p.record("alice", False).failures == i + 1
        st = p.record("alice", False)
        assert st.lockouts == 1 and st.remaining(clock.t) == pytest.approx(30)
        with pytest.raises(LockedOut, match="try again in 30 s"):
            p.check("alice")
        with pytest.raises(LockedOut):
            p.record("alice", True)  # even a genuine attempt is refused while locked
        p.check(IDENTIFY_SUBJECT)  # other subjects are unaffected
        clock.t += 30.5
        p.check("alice")
        for _ in range(5):
            st = p.record("alice", False)
        assert st.lockouts == 2 and st.remaining(clock.t) == pytest.approx(60)
        clock.t += 61
        assert p.record("alice", True).failures == 0
        assert p.state("alice").lockouts == 0


def test_accept_resets_counter(db):
    clock = Clock()
    with TemplateStore(db) as s:
        p = LockoutPolicy(s, clock=clock)
        for _ in range(4):
            p.record("bob", False)
        p.record("bob", True)
        for _ in range(4):
            p.record("bob", False)
        p.check("bob")
        assert p.state("bob").failures == 4


def test_lockout_survives_restart(db):
    clock = Clock()
    with TemplateStore(db) as s:
        p = LockoutPolicy(s, clock=clock)
        for _ in range(5):
            p.record("alice", False)
    # "restart": a new process reads the same file
    code = ("import sys\nfrom edgeconv.runtime.store import TemplateStore\n"
            "from edgeconv.runtime.policy import LockoutPolicy, LockedOut\n"
            f"p = LockoutPolicy(TemplateStore(sys.argv[1]), clock=lambda: {clock.t + 10!r})\n"
            "try:\n    p.check('alice')\n"
            "except LockedOut as e:\n    print('LOCKED', round(e.remaining))\n")
    out = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                         cwd=REPO)
    assert out.stdout.strip() == "LOCKED 20", out.stderr
    with TemplateStore(db) as s:
        p = LockoutPolicy(s, clock=lambda: clock.t + 31)
        p.check("alice")


def test_clock_set_backwards_cannot_extend_lockout(db):
    clock = Clock()
    with TemplateStore(db) as s:
        p = LockoutPolicy(s, clock=clock)
        for _ in range(5):
            p.record("alice", False)
        clock.t -= 86400  # the Pi booted without network time
        assert p.state("alice").remaining(clock.t) == pytest.approx(30)
        p.reset("alice")
        p.check("alice")


# ----------------------------------------------------------------------------- crash safety
_CHILD = r"""
import sys, numpy as np
from edgeconv.runtime.store import TemplateStore
from edgeconv.runtime.policy import LockoutPolicy
s = TemplateStore(sys.argv[1]); start = int(sys.argv[2])
p = LockoutPolicy(s)
rng = np.random.default_rng(start)
for i in range(start, start + 100000):
    name = f"user{i:06d}"
    s.enroll(name, rng.standard_normal(128), "c" * 64, "m", num_images=3)
    p.record(name, False)
    print(name, flush=True)
"""


def test_sigkill_mid_write_loses_no_committed_enrolment(tmp_path):
    """Kill an enrolling child with SIGKILL at random points; every user it reported
    (printed only after the commit returned) must be there and the db intact."""
    db = tmp_path / "crash" / "templates.db"
    rng = random.Random(1234)
    reported: list[str] = []
    start = 0
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(db), str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO)
        want = rng.randint(3, 25)
        got = []
        while len(got) < want:
            line = proc.stdout.readline()
            if not line:
                break
            got.append(line.strip())
        time.sleep(rng.uniform(0, 0.02))  # land somewhere inside a later transaction
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rest = proc.stdout.read()
        got += [ln.strip() for ln in rest.splitlines() if ln.strip()]
        proc.stdout.close()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        assert got, "the child never enrolled anyone"
        reported += got
        start += 1000
        with TemplateStore(db) as s:  # opens = integrity_check + schema check
            assert s.integrity_check() == ["ok"]
            present = set(u["user"] for u in s.users())
            missing = [u for u in reported if u not in present]
            assert not missing, f"committed enrolments lost: {missing[:5]}"
            for u in reported:
                assert np.isclose(np.linalg.norm(s.get(u).embedding), 1.0)
    assert mode(db) == 0o600

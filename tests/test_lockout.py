"""Lock-out across modes (issue: no lock-out bypass by switching between 1:1 and identify).

A user's lock-out holds in every mode; identify mode has its own counter whose lock-out
refuses every attempt; no user name (``*`` included) shares a row with that counter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402
from edgeconv.runtime.policy import IDENTIFY_SUBJECT, LockedOut, LockoutPolicy  # noqa: E402
from edgeconv.runtime.store import TemplateStore, check_user_name  # noqa: E402

from test_cli import run_in_process  # noqa: E402

pytest.importorskip("onnx")


def cli(*args):
    res = run_in_process(*args)
    return res.returncode, res.stdout, res.stderr


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def unit(seed, dim=8):
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


# ----------------------------------------------------------------------------- policy
@pytest.fixture
def carol(tmp_path):
    """(store with carol enrolled, policy on a fake clock, the clock)."""
    clock = Clock()
    with TemplateStore(tmp_path / "t.db") as s:
        s.enroll("carol", unit(0), "h", "m")
        yield s, LockoutPolicy(s, clock=clock), clock


def test_user_lockout_refuses_identify_match_and_counts_it(carol):
    _, p, clock = carol
    for _ in range(5):
        p.record("carol", False)
    with pytest.raises(LockedOut):
        p.check("carol")
    st, accepted = p.record_identify("carol", True)     # a match to a locked-out user
    assert not accepted and st.failures == 1              # refused and counted
    assert p.state("carol").lockouts == 1                 # carol's lock-out untouched
    clock.t += 31                                         # carol's cool-down is over
    st, accepted = p.record_identify("carol", True)
    assert accepted and st.failures == 0
    assert p.state("carol").failures == 0 and p.state("carol").lockouts == 0


def test_identify_lockout_locks_every_mode(carol):
    _, p, clock = carol
    for _ in range(5):
        p.record_identify("carol", False)
    with pytest.raises(LockedOut, match="identify mode"):
        p.check("carol")                                  # 1:1 refused too
    with pytest.raises(LockedOut):
        p.record("carol", True)
    assert p.state("carol").failures == 0                 # nothing recorded for carol
    clock.t += 31
    assert p.record("carol", True).failures == 0


@pytest.mark.parametrize("name", ["*", "identify", "\u2217"])
def test_no_user_name_shares_the_identify_counter(tmp_path, name):
    clock = Clock()
    with TemplateStore(tmp_path / "t.db") as s:
        p = LockoutPolicy(s, clock=clock)
        for _ in range(5):
            p.record_identify("nobody", False)
        s.enroll(name, unit(1), "h", "m")
        s.enroll(name, unit(2), "h", "m", replace=True)
        s.remove(name)
        with pytest.raises(LockedOut):
            p.check(IDENTIFY_SUBJECT)
    with pytest.raises(EdgeconvError):
        check_user_name(IDENTIFY_SUBJECT)


def test_re_enrolment_keeps_a_lockout(carol):
    s, p, _ = carol
    for _ in range(5):
        p.record("carol", False)
    s.enroll("carol", unit(3), "h", "m", replace=True)
    with pytest.raises(LockedOut):
        p.check("carol")


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("lockout")
    ids, idx = np.repeat(np.arange(3), 5), np.tile(np.arange(5), 3)
    faces = {(int(u), int(i)): save_image(d / f"u{u}_{i}.png", im)
             for u, i, im in zip(ids, idx, TM.render(ids, idx))}
    return TM.model_dir() / "face.onnx", faces


def _enrol(model, db, faces, name, u):
    code, _, err = cli("enroll", model, "--user", name, "--db", db, faces[(u, 0)],
                       faces[(u, 1)], faces[(u, 2)])
    assert code == 0, err


def test_cli_locked_user_cannot_unlock_by_identify(setup, tmp_path):
    model, faces = setup
    db = tmp_path / "t.db"
    _enrol(model, db, faces, "carol", 0)
    _enrol(model, db, faces, "dave", 1)
    for _ in range(5):
        cli("unlock", model, "--user", "carol", "--db", db, faces[(2, 4)])
    assert cli("unlock", model, "--user", "carol", "--db", db, faces[(0, 3)])[0] == 3
    code, out, err = cli("unlock", model, "--db", db, "--json", "--show-score", faces[(0, 3)])
    r = json.loads(out)
    assert code == 1 and not r["accepted"] and r["refused_locked_user"], (r, err)
    assert r["best_user"] == "carol" and r["user"] is None and r["failures"] == 1
    code, out, _ = cli("unlock", model, "--db", db, faces[(0, 3)])
    assert code == 1 and "that user is locked out" in out
    # identify mode still unlocks a user who is not locked out: the counter resets
    code, out, _ = cli("unlock", model, "--db", db, "--json", faces[(1, 3)])
    assert code == 0 and json.loads(out)["user"] == "dave"


def test_cli_identify_lockout_refuses_one_to_one(setup, tmp_path):
    model, faces = setup
    db = tmp_path / "t.db"
    _enrol(model, db, faces, "carol", 0)
    codes = [cli("unlock", model, "--db", db, faces[(2, 4)])[0] for _ in range(5)]
    assert codes == [1, 1, 1, 1, 3]
    code, out, err = cli("unlock", model, "--user", "carol", "--db", db, faces[(0, 3)])
    assert code == 3 and out == "" and "identify mode" in err
    code, out, _ = cli("users", "list", "--db", db)
    assert "identify mode is locked out" in out
    # enrolling and removing a user named "*" leaves the identify lock-out in place
    _enrol(model, db, faces, "*", 1)
    assert cli("users", "remove", "*", "--db", db)[0] == 0
    assert cli("unlock", model, "--user", "carol", "--db", db, faces[(0, 3)])[0] == 3
    assert cli("users", "reset", "--db", db)[0] == 0               # the administrator's reset
    assert cli("unlock", model, "--user", "carol", "--db", db, faces[(0, 3)])[0] == 0


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("bad", ["bob\u200b", "\u202ebob", "bob ", " bob", "bo\u00a0b",
                                 "bo\u2066b", "bob\ufeff", "bo\nb", "\u2028"])
def test_user_names_refused(bad):
    with pytest.raises(EdgeconvError, match="user name"):
        check_user_name(bad)


def test_user_names_are_nfc(tmp_path):
    composed, decomposed = "Jos\u00e9", "Jose\u0301"
    assert check_user_name(decomposed) == composed
    with TemplateStore(tmp_path / "t.db") as s:
        s.enroll(composed, unit(0), "h", "m")
        with pytest.raises(EdgeconvError, match="already enrolled"):
            s.enroll(decomposed, unit(1), "h", "m")
        assert decomposed in s and s.get(decomposed).user == composed
        assert [u["user"] for u in s.users()] == [composed]


def test_cli_refuses_bidi_name_before_writing(setup, tmp_path):
    model, faces = setup
    db = tmp_path / "t.db"
    code, out, err = cli("enroll", model, "--user", "\u202eevil", "--db", db, faces[(0, 0)])
    assert code == 2 and "user name" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and not db.exists()

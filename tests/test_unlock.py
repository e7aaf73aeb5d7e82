"""Face unlock end to end: enroll / verify / identify / users / unlock CLI (torch-free)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402

pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parent.parent

from test_cli import BLOCK_TORCH, run_in_process  # noqa: E402  (one torch blocker, one runner)


def cli(*args):
    """Run the console script in-process: (exit code, stdout, stderr)."""
    res = run_in_process(*args)
    return res.returncode, res.stdout, res.stderr


def cli_subprocess(*args, env=None):
    code = BLOCK_TORCH + ("from edgeconv.cli import main\n"
                          "sys.argv = ['edgeconv'] + sys.argv[1:]\n"
                          "try:\n    main()\nfinally:\n"
                          "    assert 'torch' not in sys.modules, 'torch was imported'\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def models():
    return TM.model_dir()


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """PNG files: users 0..3, images 0..4 each -> faces[(user, index)]."""
    d = tmp_path_factory.mktemp("faces")
    ids, idx = np.repeat(np.arange(4), 5), np.tile(np.arange(5), 4)
    imgs = TM.render(ids, idx)
    return {(int(u), int(i)): save_image(d / f"u{u}_{i}.png", im)
            for u, i, im in zip(ids, idx, imgs)}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "home" / "templates.db"


def enrol(model, db, faces, users=(("alice", 0), ("bob", 1), ("carol", 2))):
    for name, u in users:
        code, out, err = cli("enroll", model, "--user", name, "--db", db,
                             faces[(u, 0)], faces[(u, 1)], faces[(u, 2)])
        assert code == 0, err
        assert f"enrolled {name!r}: 3 image(s)" in out


def test_round_trip_accept_reject_identify(models, faces, db):
    model = models / "face.onnx"
    enrol(model, db, faces)
    thr = TM.calibration()["far_thresholds"]["1e-2"]
    names = {"alice": 0, "bob": 1, "carol": 2}
    for name, u in names.items():
        # same identity, unseen image: accepted at the threshold calibrated at FAR 1e-2
        code, out, err = cli("verify", model, "--user", name, "--db", db, "--far", "1e-2",
                             "--json", faces[(u, 3)])
        r = json.loads(out)
        assert code == 0 and r["accepted"] and r["score"] > thr, (name, r, err)
        assert r["threshold"] == pytest.approx(thr) and r["latency_ms"] > 0
        # every other identity (enrolled or not): rejected
        for v in (0, 1, 2, 3):
            if v == u:
                continue
            code, out, _ = cli("verify", model, "--user", name, "--db", db, "--json",
                               faces[(v, 4)])
            r = json.loads(out)
            assert code == 1 and not r["accepted"] and r["score"] <= thr, (name, v, r)
        code, out, err = cli("identify", model, "--db", db, "--json", faces[(u, 4)])
        r = json.loads(out)
        assert code == 0 and r["match"] == name and r["candidates"] == 3, (r, err)
        # the tiny model's 200-pair calibration cannot resolve FAR 1e-2: said on stderr + JSON
        assert "NOT resolved" in r["threshold_warning"] and "warning:" in err
    code, out, _ = cli("identify", model, "--db", db, faces[(3, 4)])  # never enrolled
    assert code == 1 and out.startswith("NO MATCH")
    code, out, _ = cli("verify", model, "--user", "alice", "--db", db, faces[(0, 3)])
    assert code == 0 and out.startswith("ACCEPT 'alice'") and "latency" in out
    code, out, _ = cli("users", "list", "--db", db)
    assert code == 0 and "3 user(s)" in out and "tiny_lda" in out
    code, out, _ = cli("users", "list", "--db", db, "--json")
    users = json.loads(out)["users"]
    assert [u["user"] for u in users] == ["alice", "bob", "carol"]
    assert all(u["num_images"] == 3 for u in users)
    code, out, _ = cli("users", "remove", "bob", "--db", db)
    assert code == 0 and "removed 'bob'" in out
    code, _, err = cli("verify", model, "--user", "bob", "--db", db, faces[(1, 3)])
    assert code == 2 and "no user 'bob'" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("users", "remove", "bob", "--db", db)
    assert code == 2


def test_enroll_refuses_duplicate_without_replace(models, faces, db):
    model = models / "face.onnx"
    enrol(model, db, faces, users=(("alice", 0),))
    code, _, err = cli("enroll", model, "--user", "alice", "--db", db, faces[(1, 0)])
    assert code == 2 and "--replace" in err
    code, out, _ = cli("enroll", model, "--user", "alice", "--db", db, "--replace", faces[(1, 0)])
    assert code == 0
    code, _, _ = cli("verify", model, "--user", "alice", "--db", db, faces[(1, 3)])
    assert code == 0


def test_enroll_flags_an_image_of_someone_else(models, faces, db):
    code, out, err = cli("enroll", models / "face.onnx", "--user", "alice", "--db", db,
                         faces[(0, 0)], faces[(0, 1)], faces[(0, 2)], faces[(1, 0)])
    assert code == 0 and "each image vs the others" in out
    assert str(faces[(1, 0)]) in err and "a different person" in err
    assert str(faces[(0, 0)]) not in err


def test_uncalibrated_model_refuses_to_guess(models, faces, db):
    model = models / "uncal" / "face.onnx"
    enrol(model, db, faces, users=(("alice", 0),))
    code, out, err = cli("verify", model, "--user", "alice", "--db", db, faces[(0, 3)])
    assert code == 2 and out == ""
    assert "no calibrated verification thresholds" in err and "--threshold" in err
    assert len(err.strip().splitlines()) == 1
    code, out, _ = cli("verify", model, "--user", "alice", "--db", db, "--threshold", "0.5",
                       faces[(0, 3)])
    assert code == 0 and "explicit --threshold" in out
    code, _, err = cli("identify", model, "--db", db, faces[(0, 3)])
    assert code == 2 and "no calibrated" in err
    code, _, err = cli("verify", models / "face.onnx", "--user", "alice", "--db", db,
                       "--far", "1e-5", faces[(0, 3)])
    assert code == 2 and "no threshold calibrated at FAR 1e-05" in err


def test_model_mismatch_refused(models, faces, db):
    enrol(models / "face.onnx", db, faces, users=(("alice", 0),))
    other = models / "other" / "face.onnx"
    code, out, err = cli("verify", other, "--user", "alice", "--db", db, faces[(0, 3)])
    assert code == 2 and out == ""
    assert "enrolled with model tiny_lda" in err and "cannot be compared" in err
    code, _, err = cli("identify", other, "--db", db, faces[(0, 3)])
    assert code == 2 and "no user is enrolled with this model" in err
    code, _, err = cli("unlock", other, "--user", "alice", "--db", db, faces[(0, 3)])
    assert code == 2 and "cannot be compared" in err


def test_bad_inputs_give_one_line_errors(models, faces, db, tmp_path):
    model = models / "face.onnx"
    enrol(model, db, faces, users=(("alice", 0),))
    wide = save_image(tmp_path / "wide.png", np.zeros((96, 160, 3), np.uint8))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(faces[(0, 3)].read_bytes()[:500])
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    cases = [(wide, "aligned face crop"), (trunc, "corrupt or truncated|not a readable"),
             (text, "not a PNG, JPEG, BMP or WebP"), (tmp_path / "missing.png", "not found")]
    for path, pattern in cases:
        for cmd in (["verify", model, "--user", "alice"], ["identify", model],
                    ["enroll", model, "--user", "zed"]):
            code, out, err = cli(*cmd, "--db", db, path)
            assert code == 2, (cmd, path, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("edgeconv: error:"), err
            assert re.search(pattern, lines[0]), lines[0]
    assert "zed" not in cli("users", "list", "--db", db)[1]  # nothing half-enrolled
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"nonsense")
    code, _, err = cli("verify", bad_model, "--user", "alice", "--db", db, faces[(0, 3)])
    assert code == 2 and "not a readable ONNX model" in err


def test_corrupt_or_foreign_db_gives_clear_error(models, faces, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    code, _, err = cli("verify", models / "face.onnx", "--user", "a", "--db", bad, faces[(0, 3)])
    assert code == 2 and "not an SQLite file" in err
    code, _, err = cli("users", "list", "--db", bad)
    assert code == 2 and "not an SQLite file" in err
    code, _, err = cli("verify", models / "face.onnx", "--user", "a", "--db",
                       tmp_path / "none.db", faces[(0, 3)])
    assert code == 2 and "no template database" in err
    code, out, _ = cli("users", "list", "--db", tmp_path / "none.db")
    assert code == 0 and "no template database" in out


def test_unlock_lockout_survives_restart(models, faces, db):
    model = models / "face.onnx"
    enrol(model, db, faces, users=(("alice", 0),))
    impostor, genuine = faces[(1, 3)], faces[(0, 3)]
    # an accept resets the counter
    for _ in range(4):
        assert cli("unlock", model, "--user", "alice", "--db", db, impostor)[0] == 1
    code, out, _ = cli("unlock", model, "--user", "alice", "--db", db, genuine)
    assert code == 0 and out.startswith("UNLOCKED 'alice'")
    # five consecutive rejections (each a fresh "process": new store, new policy) lock out
    outs = [cli("unlock", model, "--user", "alice", "--db", db, impostor) for _ in range(5)]
    assert [c for c, _, _ in outs] == [1, 1, 1, 1, 3]
    assert "1 attempt(s) left" in outs[3][1] and "locked out for 30 s" in outs[4][1]
    code, out, err = cli("unlock", model, "--user", "alice", "--db", db, genuine)
    assert code == 3 and out == "" and "locked out" in err and "try again in" in err
    code, out, _ = cli("users", "list", "--db", db)
    assert "locked" in out
    # a real restart: another interpreter, torch blocked
    proc = cli_subprocess("unlock", model, "--user", "alice", "--db", db, genuine)
    assert proc.returncode == 3, proc.stderr
    assert "locked out" in proc.stderr
    # verify is diagnostic and not subject to the policy; users reset clears the lock-out
    assert cli("verify", model, "--user", "alice", "--db", db, genuine)[0] == 0
    assert cli("users", "reset", "alice", "--db", db)[0] == 0
    assert cli("unlock", model, "--user", "alice", "--db", db, genuine)[0] == 0


def test_unlock_identify_mode(models, faces, db):
    model = models / "face.onnx"
    enrol(model, db, faces, users=(("alice", 0), ("bob", 1)))
    code, out, _ = cli("unlock", model, "--db", db, "--json", faces[(1, 4)])
    r = json.loads(out)
    assert code == 0 and r["accepted"] and r["user"] == "bob"
    outs = [cli("unlock", model, "--db", db, "--max-failures", "2", faces[(3, 4)])[0]
            for _ in range(2)]
    assert outs == [1, 3]
    assert cli("unlock", model, "--db", db, faces[(1, 4)])[0] == 3
    assert cli("users", "reset", "--db", db)[0] == 0
    assert cli("unlock", model, "--db", db, faces[(1, 4)])[0] == 0


def test_camera_needs_extra_or_device(models, faces, db):
    enrol(models / "face.onnx", db, faces, users=(("alice", 0),))
    code, _, err = cli("unlock", models / "face.onnx", "--user", "alice", "--db", db,
                       "--camera", "0")
    assert code == 2
    try:
        import cv2  # noqa: F401
    except ImportError:
        assert "edgeconv[camera]" in err
    else:
        assert "camera 0" in err
    code, _, err = cli("unlock", models / "face.onnx", "--user", "alice", "--db", db)
    assert code == 2 and "--camera" in err


def test_center_crop_resize():
    from edgeconv.runtime.camera import center_crop_resize

    frame = np.zeros((480, 640, 3), np.uint8)
    frame[200:280, 280:360] = 255  # a bright square in the centre
    out = center_crop_resize(frame, (96, 96), crop=80 / 480)
    assert out.shape == (96, 96, 3) and out.dtype == np.uint8
    assert out.min() > 200  # the crop is exactly the centre square
    full = center_crop_resize(frame, (112, 96), crop=1.0)
    assert full.shape == (112, 96, 3)
    with pytest.raises(Exception, match="RGB uint8"):
        center_crop_resize(np.zeros((10, 10), np.uint8), (96, 96))


def test_default_db_under_edgeconv_home(models, faces, tmp_path, monkeypatch):
    home = tmp_path / "eh"
    monkeypatch.setenv("EDGECONV_HOME", str(home))
    code, out, err = cli("enroll", models / "face.onnx", "--user", "dana", faces[(2, 0)])
    assert code == 0, err
    assert (home / "templates.db").exists()
    assert oct(os.stat(home).st_mode & 0o777) == "0o700"
    assert oct(os.stat(home / "templates.db").st_mode & 0o777) == "0o600"
    assert "dana" in cli("users", "list")[1]


def test_runs_without_torch(models, faces, tmp_path):
    """The whole flow in one fresh interpreter where `import torch` fails."""
    db = tmp_path / "t.db"
    model = models / "face.onnx"
    steps = [(["enroll", model, "--user", "alice", "--db", db, faces[(0, 0)], faces[(0, 1)]], 0),
             (["verify", model, "--user", "alice", "--db", db, faces[(0, 3)]], 0),
             (["verify", model, "--user", "alice", "--db", db, faces[(1, 3)]], 1),
             (["identify", model, "--db", db, faces[(0, 4)]], 0),
             (["unlock", model, "--user", "alice", "--db", db, faces[(0, 4)]], 0),
             (["users", "list", "--db", db], 0)]
    script = BLOCK_TORCH + (
        "import json\nfrom edgeconv.cli import main\ncodes = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    try:\n        main(args)\n    except SystemExit as exc:\n"
        "        codes.append(exc.code)\n"
        "print('CODES', json.dumps(codes))\n"
        "print('TORCH', 'torch' in sys.modules)\n")
    arg = json.dumps([[str(a) for a in args] for args, _ in steps])
    proc = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = dict(ln.split(" ", 1) for ln in proc.stdout.splitlines()
                 if ln.startswith(("CODES", "TORCH")))
    assert json.loads(lines["CODES"]) == [want for _, want in steps], proc.stdout + proc.stderr
    assert lines["TORCH"] == "False"
    assert "Traceback" not in proc.stderr


class _FakeCapture:
    """cv2.VideoCapture stand-in: BGR frames with a face in the centre 60 %."""

    face = None

    def __init__(self, index):
        self.index = index
        self.reads = 0

    def isOpened(self):
        return self.index == 0

    def set(self, *args):
        return True

    def read(self):
        frame = np.full((160, 160, 3), 90, np.uint8)
        frame[32:128, 32:128] = self.face
        self.reads += 1
        return True, np.ascontiguousarray(frame[..., ::-1])  # BGR, like OpenCV

    def release(self):
        pass


@pytest.fixture
def fake_cv2(monkeypatch):
    import types

    mod = types.ModuleType("cv2")
    mod.VideoCapture = _FakeCapture
    mod.COLOR_BGR2RGB, mod.COLOR_GRAY2RGB = 4, 8
    mod.CAP_PROP_FRAME_WIDTH, mod.CAP_PROP_FRAME_HEIGHT = 3, 4
    mod.cvtColor = lambda img, code: np.ascontiguousarray(img[..., ::-1])
    monkeypatch.setitem(sys.modules, "cv2", mod)
    return mod


def test_camera_loop_with_fake_camera(models, faces, db, tmp_path, fake_cv2):
    from edgeconv.data.images import load_image

    model = models / "face.onnx"
    enrol(model, db, faces, users=(("alice", 0),))
    _FakeCapture.face = load_image(faces[(0, 3)])
    seen = tmp_path / "seen.png"
    code, out, err = cli("unlock", model, "--user", "alice", "--db", db, "--camera", "0",
                         "--interval", "0", "--save-crop", seen)
    assert code == 0 and out.startswith("UNLOCKED 'alice'"), err
    np.testing.assert_array_equal(load_image(seen), _FakeCapture.face)  # the exact centre
    _FakeCapture.face = load_image(faces[(1, 3)])
    code, out, err = cli("unlock", model, "--user", "alice", "--db", db, "--camera", "0",
                         "--interval", "0", "--max-attempts", "2")
    assert code == 1 and out.count("REJECTED") == 2
    code, out, err = cli("unlock", model, "--user", "alice", "--db", db, "--camera", "0",
                         "--interval", "0")
    assert code == 3 and out.count("REJECTED") == 3 and "locked out for 30 s" in out
    code, _, err = cli("unlock", model, "--user", "alice", "--db", db, "--camera", "0")
    assert code == 3 and "locked out" in err  # refused before the camera is even opened
    cli("users", "reset", "alice", "--db", db)
    code, _, err = cli("unlock", model, "--user", "alice", "--db", db, "--camera", "1")
    assert code == 2 and "camera 1: cannot open" in err

"""The file that is checked is the file that runs (reliability round 3, item 1).

A local user who can rename files swaps, every few milliseconds, the enrolled face model and
a forged one that outputs the victim's template for any face. Before the fix the runtime
opened the model by name and hashed it from a second read, so a stranger was accepted with
score 1.0 whenever the swap fell between the two. Now the model is read once; the forged
bytes can only ever run under their own identity, which no template is bound to.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.errors import EdgeconvError  # noqa: E402

from test_cli import run_in_process  # noqa: E402

onnx = pytest.importorskip("onnx")


def cli(*args):
    res = run_in_process(*args)
    return res.returncode, res.stdout, res.stderr


def forged_model(path: Path, template: np.ndarray, meta: dict) -> Path:
    """An ONNX model with ``meta`` embedded that outputs ``template`` for every image."""
    from onnx import TensorProto, helper, numpy_helper

    t = np.asarray(template, np.float32)[None, :]
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "ax"], ["m1"]),
             helper.make_node("Mul", ["m1", "zero"], ["z"]),
             helper.make_node("Add", ["z", "t"], ["embedding"])]
    inits = [numpy_helper.from_array(t, "t"), numpy_helper.from_array(np.zeros(1, np.float32),
                                                                       "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "ax")]
    graph = helper.make_graph(
        nodes, "forged",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *TM.SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", t.shape[1]])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"edgeconv": json.dumps(meta)})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("swap")
    real = TM.make_model(d / "real.onnx")
    (d / "real.onnx.json").unlink()          # embedded metadata only: nothing else to swap
    ids, idx = np.array([0, 0, 0, 7]), np.array([0, 1, 2, 0])
    faces = [save_image(d / f"f{k}.png", im) for k, im in enumerate(TM.render(ids, idx))]
    db = d / "t.db"
    model = d / "face.onnx"
    os.link(real, model)
    code, _, err = cli("enroll", model, "--user", "alice", "--db", db, *faces[:3])
    assert code == 0, err
    from edgeconv.runtime.store import TemplateStore

    with TemplateStore(db, create=False) as s:
        template = s.get("alice").embedding
    meta = json.loads(onnx.load(str(real)).metadata_props[0].value)
    forged = forged_model(d / "forged.onnx", template, meta)
    return {"dir": d, "real": real, "forged": forged, "model": model, "db": db,
            "stranger": faces[3], "template": template}


def test_the_forged_model_would_accept_the_stranger(scene):
    """The attack is real: run by itself the forged model scores the stranger 1.0 against
    alice's template; only its identity keeps it out."""
    from edgeconv.runtime.embedder import Embedder

    with Embedder(scene["forged"]) as e:
        assert float(e.embed(str(scene["stranger"])) @ scene["template"]) > 0.9999
    with Embedder(scene["real"]) as e:
        assert float(e.embed(str(scene["stranger"])) @ scene["template"]) < 0.5


def test_swap_race_never_accepts(scene):
    from edgeconv.runtime.store import ModelMismatch
    from edgeconv.runtime.unlock import verify_command

    model, d = scene["model"], scene["dir"]
    stop = threading.Event()
    swaps = [0]

    def swapper():
        tmp = d / "swap.tmp"
        srcs = (scene["forged"], scene["real"])
        while not stop.is_set():
            for src in srcs:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                os.link(src, tmp)
                os.replace(tmp, model)  # atomic rename over the model's name
                swaps[0] += 1
                time.sleep(0.002)

    th = threading.Thread(target=swapper, daemon=True)
    th.start()
    outcomes = {"accept": 0, "reject": 0, "mismatch": 0, "other": 0}
    try:
        for _ in range(200):
            try:
                code = verify_command(model, "alice", scene["stranger"], db=scene["db"],
                                      as_json=True)
                outcomes["accept" if code == 0 else "reject"] += 1
            except ModelMismatch:
                outcomes["mismatch"] += 1
            except EdgeconvError:
                outcomes["other"] += 1
    finally:
        stop.set()
        th.join()
    assert swaps[0] > 100
    assert outcomes["accept"] == 0, outcomes
    # both models really ran during the race: the test exercised the swap
    assert outcomes["reject"] > 0 and outcomes["mismatch"] > 0, outcomes


def test_model_mismatch_counts_toward_the_lockout(scene, tmp_path):
    db = tmp_path / "t.db"
    code, _, err = cli("enroll", scene["real"], "--user", "bob", "--db", db,
                       str(scene["stranger"]))
    assert code == 0, err
    for k in range(5):
        code, out, err = cli("unlock", scene["forged"], "--user", "bob", "--db", db,
                             str(scene["stranger"]))
        assert code == 2 and "counted as a failed attempt" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    # five refusals locked bob out: even his real model is refused now
    code, _, err = cli("unlock", scene["real"], "--user", "bob", "--db", db,
                       str(scene["stranger"]))
    assert code == 3 and "locked out" in err


def test_unlock_hides_the_score_of_a_rejection_unless_asked(scene, tmp_path):
    db = tmp_path / "t.db"
    code, _, err = cli("enroll", scene["real"], "--user", "carol", "--db", db,
                       str(scene["stranger"]))
    assert code == 0, err
    probe = scene["dir"] / "f0.png"  # alice's face, not carol's
    code, out, _ = cli("unlock", scene["real"], "--user", "carol", "--db", db, str(probe))
    assert code == 1 and out.startswith("REJECTED") and "score" not in out
    assert "threshold" not in out
    code, out, _ = cli("unlock", scene["real"], "--user", "carol", "--db", db, "--json",
                       str(probe))
    r = json.loads(out)
    assert code == 1 and "score" not in r and "threshold" not in r and not r["accepted"]
    code, out, _ = cli("unlock", scene["real"], "--user", "carol", "--db", db,
                       "--show-score", str(probe))
    assert code == 1 and "score" in out and "threshold" in out


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
@pytest.mark.parametrize("how", ["world-writable", "foreign-owned", "open-folder"])
def test_unlock_refuses_an_untrusted_store(scene, tmp_path, how):
    folder = tmp_path / "store"
    folder.mkdir(mode=0o700)
    db = folder / "t.db"
    code, _, err = cli("enroll", scene["real"], "--user", "dan", "--db", db,
                       str(scene["stranger"]))
    assert code == 0, err
    if how == "world-writable":
        os.chmod(db, 0o666)
    elif how == "foreign-owned":
        os.chown(db, 12345, 12345)
    else:
        os.chmod(folder, 0o777)
    code, out, err = cli("unlock", scene["real"], "--user", "dan", "--db", db,
                         str(scene["stranger"]))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (out, err)
    assert {"world-writable": "writable by every user", "foreign-owned": "another user",
            "open-folder": "folder is writable"}[how] in err

"""`edgeconv envelope` on a tiny budget: two ops x two widths give the table, the JSON and the
four plots; a killed run resumes without redoing finished cells."""

from __future__ import annotations

import hashlib
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")
pytest.importorskip("matplotlib")

from edgeconv.envelope import PLOTS, EnvelopeConfig, plan_cells, run_envelope  # noqa: E402


def tiny(out, **kw):
    base = dict(output=str(out), models=("mbv2",), ops=("depthwise", "condconv"),
                widths=(0.1, 0.2), seeds=(0,), epochs=1, input_size=16, identities=6,
                images_per_identity=4, embedding_dim=16, batch_size=8, val_pairs=20,
                test_pairs=24, formats="", memory_batch=0)
    base.update(kw)
    return EnvelopeConfig(**base)


def test_plan_cells_mixer_takes_no_op():
    cells = plan_cells(tiny("x", models=("mbv2", "mixer"), widths=(0.1, 0.5), seeds=(0, 1)))
    mixer = [c for c in cells if c["family"] == "mlpmixer"]
    assert len(cells) == 2 * 2 * 2 + 2 * 2 and {c["op"] for c in mixer} == {"depthwise"}
    assert {c["curve"] for c in mixer} == {"mlpmixer"}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_envelope_tiny_and_resume(tmp_path, torch_one_thread):
    cfg = tiny(tmp_path / "env")

    class Killed(Exception):
        pass

    def kill(_res):
        raise Killed

    with pytest.raises(Killed):  # a run killed right after its first cell
        run_envelope(cfg, echo=lambda *_: None, after_cell=kill)
    done = sorted((tmp_path / "env" / "cells").glob("*/result.json"))
    assert len(done) == 1
    first, sha, mtime = done[0], _sha(done[0]), done[0].stat().st_mtime_ns

    ran = []
    report = run_envelope(cfg, echo=lambda *_: None, after_cell=lambda r: ran.append(r["id"]))
    assert first.parent.name not in ran and len(ran) == 3       # the finished cell kept
    assert _sha(first) == sha and first.stat().st_mtime_ns == mtime
    out = tmp_path / "env"
    for name, *_ in PLOTS:
        assert (out / name).stat().st_size > 1000
    data = json.loads((out / "envelope.json").read_text())
    assert len(data["cells"]) == 4 and len(data["rows"]) == 4
    assert {r["curve"] for r in data["rows"]} == {"mbv2/depthwise", "mbv2/condconv"}
    assert all(r["macs"] > 0 and 0 <= r["accuracy"] <= 1 for r in data["rows"])
    md = (out / "envelope.md").read_text()
    assert "| mbv2/condconv | 0.2 |" in md and len(report["plots"]) == 4


def test_rebench_keeps_training_and_benches_again(tmp_path, torch_one_thread):
    """`--rebench`: every finished cell of the folder with the recipe is exported and benched
    again (bench_run recorded), its training and evaluation untouched; nothing to rebench, or
    no formats: one-line errors."""
    from edgeconv.errors import EdgeconvError

    cfg = tiny(tmp_path / "env", ops=("depthwise",), widths=(0.1,), formats="onnx")
    run_envelope(cfg, echo=lambda *_: None)
    cell = next((tmp_path / "env" / "cells").iterdir())
    before = json.loads((cell / "result.json").read_text())
    ckpt_sha = _sha(cell / "train" / "last.ckpt")
    assert "bench_run" not in before and before["bench"]["max_fps"] > 0
    lines = []
    report = run_envelope(EnvelopeConfig(**{**cfg.to_dict(), "rebench": True}),
                          echo=lines.append)
    after = json.loads((cell / "result.json").read_text())
    assert after["bench_run"]["kernels"] and after["bench"]["max_fps"] > 0
    assert after["eval"] == before["eval"] and after["train"] == before["train"]
    assert _sha(cell / "train" / "last.ckpt") == ckpt_sha
    assert any("rebench 1 finished cells" in ln for ln in lines)
    assert len(report["rows"]) == 1
    with pytest.raises(EdgeconvError, match="nothing to rebench"):
        run_envelope(EnvelopeConfig(**{**cfg.to_dict(), "rebench": True,
                                       "output": str(tmp_path / "empty")}))

"""`edgeconv quickstart`: both models trained, evaluated and compared, as steps."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_quickstart_tiny(tmp_path):
    from edgeconv.train.quickstart import STEPS, QuickstartOptions, run_quickstart

    seen = []

    def extra_step(ctx):  # how the lead appends export / benchmark steps
        seen.append(sorted(ctx.evals))
        ctx.extra["export"] = "ok"

    lines = []
    opts = QuickstartOptions(output=str(tmp_path / "qs"), identities=8, images_per_identity=4,
                             epochs=1, batch_size=16, val_pairs=40, test_pairs=40,
                             inter_channels=8, progress=False)
    ctx = run_quickstart(opts, steps=STEPS + [("export", extra_step)], echo=lines.append)
    out = tmp_path / "qs"
    assert seen == [["depthwise", "tvconv"]] and ctx.extra["export"] == "ok"
    assert set(ctx.timings) == {"train", "evaluate", "profile", "report", "export", "total"}
    for op in ("tvconv", "depthwise"):
        assert (out / op / "last.ckpt").exists()
        assert (out / f"eval_{op}.json").exists()
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "summary.md").read_text()
    assert "| tvconv |" in table and "| depthwise |" in table and "+-" in table
    summary = json.loads((out / "summary.json").read_text())
    res = summary["results"]
    # folded TVConv and depthwise have the same inference MACs
    assert res["tvconv"]["macs"] == res["depthwise"]["macs"] > 0
    assert res["tvconv"]["params"] > res["depthwise"]["params"]  # the generator (training form)
    assert summary["timings_s"]["export"] >= 0
    assert any("| tvconv |" in ln for ln in lines)


def test_quickstart_cli_help_is_torch_free():
    from tests.test_cli import run_cli

    res = run_cli("quickstart", "--help", block_torch=True)
    assert res.returncode == 0 and "depthwise twin" in res.stdout

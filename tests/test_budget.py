"""The quickstart's time budget: the plan from measured speeds (made-up speeds and clocks),
and a tiny budget through the real quickstart."""

from __future__ import annotations

import json

import pytest

from edgeconv.train.budget import (MIN_EPOCHS, overhead_estimate, plan_epochs)

WANTED = {"tvconv": 24, "depthwise": 18}


def test_a_fast_machine_keeps_the_full_recipe():
    # 20k images: 24 / 1000 * 20k + 18 / 1100 * 20k = 807 s (x 1.08) < 900 - 150
    p = plan_epochs(WANTED, 20000, {"tvconv": 1000, "depthwise": 1100}, 15 * 60, 0.0)
    assert not p.cut and p.epochs == WANTED and p.planned_train_s < 900


def test_a_slow_machine_gets_proportionally_fewer_epochs():
    speeds = {"tvconv": 300, "depthwise": 350}       # the AMD build machine, 3-4x slower
    p = plan_epochs(WANTED, 20000, speeds, 15 * 60, overhead_estimate(350),
                    identities=1000, images_per_identity=20)
    assert p.cut and not p.notes
    assert p.planned_train_s + p.overhead_s <= 15 * 60
    assert MIN_EPOCHS <= p.epochs["depthwise"] < 18 and p.epochs["tvconv"] < 24
    # TVConv keeps its extra share of epochs
    assert p.epochs["tvconv"] >= p.epochs["depthwise"]
    assert "of 24" in p.describe() and "of 18" in p.describe()


def test_overhead_scales_with_the_machine():
    assert overhead_estimate(1088) == pytest.approx(overhead_estimate(4000))  # never below ref
    assert overhead_estimate(272) == pytest.approx(2.5 * overhead_estimate(1088))


def test_too_small_a_budget_cuts_the_data_and_says_so():
    p = plan_epochs(WANTED, 20000, {"tvconv": 50, "depthwise": 60}, 60, 30,
                    identities=1000, images_per_identity=20)
    assert p.epochs == {"tvconv": MIN_EPOCHS, "depthwise": MIN_EPOCHS}
    assert p.images_per_identity < 20
    p = plan_epochs(WANTED, 20000, {"tvconv": 1, "depthwise": 1}, 60, 30,
                    identities=1000, images_per_identity=20)
    assert p.notes and "overrun" in p.notes[0]


def test_tiny_budget_through_the_quickstart(tmp_path, torch_one_thread):
    """A budget far too small for the asked epochs: the run is cut to the minimum, trains
    that many epochs, and the summary says what was cut and what it cost."""
    pytest.importorskip("torch")
    from edgeconv.quickstart import QuickstartOptions, run_quickstart

    lines = []
    opts = QuickstartOptions(output=str(tmp_path / "qs"), identities=8, images_per_identity=8,
                             epochs=40, tvconv_epochs=50, batch_size=16, val_pairs=40,
                             test_pairs=40, embedding_dim=32, inter_channels=8, progress=False,
                             export_formats="", budget_min=0.05)
    ctx = run_quickstart(opts, echo=lines.append)
    plan = ctx.extra["plan"]
    assert plan.cut and plan.epochs == {"tvconv": MIN_EPOCHS, "depthwise": MIN_EPOCHS}
    assert ctx.runs["tvconv"]["epochs"] == MIN_EPOCHS == ctx.runs["depthwise"]["epochs"]
    text = (tmp_path / "qs" / "summary.md").read_text()
    assert "epochs were cut" in text and f"tvconv: {MIN_EPOCHS} of 24 epochs" in text
    assert "points)" in text
    summary = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert summary["budget"]["epochs"] == {"tvconv": MIN_EPOCHS, "depthwise": MIN_EPOCHS}
    assert any(line.startswith("[plan] 0.05-minute budget") for line in lines)


def test_a_cut_never_raises_an_op_above_its_recipe():
    p = plan_epochs({"tvconv": 2, "depthwise": 1}, 1000, {"tvconv": 1, "depthwise": 1}, 100, 10)
    assert p.cut and p.epochs == {"tvconv": 2, "depthwise": 1}

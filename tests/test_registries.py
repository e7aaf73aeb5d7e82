"""Operators and models describe themselves (issue: each kind of thing in one place).

A new operator is its own class plus ONE registration line: here a toy op, registered in a
temporary registry entry, gets model building, training, profiling and a parity-gated ONNX
export without any other file knowing its name. Consumers ask the registries for traits;
a scan of the package checks that no module compares op or model-family names itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from edgeconv.models.registry import model_names, model_spec  # noqa: E402
from edgeconv.ops import OpSpec, list_ops, op_spec, register_op, unregister_op  # noqa: E402

PACKAGE = Path(__file__).resolve().parents[1] / "edgeconv"


class ToyOp(nn.Module):
    """A depthwise conv followed by a learned per-channel gain (any op signature works)."""

    def __init__(self, channels, stride=1, in_hw=(96, 96), kernel_size=3, gain=1.0):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2,
                              groups=channels, bias=False)
        self.gain = nn.Parameter(torch.full((1, channels, 1, 1), float(gain)))

    def forward(self, x):
        return self.conv(x) * self.gain


@pytest.fixture
def toy():
    register_op(OpSpec("toy", __name__, "ToyOp", "a test operator"))  # the one line
    try:
        yield "toy"
    finally:
        unregister_op("toy")


def test_a_registered_op_trains_profiles_and_exports(toy, tmp_path, torch_one_thread):
    pytest.importorskip("onnx")
    from edgeconv.export.exporter import export_checkpoint
    from edgeconv.models import create_model
    from edgeconv.profiling.report import profile_model
    from edgeconv.train.config import TrainConfig
    from edgeconv.train.loop import train

    assert "toy" in list_ops()
    m = create_model("mbv2_x0_1", op=toy, input_size=32, embedding_dim=16)
    assert sum(isinstance(x, ToyOp) for x in m.modules()) == 17
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    rec = profile_model("mbv2_x0_1", toy, (32, 32), embedding_dim=16)
    base = profile_model("mbv2_x0_1", "depthwise", (32, 32), embedding_dim=16)
    assert rec["macs"] >= base["macs"] > 0
    summary = train(TrainConfig(model="mbv2_x0_1", op=toy, input_size=[32, 32],
                                embedding_dim=16, identities=4, images_per_identity=4,
                                val_pairs=20, epochs=1, batch_size=8,
                                output=str(tmp_path / "run")), progress=False,
                    log=lambda *_: None)
    ckpt = Path(summary["last"])
    assert ckpt.exists()
    report = export_checkpoint(ckpt, formats="onnx", output_dir=tmp_path / "x",
                               echo=lambda *_: None)
    onnx_rep = report["files"][0] if "files" in report else report
    assert (tmp_path / "x").exists() and any((tmp_path / "x").glob("*.onnx")), onnx_rep


def test_traits_come_from_the_registries():
    assert op_spec("tvconv").size_bound and op_spec("tvconv").foldable
    assert not op_spec("depthwise").size_bound
    assert op_spec("filtergen").pins_batch and op_spec("filtergen").per_image
    assert model_spec("sfv2_x1_0").pins_batch and not model_spec("mbv2_x1_0").pins_batch
    assert {model_spec(n).family for n in model_names()} >= {"mobilenetv2", "shufflenetv2"}


#: (pattern, what it catches): a name of a registered op, model family or model compared
#: directly outside the registries
def _name_patterns():
    ops = "|".join(map(re.escape, list_ops()))
    fams = "|".join(sorted({re.escape(n.split("_")[0]) for n in model_names()}))
    return [re.compile(rf"""(==|!=)\s*["']({ops})["']"""),
            re.compile(rf"""["']({ops})["']\s*(==|!=)"""),
            re.compile(rf"""startswith\(\(?["']({fams})"""),
            re.compile(rf"""\bin\s*\(["']({ops})["']""")]


#: the registries themselves (and the CLI defaults that name a default op) may say the names
_ALLOWED = {"ops/__init__.py", "models/registry.py"}


def _lines_matching(patterns, allowed) -> list[str]:
    """``file:line: text`` of every code line (comments cut) of the package outside
    ``allowed`` that one of ``patterns`` matches."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in allowed:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(p.search(code) for p in patterns):
                hits.append(f"{rel}:{n}: {line.strip()}")
    return hits


def test_no_module_compares_op_or_model_names():
    hits = _lines_matching(_name_patterns(), _ALLOWED)
    assert not hits, "ask the registry (op_spec / model_spec) instead:\n" + "\n".join(hits)


#: where export format and runtime backend names may be compared: the format table, the
#: runtime import layer and the model-file reader (which tells the file kinds apart)
_FORMAT_ALLOWED = {"export/formats.py", "runtime/runtimes.py", "runtime/model_file.py"}


def _format_patterns():
    from edgeconv.export.formats import EXPORT_FORMATS
    from edgeconv.runtime.runtimes import BACKENDS

    names = "|".join(map(re.escape, sorted(set(EXPORT_FORMATS) | set(BACKENDS))))
    return [re.compile(rf"""(==|!=)\s*["']({names})["']"""),
            re.compile(rf"""["']({names})["']\s*(==|!=)"""),
            re.compile(r"""(==|!=)\s*(B\.)?(ONNXRUNTIME|TFLITE)\b"""),
            re.compile(rf"""\bin\s*\(["']({names})["']""")]


def test_no_module_compares_format_or_backend_names():
    """A format's code lives in its table entry's module (edgeconv.export.formats), a
    backend's in its class (edgeconv.runtime.backends): no call site asks for a name."""
    hits = _lines_matching(_format_patterns(), _FORMAT_ALLOWED)
    assert not hits, "ask the format table / the backend class instead:\n" + "\n".join(hits)


def test_every_format_module_has_the_export_loop_functions():
    import importlib

    from edgeconv.export.formats import EXPORT_FORMATS

    for spec in EXPORT_FORMATS.values():
        mod = importlib.import_module(spec.module)
        for fn in ("convert", "run", "finalize"):
            assert callable(getattr(mod, fn, None)), f"{spec.module}.{fn}"
        assert isinstance(mod.RUNTIME_LABEL, str) and mod.RUNTIME_LABEL
        if spec.fused_module:
            fused = importlib.import_module(spec.fused_module)
            for fn in ("fuse", "gate", "kernels_metadata", "report_lines"):
                assert callable(getattr(fused, fn, None)), f"{spec.fused_module}.{fn}"

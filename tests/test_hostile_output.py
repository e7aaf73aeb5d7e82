"""Hostile inputs, classes 6 and 7: output lost or written elsewhere, and the terminal.
Same-named translate inputs get numbered outputs; export --name cannot leave -o; names with
escape sequences or 200k characters are escaped and capped; bench table cells are capped;
Pillow/numpy warnings do not leak; a UTF-8 BOM is not part of the first pair-list name."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _unlock_models as TM  # noqa: E402
from _hostile import cli, refused  # noqa: E402

from edgeconv.data.images import save_image  # noqa: E402
from edgeconv.metadata import escape_text  # noqa: E402

EVIL = "\x1b[2J\x1b[31mpwned\rOK\x07"


# ----------------------------------------------------------------------------- class 6
def test_translate_output_names_are_unique():
    from edgeconv.translate.train import output_names

    names = output_names(["a/x.png", "b/x.png", "c/x.jpg", "x-1.png"], "nir2rgb")
    assert names[:3] == ["x_nir2rgb.png", "x-1_nir2rgb.png", "x-2_nir2rgb.png"]
    assert len(set(names)) == 4


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "sub/x", "..", "a\0b"])
def test_export_name_cannot_leave_the_output_folder(tmp_path, name):
    if "\0" in name:  # an argv cannot hold a NUL: the check itself
        from edgeconv.commands.export import check_export_options
        from edgeconv.errors import EdgeconvError

        with pytest.raises(EdgeconvError, match="a file stem, not a path"):
            check_export_options(name, "dynamic", None)
        return
    res = cli("export", tmp_path / "m.ckpt", "--name", name, "-o", tmp_path / "out")
    refused(res, "a file stem, not a path")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- class 7
def test_escape_text():
    out = escape_text(EVIL)
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "\\x1b[2J" in out and "\\x0d" in out
    long = escape_text("n" * 200_000)
    assert len(long) < 200 and "200000 characters" in long


@pytest.mark.parametrize("model_name", [EVIL, "N" * 200_000])
def test_model_name_escaped_by_enroll_and_users_list(tmp_path, model_name):
    pytest.importorskip("onnxruntime")
    m = TM.make_model(tmp_path / "m" / "face.onnx", name=model_name)
    face = save_image(tmp_path / "a.png", TM.render([0], [0])[0])
    db = tmp_path / "t.db"
    res = cli("enroll", m, face, "--user", "zed", "--db", db)
    assert res.returncode == 0, res.stderr
    for out in (res.stdout, cli("users", "list", "--db", db).stdout):
        assert "\x1b" not in out and "\r" not in out and "\x07" not in out
        assert max(len(ln) for ln in out.splitlines()) < 400
    res = cli("users", "list", "--db", db, "--json")
    assert "\x1b" not in res.stdout
    assert len(json.loads(res.stdout)["users"][0]["model_name"]) < 200


def test_bench_table_cells_capped():
    from edgeconv.profiling.bench_report import MAX_CELL, _table

    text = _table(["model", "status"], [["m.onnx", "failed: " + "x" * 500 + EVIL]])
    assert max(len(ln) for ln in text.splitlines()) < MAX_CELL + 60
    assert "\x1b" not in text


def test_palette_png_with_transparency_no_warning():
    from PIL import Image

    from edgeconv.data.images import decode_image_bytes

    im = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    buf = io.BytesIO()
    im.save(buf, format="PNG", transparency=b"\x00" * 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image_bytes(buf.getvalue()).shape == (8, 8, 3)


def test_translator_huge_output_range_refused_without_warnings(tmp_path):
    from edgeconv.metadata import MetadataError, validate_metadata

    meta = {"kind": "translator", "direction": "nir2rgb", "input_size": [32, 32],
            "output_range": [-1e308, 1e308]}
    with pytest.raises(MetadataError, match="output_range"):
        validate_metadata(meta, "tr.onnx")


def test_bom_in_pair_list(tmp_path):
    from edgeconv.data.pairs import read_pair_list

    save_image(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "p.txt").write_bytes("\ufeffa.png a.png 1\n".encode("utf-8"))
    (e,) = read_pair_list(tmp_path / "p.txt")
    assert e.left.name == "a.png"


def test_profile_json_has_params_alias():
    pytest.importorskip("torch")
    from edgeconv.profiling.report import profile_model

    r = profile_model("mbv2_x0_1", "depthwise")
    keys = list(r)
    assert r["params"] == r["params_train"] and "params_inference" in r
    assert keys.index("params") + 1 == keys.index("params_train")

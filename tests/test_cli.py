"""The console script: torch-free import, init/info, one-line errors with exit status 2."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

# Makes `import torch` fail in a child process, as on a device without torch.
BLOCK_TORCH = (
    "import sys\n"
    "class _Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def run_cli(*args, cwd=None, block_torch=False, subprocess_=False):
    """Run the console script; in-process (fast) unless torch must be blocked."""
    if not (block_torch or subprocess_ or cwd):
        return run_in_process(*args)
    prelude = BLOCK_TORCH if block_torch else ""
    code = prelude + "import sys\nfrom edgeconv.cli import main\nsys.argv=['edgeconv']+sys.argv[1:]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def run_in_process(*args):
    import contextlib
    import io

    from edgeconv.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # a traceback would reach the user: show it the same way
            import traceback

            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_import_does_not_import_torch():
    code = ("import sys, edgeconv, edgeconv.cli, edgeconv.metadata, edgeconv.fileio, "
            "edgeconv.config, edgeconv.ops, edgeconv.models.registry\n"
            "heavy = [m for m in ('torch', 'fvcore', 'onnx', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_works_without_torch():
    res = run_cli("--help", block_torch=True)
    assert res.returncode == 0, res.stderr
    for cmd in ("profile", "init", "info", "models"):
        assert cmd in res.stdout


def test_python_dash_m_is_the_same_command_line():
    res = subprocess.run([sys.executable, "-m", "edgeconv", "--help"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == run_cli("--help").stdout
    bad = subprocess.run([sys.executable, "-m", "edgeconv", "no-such-command"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_torch_command_without_torch_fails_cleanly():
    pytest.importorskip("torch")  # the child blocks torch itself; the check needs nothing else
    res = run_cli("profile", "mbv2_x0_1", block_torch=True)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "pip install 'edgeconv[train]'" in res.stderr


def test_unknown_model_one_line_exit_2():
    pytest.importorskip("torch")
    res = run_cli("profile", "resnet50", subprocess_=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "unknown model 'resnet50'" in res.stderr and "Traceback" not in res.stderr


def test_bad_input_size_exit_2():
    res = run_cli("profile", "mbv2_x0_1", "--input-size", "banana")
    assert res.returncode == 2
    assert "input size" in res.stderr and "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("ckpt") / "m.ckpt"
    res = run_cli("init", "mbv2_x0_1", "--op", "tvconv", "--input-size", "48", "--seed", "3",
                  "-o", path)
    assert res.returncode == 0, res.stderr
    return path


def test_init_writes_versioned_checkpoint(ckpt):
    import torch

    data = torch.load(ckpt, weights_only=True)
    assert data["format"] == "edgeconv.checkpoint" and data["format_version"] == 1
    assert data["model_config"]["name"] == "mbv2_x0_1"
    assert data["model_config"]["op"] == "tvconv"
    assert data["model_config"]["input_size"] == [48, 48]
    assert any(k.endswith("affinity") for k in data["state_dict"])


def test_init_is_seeded(ckpt, tmp_path):
    import torch

    again = tmp_path / "again.ckpt"
    assert run_cli("init", "mbv2_x0_1", "--op", "tvconv", "--input-size", "48", "--seed", "3",
                   "-o", again).returncode == 0
    a = torch.load(ckpt, weights_only=True)["state_dict"]
    b = torch.load(again, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_info_reads_checkpoint(ckpt):
    res = run_cli("info", ckpt)
    assert res.returncode == 0, res.stderr
    assert "mbv2_x0_1 op=tvconv input=[48, 48]" in res.stdout


def _expect_refusal(path, fragment):
    res = run_cli("info", path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0, res.stderr
    assert fragment in res.stderr
    return res


def test_missing_empty_truncated_corrupt_checkpoints(ckpt, tmp_path):
    _expect_refusal(tmp_path / "nope.ckpt", "no such file")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    _expect_refusal(tmp_path / "empty.ckpt", "empty file")
    data = Path(ckpt).read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    _expect_refusal(tmp_path / "trunc.ckpt", "corrupt or truncated")
    (tmp_path / "text.ckpt").write_text("hello world\n")
    _expect_refusal(tmp_path / "text.ckpt", "text.ckpt")


def test_wrong_architecture_checkpoint(ckpt, tmp_path):
    import torch

    data = torch.load(ckpt, weights_only=True)
    data["model_config"]["name"] = "mbv2_x0_5"
    torch.save(data, tmp_path / "wrong.ckpt")
    _expect_refusal(tmp_path / "wrong.ckpt", "weights do not fit mbv2_x0_5")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    _expect_refusal(tmp_path / "foreign.ckpt", "not an edgeconv checkpoint")
    data = torch.load(ckpt, weights_only=True)
    data["format_version"] = 99
    torch.save(data, tmp_path / "future.ckpt")
    _expect_refusal(tmp_path / "future.ckpt", "format version 99")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["torch_zip", "plain_pickle"])
def test_malicious_checkpoint_refused_nothing_executed(tmp_path, kind):
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = {"format": "edgeconv.checkpoint", "format_version": 1, "x": _Exploit(marker)}
    if kind == "torch_zip":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    _expect_refusal(path, "refused")
    assert not marker.exists()


def test_every_command_takes_exactly_its_options():
    """Each command's function takes exactly the options click declares for it (an option
    missing from the decorators was a NameError only at run time: quickstart --budget). A
    command whose options are generated from a config dataclass takes the dataclass (built
    from exactly those options: every one a field) and the declared CLI-only options."""
    import dataclasses
    import inspect

    import click

    from edgeconv.cli import cli

    def commands(group, prefix=""):
        for name, cmd in group.commands.items():
            yield prefix + name, cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, prefix + name + " ")

    bad = []
    generated_commands = 0
    for name, cmd in commands(cli):
        if cmd.callback is None:
            continue
        fn = inspect.unwrap(cmd.callback)
        params = set(inspect.signature(fn).parameters) - {"ctx"}
        declared = {p.name for p in cmd.params if p.expose_value}
        table = getattr(cmd.callback, "config_options", None)
        if table is not None:
            generated_commands += 1
            generated = set(table.names)
            fields = {f.name for f in dataclasses.fields(table.cls)}
            if not generated <= declared or not generated <= fields:
                bad.append(f"{name}: generated options {sorted(generated - declared)} not "
                           f"declared or {sorted(generated - fields)} not fields")
            declared = (declared - generated) | {table.arg}
        if params != declared:
            bad.append(f"{name}: function {sorted(params ^ declared)}")
    assert not bad, bad
    assert generated_commands >= 2  # train and quickstart at least

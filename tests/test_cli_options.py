"""Options generated from config dataclasses (edgeconv.commands.config_options): the train,
quickstart and envelope commands cannot drift from TrainConfig, QuickstartOptions and
EnvelopeConfig, and they build exactly the dataclass their options describe. Torch-free: the
training, quickstart and envelope runs are replaced by recorders."""

from __future__ import annotations

import dataclasses
import sys
import types

import click
import pytest
from click.testing import CliRunner

from edgeconv.cli import cli
from edgeconv.commands.config_options import ConfigOptions, Field, cli_only
from edgeconv.envelope import EnvelopeConfig
from edgeconv.quickstart import QuickstartOptions
from edgeconv.train.config import TrainConfig


def _table(command: str) -> ConfigOptions:
    return cli.commands[command].callback.config_options


def _option_default(command: str, row: Field):
    """What the command hands the dataclass for ``row`` when the option is not given."""
    cmd = cli.commands[command]
    param = next(p for p in cmd.params if p.name == row.name)
    with click.Context(cmd) as ctx:
        value = param.process_value(ctx, param.get_default(ctx))
    return row.convert(value) if row.convert is not None and value is not None else value


@pytest.mark.parametrize("command, cls, skipped", [
    ("train", TrainConfig, {"op_kwargs", "generator_weight_decay"}),
    ("quickstart", QuickstartOptions, None),
    ("envelope", EnvelopeConfig, {"bench_batches", "bench_min_secs"}),
])
def test_every_exposed_field_has_its_option_and_default(command, cls, skipped):
    table = _table(command)
    assert table.cls is cls
    fields = {f.name for f in dataclasses.fields(cls)}
    assert set(table.names) | set(table.skip) == fields
    if skipped is not None:
        assert set(table.skip) == skipped
    cmd = cli.commands[command]
    by_name = {p.name: p for p in cmd.params}
    defaults = cls()
    for row in table.fields:
        opt = by_name[row.name]
        declared = set(opt.opts) | set(opt.secondary_opts)
        wanted = ({n for f in row.flags for n in f.split("/")} if row.flags
                  else {"--" + row.name.replace("_", "-")})
        assert wanted <= declared, (row.name, declared)
        assert _option_default(command, row) == getattr(defaults, row.name), row.name


@pytest.fixture
def recorded_train(monkeypatch, tmp_path):
    """``edgeconv train`` with the training run replaced: (invoke, calls)."""
    calls = []

    def fake_train(config=None, **kw):
        calls.append((config, kw))
        last = tmp_path / "last.ckpt"
        last.write_bytes(b"")
        return {"last": str(last), "best": str(tmp_path / "best.ckpt"), "epochs_done": 1,
                "best_accuracy": None}

    monkeypatch.setitem(sys.modules, "edgeconv.train.loop",
                        types.SimpleNamespace(train=fake_train))

    def invoke(*args):
        res = CliRunner().invoke(cli, ["train", *map(str, args)])
        return res

    return invoke, calls


def test_train_without_options_builds_the_default_config(recorded_train):
    invoke, calls = recorded_train
    res = invoke()
    assert res.exit_code == 0, res.output
    config, kw = calls[0]
    assert config == TrainConfig()
    assert kw == {"progress": True, "overwrite": False}


def test_train_builds_the_config_its_options_say(recorded_train, tmp_path):
    invoke, calls = recorded_train
    res = invoke("--model", "mbv2_x0_5", "--op", "tvconv", "--input-size", "64x48",
                 "--embedding-dim", "128", "--tvconv-inter-channels", "8",
                 "--tvconv-inter-layers", "0", "--recon-weight", "0.5", "--data", "faces/",
                 "--identities", "10", "--images-per-identity", "3", "--difficulty", "0.25",
                 "--data-seed", "4", "--val", "none", "--val-pairs", "40", "--flip-test",
                 "--epochs", "6", "--batch-size", "16", "--lr", "0.05", "--momentum", "0.8",
                 "--weight-decay", "0", "--milestones", "2,4", "--gamma", "0.5",
                 "--schedule", "cosine", "--warmup-epochs", "1.5",
                 "--margin-warmup-epochs", "2", "--generator-lr-mult", "0.1",
                 "--am-scale", "16", "--am-margin", "0.2", "--no-hflip", "--workers", "2",
                 "--seed", "7", "--device", "cpu", "-o", tmp_path / "run", "--overwrite",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    assert "done: 1 epoch(s)" in res.output
    config, kw = calls[0]
    assert config == TrainConfig(
        model="mbv2_x0_5", op="tvconv", input_size=[64, 48], embedding_dim=128,
        op_kwargs={"inter_channels": 8, "inter_layers": 0}, data="faces/", identities=10,
        images_per_identity=3, difficulty=0.25, data_seed=4, val="none", val_pairs=40,
        flip_test=True, epochs=6, batch_size=16, lr=0.05, momentum=0.8, weight_decay=0.0,
        milestones=[2, 4], gamma=0.5, schedule="cosine", warmup_epochs=1.5,
        margin_warmup_epochs=2.0, generator_lr_mult=0.1, am_scale=16.0, am_margin=0.2,
        recon_weight=0.5, hflip=False, workers=2, seed=7, output=str(tmp_path / "run"),
        device="cpu")
    assert kw == {"progress": False, "overwrite": True}


def test_train_op_options_of_another_op_are_refused(recorded_train):
    invoke, calls = recorded_train
    res = invoke("--op", "depthwise", "--tvconv-inter-channels", "8")
    assert res.exit_code != 0 and not calls
    assert "--tvconv-inter-channels is an option of op tvconv" in str(res.exception)


def test_train_resume_passes_only_what_was_given(recorded_train, tmp_path):
    invoke, calls = recorded_train
    assert invoke("--resume", tmp_path, "--epochs", "9").exit_code == 0
    assert invoke("--resume", tmp_path, "-o", tmp_path / "o", "--workers", "1").exit_code == 0
    assert [c[0] for c in calls] == [None, None]
    assert calls[0][1] == {"resume": str(tmp_path), "progress": True, "overwrite": False,
                           "workers": None, "output": None, "epochs": 9}
    assert calls[1][1] == {"resume": str(tmp_path), "progress": True, "overwrite": False,
                           "workers": 1, "output": str(tmp_path / "o"), "epochs": None}


def test_quickstart_builds_its_options(monkeypatch):
    import edgeconv.quickstart as qs

    seen = []
    monkeypatch.setattr(qs, "run_quickstart", lambda opts, echo=None: seen.append(opts))
    runner = CliRunner()
    assert runner.invoke(cli, ["quickstart"]).exit_code == 0
    res = runner.invoke(cli, ["quickstart", "-o", "qs", "--model", "mbv2_x0_5",
                              "--input-size", "48", "--identities", "30",
                              "--images-per-identity", "4", "--difficulty", "0.1",
                              "--epochs", "3", "--tvconv-epochs", "5", "--am-scale", "8",
                              "--batch-size", "32", "--lr", "0.1", "--test-pairs", "100",
                              "--seed", "2", "--no-progress", "--budget", "0"])
    assert res.exit_code == 0, res.output
    assert seen == [QuickstartOptions(), QuickstartOptions(
        output="qs", model="mbv2_x0_5", input_size=48, identities=30, images_per_identity=4,
        difficulty=0.1, epochs=3, tvconv_epochs=5, am_scale=8.0, batch_size=32, lr=0.1,
        test_pairs=100, seed=2, progress=False, budget_min=0.0)]


def test_envelope_builds_its_config(monkeypatch):
    import edgeconv.envelope as env

    seen = []
    monkeypatch.setattr(env, "run_envelope", lambda cfg, echo=None: seen.append(cfg))
    runner = CliRunner()
    assert runner.invoke(cli, ["envelope"]).exit_code == 0
    res = runner.invoke(cli, ["envelope", "--models", "mbv2, sfv2", "--ops", "tvconv",
                              "--widths", "0.25,1", "--seeds", "0,1", "--bench-threads", "1,2",
                              "--formats", "", "--jobs", "2", "-o", "env"])
    assert res.exit_code == 0, res.output
    assert seen == [EnvelopeConfig(), EnvelopeConfig(
        output="env", models=("mbv2", "sfv2"), ops=("tvconv",), widths=(0.25, 1.0),
        seeds=(0, 1), bench_threads=(1, 2), formats="", jobs=2)]
    res = runner.invoke(cli, ["envelope", "--widths", "0.1,wide"])
    assert res.exit_code == 2 and "--widths" in res.output
    assert "expected comma-separated numbers" in res.output and not seen[2:]


# -- the generator itself -------------------------------------------------------------------
@dataclasses.dataclass
class _Cfg:
    count: int = 3
    name: str = "x"
    fast: bool = False
    check: bool = True
    sizes: list = dataclasses.field(default_factory=lambda: [1, 2])


def test_generated_options_their_order_flags_and_defaults():
    table = ConfigOptions(_Cfg, [
        Field("count", type=click.IntRange(1), help="How many."),
        cli_only("--verbose", is_flag=True),
        Field("name", flags=("-n", "--the-name")),
        Field("fast", help="Go fast."),
        Field("check"),
    ], skip=("sizes",))

    @click.command()
    @table
    def cmd(config, verbose):
        click.echo(repr((config, verbose)))

    assert [p.name for p in cmd.params] == ["count", "verbose", "name", "fast", "check"]
    opts = {p.name: p for p in cmd.params}
    assert opts["fast"].is_flag and opts["fast"].opts == ["--fast"]
    assert opts["check"].opts == ["--check"] and opts["check"].secondary_opts == ["--no-check"]
    assert opts["name"].opts == ["-n", "--the-name"]
    assert opts["count"].default == 3 and opts["count"].show_default
    res = CliRunner().invoke(cmd, [])
    assert res.output.strip() == repr((_Cfg(), False))
    res = CliRunner().invoke(cmd, ["--count", "5", "-n", "y", "--fast", "--no-check",
                                   "--verbose"])
    assert res.output.strip() == repr((_Cfg(count=5, name="y", fast=True, check=False), True))
    assert "--count INTEGER RANGE  How many.  [default: 3; x>=1]" in \
        CliRunner().invoke(cmd, ["--help"], terminal_width=100).output


@pytest.mark.parametrize("rows, skip, message", [
    ([Field("count"), Field("name"), Field("fast")], ("sizes",),
     "neither a CLI row nor skipped: check"),
    ([Field("count"), Field("nmae")], ("fast", "check", "sizes", "name"), "not fields: nmae"),
    ([Field("count"), Field("count")], ("name", "fast", "check", "sizes"), "listed twice: count"),
])
def test_a_table_that_leaves_a_field_out_is_refused(rows, skip, message):
    with pytest.raises(TypeError, match=message):
        ConfigOptions(_Cfg, rows, skip=skip)

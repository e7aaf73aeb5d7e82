"""Click options generated from a config dataclass (torch-free).

A command that mirrors a config dataclass (``train``: :class:`~edgeconv.train.config.
TrainConfig`, ``quickstart``: :class:`~edgeconv.quickstart.QuickstartOptions`, ``envelope``:
:class:`~edgeconv.envelope.EnvelopeConfig`) declares ONE ordered table: a :class:`Field` row
per exposed field (the CLI facts the dataclass does not hold: option names, help, click
type, callback) and :func:`cli_only` rows for options that are not fields. The option's
name, its parameter name and its default come from the field, so a new config field is one
line in the dataclass plus its row here::

    TRAIN = ConfigOptions(TrainConfig, [
        Field("epochs", type=click.IntRange(1)),
        cli_only("--threads", default=None, type=int, help="torch CPU threads."),
    ], skip=("op_kwargs",))

    @click.command()
    @TRAIN
    def train(config, threads):        # config: the TrainConfig built from the options
        ...

Every field must be either a row or named in ``skip`` (checked when the table is built), so
a field cannot be added to the dataclass and silently left off the command. The command
function receives the dataclass (parameter ``arg``, default ``config``) and the CLI-only
values; ``command.callback.config_options`` is the table (the test that every command takes
exactly its options reads it).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

#: ``Field.default`` when the option's default is the field's
FIELD_DEFAULT = object()


@dataclass(frozen=True)
class Field:
    """The CLI facts of one dataclass field.

    ``flags``: the option names (default ``--name-with-dashes``; a bool field gets
    ``--name`` when it defaults to False, ``--name/--no-name`` when True). ``default``: the
    value click starts from when it is not the field's own (e.g. the text a ``callback``
    parses). ``convert``: the click value -> the field value (not applied to None).
    """
    name: str
    flags: tuple = ()
    help: str | None = None
    type: Any = None
    default: Any = FIELD_DEFAULT
    callback: Callable | None = None
    convert: Callable | None = None
    show_default: bool = True


@dataclass(frozen=True)
class CliOnly:
    """An option of the command that is not a field (passed to the command function)."""
    decls: tuple
    attrs: dict

    def decorator(self):
        return click.option(*self.decls, **self.attrs)


def cli_only(*decls, **attrs) -> CliOnly:
    """A row for an option that is not a field: the arguments of :func:`click.option`."""
    return CliOnly(decls, attrs)


def field_default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} has no default: it cannot be an optional CLI option")


def csv_text(values) -> str:
    """A tuple default as the comma-separated text its option parses back."""
    return ",".join(str(v) for v in values)


def csv_callback(cast: Callable = str, what: str = "numbers") -> Callable:
    """click callback: 'a,b' -> (cast(a), cast(b)) (empty items dropped)."""
    def csv_values(ctx, param, value):
        if value is None or isinstance(value, tuple):
            return value
        try:
            return tuple(cast(v.strip()) for v in str(value).split(",") if v.strip())
        except ValueError as exc:
            raise click.BadParameter(f"expected comma-separated {what} ({exc})") from None

    return csv_values


class ConfigOptions:
    """The click options of dataclass ``cls``: ``rows`` in order (:class:`Field` or
    :func:`cli_only`), every field either a row or in ``skip``. Used as a decorator of the
    command function, which takes ``arg`` (the built dataclass) and the CLI-only values."""

    def __init__(self, cls: type, rows: list, skip: tuple = (), arg: str = "config"):
        self.cls, self.rows, self.skip, self.arg = cls, list(rows), tuple(skip), arg
        self.dataclass_fields = {f.name: f for f in dataclasses.fields(cls)}
        self.fields = [r for r in self.rows if isinstance(r, Field)]
        self.names = tuple(r.name for r in self.fields)
        problems = []
        unknown = [n for n in (*self.names, *self.skip) if n not in self.dataclass_fields]
        if unknown:
            problems.append(f"not fields: {', '.join(unknown)}")
        twice = sorted({n for n in (*self.names, *self.skip)
                        if (*self.names, *self.skip).count(n) > 1})
        if twice:
            problems.append(f"listed twice: {', '.join(twice)}")
        missing = [n for n in self.dataclass_fields if n not in self.names and n not in self.skip]
        if missing:
            problems.append(f"neither a CLI row nor skipped: {', '.join(missing)}")
        bad_rows = [r for r in self.rows if not isinstance(r, (Field, CliOnly))]
        if bad_rows:
            problems.append(f"rows must be Field or cli_only(...): {bad_rows!r}")
        if problems:
            raise TypeError(f"{cls.__name__} CLI options: " + "; ".join(problems))

    def default(self, name: str):
        """The field's default (what the dataclass would take without the option)."""
        return field_default(self.dataclass_fields[name])

    def option(self, row: Field):
        """The :func:`click.option` decorator of a field row."""
        default = self.default(row.name)
        boolean = isinstance(default, bool) and row.default is FIELD_DEFAULT
        dashed = "--" + row.name.replace("_", "-")
        flags = row.flags or ((f"{dashed}/--no-{dashed[2:]}",) if boolean and default
                              else (dashed,))
        attrs = {"default": default if row.default is FIELD_DEFAULT else row.default}
        if boolean and not any("/" in f for f in flags):
            attrs["is_flag"] = True  # --name: on when given (a flag shows no default)
        elif row.show_default and attrs["default"] is not None:
            attrs["show_default"] = True
        for key in ("type", "callback", "help"):
            if getattr(row, key) is not None:
                attrs[key] = getattr(row, key)
        return click.option(*flags, row.name, **attrs)

    def build(self, values: dict):
        """The dataclass from the option values of the field rows (converted)."""
        out = {}
        for row in self.fields:
            v = values[row.name]
            out[row.name] = row.convert(v) if row.convert is not None and v is not None else v
        return self.cls(**out)

    def __call__(self, f: Callable) -> Callable:
        @functools.wraps(f)
        def command(**kwargs):
            fields = {name: kwargs.pop(name) for name in self.names}
            return f(**{self.arg: self.build(fields)}, **kwargs)

        command.config_options = self
        for row in reversed(self.rows):  # click lists the last decorator applied first
            command = (self.option(row) if isinstance(row, Field) else row.decorator())(command)
        return command

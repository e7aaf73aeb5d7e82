"""What several command modules share (torch-free): exit codes and click callbacks."""

from __future__ import annotations

import sys

import click

from edgeconv.errors import EdgeconvError

#: exit status of a user error (one line on stderr)
EXIT_USER_ERROR = 2


def click_csv_ints(ctx, param, value):
    """click callback: '1,2,4' -> [1, 2, 4]."""
    if value is None or isinstance(value, list):
        return value
    try:
        out = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}")
    if not out or any(v <= 0 for v in out):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


def click_input_size(ctx, param, value):
    """click callback: '96' -> (96, 96); '112x96' -> (112, 96) (height x width)."""
    if value is None:
        return None
    from edgeconv.config import parse_input_size

    try:
        return parse_input_size(value)
    except EdgeconvError as exc:
        raise click.BadParameter(str(exc))


def set_threads(threads) -> None:
    """torch CPU threads (imports torch: only for the commands that run it)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def exit_with(code) -> None:
    """Leave with ``code`` unless it is 0 (the device commands return their exit status)."""
    if code:
        sys.exit(code)

"""The ``edgeconv`` console script: the root group and its entry point.

The subcommands live in :mod:`edgeconv.commands`, one module per command group; this module
adds them. Every subcommand imports its implementation lazily inside the command body, so
``import edgeconv.cli`` (and ``edgeconv --help``) never imports torch. User errors
(:class:`edgeconv.errors.EdgeconvError`) print one line and exit with status 2.
"""

from __future__ import annotations

import os
import sys

import click

from edgeconv import __version__
from edgeconv.commands import (
    device,
    envelope,
    export,
    gan,
    inspect,
    segment,
    train,
    translate,
    unlock,
)
from edgeconv.commands.common import EXIT_USER_ERROR
from edgeconv.errors import EdgeconvError

#: longest error message printed (the rest is cut with an ellipsis)
MAX_ERROR_CHARS = 2000

# Optional packages -> the extra that installs them (for a clean error when one is missing).
EXTRA_OF = {"torch": "train", "fvcore": "train", "onnx": "export", "onnxslim": "export",
            "onnxscript": "export", "litert_torch": "tflite", "matplotlib": "plot",
            "cv2": "camera"}

#: the command modules, one per command group (each lists its commands in COMMANDS)
COMMAND_MODULES = (inspect, device, unlock, export, train, translate, gan, envelope, segment)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeconv")
@click.option("-v", "--verbose", is_flag=True,
              help="Show third-party logs (TFLite converter, LiteRT, absl) that are hidden "
                   "by default.")
def cli(verbose):
    """edgeconv: layout-aware (TVConv) face models from training to the edge device."""
    from edgeconv.quiet import set_verbose

    if verbose:
        set_verbose(True)


for _module in COMMAND_MODULES:
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv=None):
    """Console-script entry point: one-line errors, exit status 2."""
    # OpenMP workers that spin after each torch op take the cores the TVConv training kernels
    # run their threads on (measured: 0.56x -> 0.88x of depthwise at 2 threads); a value the
    # user set wins. Set before torch (and its libgomp) is imported by any subcommand.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        cli.main(args=argv, prog_name="edgeconv", standalone_mode=False)
    except EdgeconvError as exc:
        from edgeconv.metadata import escape_text

        # one line, whatever a file or a runtime put in the message (escape sequences,
        # newlines, 200k-character names)
        click.echo(f"edgeconv: error: {escape_text(exc, MAX_ERROR_CHARS)}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        if root not in EXTRA_OF:
            raise
        click.echo(f"edgeconv: error: this command needs the optional package '{root}': "
                   f"pip install 'edgeconv[{EXTRA_OF[root]}]'", err=True)
        sys.exit(EXIT_USER_ERROR)
    except OSError as exc:  # a file system refusal no check foresaw: one line, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        click.echo(f"edgeconv: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except click.exceptions.Abort:
        click.echo("edgeconv: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("edgeconv: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USER_ERROR if exc.exit_code == 2 else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()

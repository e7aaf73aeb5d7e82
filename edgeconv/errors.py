from __future__ import annotations

"""User-facing errors: the CLI prints their message on one line and exits with status 2."""


class EdgeconvError(Exception):
    """A problem with the user's input (file, option, model name) rather than a bug."""


class MissingExtraError(EdgeconvError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str):
        super().__init__(
            f"this needs the optional package '{package}': pip install 'edgeconv[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, extra: str, package: str | None = None):
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtraError(package or module.split(".")[0], extra) from exc


def clean_message(text: str) -> str:
    """A third-party message without Python object reprs (``<_io.BytesIO object at 0x..>``)."""
    import re

    return re.sub(r"<[\w.]+ object at 0x[0-9a-fA-F]+>", "the data", str(text)).strip()

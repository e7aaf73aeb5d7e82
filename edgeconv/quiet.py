"""Keep third-party logs out of the user's way unless asked for (``edgeconv -v``). Torch-free.

The TFLite converter (litert-torch: its ``[START] ... [DONE]`` timeline, absl/oneDNN notices,
torchao load failures, torch deprecation warnings, an "Estimated count of arithmetic ops" line
that is not our MACs figure) and the LiteRT interpreter ("INFO: Created TensorFlow Lite
XNNPACK delegate") write to the process's stdout/stderr from C++ as well as from Python, so
:func:`third_party_output` redirects the file descriptors themselves, plus Python's streams,
warnings and logging, for the duration of a block. ``edgeconv -v`` (environment variable
:data:`VERBOSE_ENV`, inherited by benchmark child processes) shows everything instead. When
the block fails, the captured text's last lines are attached to the error, so nothing needed
to understand a failure is lost.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings

VERBOSE_ENV = "EDGECONV_VERBOSE"
TAIL_LINES = 8


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose(on: bool) -> None:
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


class CapturedOutput:
    text: str = ""

    def tail(self, n: int = TAIL_LINES) -> str:
        lines = [ln for ln in self.text.splitlines() if ln.strip()]
        return "\n".join(lines[-n:])


@contextlib.contextmanager
def third_party_output():
    """Capture everything written to fds 1/2, ``sys.stdout``/``sys.stderr``, warnings and
    logging inside the block (unless verbose); yields a :class:`CapturedOutput`."""
    cap = CapturedOutput()
    if verbose():
        yield cap
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved, sink = [], None
    try:
        sink = tempfile.TemporaryFile(mode="w+b")
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
    except OSError:
        sink = None
    py_sink = io.StringIO()
    old_disable = logging.root.manager.disable
    try:
        with contextlib.redirect_stdout(py_sink), contextlib.redirect_stderr(py_sink), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.disable(logging.CRITICAL)
            yield cap
    finally:
        logging.disable(old_disable)
        with contextlib.suppress(Exception):
            sys.__stdout__.flush()
            sys.__stderr__.flush()
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)
        raw = ""
        if sink is not None:
            sink.seek(0)
            raw = sink.read().decode("utf-8", "replace")
            sink.close()
        cap.text = raw + py_sink.getvalue()

"""Progress display that suits where it goes (torch-free).

On a terminal: a tqdm bar on stderr. Redirected to a file or a pipe (a log, CI, ``nohup``):
no carriage-return redraws; one plain line at most every 30 seconds (environment variable
``EDGECONV_PROGRESS_SECONDS``), and none at all for work shorter than that (the callers print
their own line per epoch).
"""

from __future__ import annotations

import os
import sys
import time


def _every_default() -> float:
    """Seconds between progress lines when stderr is not a terminal."""
    try:
        return max(0.0, float(os.environ.get("EDGECONV_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """``update(n)``, ``set_postfix_str(text)``, ``write(text)``, ``close()``; a tqdm bar on a
    terminal, else a throttled plain line."""

    def __init__(self, total: int, desc: str, unit: str = "it", enabled: bool = True,
                 leave: bool = False, every: float | None = None):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.enabled = bool(enabled)
        self.n = 0
        self.postfix = ""
        self.bar = None
        self.every = _every_default() if every is None else float(every)
        self._t0 = self._last = time.monotonic()
        if self.enabled and stderr_is_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.1, leave=leave)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            now = time.monotonic()
            if now - self._last >= self.every:
                self._last = now
                pct = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
                tail = f"  {self.postfix}" if self.postfix else ""
                print(f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}, "
                      f"{now - self._t0:.0f} s{tail}", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=refresh)

    def shrink(self, n: int) -> None:
        if n > 0:
            self.total -= n
            if self.bar is not None:
                self.bar.total -= n
                self.bar.refresh()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

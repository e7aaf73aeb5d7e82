"""Helpers of the hostile-input tests (tests/test_hostile_*.py): run the real CLI in a child
process with a time bound, and check the refusal is one line, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time

#: generous bound on a refusal (a hang or a minutes-long run fails the test)
TIME_LIMIT = 60.0


def cli(*args, timeout: float = TIME_LIMIT, env=None, cwd=None):
    """The console script in a child process; ``.elapsed`` is its wall time."""
    code = "import sys\nfrom edgeconv.cli import main\nsys.argv=['edgeconv']+sys.argv[1:]\nmain()\n"
    full_env = dict(os.environ, **(env or {}))
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                         text=True, timeout=timeout, env=full_env, cwd=cwd,
                         stdin=subprocess.DEVNULL)
    res.elapsed = time.monotonic() - t0
    return res


def refused(res, pattern: str | None = None, code: int = 2):
    """Exit ``code``, exactly one line on stderr, no traceback, within the time bound."""
    err = res.stderr
    assert res.returncode == code, (res.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    # the bench's note about a busy machine depends on the machine, not on the input
    lines = [ln for ln in err.splitlines() if ln.strip()
             and not ln.startswith("edgeconv: warning: load average")]
    assert len(lines) == 1, err[-2000:]
    assert res.elapsed < TIME_LIMIT
    if pattern is not None:
        assert pattern in err, err
    return err

"""One validator per option type (torch-free): thread counts, seconds, memory-implied sizes.

Each raises :class:`~edgeconv.errors.EdgeconvError` with one line naming the option and the
limit, so a value that would crash a runtime (``--threads 100000`` segfaults inside ONNX
Runtime), run for ever (``--min-secs inf``) or allocate without bound (``--num-pairs
10000000``) never reaches it. The ``click_*`` wrappers are click callbacks (an
EdgeconvError raised there becomes the CLI's one-line error, exit 2).
"""

from __future__ import annotations

import math
import os

from edgeconv.errors import EdgeconvError

#: threads per core accepted (more only oversubscribes the machine)
THREADS_PER_CORE = 4
#: longest duration a seconds option accepts
MAX_SECONDS = 24 * 3600.0
#: memory a size-like option may imply (e.g. decoded images of --num-pairs, --batch inputs)
MAX_IMPLIED_BYTES = 8 << 30


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_threads() -> int:
    """The most threads a --threads option accepts on this machine."""
    return THREADS_PER_CORE * max(cpu_count(), os.cpu_count() or 1)


def check_threads(value, option: str = "--threads") -> int:
    """A thread count in 1 .. :func:`max_threads`."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise EdgeconvError(f"{option}: expected a whole number of threads, got {value!r}") \
            from None
    if n != value and not isinstance(value, str):
        raise EdgeconvError(f"{option}: expected a whole number of threads, got {value!r}")
    limit = max_threads()
    if n < 1:
        raise EdgeconvError(f"{option} {n}: must be at least 1")
    if n > limit:
        raise EdgeconvError(f"{option} {n}: more than the {limit} threads this machine allows "
                            f"({THREADS_PER_CORE} x {limit // THREADS_PER_CORE} cores)")
    return n


def parse_threads_list(value, option: str = "--threads") -> list[int]:
    """'1,2,4' -> [1, 2, 4], each through :func:`check_threads`."""
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [v.strip() for v in str(value).split(",") if v.strip()]
    if not items:
        raise EdgeconvError(f"{option}: expected comma-separated thread counts, got {value!r}")
    out = []
    for v in items:
        try:
            v = int(v)
        except (TypeError, ValueError):
            raise EdgeconvError(f"{option}: expected comma-separated integers, got {value!r}") \
                from None
        out.append(check_threads(v, option))
    return out


def check_seconds(value, option: str, maximum: float = MAX_SECONDS,
                  minimum: float = 0.0) -> float:
    """A finite number of seconds in ``minimum`` .. ``maximum`` (nan and inf refused)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise EdgeconvError(f"{option}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(x):
        raise EdgeconvError(f"{option} {value}: must be a finite number of seconds "
                            f"({minimum:g} .. {maximum:g})")
    if not minimum <= x <= maximum:
        raise EdgeconvError(f"{option} {x:g}: must be between {minimum:g} and {maximum:g} "
                            "seconds")
    return x


def implied_bytes_limit() -> int:
    """Memory a size-like option may imply: :data:`MAX_IMPLIED_BYTES`, at most half of this
    machine's physical memory."""
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        phys = 0
    return min(MAX_IMPLIED_BYTES, phys // 2) if phys > 0 else MAX_IMPLIED_BYTES


def check_size(value, option: str, bytes_per_item: float, what: str = "",
               limit_bytes: int | None = None, minimum: int = 1) -> int:
    """A count whose memory (``value * bytes_per_item``) stays within ``limit_bytes``
    (default :func:`implied_bytes_limit`)."""
    if limit_bytes is None:
        limit_bytes = implied_bytes_limit()
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise EdgeconvError(f"{option}: expected a whole number, got {value!r}") from None
    if n < minimum:
        raise EdgeconvError(f"{option} {n}: must be at least {minimum}")
    most = max(minimum, int(limit_bytes // max(1.0, float(bytes_per_item))))
    if n > most:
        need = n * float(bytes_per_item)
        raise EdgeconvError(f"{option} {n}: would need {need / 2**30:.1f} GiB"
                            f"{' of ' + what if what else ''} (limit "
                            f"{limit_bytes / 2**30:.1f} GiB: at most {most})")
    return n


# -- click callbacks -----------------------------------------------------------------------
def _name(param) -> str:
    opts = getattr(param, "opts", None) or []
    longest = max(opts, key=len) if opts else f"--{param.name}"
    return longest


def click_threads(ctx, param, value):
    """--threads N (None passes: the default of the command)."""
    if value is None:
        return None
    return check_threads(value, _name(param))


def click_threads_list(ctx, param, value):
    """--threads 1,2,4."""
    if value is None:
        return None
    return parse_threads_list(value, _name(param))


def click_seconds(ctx, param, value):
    if value is None:
        return None
    return check_seconds(value, _name(param))


#: the longest wall-clock budget a command takes, in minutes (one day)
MAX_BUDGET_MIN = 24 * 60


def check_minutes(value, option: str, maximum: float = MAX_BUDGET_MIN) -> float:
    """A finite number of minutes in 0 .. ``maximum`` (nan and inf refused)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise EdgeconvError(f"{option}: expected a number of minutes, got {value!r}") from None
    if not math.isfinite(x) or not 0 <= x <= maximum:
        raise EdgeconvError(f"{option} {value}: must be a finite number of minutes "
                            f"(0 .. {maximum:g})")
    return x


def click_minutes(ctx, param, value):
    if value is None:
        return None
    return check_minutes(value, _name(param))

"""Interleaved (round-robin) timing of several configurations (torch-free, numpy-free).

Comparing configurations one after the other on a shared machine lets a change of load (another
job starting on the second core, the clock ramping) land on one configuration only. Here every
configuration is called in turn, A B C A B C ..., so such a change hits all of them alike::

    from edgeconv.profiling.timing import measure_round_robin
    sec = measure_round_robin({"a": lambda: run_a(x), "b": lambda: run_b(x)}, min_time=0.3)
    # {"a": 0.0012, "b": 0.0009}: median seconds per call, best of the rounds

A configuration leaves the rotation of a round once it has spent ``min_time`` seconds in timed
calls and made ``min_calls`` of them, so a slow one (seconds per call) does not force thousands
of calls on the fast ones, and the fast ones do not make the slow one run for minutes. Each
round starts the rotation at another configuration. The figure per configuration is the
median of its timed calls in a round, the best (smallest) over ``rounds`` rounds.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable


def measure_round_robin(runners: dict[str, Callable[[], object]], min_time: float = 0.3,
                        rounds: int = 2, warmup: int = 2, min_calls: int = 3,
                        stats: dict | None = None,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """name -> median seconds per call of ``runners[name]()`` (zero-argument callables).

    ``warmup`` untimed calls of each (interleaved too) come first. ``stats``, when given, is
    filled with name -> {"round_medians": [...], "calls": [...]} for the report.
    """
    names = list(runners)
    if not names:
        return {}
    if min_time < 0 or rounds < 1 or min_calls < 1 or warmup < 0:
        raise ValueError("min_time >= 0, rounds >= 1, min_calls >= 1, warmup >= 0 required")
    for _ in range(int(warmup)):
        for name in names:
            runners[name]()
    best = {name: math.inf for name in names}
    detail = {name: {"round_medians": [], "calls": []} for name in names}
    for r in range(int(rounds)):
        shift = r % len(names)
        active = names[shift:] + names[:shift]
        times: dict[str, list[float]] = {name: [] for name in names}
        spent = {name: 0.0 for name in names}
        while active:
            for name in active:
                t0 = clock()
                runners[name]()
                dt = clock() - t0
                times[name].append(dt)
                spent[name] += dt
            active = [n for n in active if spent[n] < min_time or len(times[n]) < min_calls]
        for name in names:
            med = statistics.median(times[name])
            detail[name]["round_medians"].append(med)
            detail[name]["calls"].append(len(times[name]))
            best[name] = min(best[name], med)
    if stats is not None:
        stats.update(detail)
    return best

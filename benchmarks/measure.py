"""Timing and memory measurement.

Time: ``time.perf_counter`` around one call; warm-up calls first, then the methods of one
(layer, operation) take turns in blocks of consecutive calls (see ``time_methods``) so that they
see the same machine state, and each method's time is the median of its timed calls. The number
of calls adapts to the cost: at most ``repeats``, at least ``min_repeats``, and no more than fits a
time budget per (layer, operation). ``torch.set_num_threads`` is left at its default.

Memory: one call under ``torch.profiler.profile(profile_memory=True)``; the allocation events of
the CPU allocator (each with its signed size) are ordered by time and summed; the peak of that
running sum is the extra memory of the call: everything it allocated and held at the same time,
its result included, beyond the tensors that existed before the call. Scratch memory that oneDNN
or the BLAS library take outside PyTorch's allocator is not seen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import sys
import time
from typing import Callable


class OtherLoad:
    """The CPU that other processes used while this one ran, in cores on average (Linux only).

    From /proc/stat's busy time of the whole machine minus this process's own CPU time; other
    programs running during a benchmark (a test suite, a build) share the two cores and make the
    timings noisy, so the results report it.
    """

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])  # user nice system irq softirq steal
        return busy / os.sysconf("SC_CLK_TCK"), time.process_time(), time.perf_counter()

    def cores(self) -> float | None:
        end = self._read()
        if self.start is None or end is None or end[2] - self.start[2] <= 0:
            return None
        others = (end[0] - self.start[0]) - (end[1] - self.start[1])
        return max(0.0, others / (end[2] - self.start[2]))


def once(fn: Callable) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_for_quiet(limit: float, threshold: float, window: float = 0.25) -> float:
    """Wait (at most ``limit`` seconds) until other processes use less than ``threshold`` cores;
    returns the seconds waited."""
    waited = 0.0
    while waited < limit:
        load = OtherLoad()
        time.sleep(window)
        waited += window
        cores = load.cores()
        if cores is None or cores < threshold:
            break
    return waited


def time_methods(
    methods: dict[str, Callable],
    repeats: int,
    min_repeats: int,
    warmup: int,
    budget: float,
    slow: float = 20.0,
    rounds: int = 3,
    settle: int = 1,
) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """Median seconds per method, the number of timed calls each got, and each one's spread
    (interquartile range over the median).

    The methods take turns in blocks: in each of ``rounds`` rounds (the order rotating), every
    method first makes ``settle`` untimed calls, then its share of timed calls in a row. The
    untimed call lets it settle after the method before it. Methods of very different memory use
    should not share one call to this function: the first calls after one that allocated and freed
    much more memory are slower for several calls (page faults, as glibc hands large blocks back
    to the system), so run.py times einconv, which allocates far more, on its own.

    A method whose warm-up call takes more than ``slow`` seconds is timed by that call alone.
    """
    estimate: dict[str, float] = {}
    for name, fn in methods.items():
        for _ in range(max(1, warmup)):
            estimate[name] = once(fn)
            if estimate[name] > slow:
                break
    timed = {name: fn for name, fn in methods.items() if estimate[name] <= slow}
    per_call = sum(estimate[name] for name in timed) or 1e-9
    calls = max(min_repeats, min(repeats, int(budget / per_call)))
    rounds = max(1, min(rounds, calls))
    block = -(-calls // rounds)  # ceil
    samples: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    for r in range(rounds if timed else 0):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            for _ in range(settle):  # untimed
                timed[name]()
            for _ in range(block):
                samples[name].append(once(timed[name]))
    medians = {name: statistics.median(samples[name]) if name in timed else estimate[name] for name in methods}
    counts = {name: len(samples[name]) if name in timed else 1 for name in methods}
    spread = {}
    for name in timed:
        if len(samples[name]) >= 4:
            q1, _, q3 = statistics.quantiles(samples[name], n=4)
            spread[name] = (q3 - q1) / medians[name]
    return medians, counts, spread


@contextlib.contextmanager
def _quiet():
    """The profiler prints start/stop lines on the C++ side; keep them out of the output."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2), os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved[0], 2)
            os.dup2(saved[1], 1)
            os.close(saved[0])
            os.close(saved[1])


def peak_memory(fn: Callable) -> int:
    """Peak extra bytes the CPU allocator held during one call of ``fn`` (result included)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    logging.getLogger("torch.profiler").setLevel(logging.ERROR)
    with _quiet(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        stack.extend(node.children)
    events.sort()
    current = peak = 0
    for _, size in events:
        current += size
        peak = max(peak, current)
    return peak


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None (and a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return None
    return plt

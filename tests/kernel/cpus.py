"""Run a function on every CPU at once (one thread each, pinned to its CPU): for tests of
what must hold when a program runs on several CPUs at the same moment."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest


def on_two_cpus(fn: Callable[[], object], timeout: float = 60) -> None:
    """``fn()`` in two threads at once, pinned to two different CPUs (skips the test on a
    one-CPU machine); raises what a thread raised."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    errors: list[BaseException] = []

    def run(cpu: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})       # this thread only
            fn()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in cpus[:2]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    if any(t.is_alive() for t in threads):
        raise TimeoutError("a CPU thread did not finish")
    if errors:
        raise errors[0]

"""Run-time statistics of every program (``BPF_ENABLE_STATS``).

While the returned :class:`Fd` is open the kernel counts, per program, how often it ran
(``run_cnt``) and for how long (``run_time_ns``), visible in :meth:`Program.info`.  Unlike
the ``kernel.bpf_stats_enabled`` sysctl this changes nothing global that outlives us: the
counting stops when the fd is closed.  Benchmarks use it to count packets at a sink
without changing the program under test.
"""

from __future__ import annotations

from pyxdp.abi import BPF_STATS_RUN_TIME, Cmd, EnableStatsAttr
from pyxdp.kernel._fd import Fd
from pyxdp.kernel._sys import bpf


def enable_stats() -> Fd:
    """Turn on run-time statistics until the returned fd is closed."""
    return Fd(bpf(Cmd.ENABLE_STATS, EnableStatsAttr(BPF_STATS_RUN_TIME)))

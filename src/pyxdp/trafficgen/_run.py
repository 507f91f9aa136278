"""Drive live frames: one thread per CPU, each in long ``BPF_PROG_TEST_RUN`` calls.

Like xdp-trafficgen: the kernel runs the generator program on a page-pool frame and
transmits it (``XDP_TX``) out of ``ingress_ifindex``.  ``bpf()`` releases the GIL inside
ctypes, so several Python threads really send in parallel.  Runs are bounded both by a frame
count and by a duration; the duration is checked between calls, so each call is kept short
(``chunk`` frames).

Every call costs about 30 ms of setup and teardown in the kernel whatever its size, so
calls must be long, but a call cannot be stopped once started.  The first call sends 2^16
frames and measures the rate; later calls are sized from it to last half a second or what
is left of the duration (a receiver that slows the sender to 0.2 Mpps is common: a SYN
flood against a listening socket on the same CPU).  Callers that know the rate is high
and want one call, as the C reference does, pass ``chunk=count``.

Must be called from a thread inside the sending namespace (threads it starts inherit it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyxdp.isa import XdpAction
from pyxdp.kernel import BPF_F_TEST_XDP_LIVE_FRAMES, Program, XdpMd, test_run
from pyxdp.trafficgen._program import generator_program

FIRST_CALL = 1 << 16  # frames of the first call, which measures the rate
CALL_SECONDS = 0.5     # later calls are sized from that rate to last about this long
MAX_BATCH = 256


@dataclass
class Report:
    """What a run sent, by the generator's own (wall) clock."""

    sent: int
    seconds: float
    frame_len: int
    threads: int
    per_thread: list[int] = field(default_factory=list)

    @property
    def pps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def bps(self) -> float:
        """Bits per second on the wire: frame + FCS (4) + preamble/SFD (8) + IFG (12)."""
        return self.pps * (self.frame_len + 24) * 8

    def as_dict(self) -> dict[str, float | int]:
        return {"sent": self.sent, "seconds": round(self.seconds, 6), "pps": round(self.pps),
                "bps": round(self.bps), "frame_len": self.frame_len, "threads": self.threads}


class Generator:
    """A loaded generator for one template frame, ready to send out of ``ifindex``."""

    def __init__(self, ifindex: int, frame: bytes, *, sources: int = 1, ports: int = 1,
                 base_source: int | None = None, base_port: int | None = None,
                 action: XdpAction = XdpAction.TX, program: Program | None = None) -> None:
        self.ifindex = ifindex
        self.frame = bytes(frame)
        self.prog = program or Program.load(
            generator_program(self.frame, sources=sources, ports=ports,
                              base_source=base_source, base_port=base_port, action=action),
            name="pyxdp_gen")

    def close(self) -> None:
        self.prog.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, count: int, *, duration: float = 10.0, threads: int = 1,
            cpus: list[int] | None = None, batch_size: int = 64, chunk: int | None = None,
            progress: Callable[[int], None] | None = None) -> Report:
        """Send up to ``count`` frames within ``duration`` seconds on ``threads`` threads."""
        if count <= 0 or duration <= 0:
            raise ValueError("count and duration must be positive")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        avail = sorted(os.sched_getaffinity(0))
        cpus = cpus or [avail[i % len(avail)] for i in range(threads)]
        ctx = XdpMd(data=0, data_end=len(self.frame), ingress_ifindex=self.ifindex)
        sent = [0] * threads
        errors: list[BaseException] = []
        per = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
        deadline = time.monotonic() + duration
        lock = threading.Lock()
        total = [0]

        def work(i: int) -> None:
            try:
                os.sched_setaffinity(0, {cpus[i]})
                left = per[i]
                n = chunk or FIRST_CALL
                while left > 0:
                    now = time.monotonic()
                    if now >= deadline:
                        break
                    n = min(left, n)
                    test_run(self.prog, self.frame, ctx=ctx, repeat=n,
                             flags=BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=batch_size)
                    took = max(time.monotonic() - now, 1e-6)
                    left -= n
                    sent[i] += n
                    if progress is not None:
                        with lock:
                            total[0] += n
                            progress(total[0])
                    if chunk is None:  # aim the next call at CALL_SECONDS, within the deadline
                        budget = min(CALL_SECONDS, deadline - time.monotonic())
                        n = max(1024, int(n / took * budget))
            except BaseException as e:  # reported after join
                errors.append(e)

        start = time.monotonic()
        workers = [threading.Thread(target=work, args=(i,), name=f"pyxdp-gen-{i}")
                   for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.monotonic() - start
        if errors:
            raise errors[0]
        return Report(sum(sent), seconds, len(self.frame), threads, sent)

"""Switching speed: the Linux bridge vs ``pyxdp switch`` on the switch's bed, same traffic,
same run, alternating rounds (needs root).

Bed (:mod:`pyxdp.apps.switch.bed`): hosts ``h0``, ``h1``, ``h2`` on the ports ``p0``,
``p1``, ``p2`` of namespace ``sw``.  Sides, each set up and torn down around every
measurement, in alternating order (:func:`pyxdp.bench.harness.alternate`):

* ``Linux bridge``: ``br0`` enslaving p0..p2 (GRO on the ports so the veth takes the
  generator's XDP frames);
* ``pyxdp switch``: :class:`pyxdp.apps.switch.Switch` attached native to p0..p2.

Measured, per side and round:

* **delivered Mpps**, 64- and 1500-byte frames: pyxdp's live-frames generator sends UDP
  frames from h0 to h1's MAC (learned beforehand by a ping, so neither side floods); an
  XDP program on h1's e1 counts and drops what arrives; the rate is frames counted at h1
  per second of sending;
* **TCP Gbit/s**: one 64 MB transfer h0 -> h1 (MTU-sized segments: the bed computes
  checksums in software, so no TSO), through the same hosts' stacks;
* for the switch alone, its **program cost** (BPF_PROG_TEST_RUN of the ingress program on
  a known unicast frame, ns per frame): the bridge has no such number.

Run: ``python -m pyxdp.bench.switch_speed`` (root); results in
``bench/results/switch_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from pyxdp import xdp
from pyxdp.asm import programs as progs
from pyxdp.bench import harness, options
from pyxdp.bench.harness import Report, alternate, fmt, stderr_log
from pyxdp.isa import XdpAction
from pyxdp.kernel import Map, Program
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

NAME = "switch_speed"
TITLE = "Switching: Linux bridge vs pyxdp switch"
BRIDGE, OURS = "Linux bridge", "pyxdp switch"
SIZES = (60, 1496)              # bytes before the FCS: 64- and 1500-byte frames
TCP_BYTES = 64 << 20
REPEAT, CALLS = 1000, 100       # per program-cost sample


class SwitchSpeed:
    def __init__(self, count: int, duration: float, rounds: int,
                 log: Callable[[str], None] = stderr_log, tcp_bytes: int = TCP_BYTES) -> None:
        self.count, self.duration, self.rounds, self.log = count, duration, rounds, log
        self.tcp_bytes = max(1 << 20, tcp_bytes >> 20 << 20)
        self.sends: dict[str, list[dict[str, float]]] = {}

    def run(self) -> Report:
        from pyxdp.apps.router import bed as rbed
        from pyxdp.apps.switch import Switch, bed

        results: dict[str, dict[str, list[float]]] = {}
        with Testbed() as tb:
            bed.build(tb, ipv6=False)
            e0 = tb.interfaces[("h0", "e0")]
            e1 = tb.interfaces[("h1", "e1")]

            def learn() -> None:
                if len(tb.call("h0", rbed.ping, bed.v4(2), count=1)) != 1:
                    raise RuntimeError("h0 cannot ping h1 across the side under test")

            class Side:
                def __init__(self, name: str) -> None:
                    self.name = name
                    self.sw: Any = None

                def __enter__(self) -> Side:
                    if self.name == BRIDGE:
                        tb.bridge(bed.SWITCH_NS, "br0", bed.PORTS)
                        tb.exec(bed.SWITCH_NS, ["ip", "link", "set", "br0", "type", "bridge",
                                                "ageing_time", "360000"])
                    else:
                        self.sw = tb.call(bed.SWITCH_NS, lambda: Switch.attach(
                            bed.PORTS, "native", age_s=3600))
                    learn()
                    return self

                def __exit__(self, *exc: object) -> None:
                    if self.name == BRIDGE:
                        tb.exec(bed.SWITCH_NS, ["ip", "link", "del", "br0"])
                        for p in bed.PORTS:     # back to no GRO, as the switch side has
                            tb.set_gro(bed.SWITCH_NS, p, False)
                    else:
                        tb.call(bed.SWITCH_NS, self.sw.detach)

            def delivered(side: str, size: int) -> float:
                frame = template("udp", family=4, src=bed.v4(1), dst=bed.v4(2),
                                 smac=e0.mac, dmac=e1.mac, size=size)
                with Side(side):
                    sink_map = Map.create(progs.counters_spec())
                    sink = Program.load(progs.xdp_count(XdpAction.DROP),
                                        maps={progs.COUNTERS: sink_map})
                    att = tb.call("h1", xdp.attach, "e1", sink, "native")
                    try:
                        before = progs.read_counters(sink_map)[0]

                        def go() -> tuple[float, float]:
                            with Generator(e0.ifindex, frame, sources=1, ports=16) as g:
                                rep = g.run(self.count, duration=self.duration, threads=1,
                                            cpus=[0], chunk=self.count)
                                return rep.seconds, rep.pps

                        seconds, gen_pps = tb.call("h0", go)
                        time.sleep(0.05)
                        got = progs.read_counters(sink_map)[0] - before
                    finally:
                        tb.call("h1", att.detach)
                        sink.close()
                        sink_map.close()
                self.sends.setdefault(f"{size + 4} B/{side}", []).append(
                    {"delivered": got, "seconds": seconds, "generator_pps": gen_pps})
                return got / seconds / 1e6 if seconds else 0.0

            def tcp(side: str) -> float:
                data = os.urandom(1 << 20) * (self.tcp_bytes >> 20)
                with Side(side):
                    listener = tb.call("h1", rbed.tcp_server, bed.v4(2), 5003)
                    got = tb.thread("h1").submit(rbed.tcp_receive, listener)
                    t0 = time.monotonic()
                    tb.call("h0", rbed.tcp_send, bed.v4(2), 5003, data)
                    ok, (n, _digest) = got.get(timeout=120)
                    dt = time.monotonic() - t0
                if not ok or n != len(data):
                    raise RuntimeError(f"TCP transfer across the {side} lost data ({n} of"
                                       f" {len(data)} bytes)")
                return n * 8 / dt / 1e9

            for size in SIZES:
                case = f"{size + 4} B"
                self.log(f"delivered Mpps, {case}: {self.count} frames per send, <="
                         f" {self.duration:g} s, {self.rounds} rounds")
                sides: dict[str, Callable[[], float]] = {
                    BRIDGE: functools.partial(delivered, BRIDGE, size),
                    OURS: functools.partial(delivered, OURS, size)}
                results[f"Mpps {case}"] = alternate(sides, self.rounds, log=self.log)
            self.log(f"TCP, {self.tcp_bytes >> 20} MB per transfer, {self.rounds} rounds")
            tcp_sides: dict[str, Callable[[], float]] = {BRIDGE: lambda: tcp(BRIDGE),
                                                          OURS: lambda: tcp(OURS)}
            results["TCP Gbit/s"] = alternate(tcp_sides, self.rounds, log=self.log)
            cost = self.program_cost(tb, e0.mac, e1.mac)
        return self.report(results, cost)

    def program_cost(self, tb: Testbed, smac: str, dmac: str) -> list[float]:
        """ns per frame of the switch's ingress program on a known unicast frame (its
        destination learned on p1), ``REPEAT`` repetitions per test run."""
        from pyxdp.apps.router import bed as rbed
        from pyxdp.apps.switch import Switch, bed
        from pyxdp.kernel import XdpMd, test_run

        frame = template("udp", family=4, src=bed.v4(1), dst=bed.v4(2), smac=smac,
                         dmac=dmac, size=60)
        sw = tb.call(bed.SWITCH_NS, lambda: Switch.attach(bed.PORTS, "native", age_s=3600))
        try:
            if len(tb.call("h0", rbed.ping, bed.v4(2))) != 1:
                raise RuntimeError("h0 cannot ping h1 across the switch")

            def runs() -> float:
                prog = Program.from_id(sw.program_ids()["p0"])
                try:
                    p0 = xdp.ifindex_of("p0")
                    total = 0
                    for _ in range(CALLS):
                        res = test_run(prog, frame, XdpMd(data=0, data_end=len(frame),
                                                          ingress_ifindex=p0), REPEAT)
                        if res.retval != XdpAction.REDIRECT:
                            raise RuntimeError(f"the switch returned {res.retval}, not"
                                               " REDIRECT")
                        total += res.duration_ns
                    return total / CALLS
                finally:
                    prog.close()

            self.log("program cost (switch ingress, known unicast):")
            return [float(tb.call(bed.SWITCH_NS, runs)) for _ in range(self.rounds)]
        finally:
            tb.call(bed.SWITCH_NS, sw.detach)

    def report(self, results: dict[str, dict[str, list[float]]], cost: list[float]
               ) -> Report:
        r = Report(NAME, TITLE, rounds=self.rounds,
                   params={"frames_per_send": self.count,
                           "max_seconds_per_send": self.duration,
                           "tcp_bytes": self.tcp_bytes})
        r.compact = True
        r.intro = ("The Linux bridge and pyxdp switch between the same three veth ports,"
                   " alternating rounds.  Generator, switch and receiver share the vCPUs of"
                   " a shared 2-vCPU VM: rates of the whole chain, not the switch's own"
                   " capacity; the program cost is the switch's per-frame work alone.")
        rows = []
        for case, sides in results.items():
            unit = "Gbit/s" if case.startswith("TCP") else "Mpps"
            for side, samples in sides.items():
                r.side(f"{case}/{side}", samples, unit)
            b, o = harness.summarize(sides[BRIDGE]), harness.summarize(sides[OURS])
            r.compare(f"{case}: pyxdp switch vs Linux bridge", f"{case}/{OURS}",
                      f"{case}/{BRIDGE}")
            lo, hi = harness.ratio_range(o, b)
            rows.append([case, f"{fmt(b.median)} ({fmt(b.min)}-{fmt(b.max)})",
                         f"{fmt(o.median)} ({fmt(o.min)}-{fmt(o.max)})",
                         f"{o.median / b.median:.2f} ({lo:.2f}-{hi:.2f})" if b.median
                         else "-"])
        r.table("Linux bridge vs pyxdp switch, median (min-max)",
                ["measure", BRIDGE, OURS, "switch / bridge (range)"], rows,
                "Mpps: frames counted at h1 per second of sending (live-frames generator"
                f" on h0).  TCP: one {self.tcp_bytes >> 20} MB transfer h0 -> h1 per round.")
        r.side("program cost/pyxdp switch", cost, "ns/frame", better=harness.LOWER)
        c = harness.summarize(cost)
        r.table("pyxdp switch program cost (BPF_PROG_TEST_RUN, known unicast, ns/frame)",
                ["median", "min-max", "Mpps/core"],
                [[f"{c.median:.0f}", f"{c.min:.0f}-{c.max:.0f}", f"{1e3 / c.median:.2f}"]],
                f"{CALLS} test runs of {REPEAT} repetitions per sample on the attached"
                " program (learning lookup, fdb lookup, redirect verdict; the devmap"
                " egress program runs only on a real redirect and is not in this number).")
        share = {k: round(100 * sum(x["delivered"] for x in v)
                          / max(1.0, sum(x["generator_pps"] * x["seconds"] for x in v)), 1)
                 for k, v in self.sends.items()}
        r.extra = {"sends": self.sends, "delivered_percent_of_sent": share}
        r.notes.append("Share of the generator's frames counted at h1: " + ", ".join(
            f"{k} {v:g}%" for k, v in share.items()) + ".")
        r.notes += [
            "Delivered rates are frames counted at h1 per second of sending; where the"
            " share above is 100%, nothing was lost, and the rate is the throughput of the"
            " whole chain (generator, ports, switch or bridge, receiver) on the"
            " generator's CPU: veth runs the receiving side's NAPI on the sending CPU."
            "  The TCP rows are end-to-end and include both hosts' stacks.",
            "TCP favours the bridge on veth: the bridge forwards GRO-merged skbs (p0 has GRO"
            " on, so up to 64 KB per forwarding decision), while XDP runs per frame before"
            " GRO, and veth copies each skb into an XDP buffer (headroom) before the"
            " program runs; a NIC driver hands XDP its own pages instead.",
            "The bridge receives the generator's XDP frames through veth GRO (NAPI) on"
            " p0; the switch receives them natively.",
        ]
        return r


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root: it builds network namespaces and attaches XDP", file=sys.stderr)
        return 1
    report = SwitchSpeed(args.count, args.duration, args.rounds).run()
    return harness.finish(report, args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.switch_speed", description=TITLE)
    ap.add_argument("--count", type=options.COUNT, default=1_000_000, help="frames per send")
    ap.add_argument("--duration", type=options.SECONDS, default=2.0,
                    help="max seconds per send")
    options.common(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

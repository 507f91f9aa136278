"""Tunnel termination: XDP decapsulation (pyxdp tunnel) vs the kernel's VXLAN device, on the
same veth bed, same traffic, alternating rounds (root).

Bed: namespace ``g`` (the generator, ``g0`` 198.18.20.2) -- ``t1`` (198.18.20.1) in
namespace ``t``.  The generator sends VXLAN frames (VNI 77, outer UDP source port varied
over 16 values) whose inner packet is UDP to 198.18.99.9, an address ``t`` has no route to
(forwarding off): on both sides the inner packet dies at the same place, the stack's route
lookup.  Sides:

* **kernel VXLAN**: a ``vxlan`` device in ``t`` (id 77, port 4789, remote 198.18.20.2);
  decapsulated packets are its ``rx_packets``;
* **pyxdp tunnel**: the tunnel app on ``t1`` with one VXLAN tunnel (remote 198.18.20.2,
  VNI 77, action pass); decapsulated packets are its ``decapsulated`` counter.

Also per-packet program cost (BPF_PROG_TEST_RUN, repeat=1 on a fresh copy of the frame
each call, since decap/encap change the frame).  The outer UDP checksum is 0 (as VXLAN
over IPv4 usually sends it), so varying the source port keeps every frame valid for the
kernel: VXLAN and IPIP decapsulation, VXLAN
encapsulation (FIB lookup, headers pushed), against a bare ``XDP_PASS`` program (the run
overhead); and ILA translation (router in both checksum modes, host) against the same
bare program, with the seconds a 100k-mapping table takes to validate and install.

Run: ``python -m pyxdp.bench.tunnel_speed``; results in
``bench/results/tunnel_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from pyxdp.bench import harness, options
from pyxdp.bench.harness import Report, alternate, fmt, stderr_log
from pyxdp.testbed import Testbed

NAME = "tunnel_speed"
TITLE = "Tunnel termination: pyxdp tunnel (XDP) vs the kernel's VXLAN device"
KERNEL, OURS = "kernel VXLAN device", "pyxdp tunnel (XDP)"
CALLS = 2000            # BPF_PROG_TEST_RUN calls (repeat=1) per program-cost sample
G_MAC, T_MAC, VX_MAC = "02:ab:00:00:00:02", "02:ab:00:00:00:01", "02:ab:00:00:00:77"


def vxlan_frame(size: int = 64) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    inner = (Ether(src="02:ab:00:00:00:99", dst=VX_MAC)
             / IP(src="198.18.98.1", dst="198.18.99.9") / UDP(sport=1000, dport=2000)
             / Raw(b"v" * size))
    return bytes(Ether(src=G_MAC, dst=T_MAC) / IP(src="198.18.20.2", dst="198.18.20.1")
                 / UDP(sport=40000, dport=4789, chksum=0) / VXLAN(vni=77, flags=0x08)
                 / inner)


def ipip_frame() -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    return bytes(Ether(src=G_MAC, dst=T_MAC) / IP(src="198.18.20.3", dst="198.18.20.1")
                 / IP(src="198.18.98.1", dst="198.18.99.9") / UDP(sport=1, dport=2)
                 / Raw(b"i" * 18))


def encap_frame() -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    return bytes(Ether(src=G_MAC, dst=T_MAC) / IP(src="198.18.98.1", dst="198.18.64.9")
                 / UDP(sport=1, dport=2) / Raw(b"e" * 18))


ILA_SIR = "2001:db8:1::/64"
ILA_MAPPINGS = 100_000


def ila_mappings(n: int) -> list[tuple[str, str]]:
    """``n`` (identifier, locator) rows spread over 16 locators."""
    return [(f"::1:0:{(i >> 15) + 1:x}:{(i & 0x7FFF) + 1:x}",
             f"2001:db8:a:{i % 16 + 1:x}::") for i in range(n)]


def ila_frame() -> bytes:
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=G_MAC, dst=T_MAC)
                 / IPv6(src="2001:db8:c::2", dst="2001:db8:1::1:0:1:5")
                 / TCP(sport=40000, dport=80, flags="S"))


TUNNELS: list[dict[str, Any]] = [
    {"name": "vx", "protocol": "vxlan", "local": "198.18.20.1", "remote": "198.18.20.2",
     "vni": 77, "routes": ["198.18.64.0/24"]},
    {"name": "ipip", "protocol": "ipip", "local": "198.18.20.1", "remote": "198.18.20.3"},
]


def rx_packets(tb: Testbed, ns: str, dev: str) -> int:
    out = tb.exec(ns, ["ip", "-j", "-s", "link", "show", dev]).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


class TunnelSpeed:
    def __init__(self, count: int, duration: float, rounds: int,
                 log: Callable[[str], None] = stderr_log) -> None:
        self.count, self.duration, self.rounds, self.log = count, duration, rounds, log
        self.sends: dict[str, list[dict[str, float]]] = {}

    def run(self) -> Report:
        from pyxdp.apps.tunnel import TunnelApp
        from pyxdp.apps.tunnel.config import parse_config
        from pyxdp.trafficgen import Generator

        with Testbed() as tb:
            tb.namespace("g")
            tb.namespace("t")
            tb.veth("g", "g0", "t", "t1", ipv4=("198.18.20.2/24", "198.18.20.1/24"),
                    macs=(G_MAC, T_MAC))
            tb.set_gro("t", "t1", True)      # the generator's XDP_TX frames need NAPI on t1
            tb.set_gro("g", "g0", True)
            g0 = tb.interfaces[("g", "g0")]
            frame = vxlan_frame()

            def send() -> tuple[float, float]:
                with Generator(g0.ifindex, frame, sources=1, ports=16) as g:
                    rep = g.run(self.count, duration=self.duration, threads=1, cpus=[0],
                                chunk=self.count)
                    return rep.seconds, rep.pps

            def kernel_side() -> float:
                tb.exec("t", ["ip", "link", "add", "vx0", "address", VX_MAC, "type", "vxlan",
                              "id", "77", "local", "198.18.20.1", "remote", "198.18.20.2",
                              "dstport", "4789", "dev", "t1", "nolearning"])
                tb.exec("t", ["ip", "link", "set", "vx0", "up"])
                try:
                    before = rx_packets(tb, "t", "vx0")
                    seconds, pps = tb.call("g", send)
                    time.sleep(0.05)
                    got = rx_packets(tb, "t", "vx0") - before
                finally:
                    tb.exec("t", ["ip", "link", "del", "vx0"])
                return self.record(KERNEL, got, seconds, pps)

            def xdp_side() -> float:
                cfg = parse_config({"ports": ["t1"], "mode": "native",
                                    "tunnel": [{**TUNNELS[0], "routes": []}]})
                app = tb.call("t", lambda: TunnelApp.attach(cfg))
                try:
                    seconds, pps = tb.call("g", send)
                    time.sleep(0.05)
                    got = tb.call("t", lambda: app.stats()["decapsulated"][0])
                finally:
                    tb.call("t", app.detach)
                return self.record(OURS, got, seconds, pps)

            self.log(f"delivered (decapsulated) Mpps, {self.count:,} frames per send:")
            mpps = alternate({KERNEL: kernel_side, OURS: xdp_side}, self.rounds,
                             log=self.log)
            self.log("program cost, ns per packet (fresh frame per run):")
            cost = self.program_cost(tb)
        install = self.ila_install()
        return self.report(mpps, cost, install)

    def record(self, side: str, got: int, seconds: float, pps: float) -> float:
        self.sends.setdefault(side, []).append(
            {"decapsulated": got, "seconds": seconds, "generator_pps": pps})
        return got / seconds / 1e6 if seconds else 0.0

    def program_cost(self, tb: Testbed) -> dict[str, list[float]]:
        from pyxdp.apps.tunnel import TunnelApp
        from pyxdp.apps.tunnel.config import parse_config
        from pyxdp.asm import programs as progs
        from pyxdp.isa import XdpAction
        from pyxdp.kernel import Program, XdpMd, test_run

        tb.exec("t", ["ip", "route", "add", "198.18.64.0/24", "via", "198.18.20.2"])
        tb.sysctl("t", "net.ipv4.ip_forward", "1")    # bpf_fib_lookup needs it (encap)
        cfg = parse_config({"ports": ["t1"], "mode": "native", "tunnel": TUNNELS})
        app = tb.call("t", lambda: TunnelApp.attach(cfg))
        try:
            from pyxdp.apps.router.bed import ping
            if not tb.call("t", ping, "198.18.20.2"):        # the encap's next hop
                raise RuntimeError("t cannot reach 198.18.20.2")

            def cost(prog_id: int | None, pkt: bytes, want: int) -> float:
                def runs() -> float:
                    prog = (Program.from_id(prog_id) if prog_id is not None
                            else Program.load(progs.xdp_verdict(XdpAction.PASS)))
                    try:
                        ifx = tb.interfaces[("t", "t1")].ifindex
                        total = 0
                        for _ in range(CALLS):
                            res = test_run(prog, pkt, XdpMd(data=0, data_end=len(pkt),
                                                            ingress_ifindex=ifx), 1)
                            if res.retval != want:
                                raise RuntimeError(f"verdict {res.retval}, expected {want}")
                            total += res.duration_ns
                        return total / CALLS
                    finally:
                        prog.close()
                return float(tb.call("t", runs))

            pid = tb.call("t", lambda: app.program_ids()["t1"])
            sides: dict[str, Callable[[], float]] = {
                "bare XDP_PASS": functools.partial(cost, None, vxlan_frame(), 2),
                "VXLAN decap": functools.partial(cost, pid, vxlan_frame(), 2),
                "IPIP decap": functools.partial(cost, pid, ipip_frame(), 2),
                "VXLAN encap": functools.partial(cost, pid, encap_frame(), 4),
            }
            closers: list[Any] = []
            try:
                sides.update(self.ila_sides(cost, closers))
                return alternate(sides, self.rounds, log=self.log)
            finally:
                for c in closers:
                    c.close()
        finally:
            tb.call("t", app.detach)

    def ila_sides(self, cost: Any, closers: list[Any]) -> dict[str, Callable[[], float]]:
        """The ILA translator's cost: router (SIR -> locator) in both checksum modes and
        host (locator -> SIR), each loaded unattached with a 100k-entry mapping table."""
        from pyxdp.apps.ila import Sir, Table
        from pyxdp.apps.ila.program import PROGRAM as ILA_PROGRAM
        from pyxdp.apps.ila.program import load_ila
        from pyxdp.kernel import KernelBackend, Program

        sides: dict[str, Callable[[], float]] = {}
        rows = ila_mappings(ILA_MAPPINGS)
        for role, mode, name in (("router", "neutral", "ILA router, neutral"),
                                 ("router", "adjust", "ILA router, adjust"),
                                 ("host", "neutral", "ILA host, neutral")):
            sirs = [Sir.from_any({"prefix": ILA_SIR, "checksum": mode})]
            table = Table(sirs, [])
            entries = table.entries(rows)
            locs = table.host_locators(entries) if role == "host" else None
            coll = load_ila(KernelBackend(), role, sirs, entries, locs,
                            max_mappings=ILA_MAPPINGS)
            closers.append(coll)
            frame = ila_frame()
            if role == "host":      # what the router made of it
                router = load_ila(KernelBackend(), "router", sirs, entries, None,
                                  max_mappings=ILA_MAPPINGS)
                try:
                    frame = bytes(router.programs[ILA_PROGRAM].run_packet(frame).packet)
                finally:
                    router.close()
            prog = coll.programs[ILA_PROGRAM]
            assert isinstance(prog, Program)
            sides[name] = functools.partial(cost, prog.id, frame, 2)
        return sides

    def ila_install(self) -> dict[str, list[float]]:
        """Seconds to validate and atomically install a table of 100k mappings, through
        the control plane's own path (:class:`~pyxdp.apps.ila.Table`, ``install``)."""
        from pyxdp.apps.ila import Sir, Table
        from pyxdp.apps.ila.program import compiled, install, load_ila
        from pyxdp.kernel import KernelBackend

        sirs = [Sir.from_any({"prefix": ILA_SIR, "checksum": "neutral"})]
        rows = ila_mappings(ILA_MAPPINGS)
        coll = load_ila(KernelBackend(), "router", sirs, [], None,
                        max_mappings=ILA_MAPPINGS)
        try:
            maps = compiled().typed_maps(coll)

            def once() -> float:
                t0 = time.perf_counter()
                install(maps, Table(sirs, []).entries(rows))
                return time.perf_counter() - t0
            return alternate({"install 100k mappings": once}, self.rounds, log=self.log)
        finally:
            coll.close()

    def report(self, mpps: dict[str, list[float]], cost: dict[str, list[float]],
               install: dict[str, list[float]]) -> Report:
        r = Report(NAME, TITLE, rounds=self.rounds,
                   params={"frames_per_send": self.count,
                           "max_seconds_per_send": self.duration, "calls": CALLS})
        r.compact = True
        r.intro = ("VXLAN frames from a live-frames generator decapsulated by the kernel's"
                   " vxlan device or by the pyxdp tunnel app on the same veth, alternating"
                   " rounds.  Generator and receiver share the 2 vCPUs of this VM: rates"
                   " of the whole chain, not the receiver's own capacity; the program"
                   " cost is pyxdp's per-packet work alone.")
        for side, samples in mpps.items():
            r.side(f"decap Mpps/{side}", samples, "Mpps")
        r.compare("decapsulated Mpps: pyxdp vs kernel VXLAN", f"decap Mpps/{OURS}",
                  f"decap Mpps/{KERNEL}")
        k, o = harness.summarize(mpps[KERNEL]), harness.summarize(mpps[OURS])
        lo, hi = harness.ratio_range(o, k)
        r.table("Decapsulated packets per second, median (min-max)",
                ["side", "Mpps", "pyxdp / kernel (range)"],
                [[KERNEL, f"{fmt(k.median)} ({fmt(k.min)}-{fmt(k.max)})", ""],
                 [OURS, f"{fmt(o.median)} ({fmt(o.min)}-{fmt(o.max)})",
                  f"{o.median / k.median:.2f} ({lo:.2f}-{hi:.2f})" if k.median else "-"]],
                "Packets the side decapsulated per second of sending (64-byte inner"
                " payload, 128-byte frames).")
        bare = harness.summarize(cost["bare XDP_PASS"])
        rows = []
        for side, samples in cost.items():
            r.side(f"cost/{side}", samples, "ns", better=harness.LOWER)
            s = harness.summarize(samples)
            net = s.median - bare.median
            rows.append([side, f"{s.median:.0f} ({s.min:.0f}-{s.max:.0f})",
                         "" if side == "bare XDP_PASS" else f"{net:.0f}",
                         f"{1e3 / s.median:.2f}"])
        r.table("Program cost (BPF_PROG_TEST_RUN, repeat=1, fresh frame), ns per packet",
                ["program", "ns median (min-max)", "ns over bare", "Mpps/core"], rows,
                "The bare program's number is the test run's own overhead; the column"
                " 'over bare' is the work of the program itself.")
        share = {k2: round(100 * sum(x["decapsulated"] for x in v)
                           / max(1.0, sum(x["generator_pps"] * x["seconds"] for x in v)), 1)
                 for k2, v in self.sends.items()}
        r.extra = {"sends": self.sends, "decapsulated_percent_of_sent": share}
        r.notes.append("Share of the generator's frames decapsulated: " + ", ".join(
            f"{k2} {v:g}%" for k2, v in share.items()) + ".")
        for side, samples in install.items():
            r.side(f"ila/{side}", samples, "s", better=harness.LOWER)
            s = harness.summarize(samples)
            r.table("ILA mapping table, seconds", ["operation", "s median (min-max)",
                                                   "mappings/s"],
                    [[side, f"{s.median:.2f} ({s.min:.2f}-{s.max:.2f})",
                      f"{ILA_MAPPINGS / s.median:,.0f}"]],
                    "Validation of every mapping (draft identifier format, locator"
                    " checks, duplicates), the idle table cleared and filled by one batch"
                    " update, then the switch of the active table.")
        r.notes.append("ILA rows: the translator with 100k mappings in its table, a TCP SYN"
                       " to a mapped SIR address (router) or its translated form (host);"
                       " 'neutral' rewrites the C-bit and the identifier's low 16 bits,"
                       " 'adjust' the TCP checksum.")
        return r


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root: it builds network namespaces and attaches XDP", file=sys.stderr)
        return 1
    report = TunnelSpeed(args.count, args.duration, args.rounds).run()
    return harness.finish(report, args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.tunnel_speed", description=TITLE)
    ap.add_argument("--count", type=options.COUNT, default=1_000_000, help="frames per send")
    ap.add_argument("--duration", type=options.SECONDS, default=2.0,
                    help="longest send, seconds")
    options.common(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

"""The main job: XDP protecting a real service from a flood, on a self-made test bed.

As root: namespaces ``gen`` (a client and a flooding generator) and ``sink`` (a UDP
service).  The client measures answered requests per second and latency three times: calm,
under a spoofed-source flood, and under the same flood with an XDP filter on the victim's
interface that drops the flooding prefix before the kernel allocates anything.  Without
root, the same filter program runs in the emulator over the same generated traffic.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from pyxdp._uapi import ProgType
from pyxdp.asm import R1, R2, R3, R7, R10, Builder
from pyxdp.isa import XdpAction
from pyxdp.maps import MapSpec
from pyxdp.progs import COUNTERS
from pyxdp.spec import ProgramSpec

SERVICE_PORT = 5353
FLOOD_PREFIX = IPv4Network("198.19.0.0/16")
BLOCKED = 0   # counters: index 0 = dropped, 1 = passed


def filter_program(prefix: IPv4Network = FLOOD_PREFIX) -> ProgramSpec:
    """XDP: drop IPv4 from ``prefix`` (count at key 0), pass the rest (count at key 1)."""
    b = Builder()
    b.mov64(6, R1).ldx("w", 2, 6, 0).ldx("w", 3, 6, 4)
    b.mov64(1, R2).add64(1, 34).jgt(1, R3, "pass")             # Ethernet + IPv4 header
    b.ldx("h", 1, 2, 12).jne(1, 0x0008, "pass")                  # ethertype 0x0800 (LE load)
    b.ldx("w", 1, 2, 26).be(1, 32)                               # source address, host order
    b.and32(1, int(prefix.netmask)).jne32(1, int(prefix.network_address), "pass")
    b.mov64(7, XdpAction.DROP).mov64(8, 0).ja("count")
    b.label("pass").mov64(7, XdpAction.PASS).mov64(8, 1)
    b.label("count").stx("w", 10, 8, -4)
    b.ld_map_fd(1, COUNTERS).mov64(2, R10).add64(2, -4).call("map_lookup_elem")
    b.jeq(0, 0, "out").ldx("dw", 1, 0, 0).add64(1, 1).stx("dw", 0, 1, 0)
    b.label("out").mov64(0, R7).exit()
    return ProgramSpec("demo_filter", ProgType.XDP, b.build(), map_refs=b.spec_map_refs())


def counters_spec() -> MapSpec:
    from pyxdp.progs import counters_spec as spec

    return spec()


@dataclass
class Phase:
    name: str
    answered: int
    sent: int
    seconds: float
    latencies_ms: list[float]
    flood_pps: float = 0.0
    dropped: int = 0
    passed: int = 0

    @property
    def rps(self) -> float:
        return self.answered / self.seconds

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def _server(stop: threading.Event, sock: socket.socket) -> None:
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        except OSError:
            return
        if data.startswith(b"REQ"):
            sock.sendto(b"ANS" + data[3:], addr)


def _client(dst: str, seconds: float) -> tuple[int, int, list[float]]:
    """Request/response for ``seconds``; (answered, sent, latencies in ms)."""
    lat: list[float] = []
    sent = answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sent += 1
            t0 = time.perf_counter()
            s.sendto(b"REQ%d" % sent, (dst, SERVICE_PORT))
            try:
                while True:
                    data, _ = s.recvfrom(2048)
                    if data == b"ANS%d" % sent:
                        answered += 1
                        lat.append((time.perf_counter() - t0) * 1e3)
                        break
            except TimeoutError:
                pass
    return answered, sent, lat


def run_kernel_demo(seconds: float = 2.0, log: Callable[[str], None] = print) -> list[Phase]:
    """The real thing: namespaces, veth, a service, a flood, and XDP in front of it."""
    from pyxdp import xdp
    from pyxdp.kernel import Map, Program
    from pyxdp.progs import read_counters
    from pyxdp.testbed import Testbed
    from pyxdp.trafficgen import Generator, template

    phases: list[Phase] = []
    with Testbed() as tb:
        for ns in ("gen", "sink"):
            tb.namespace(ns)
        gen, sink = tb.veth("gen", "veth0", "sink", "veth1",
                            ipv4=("198.18.0.1/24", "198.18.0.2/24"))
        tb.set_gro("sink", "veth1", True)   # the flood reaches the stack without XDP
        log(f"test bed: {tb.ns_name('gen')} ({gen.ip4}) <-> {tb.ns_name('sink')}"
            f" ({sink.ip4}), UDP service on port {SERVICE_PORT}")
        srv = tb.call("sink", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        tb.call("sink", srv.bind, (sink.ip4, SERVICE_PORT))
        stop = threading.Event()
        from pyxdp.testbed import NamespaceThread

        server_thread = NamespaceThread(tb.ns_name("sink"))  # its own: it never returns early
        server = server_thread.submit(_server, stop, srv)
        flood = template("udp", src=str(FLOOD_PREFIX.network_address + 1), dst=sink.ip4,
                         smac=gen.mac, dmac=sink.mac, dport=SERVICE_PORT, size=60)
        cmap = Map.create(counters_spec())
        prog = Program.load(filter_program(), maps={COUNTERS: cmap})
        try:
            def phase(name: str, flooding: bool) -> Phase:
                result: dict[str, float] = {}
                if flooding:
                    def flood_run() -> None:
                        with Generator(gen.ifindex, flood, sources=60000, ports=1000) as g:
                            rep = g.run(50_000_000, duration=seconds + 0.5)
                            result["pps"] = rep.pps
                    ft = tb.thread("gen").submit(flood_run)
                    time.sleep(0.2)
                client = NamespaceClient(tb.ns_name("gen"))
                answered, sent, lat = client.run(sink.ip4, seconds)
                if flooding:
                    ok, err = ft.get(timeout=60)
                    if not ok:
                        raise err
                p = Phase(name, answered, sent, seconds, lat, result.get("pps", 0.0))
                log(f"  {name:<28} {p.rps:8.0f} answered/s  p50 {p.p50:6.3f} ms"
                    + (f"  flood {p.flood_pps / 1e6:.2f} Mpps" if flooding else ""))
                return p

            phases.append(phase("calm", False))
            phases.append(phase("flood, no filter", True))
            att = tb.call("sink", xdp.attach, "veth1", prog, "native")
            try:
                p = phase("flood, XDP filter", True)
                p.dropped, p.passed = read_counters(cmap)  # key 0 dropped, key 1 passed
                phases.append(p)
            finally:
                tb.call("sink", att.detach)
        finally:
            stop.set()
            server.get(timeout=5)
            server_thread.close()
            srv.close()
            prog.close()
            cmap.close()
    return phases


class NamespaceClient:
    """Runs the client on a thread inside the namespace (sockets belong to the thread's ns)."""

    def __init__(self, ns_full_name: str) -> None:
        self.ns = ns_full_name

    def run(self, dst: str, seconds: float) -> tuple[int, int, list[float]]:
        from pyxdp.testbed import NamespaceThread

        t = NamespaceThread(self.ns)
        try:
            return t.call(_client, dst, seconds)
        finally:
            t.close()


def run_emulator_demo(n: int = 20000, log: Callable[[str], None] = print) -> Counter:
    """Without root: the same filter in the emulator over the same kind of traffic."""
    import random

    from pyxdp import emu
    from pyxdp.packets import build

    rng = random.Random(7)
    cmap = emu.create_map(counters_spec())
    prog = emu.load(filter_program(), maps={COUNTERS: cmap})
    verdicts: Counter = Counter()
    flood_base = int(FLOOD_PREFIX.network_address)
    t0 = time.perf_counter()
    for i in range(n):
        if i % 10 == 0:
            src = "198.18.0.1"
        else:
            src = str(IPv4Address(flood_base + rng.randrange(1, 65535)))
        frame = build.ethernet(build.ipv4(build.udp(bytes(18), sport=rng.randrange(1024, 65535),
                                                    dport=SERVICE_PORT),
                                          src=src, dst="198.18.0.2"))
        verdicts[XdpAction(prog.run_xdp(frame).verdict).name] += 1
    took = time.perf_counter() - t0
    log(f"emulator: {n} packets (90% from the flooding prefix {FLOOD_PREFIX}) in {took:.2f} s"
        f" ({n / took / 1e3:.0f} kpps in Python)")
    return verdicts


def main(log: Callable[[str], None] = print, emulator: bool = False) -> int:
    if os.geteuid() == 0 and not emulator:
        phases = run_kernel_demo(log=log)
        calm, flood, filtered = phases
        log("")
        log(f"service under flood: {flood.rps:.0f} answered/s without XDP,"
            f" {filtered.rps:.0f}/s with the XDP filter (calm: {calm.rps:.0f}/s)")
        log(f"XDP filter dropped {filtered.dropped} flood packets and passed {filtered.passed}")
        return 0
    log("running the XDP filter in the pyxdp emulator instead of the kernel"
        + ("" if emulator else " (not root)"))
    verdicts = run_emulator_demo(log=log)
    for k, v in sorted(verdicts.items()):
        log(f"  {k:<10} {v}")
    return 0

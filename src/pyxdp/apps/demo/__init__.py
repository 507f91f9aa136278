"""The pyxdp demo: ``pyxdp filter`` protecting a real TCP service from a flood.

As root, on a self-made test bed (see :mod:`pyxdp.apps.demo.bed`): a client measures the
service's answered requests per second and latency three times — calm, under a flood
(a SYN flood from spoofed sources, half of them in a blocked prefix, sent with the
live-frames generator), and under the same flood with the XDP filter attached to the
victim's uplink — and the summary shows what XDP changed and which rule dropped what.

Without root (or with ``--emulator``), the same compiled filter runs in :mod:`pyxdp.emu`
over the same kinds of traffic, and the demo says so.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from pyxdp._privilege import can_run_test_beds
from pyxdp.apps.filter import RuleSet, parse_rules_text

BLOCKED = "198.19.0.0/17"         # a prefix the operator knows is bad
SPOOFED_SYN = "198.19.128.0/17"   # spoofed sources the operator can only rate-limit
DEMO_RULES = f"""
[filter]
default = "allow"

[[rule]]
name = "blocked-prefix"
src = "{BLOCKED}"

[[rule]]
name = "syn-flood"
proto = "tcp"
dport = 8080
tcp_flags = "syn,!ack"
rate = {{ pps = 500, burst = 500, per = "/17" }}
"""


def demo_rules() -> RuleSet:
    return parse_rules_text(DEMO_RULES, "demo rules")


@dataclass
class Phase:
    name: str
    client: Any                   # demo_bed.ClientStats
    flood_sent: int = 0
    flood_seconds: float = 0.0
    stats: dict[str, tuple[int, int]] | None = None

    @property
    def flood_mpps(self) -> float:
        return self.flood_sent / self.flood_seconds / 1e6 if self.flood_seconds else 0.0


def _flood(bed: Any, seconds: float) -> Callable[[], tuple[int, float]]:
    """Start the flood from the attacker: SYNs to the service from 65,000 spoofed
    sources across 198.19.0.0/16 (both the blocked prefix and the rate-limited one);
    returns a function waiting for (frames sent, seconds)."""
    from pyxdp.apps.demo.bed import SERVICE_PORT, VICTIM_IP
    from pyxdp.trafficgen import Generator, template

    att, vic = bed.attacker, bed.victim
    syn = template("tcp-syn", src=str(IPv4Address(BLOCKED.split("/")[0]) + 1),
                   dst=VICTIM_IP, smac=att.mac, dmac=vic.mac, dport=SERVICE_PORT)
    cpus = [max(os.sched_getaffinity(0))]  # one CPU for the attacker, the rest for us

    def flood() -> tuple[int, float]:
        with Generator(att.ifindex, syn, sources=65000, ports=1000) as g:
            rep = g.run(100_000_000, duration=seconds, cpus=cpus)
            return rep.sent, rep.seconds

    job = bed.tb.thread("internet").submit(flood)

    def wait() -> tuple[int, float]:
        ok, value = job.get(timeout=seconds + 60)
        if not ok:
            raise value
        return value

    return wait


def _live_table(filt: Any, prev: dict[str, tuple[int, int]], dt: float) -> Any:
    from rich.table import Table

    t = Table(title="pyxdp filter on the victim's uplink (live)")
    for col in ("rule", "packets", "pps now"):
        t.add_column(col, justify="left" if col == "rule" else "right")
    stats = filt.stats()
    for name, (p, _b) in stats.items():
        rate = (p - prev.get(name, (0, 0))[0]) / dt if dt > 0 else 0.0
        t.add_row(name, f"{p:,}", f"{rate:,.0f}")
    prev.clear()
    prev.update(stats)
    return t


def run_kernel_demo(seconds: float = 3.0, log: Callable[[str], None] = print,
                    live: bool = True) -> list[Phase]:
    from pyxdp.apps.demo.bed import CLIENT_IP, SERVICE_PORT, VICTIM_IP, DemoBed
    from pyxdp.apps.filter import Filter

    phases: list[Phase] = []
    with DemoBed() as bed:
        log(f"test bed: client {CLIENT_IP} -> router (the attacker floods from here) ->"
            f" victim {VICTIM_IP}, a TCP service on :{SERVICE_PORT}"
            f" (namespaces {bed.tb.ns_name('victim')} and friends)")
        calm = Phase("calm", bed.client_run(seconds))
        phases.append(calm)
        log(f"  calm                      {calm.client.rps:8.0f} answered/s")

        wait = _flood(bed, seconds + 1.0)
        time.sleep(0.3)
        flood = Phase("flood, no filter", bed.client_run(seconds))
        flood.flood_sent, flood.flood_seconds = wait()
        phases.append(flood)
        log(f"  flood, no filter          {flood.client.rps:8.0f} answered/s"
            f"   (flood {flood.flood_mpps:.2f} Mpps)")

        filt = bed.tb.call("victim", Filter.attach, "eth0", "native", demo_rules(),
                           state_root="/run/pyxdp-demo", pin_root="/sys/fs/bpf/pyxdp-demo")
        try:
            wait = _flood(bed, seconds + 1.0)
            time.sleep(0.3)
            result: dict[str, Any] = {}
            client = threading.Thread(target=lambda: result.update(c=bed.client_run(seconds)))
            client.start()
            if live:
                from rich.live import Live

                prev: dict[str, tuple[int, int]] = {}
                last = time.monotonic()
                with Live(_live_table(filt, prev, 0), refresh_per_second=4,
                          transient=True) as view:
                    while client.is_alive():
                        time.sleep(0.5)
                        now = time.monotonic()
                        view.update(_live_table(filt, prev, now - last))
                        last = now
            client.join()
            protected = Phase("flood, XDP filter", result["c"])
            protected.flood_sent, protected.flood_seconds = wait()
            protected.stats = filt.stats()
            phases.append(protected)
            log(f"  flood, XDP filter         {protected.client.rps:8.0f} answered/s"
                f"   (flood {protected.flood_mpps:.2f} Mpps)")
        finally:
            bed.tb.call("victim", filt.detach)
    return phases


def summary(phases: list[Phase], log: Callable[[str], None] = print) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="the service, seen by its client")
    for col in ("phase", "answered/s", "p50 ms", "p99 ms", "failed", "flood Mpps"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for p in phases:
        t.add_row(p.name, f"{p.client.rps:,.0f}", f"{p.client.p50:.3f}",
                  f"{p.client.pct(0.99):.3f}", f"{p.client.failed:,}",
                  f"{p.flood_mpps:.2f}" if p.flood_sent else "-")
    console = Console()
    console.print(t)
    last = phases[-1]
    if last.stats:
        dropped = last.stats.get("@dropped", (0, 0))[0]
        rate = dropped / last.flood_seconds / 1e6 if last.flood_seconds else 0.0
        by_rule = ", ".join(f"{name} {p:,}" for name, (p, _) in last.stats.items()
                            if not name.startswith("@"))
        log(f"XDP dropped {dropped:,} packets ({rate:.2f} Mpps) before the kernel allocated"
            f" anything: {by_rule}; passed {last.stats.get('@passed', (0, 0))[0]:,}")
    if len(phases) == 3:
        calm, flood, prot = phases
        log(f"answered requests/s: calm {calm.client.rps:,.0f}, under flood"
            f" {flood.client.rps:,.0f} without XDP, {prot.client.rps:,.0f} with the filter")


def run_emulator_demo(n: int = 20000, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The same filter, compiled the same way, in the emulator over generated traffic."""
    from pyxdp.apps.filter.program import PROGRAM, load_generation
    from pyxdp.apps.filter.tables import Sizes, assign_slots, compile_tables
    from pyxdp.emu import EmuBackend
    from pyxdp.packets import build

    rs = demo_rules()
    sizes = Sizes()
    slots = assign_slots(rs.rules, {}, sizes.rules)
    clock = [0]
    coll = load_generation(compile_tables(rs, slots, sizes), sizes,
                           EmuBackend(clock=lambda: clock[0]))
    prog = coll.programs[PROGRAM]
    rng = random.Random(1)
    base_blocked = int(IPv4Address(BLOCKED.split("/")[0]))
    base_syn = int(IPv4Address(SPOOFED_SYN.split("/")[0]))
    verdicts: Counter[str] = Counter()
    t0 = time.perf_counter()
    for i in range(n):
        clock[0] = i * 1_000  # 1 Mpps of simulated time
        kind = i % 10
        if kind < 5:
            src = str(IPv4Address(base_blocked + rng.randrange(1, 30000)))
            frame = build.ethernet(build.ipv4(build.tcp(b"", sport=rng.randrange(1024, 65535),
                                                        dport=8080, flags="S"),
                                              src=src, dst="198.18.0.2"))
        elif kind < 9:
            src = str(IPv4Address(base_syn + rng.randrange(1, 30000)))
            frame = build.ethernet(build.ipv4(build.tcp(b"", sport=rng.randrange(1024, 65535),
                                                        dport=8080, flags="S"),
                                              src=src, dst="198.18.0.2"))
        else:
            frame = build.ethernet(build.ipv4(build.tcp(b"", sport=40000, dport=8080,
                                                        flags="S"),
                                              src="198.18.0.10", dst="198.18.0.2"))
        verdicts["DROP" if prog.run_packet(frame).verdict == 1 else "PASS"] += 1
    took = time.perf_counter() - t0
    counters = {name: sum(c.packets for c in coll.maps["stats"][slot])
                for name, slot in slots.items()}
    log(f"emulator: {n} packets (50% SYNs from {BLOCKED}, 40% SYNs from"
        f" {SPOOFED_SYN}, 10% client SYNs; 1 Mpps of simulated time) in {took:.2f} s")
    for k, v in sorted(verdicts.items()):
        log(f"  {k:<6} {v:6d}")
    for name, v in counters.items():
        log(f"  rule {name:<16} {v:6d}")
    return {"verdicts": dict(verdicts), "rules": counters}


def main(log: Callable[[str], None] = print, emulator: bool = False) -> int:
    if can_run_test_beds() and not emulator:
        summary(run_kernel_demo(log=log), log)
        return 0
    log("running the filter in the pyxdp emulator instead of the kernel"
        + ("" if emulator else " (no root privileges: CAP_SYS_ADMIN and CAP_NET_ADMIN)"))
    run_emulator_demo(log=log)
    return 0

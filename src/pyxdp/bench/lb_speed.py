"""Load balancing at XDP: pyxdp lb (IPIP and DSR) next to a bare XDP_TX bounce, Katran's own
balancer object and nftables DNAT (the kernel has no IPVS), on one veth bed, the same
traffic, alternating rounds (root).

Bed: namespace ``g`` (``g0`` 198.18.20.2, the generator and the receiver) -- ``lb``
(``l0`` 198.18.20.1).  The generator floods UDP to the VIP 198.18.100.1:53 from 1,000
source ports (1,000 flows, 64-byte frames); every side sends each frame back out of
``l0`` towards one of three reals (198.18.20.11-13, neighbours with ``g0``'s MAC), where a
count-and-drop XDP program on ``g0`` counts what was delivered.  Sides, each attached
natively to ``l0`` in turn:

* **bare XDP_TX bounce**: swap the MACs, XDP_TX (no parsing: the floor of any XDP LB);
* **pyxdp lb IPIP** / **pyxdp lb DSR**: one service, three reals, method ipip / dsr;
* **Katran**: ``balancer.o`` from ``../shared/references/katran`` (built with its
  ``build.sh``: clang -O2, IPIP encapsulation), loaded by pyxdp, its maps filled as its
  test provisioning does (``vip_map``, ``reals`` from index 1, ``ch_rings``, the default
  router MAC in ``ctl_array[0]``, one LRU hash per CPU in ``lru_mapping`` as its control
  plane makes them);
* **nftables DNAT**: no XDP; the LB namespace forwards, ``dnat to numgen inc mod 3 map``
  (the kube-proxy nftables way), conntrack on.

Measures per sample: delivered Mpps (frames counted at ``g0`` per second of generator
time: generator, LB and receiver share one CPU, so this is the bed's rate), and for the
XDP sides the program's own ns per packet from the kernel's run statistics
(BPF_ENABLE_STATS): Mpps per core of LB work = 1000 / ns.  For nftables, whose work is
not one program, the LB work per packet is the delivered time per packet minus the bed's
own cost (generator, veth, receiver), which the bounce side gives in the same round:
1 / its delivered rate minus its program time.

Run: ``python -m pyxdp.bench.lb_speed``; results in ``bench/results/lb_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pyxdp.bench import harness, options
from pyxdp.bench.harness import LOWER, Report, alternate_metrics, fmt, stderr_log
from pyxdp.testbed import Testbed

NAME = "lb_speed"
TITLE = "Load balancing at XDP: pyxdp lb vs a bare XDP_TX bounce, Katran and nftables DNAT"
G_MAC, L_MAC = "02:1b:00:00:20:02", "02:1b:00:00:20:01"
VIP, PORT = "198.18.100.1", 53
REALS = ("198.18.20.11", "198.18.20.12", "198.18.20.13")
KATRAN_SRC = Path(__file__).resolve().parents[3] / ".." / "shared" / "references" / "katran"
SIDES = ("bare XDP_TX bounce", "pyxdp lb IPIP", "pyxdp lb DSR", "Katran", "nftables DNAT")
# the generator's program: the whole header written on every run (the LB's encapsulation
# writes into the generator's pages, which live-frames mode reuses without restoring their
# bytes), the source port from a per-CPU counter over 1,000 flows, UDP checksum 0
GEN = f"""
from pyxdp.compiler.lang import *

ctr = PerCpuArray[u32, u64](max_entries=1)

@xdp
def gen(ctx):
    c = ctx.cursor()
    eth = c.header(Ethernet)
    ip = c.header(IPv4)
    u = c.header(UDP)
    if not eth or not ip or not u:
        return XDP_DROP
    n = ctr.lookup(0)
    if not n:
        return XDP_DROP
    n.value += 1
{{SET_MACS}}
    eth.proto = ETH_P_IP
    ip.ver_ihl = 0x45
    ip.tos = 0
    ip.tot_len = ctx.packet_len() - 14
    ip.id = 0
    ip.frag_off = 0
    ip.ttl = 64
    ip.protocol = 17
    ip.saddr = ip4("198.18.30.1")
    ip.daddr = ip4("{VIP}")
    ip.check = 0
    ip.check = ipv4_csum(ip)
    u.source = 10000 + (n.value % 1000)
    u.dest = {PORT}
    u.len = ctx.packet_len() - 34
    u.check = 0
    return XDP_TX
"""
GEN = GEN.replace("{SET_MACS}", "\n".join(
    f"    eth.{field}[{i}] = {b}" for field, mac in (("dst", L_MAC), ("src", G_MAC))
    for i, b in enumerate(bytes.fromhex(mac.replace(":", "")))))
BOUNCE = """
from pyxdp.compiler.lang import *

@xdp
def bounce(ctx):
    c = ctx.cursor()
    eth = c.header(Ethernet)
    if not eth:
        return XDP_PASS
    d = eth.dst
    eth.dst = eth.src
    eth.src = d
    return XDP_TX
"""


def katran_dir() -> Path:
    """``$PYXDP_KATRAN``, else ``../shared/references/katran`` beside the checkout."""
    env = os.environ.get("PYXDP_KATRAN")
    for cand in ([Path(env)] if env else []) + [KATRAN_SRC.resolve()]:
        if (cand / "build.sh").exists():
            return cand
    raise RuntimeError("Katran's sources are not found (set PYXDP_KATRAN to the directory"
                       " with build.sh)")


def build_katran(out: Path) -> Path:
    """``balancer.o`` built by Katran's own ``build.sh`` (cached in ``out``)."""
    obj = out / "balancer.o"
    if not obj.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(["sh", str(katran_dir() / "build.sh"), str(out)], check=True,
                       capture_output=True, timeout=300)
    return obj


class Bench:
    def __init__(self, count: int, duration: float, rounds: int,
                 log: Callable[[str], None] = stderr_log) -> None:
        self.count, self.duration, self.rounds, self.log = count, duration, rounds, log

    # -- sides --------------------------------------------------------------------------
    def _flood(self, prog_id: int | None) -> dict[str, float]:
        from pyxdp.asm import programs as progs
        from pyxdp.kernel import Program
        from pyxdp.trafficgen import Generator, template

        tb = self.tb
        g0 = tb.interfaces[("g", "g0")]
        frame = template("udp", src="198.18.30.1", dst=VIP, smac=G_MAC, dmac=L_MAC,
                         dport=PORT)
        before = progs.read_counters(self.sink_map)[0]
        p = Program.from_id(prog_id) if prog_id else None
        try:
            info0 = p.info() if p else None

            def go() -> float:
                # (the generator closes the program it is given: a handle of its own)
                with Generator(g0.ifindex, frame,
                               program=Program.from_id(self.gen_prog.id)) as g:
                    return g.run(self.count, duration=self.duration, chunk=self.count).seconds

            seconds = tb.call("g", go)
            time.sleep(0.05)
            got = progs.read_counters(self.sink_map)[0] - before
            out = {"delivered_mpps": got / seconds / 1e6, "delivered": float(got)}
            if p is not None and info0 is not None:
                info = p.info()
                ran = info.run_cnt - info0.run_cnt
                out["prog_ns"] = (info.run_time_ns - info0.run_time_ns) / max(ran, 1)
                out["ran"] = float(ran)
            return out
        finally:
            if p is not None:
                p.close()

    def bounce(self) -> dict[str, float]:
        from pyxdp import xdp

        att = self.tb.call("lb", xdp.attach, "l0", self.bounce_prog, "native")
        try:
            return self._flood(self.bounce_prog.id)
        finally:
            self.tb.call("lb", att.detach)

    def pyxdp(self, method: str) -> dict[str, float]:
        from pyxdp.apps.lb import LoadBalancer

        cfg = {"ports": ["l0"], "mode": "native", "ring_size": 16381,
               "source4": "198.18.20.1",
               "service": [{"vip": VIP, "port": PORT, "proto": "udp", "method": method,
                            "reals": [{"address": r} for r in REALS]}]}
        lb = self.tb.call("lb", LoadBalancer.attach, cfg, pin_root=self.pin,
                          state_root=self.state)
        try:
            pid = self.tb.call("lb", lambda: lb.program_ids()["l0"])
            return self._flood(pid)
        finally:
            self.tb.call("lb", lb.detach)

    def katran(self) -> dict[str, float]:
        from pyxdp import xdp

        att = self.tb.call("lb", xdp.attach, "l0", self.katran_prog, "native")
        try:
            return self._flood(self.katran_prog.id)
        finally:
            self.tb.call("lb", att.detach)

    def nft(self) -> dict[str, float]:
        import tempfile

        rules = (f"table ip pyxdpbench {{\n chain pre {{\n  type nat hook prerouting"
                 f" priority dstnat; policy accept;\n  ip daddr {VIP} udp dport {PORT}"
                 f" dnat to numgen inc mod 3 map {{ 0 : {REALS[0]}, 1 : {REALS[1]},"
                 f" 2 : {REALS[2]} }}\n }}\n}}\n")
        with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
            f.write(rules)
            f.flush()
            self.tb.exec("lb", ["nft", "-f", f.name])
        try:
            return self._flood(None)
        finally:
            self.tb.exec("lb", ["nft", "delete", "table", "ip", "pyxdpbench"])

    # -- setup ----------------------------------------------------------------------------
    def load_katran(self) -> None:
        from pyxdp.apps.lb import maglev
        from pyxdp.elf import load_object
        from pyxdp.kernel import KernelBackend

        obj = load_object(str(build_katran(Path("/tmp/pyxdp-katran-objs"))))
        self.katran_coll = self.tb.call("lb", KernelBackend().load, obj)
        maps = self.katran_coll.maps
        (self.katran_prog,) = [p for n, p in self.katran_coll.programs.items()
                               if n == "balancer_ingress"]
        vip = ipaddress.IPv4Address(VIP).packed + bytes(12)
        maps["vip_map"]._update(vip + struct.pack("!H", PORT) + bytes([17, 0]),
                                struct.pack("<II", 0, 0), 0)
        for i, r in enumerate(REALS, 1):          # Katran's real ids start at 1
            maps["reals"]._update(struct.pack("<I", i),
                                  ipaddress.IPv4Address(r).packed + bytes(12) + bytes(4), 0)
        ring_size = 65537                        # Katran's RING_SIZE
        ring = maglev.build({r: (i, 1) for i, r in enumerate(REALS, 1)}, ring_size)
        maps["ch_rings"].write_array(struct.pack(f"<{ring_size}I", *ring), 0)
        mac = bytes(int(x, 16) for x in G_MAC.split(":"))
        maps["ctl_array"]._update(struct.pack("<I", 0), mac + bytes(2), 0)
        # its per-CPU connection tables, as its control plane makes them: one LRU hash per
        # possible CPU in lru_mapping (flow_key 40 bytes -> real_pos_lru 16 bytes)
        from pyxdp.abi import MapType
        from pyxdp.kernel import Map, possible_cpus
        from pyxdp.maps import MapSpec

        for cpu in range(possible_cpus()):
            with Map.create(MapSpec(f"katran_lru{cpu}", MapType.LRU_HASH, 40, 16,
                                    100_000)) as inner:
                maps["lru_mapping"]._update(struct.pack("<I", cpu),
                                            struct.pack("<I", inner.fd.fileno()), 0)

    def run(self) -> Report:
        from pyxdp import xdp
        from pyxdp.asm import programs as progs
        from pyxdp.compiler import compile_module
        from pyxdp.isa import XdpAction
        from pyxdp.kernel import KernelBackend, Map, Program, enable_stats

        r = Report(NAME, TITLE, rounds=self.rounds,
                   params={"frames_per_sample": self.count, "flows": 1000, "frame": 64,
                           "reals": len(REALS)})
        with Testbed() as tb, enable_stats():
            self.tb = tb
            self.pin, self.state = "/sys/fs/bpf/pyxdp-bench-lb", "/run/pyxdp-bench-lb"
            tb.namespace("g")
            tb.namespace("lb")
            tb.veth("g", "g0", "lb", "l0", ipv4=("198.18.20.2/24", "198.18.20.1/24"),
                    macs=(G_MAC, L_MAC))
            tb.sysctl("lb", "net.ipv4.ip_forward", "1")
            tb.sysctl("lb", "net.ipv4.conf.all.rp_filter", "0")
            tb.sysctl("lb", "net.ipv4.conf.l0.rp_filter", "0")
            tb.exec("lb", ["ip", "route", "add", "198.18.30.0/24", "via", "198.18.20.2"])
            for ip in REALS:
                tb.neighbour("lb", "l0", ip, G_MAC)
            self.sink_map = Map.create(progs.counters_spec())
            sink = Program.load(progs.xdp_count(XdpAction.DROP),
                                maps={progs.COUNTERS: self.sink_map})
            sink_att = tb.call("g", xdp.attach, "g0", sink, "native")
            tb.set_gro("lb", "l0", True)     # the stack side (nftables) needs NAPI on l0
            bcoll = KernelBackend().load(compile_module(BOUNCE).spec)
            gcoll = KernelBackend().load(compile_module(GEN).spec)
            self.gen_prog = gcoll.programs["gen"]
            self.bounce_prog = bcoll.programs["bounce"]
            self.load_katran()
            try:
                sides = {
                    "bare XDP_TX bounce": self.bounce,
                    "pyxdp lb IPIP": lambda: self.pyxdp("ipip"),
                    "pyxdp lb DSR": lambda: self.pyxdp("dsr"),
                    "Katran": self.katran,
                    "nftables DNAT": self.nft,
                }
                self.log(f"lb_speed: {self.rounds} alternating rounds, {self.count:,} frames"
                         " a sample")
                got = alternate_metrics(sides, self.rounds, warmup=1, log=None)
            finally:
                tb.call("g", sink_att.detach)
                sink.close()
                self.sink_map.close()
                bcoll.close()
                gcoll.close()
                self.katran_coll.close()
                shutil.rmtree(self.state, ignore_errors=True)
        self.report(r, got)
        return r

    # -- the report -----------------------------------------------------------------------
    def report(self, r: Report, got: dict[str, dict[str, list[float]]]) -> None:
        def med(v: list[float]) -> float:
            return statistics.median(v)

        def rng(v: list[float]) -> str:
            return f"{fmt(med(v))} ({fmt(min(v))}-{fmt(max(v))})"

        bounce = got["bare XDP_TX bounce"]
        # the bed's own cost per packet (generator, veth, receiver), per round
        bed_ns = [1e3 / d - p for d, p in zip(bounce["delivered_mpps"], bounce["prog_ns"],
                                               strict=True)]
        work: dict[str, list[float]] = {}
        for side in SIDES:
            m = got[side]
            r.side(f"{side} delivered", m["delivered_mpps"], "Mpps")
            if "prog_ns" in m:
                work[side] = m["prog_ns"]
                r.side(f"{side} program", m["prog_ns"], "ns/packet", LOWER)
            else:
                work[side] = [1e3 / d - b for d, b in zip(m["delivered_mpps"], bed_ns,
                                                          strict=True)]
                r.side(f"{side} program", work[side], "ns/packet", LOWER)
            r.side(f"{side} per core", [1e3 / w for w in work[side]], "Mpps")
        rows = []
        for side in SIDES:
            m = got[side]
            how = "kernel run stats" if "prog_ns" in m else "delivered time - bed cost"
            rows.append([side, rng(m["delivered_mpps"]), rng(work[side]),
                         rng([1e3 / w for w in work[side]]), how])
        r.table("Per side, median (min-max) of the rounds",
                ["side", "delivered Mpps (bed)", "LB work ns/packet",
                 "Mpps per core of LB work", "LB work from"], rows,
                "Delivered: frames counted at the receiver per second of generator time"
                " (generator, LB and receiver on one CPU).  LB work: the XDP program's own"
                " time per packet (BPF_ENABLE_STATS), or for nftables the delivered time per"
                " packet minus the bed's own cost measured with the bounce in the same"
                f" round ({fmt(med(bed_ns))} ns).")
        for ours in ("pyxdp lb IPIP", "pyxdp lb DSR"):
            for ref in ("bare XDP_TX bounce", "Katran", "nftables DNAT"):
                r.compare(f"{ours} vs {ref}, Mpps per core of LB work", f"{ours} per core",
                          f"{ref} per core", a_label=ours, b_label=ref)
                r.compare(f"{ours} vs {ref}, delivered Mpps", f"{ours} delivered",
                          f"{ref} delivered", a_label=ours, b_label=ref)
        aims = []
        for ours in ("pyxdp lb IPIP", "pyxdp lb DSR"):
            for ref, target, metric in (("bare XDP_TX bounce", 0.8, "delivered"),
                                        ("bare XDP_TX bounce", 0.8, "per core"),
                                        ("Katran", 1.0, "per core"),
                                        ("nftables DNAT", 3.0, "per core")):
                a = got_metric(got, work, ours, metric)
                b = got_metric(got, work, ref, metric)
                ratio = [x / y for x, y in zip(a, b, strict=True)]
                met = ("yes" if min(ratio) >= target else
                       "median only" if med(ratio) >= target else "no")
                aims.append([f"{ours} / {ref} ({metric})", f">= {target:g}",
                             f"{fmt(med(ratio))} ({fmt(min(ratio))}-{fmt(max(ratio))})", met])
        r.table("The issue's aims (ratios per round, median (min-max))",
                ["ratio", "aim", "measured", "met"], aims,
                "met: every round reaches the aim; 'median only': the median does.")
        r.extra = {"samples": got, "bed_ns": bed_ns}
        r.notes += [
            "The bounce does no parsing and no lookup: it is the floor of XDP forwarding on"
            " this bed, not a balancer.",
            "Katran's connection tables are its per-CPU LRU maps (one per possible CPU in"
            " lru_mapping, 100,000 entries each); pyxdp lb's is one LRU hash with per-CPU LRU"
            " lists.",
            "The machine is a shared 2-vCPU VM: read the spreads, not one number.",
        ]


def got_metric(got: dict[str, dict[str, list[float]]], work: dict[str, list[float]],
               side: str, metric: str) -> list[float]:
    if metric == "delivered":
        return got[side]["delivered_mpps"]
    return [1e3 / w for w in work[side]]


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root: it builds network namespaces and attaches XDP", file=sys.stderr)
        return 1
    report = Bench(args.count, args.duration, args.rounds).run()
    return harness.finish(report, args)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.lb_speed", description=TITLE)
    ap.add_argument("--count", type=options.COUNT, default=2_000_000, help="frames per sample")
    ap.add_argument("--duration", type=options.SECONDS, default=3.0,
                    help="longest send, seconds")
    options.common(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

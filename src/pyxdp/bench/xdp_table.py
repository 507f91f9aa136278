"""TC vs XDP drop/TX rates on a veth test bed, with reference tools side by side.

Where should a packet be dropped?  Every row is measured in the same run, on the same bed,
with 64-byte frames (60 bytes plus the FCS a NIC would add) sent by pyxdp's live-frames
generator from namespace ``gen`` into namespace ``sink``:

* TC ingress drop (clsact + cls_bpf, direct action), netfilter drop (nftables, netdev
  ingress hook), XDP generic drop, XDP native drop, XDP native TX (reflected frames counted
  back on the generator's side), XDP_PASS into the stack; each compared with TC drop.

Every row (and "generator alone", below) is one side of :func:`pyxdp.bench.harness.
alternate`: each round sends once per row, the order reversed every round, so drift hits
all rows alike; the table reports median and spread per row and says when a row's
difference to TC is within the spread.

Rates are measured *at the sink* (a counter per packet, read before and after), never from
the generator's own clock.  With two cores the generator and the sink share one CPU (veth
runs the receiver's NAPI on the sending CPU), so besides the delivered rate the table
reports the sink's own per-packet cost ``1/rate(both) - 1/rate(generator alone)``, per
round, where "generator alone" runs the same generator program without transmitting
(XDP_DROP).  That model charges everything the shared CPU spends beyond the generator's own
work to the sink, including frames the veth ring dropped before the sink saw them.

References, same bed, same run, alternating rounds too:

* Generator: pyxdp's live-frames generator vs a minimal C program (``c/trafficgen_ref.c``,
  libbpf) doing one long ``BPF_PROG_TEST_RUN`` per thread, both delivering into the same
  counting XDP sink, on 1 and 2 threads (a fixed template on both sides; the varying-sources
  generator is measured beside them).
* Drop program: the same clang-built object (``c/xdp_drop_count.c``) loaded and attached by
  pyxdp, and by ``xdp-loader``; delivered rate at its own counters.

The generator makes one ``BPF_PROG_TEST_RUN`` call per send, as the C reference does, so a
send is bounded by its frame count and by ``duration``.

Run: ``pyxdp bench`` or ``python -m pyxdp.bench.xdp_table`` (root); results in
``bench/results/xdp_table.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyxdp import xdp
from pyxdp.asm import programs as progs
from pyxdp.bench import harness, options
from pyxdp.bench.harness import Report, alternate, fmt, stderr_log
from pyxdp.isa import XdpAction
from pyxdp.kernel import Map, Program
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

NAME = "xdp_table"
TITLE = "TC vs XDP drop/TX rates on a veth test bed, with reference tools side by side"
FRAME = 60
C_DIR = Path(__file__).resolve().parent / "c"
CLANG_BPF = ["clang", "-target", "bpf", "-O2", "-g", "-I/usr/include/x86_64-linux-gnu"]
TC = "TC ingress drop"
GEN_ALONE = "generator alone"
ROWS = [TC, "netfilter drop", "XDP generic drop", "XDP native drop", "XDP native TX",
        "XDP_PASS to stack"]
NOTES = {TC: "clsact + cls_bpf direct-action", "netfilter drop": "nftables netdev ingress hook",
         "XDP native TX": "counted when the reflected frame is back on gen"}
# a fixed reference figure, not measured here
MLX5 = {"TC ingress drop": 3.45, "XDP native drop": 16.9, "XDP native TX": 13.7}
MLX5_TEXT = ("Reference (one Xeon core, mlx5; a published figure, not measured here): TC drop"
             " 3.45 Mpps, XDP drop 16.9, XDP TX 13.7 (ratios 4.9x and 4.0x to TC).")


@dataclass
class Send:
    delivered: int     # packets counted at the sink
    seconds: float     # generator wall time
    gen_pps: float     # what the generator believes it sent per second

    @property
    def pps(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


def _quiet_pair(tb: Testbed) -> None:
    """gen <-> sink without IPv6, so nothing but the generator's frames reaches the sink."""
    for ns in ("gen", "sink"):
        tb.namespace(ns)
        tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        tb.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
    tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.0.1/24", "198.18.0.2/24"))


def build_tools(workdir: str) -> tuple[str | None, str | None, str]:
    """Compile the C references; (generator binary, drop object, why something is missing)."""
    gen_src, drop_src = C_DIR / "trafficgen_ref.c", C_DIR / "xdp_drop_count.c"
    why = []
    gen_bin: str | None = os.path.join(workdir, "trafficgen_ref")
    drop_obj: str | None = os.path.join(workdir, "xdp_drop_count.o")
    if not gen_src.exists() or shutil.which("cc") is None:
        gen_bin = None
        why.append("C generator: no c/trafficgen_ref.c or no cc")
    elif subprocess.run(["cc", "-O2", str(gen_src), "-lbpf", "-lpthread", "-o", str(gen_bin)],
                        capture_output=True).returncode != 0:
        gen_bin = None
        why.append("C generator: build failed (libbpf-dev missing?)")
    if not drop_src.exists() or shutil.which("clang") is None:
        drop_obj = None
        why.append("drop object: no clang")
    elif subprocess.run([*CLANG_BPF, "-c", str(drop_src), "-o", str(drop_obj)],
                        capture_output=True).returncode != 0:
        drop_obj = None
        why.append("drop object: clang failed")
    return gen_bin, drop_obj, "; ".join(why)


class XdpTable:
    """Runs every row on one bed in alternating rounds; each send attaches its sink, sends,
    counts, detaches."""

    def __init__(self, count: int = 2_000_000, duration: float = 4.0,
                 rounds: int = harness.DEFAULT_ROUNDS, refs: bool = True,
                 log: Callable[[str], None] = stderr_log) -> None:
        self.count = count
        self.duration = duration
        self.rounds = rounds
        self.refs = refs
        self.log = log
        self.tb: Testbed | None = None
        self.frame = b""
        self.fixed = b""       # the fixed-template frame of the generator comparison
        self.gen_ifindex = 0
        self.sends: dict[str, list[Send]] = {}

    # -- plumbing --------------------------------------------------------------------------
    def _send(self, action: XdpAction = XdpAction.TX, *, frame: bytes | None = None,
              sources: int = 1024, ports: int = 64, threads: int = 1,
              pin: bool = True) -> tuple[float, float]:
        """Send from gen (pinned to CPU 0 unless ``pin`` is false); returns (seconds,
        generator pps)."""
        assert self.tb is not None
        cpus = [0] if pin else None

        def go() -> tuple[float, float]:
            with Generator(self.gen_ifindex, frame or self.frame, sources=sources, ports=ports,
                           action=action) as g:
                # one call per thread, like the C reference (the rate here is known high)
                rep = g.run(self.count, duration=self.duration, threads=threads, cpus=cpus,
                            chunk=self.count)
                return rep.seconds, rep.pps

        return self.tb.call("gen", go)

    def _c_send(self, binary: str, threads: int) -> tuple[float, float]:
        """Seconds the C generator's threads ran, by its own clock (process start, program
        load and exec are not counted, as they are not on pyxdp's side either)."""
        assert self.tb is not None
        out = self.tb.exec("gen", [binary, str(self.gen_ifindex), str(self.count),
                                   str(threads), self.fixed.hex()],
                           timeout=self.duration * 4 + 30).stdout
        fields = dict(kv.split("=") for kv in out.split())
        seconds = int(fields["ns"]) / 1e9
        return seconds, int(fields["sent"]) / seconds if seconds else 0.0

    @contextmanager
    def _counting(self, spec_fn: Callable[[], Any]) -> Iterator[tuple[Program, Map]]:
        m = Map.create(progs.counters_spec())
        p = Program.load(spec_fn(), maps={progs.COUNTERS: m})
        try:
            yield p, m
        finally:
            p.close()
            m.close()

    def _measure(self, key: str, counter: Callable[[], int],
                 send: Callable[[], tuple[float, float]] | None = None) -> float:
        """One sample: Mpps counted by ``counter`` during one send (kept in self.sends)."""
        before = counter()
        seconds, gen_pps = (send or self._send)()
        time.sleep(0.05)
        s = Send(counter() - before, seconds, gen_pps)
        self.sends.setdefault(key, []).append(s)
        return s.pps / 1e6

    # -- rows ------------------------------------------------------------------------------
    def gen_alone(self) -> float:
        _, gen_pps = self._send(XdpAction.DROP)
        self.sends.setdefault(GEN_ALONE, []).append(Send(0, 0.0, gen_pps))
        return gen_pps / 1e6

    def row_xdp(self, name: str, action: XdpAction, mode: str) -> float:
        assert self.tb is not None
        self.tb.set_gro("sink", "veth1", mode == "generic")
        spec = (progs.xdp_reflect if action == XdpAction.TX else
                (lambda: progs.xdp_count(action)))
        with self._counting(spec) as (p, m):
            att = self.tb.call("sink", xdp.attach, "veth1", p, mode)
            try:
                if action != XdpAction.TX:
                    return self._measure(name, lambda: progs.read_counters(m)[0])
                with self._counting(lambda: progs.xdp_count(XdpAction.DROP)) as (bp, bm):
                    back = self.tb.call("gen", xdp.attach, "veth0", bp, "native")
                    try:
                        return self._measure(name, lambda: progs.read_counters(bm)[0])
                    finally:
                        self.tb.call("gen", back.detach)
            finally:
                self.tb.call("sink", att.detach)

    def row_tc(self) -> float:
        assert self.tb is not None
        self.tb.set_gro("sink", "veth1", True)
        sink = self.tb.interfaces[("sink", "veth1")]
        with self._counting(progs.tc_count) as (p, m):
            def add() -> None:
                from pyroute2 import IPRoute

                with IPRoute() as ipr:
                    ipr.tc("add", "clsact", sink.ifindex)
                    ipr.tc("add-filter", "bpf", sink.ifindex, ":1", fd=p.fd.fileno(),
                           name="tc_count", parent="ffff:fff2", classid=1,
                           direct_action=True)

            def remove() -> None:
                from pyroute2 import IPRoute

                with IPRoute() as ipr:
                    ipr.tc("del", "clsact", sink.ifindex)

            self.tb.call("sink", add)
            try:
                return self._measure(TC, lambda: progs.read_counters(m)[0])
            finally:
                self.tb.call("sink", remove)

    def row_nft(self) -> float:
        assert self.tb is not None
        tb = self.tb
        tb.set_gro("sink", "veth1", True)
        rules = ("add table netdev pyxdp\n"
                 "add chain netdev pyxdp ingress { type filter hook ingress device veth1"
                 " priority 0; }\n"
                 "add rule netdev pyxdp ingress counter drop\n")
        subprocess.run(["ip", "netns", "exec", tb.ns_name("sink"), "nft", "-f", "-"],
                       input=rules, text=True, check=True, timeout=10)

        def counter() -> int:
            out = tb.exec("sink", ["nft", "-j", "list", "chain", "netdev", "pyxdp",
                                   "ingress"]).stdout
            for item in json.loads(out)["nftables"]:
                rule = item.get("rule")
                if rule:
                    for expr in rule["expr"]:
                        if "counter" in expr:
                            return int(expr["counter"]["packets"])
            return 0

        try:
            return self._measure("netfilter drop", counter)
        finally:
            tb.exec("sink", ["nft", "delete", "table", "netdev", "pyxdp"], check=False)

    # -- references ------------------------------------------------------------------------
    @contextmanager
    def _native_sink(self) -> Iterator[Callable[[], int]]:
        assert self.tb is not None
        with self._counting(lambda: progs.xdp_count(XdpAction.DROP)) as (p, m):
            att = self.tb.call("sink", xdp.attach, "veth1", p, "native")
            try:
                yield lambda: progs.read_counters(m)[0]
            finally:
                self.tb.call("sink", att.detach)

    def generators(self, binary: str) -> dict[str, list[float]]:
        """pyxdp vs C generator into one native XDP counting sink, 1 and 2 threads."""
        out: dict[str, list[float]] = {}
        with self._native_sink() as counter:
            for threads in (1, 2):
                def ours(t: int = threads) -> float:
                    return self._measure(f"pyxdp generator x{t}", counter, lambda: self._send(
                        frame=self.fixed, sources=1, ports=1, threads=t, pin=False))

                def ref(t: int = threads) -> float:
                    return self._measure(f"C generator x{t}", counter,
                                         lambda: self._c_send(binary, t))

                def varied(t: int = threads) -> float:
                    return self._measure(f"pyxdp generator x{t}, varied", counter,
                                         lambda: self._send(frame=self.fixed, threads=t,
                                                            pin=False))

                self.log(f"generator, {threads} thread(s): pyxdp vs C (Mpps delivered)")
                got = alternate({f"pyxdp generator x{threads}": ours,
                                 f"C generator x{threads}": ref,
                                 f"pyxdp generator x{threads}, varied": varied},
                                self.rounds, log=self.log)
                out.update(got)
        return out

    def drop_loaders(self, obj: str) -> dict[str, list[float]]:
        """The same object attached natively by pyxdp and by xdp-loader, alternating."""
        from pyxdp.elf import load_object
        from pyxdp.kernel import load_collection

        assert self.tb is not None
        tb = self.tb

        def send() -> tuple[float, float]:
            return self._send(frame=self.fixed, sources=1, ports=1, pin=False)

        def ours() -> float:
            with load_collection(load_object(obj)) as coll:
                prog, m = coll.programs["xdp_drop_count"], coll.maps["counters"]
                att = tb.call("sink", xdp.attach, "veth1", prog, "native")
                try:
                    return self._measure("pyxdp-loaded", lambda: progs.read_counters(m)[0],
                                         send)
                finally:
                    tb.call("sink", att.detach)

        def ref() -> float:
            # xdp-loader needs a bpffs; `ip netns exec` gives it a private /sys to mount one on
            load = f"mount -t bpf bpf /sys/fs/bpf && xdp-loader load -m native veth1 {obj}"
            tb.exec("sink", ["sh", "-c", load])
            try:
                st = tb.call("sink", xdp.status, "veth1")
                with Program.from_id(st.attachments[0].prog_id) as p:
                    map_ids = p.info().map_ids
                maps = [Map.from_id(i) for i in map_ids]
                try:
                    cm = next(x for x in maps if x.name == "counters")
                    return self._measure("xdp-loader", lambda: progs.read_counters(cm)[0],
                                         send)
                finally:
                    for x in maps:
                        x.close()
            finally:
                tb.exec("sink", ["sh", "-c", "mount -t bpf bpf /sys/fs/bpf && xdp-loader"
                                 " unload --all veth1"], check=False)
                if tb.call("sink", xdp.status, "veth1").attachments:
                    tb.call("sink", xdp.detach, "veth1")

        self.log("same drop object: pyxdp-loaded vs xdp-loader (Mpps delivered)")
        return alternate({"pyxdp-loaded": ours, "xdp-loader": ref}, self.rounds, log=self.log)

    def run_refs(self) -> tuple[dict[str, list[float]], str]:
        samples: dict[str, list[float]] = {}
        with tempfile.TemporaryDirectory(prefix="pyxdp-bench-") as work:
            gen_bin, drop_obj, missing = build_tools(work)
            if gen_bin:
                samples.update(self.generators(gen_bin))
            if drop_obj:
                if shutil.which("xdp-loader") is None:
                    missing = "; ".join(filter(None, [missing, "xdp-loader not installed"]))
                else:
                    samples.update(self.drop_loaders(drop_obj))
        return samples, missing

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> Report:
        self.sends = {}
        with Testbed() as tb:
            self.tb = tb
            try:
                _quiet_pair(tb)
                gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
                self.gen_ifindex = gen.ifindex
                self.frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac,
                                      dmac=sink.mac, size=FRAME)
                self.fixed = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac,
                                      dmac=sink.mac)
                self.log(f"{TITLE}: {self.count} frames of {FRAME} B per send, bounded by"
                         f" {self.duration:g} s, {self.rounds} alternating rounds")
                sides: dict[str, Callable[[], float]] = {GEN_ALONE: self.gen_alone,
                                                         TC: self.row_tc}
                missing = []
                if shutil.which("nft") is not None:
                    sides["netfilter drop"] = self.row_nft
                else:
                    missing.append("netfilter drop (nft not installed)")
                sides["XDP generic drop"] = lambda: self.row_xdp(
                    "XDP generic drop", XdpAction.DROP, "generic")
                sides["XDP native drop"] = lambda: self.row_xdp(
                    "XDP native drop", XdpAction.DROP, "native")
                sides["XDP native TX"] = lambda: self.row_xdp(
                    "XDP native TX", XdpAction.TX, "native")
                sides["XDP_PASS to stack"] = lambda: self.row_xdp(
                    "XDP_PASS to stack", XdpAction.PASS, "native")
                rows = alternate(sides, self.rounds, log=self.log)
                ref_samples: dict[str, list[float]] = {}
                ref_missing = ""
                if self.refs:
                    tb.set_gro("sink", "veth1", False)
                    self.log("references (same bed, same run):")
                    ref_samples, ref_missing = self.run_refs()
            finally:
                self.tb = None
        return self.report(rows, ref_samples, "; ".join(filter(None, [*missing, ref_missing])))

    # -- results ---------------------------------------------------------------------------
    def report(self, rows: dict[str, list[float]], refs: dict[str, list[float]],
               missing: str) -> Report:
        r = Report(NAME, TITLE, rounds=self.rounds,
                   params={"frame_len": FRAME, "frames_per_send": self.count,
                           "max_seconds_per_send": self.duration, "references": self.refs})
        r.intro = (f"{self.count:,} frames of {FRAME} B per send, one send per row per round."
                   "  Delivered = counted at the sink (Mpps).  Generator and sink share a CPU"
                   " on a veth pair, so the sink's own cost is estimated per round as"
                   " 1/rate(row) - 1/rate(generator alone).")
        for key, samples in {**rows, **refs}.items():
            r.side(key, samples, "Mpps")
        alone = rows[GEN_ALONE]
        table = []
        sink_ns: dict[str, list[float]] = {}
        for name in ROWS:
            if name not in rows:
                continue
            if name != TC:
                r.compare(f"{name} vs TC drop", name, TC)
            ns = [1e3 / row - 1e3 / gen for row, gen in zip(rows[name], alone) if row and gen]
            sink_ns[name] = ns
            s = harness.summarize(rows[name])
            tc = harness.summarize(rows[TC])
            lo, hi = harness.ratio_range(s, tc)
            ns_s = harness.summarize(ns) if ns else None
            own = statistics.median(x.gen_pps for x in self.sends[name]) / 1e6
            table.append([
                name, f"{fmt(s.median)} ({fmt(s.min)}-{fmt(s.max)})",
                f"{s.median / tc.median:.2f} ({lo:.2f}-{hi:.2f})" if name != TC else "1",
                f"{ns_s.median:.0f} ({ns_s.min:.0f}-{ns_s.max:.0f})" if ns_s else "-",
                f"{1e3 / ns_s.median:.2f}" if ns_s and ns_s.median > 0 else "-",
                fmt(own), f"{MLX5[name] / MLX5[TC]:.1f}" if name in MLX5 else "",
                NOTES.get(name, "")])
        r.table("Where to drop: every row on one bed",
                ["row", "delivered Mpps median (min-max)", "ratio to TC (range)",
                 "sink ns/pkt median (min-max)", "sink-only Mpps", "generator's own Mpps",
                 "mlx5 reference ratio to TC", "note"], table,
                f"Generator alone (XDP_DROP, nothing sent): {fmt(statistics.median(alone))}"
                f" Mpps ({fmt(min(alone))}-{fmt(max(alone))}).")
        for t in (1, 2):
            a, b = f"pyxdp generator x{t}", f"C generator x{t}"
            if a in refs and b in refs:
                r.compare(f"generator, {t} thread(s), delivered", a, b)
        if "pyxdp-loaded" in refs and "xdp-loader" in refs:
            r.compare("XDP native drop, same object (c/xdp_drop_count.c, clang -O2)",
                      "pyxdp-loaded", "xdp-loader")
        if refs:
            ref_rows = []
            for t in (1, 2):
                v = f"pyxdp generator x{t}, varied"
                if v in refs:
                    s = harness.summarize(refs[v])
                    ref_rows.append([f"pyxdp generator, {t} thread(s), 1024 sources x 64 ports"
                                     " varied", f"{fmt(s.median)} ({fmt(s.min)}-{fmt(s.max)})"])
            if ref_rows:
                r.table("Generator with varying sources (beside the comparison)",
                        ["what", "delivered Mpps median (min-max)"], ref_rows)
        r.extra = {"sink_ns_per_packet": sink_ns, "mlx5_reference_mpps": MLX5,
                   "sends": {k: [vars(s) for s in v] for k, v in self.sends.items()},
                   "not_measured": missing}
        r.notes += [MLX5_TEXT,
                    "The machine is a shared 2-vCPU VM (other jobs ran at the same time), so"
                    " single sends vary by several percent; read the spreads, not one number.",
                    "The generator comparison uses one fixed template on both sides (the C"
                    " program cannot vary fields); the XDP table rows use the varying-sources"
                    " generator."]
        if missing:
            r.notes.append(f"Not measured: {missing}")
        return r


def chart(report: Report, path: Path) -> bool:
    """A PNG bar chart of delivered Mpps (median, min-max whiskers); False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [n for n in ROWS if n in report.sides]
    med = [report.sides[n]["median"] for n in names]
    err = [[m - report.sides[n]["min"] for n, m in zip(names, med)],
           [report.sides[n]["max"] - m for n, m in zip(names, med)]]
    sink = []
    for n in names:
        ns = report.extra["sink_ns_per_packet"].get(n) or []
        m = statistics.median(ns) if ns else 0
        sink.append(1e3 / m if m > 0 else 0)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], med, height=0.4, xerr=err, capsize=3,
            label="delivered (gen + sink on 1 CPU), median, min-max")
    ax.barh([i - 0.2 for i in y], sink, height=0.4, label="sink-only (cost model), median")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("Mpps")
    ax.set_title(f"Drop/TX/PASS rates, 64 B frames, veth, kernel {report.machine['kernel']},"
                 f" {report.rounds} rounds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("needs root: it builds network namespaces and attaches XDP", file=sys.stderr)
        return 1
    report = XdpTable(count=args.count, duration=args.duration, rounds=args.rounds,
                      refs=not args.no_refs).run()

    def png(out: Path) -> list[Path]:
        p = out / f"{NAME}.png"
        return [p] if chart(report, p) else []

    return harness.finish(report, args, png)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyxdp.bench.xdp_table", description=TITLE)
    options.xdp_table(ap)
    args = ap.parse_args(argv)
    harness.check_rounds(ap, args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

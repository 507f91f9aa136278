"""Side-by-side references for ``pyxdp bench``, measured on the same bed in the same run.

* Generator: pyxdp's live-frames generator vs a minimal C program (``bench/trafficgen_ref.c``,
  libbpf) doing one long ``BPF_PROG_TEST_RUN`` per thread, both delivering into the same
  counting XDP sink, on 1 and 2 threads.  Same work per frame for the ratio (a fixed
  template); the varying-sources generator is reported beside it.
* Drop program: the same clang-built object (``bench/c/xdp_drop_count.c``) loaded and
  attached by pyxdp, and by ``xdp-loader``; delivered rate at its own counters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyxdp import xdp
from pyxdp.asm import programs as progs
from pyxdp.isa import XdpAction
from pyxdp.kernel import Map, Program
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

BENCH_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                          "bench"))
CLANG_BPF = ["clang", "-target", "bpf", "-O2", "-g", "-I/usr/include/x86_64-linux-gnu"]


@dataclass
class Pair:
    name: str
    pyxdp_pps: float
    ref_pps: float
    ref_name: str
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.pyxdp_pps / self.ref_pps if self.ref_pps else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pyxdp_mpps": round(self.pyxdp_pps / 1e6, 3),
                "ref_mpps": round(self.ref_pps / 1e6, 3), "reference": self.ref_name,
                "ratio": round(self.ratio, 3), "note": self.note}


def build_tools(workdir: str) -> tuple[str | None, str | None, str]:
    """Compile the C references; (generator binary, drop object, why something is missing)."""
    gen_src = os.path.join(BENCH_DIR, "trafficgen_ref.c")
    drop_src = os.path.join(BENCH_DIR, "c", "xdp_drop_count.c")
    why = []
    gen_bin = os.path.join(workdir, "trafficgen_ref")
    drop_obj = os.path.join(workdir, "xdp_drop_count.o")
    if not os.path.exists(gen_src) or shutil.which("cc") is None:
        gen_bin, _ = None, why.append("C generator: no bench/trafficgen_ref.c or no cc")
    elif subprocess.run(["cc", "-O2", gen_src, "-lbpf", "-lpthread", "-o", gen_bin],
                        capture_output=True).returncode != 0:
        gen_bin, _ = None, why.append("C generator: build failed (libbpf-dev missing?)")
    if not os.path.exists(drop_src) or shutil.which("clang") is None:
        drop_obj, _ = None, why.append("drop object: no clang")
    elif subprocess.run([*CLANG_BPF, "-c", drop_src, "-o", drop_obj],
                        capture_output=True).returncode != 0:
        drop_obj, _ = None, why.append("drop object: clang failed")
    return gen_bin, drop_obj, "; ".join(why)


class RefBench:
    def __init__(self, tb: Testbed, count: int, duration: float,
                 log: Callable[[str], None] = print) -> None:
        self.tb = tb
        self.count = count
        self.duration = duration
        self.log = log
        gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
        self.frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac)
        self.gen_ifindex = gen.ifindex

    def _sink_rate(self, counter: Callable[[], int], send: Callable[[], float]) -> float:
        before = counter()
        seconds = send()
        time.sleep(0.05)
        return (counter() - before) / seconds

    def _pyxdp_send(self, threads: int, sources: int = 1, ports: int = 1) -> float:
        def go() -> float:
            with Generator(self.gen_ifindex, self.frame, sources=sources, ports=ports) as g:
                # one call per thread, like the C reference (the rate here is known high)
                return g.run(self.count, duration=self.duration, threads=threads,
                             chunk=self.count).seconds
        return self.tb.call("gen", go)

    def _c_send(self, binary: str, threads: int) -> float:
        """Seconds the C generator's threads ran, by its own clock (process start, program
        load and exec are not counted, as they are not on pyxdp's side either)."""
        out = self.tb.exec("gen", [binary, str(self.gen_ifindex), str(self.count),
                                   str(threads), self.frame.hex()],
                           timeout=self.duration * 4 + 30).stdout
        fields = dict(kv.split("=") for kv in out.split())
        return int(fields["ns"]) / 1e9

    def generators(self, binary: str) -> list[Pair]:
        """pyxdp vs C generator into a native XDP counting sink."""
        m = Map.create(progs.counters_spec())
        p = Program.load(progs.xdp_count(XdpAction.DROP), maps={progs.COUNTERS: m})
        att = self.tb.call("sink", xdp.attach, "veth1", p, "native")
        out = []
        try:
            counter = lambda: progs.read_counters(m)[0]  # noqa: E731
            for threads in (1, 2):
                ours = self._sink_rate(counter, lambda t=threads: self._pyxdp_send(t))
                ref = self._sink_rate(counter, lambda t=threads: self._c_send(binary, t))
                varied = self._sink_rate(counter, lambda t=threads: self._pyxdp_send(t, 1024, 64))
                out.append(Pair(f"generator, {threads} thread(s)", ours, ref,
                                "C live-frames generator (libbpf)",
                                f"with 1024 sources x 64 ports varied: {varied / 1e6:.2f} Mpps"))
                self.log(f"  generator x{threads}: pyxdp {ours / 1e6:.3f} vs C {ref / 1e6:.3f}"
                         f" Mpps delivered (varied: {varied / 1e6:.3f})")
        finally:
            self.tb.call("sink", att.detach)
            p.close()
            m.close()
        return out

    def drop_loaders(self, obj: str) -> Pair | None:
        """The same object attached natively by pyxdp and by xdp-loader."""
        from pyxdp.elf import load_object
        from pyxdp.kernel import load_collection

        if shutil.which("xdp-loader") is None:
            self.log("  drop loaders: skipped (xdp-loader not installed)")
            return None
        send = lambda: self._pyxdp_send(1)  # noqa: E731
        with load_collection(load_object(obj)) as coll:
            prog, m = coll.programs["xdp_drop_count"], coll.maps["counters"]
            att = self.tb.call("sink", xdp.attach, "veth1", prog, "native")
            try:
                ours = self._sink_rate(lambda: progs.read_counters(m)[0], send)
            finally:
                self.tb.call("sink", att.detach)
        # xdp-loader needs a bpffs; `ip netns exec` gives it a private /sys to mount one on
        load = f"mount -t bpf bpf /sys/fs/bpf && xdp-loader load -m native veth1 {obj}"
        self.tb.exec("sink", ["sh", "-c", load])
        try:
            st = self.tb.call("sink", xdp.status, "veth1")
            with Program.from_id(st.attachments[0].prog_id) as p:
                map_ids = p.info().map_ids
            maps = [Map.from_id(i) for i in map_ids]
            try:
                cm = next(x for x in maps if x.name == "counters")
                ref = self._sink_rate(lambda: progs.read_counters(cm)[0], send)
            finally:
                for x in maps:
                    x.close()
        finally:
            self.tb.exec("sink", ["sh", "-c", "mount -t bpf bpf /sys/fs/bpf && xdp-loader"
                                  " unload --all veth1"], check=False)
            if self.tb.call("sink", xdp.status, "veth1").attachments:
                self.tb.call("sink", xdp.detach, "veth1")
        self.log(f"  same drop object: pyxdp-loaded {ours / 1e6:.3f} vs xdp-loader"
                 f" {ref / 1e6:.3f} Mpps")
        return Pair("XDP native drop, same object", ours, ref, "xdp-loader",
                    "bench/c/xdp_drop_count.c, clang -O2")


def run_refs(tb: Testbed, count: int, duration: float,
             log: Callable[[str], None] = print) -> tuple[list[Pair], str]:
    with tempfile.TemporaryDirectory(prefix="pyxdp-bench-") as work:
        gen_bin, drop_obj, missing = build_tools(work)
        rb = RefBench(tb, count, duration, log)
        pairs: list[Pair] = []
        if gen_bin:
            pairs += rb.generators(gen_bin)
        if drop_obj:
            pair = rb.drop_loaders(drop_obj)
            if pair:
                pairs.append(pair)
        return pairs, missing

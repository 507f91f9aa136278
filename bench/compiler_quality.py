#!/usr/bin/env python3
"""Code quality of pyxdp.compiler against clang -O2 on the same programs (needs root).

For every program in examples/ with a C twin in bench/c/compiler_<name>.c: xlated
instruction counts (ours/clang), BPF_PROG_TEST_RUN ns per packet (clang/ours: >= 1 means
ours is as fast), Mpps on a veth bed (each program attached natively to the sink, frames
from pyxdp's live-frames generator, packets counted by the kernel's per-program run
statistics, so the programs are not changed), and our compile time.  Both programs must
also agree on the verdict.
Writes bench/results/compiler_quality.json and .md.

    sudo python bench/compiler_quality.py [--repeat 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pyxdp.compiler import compile_module  # noqa: E402
from pyxdp.elf import load_object  # noqa: E402
from pyxdp.kernel import load_collection  # noqa: E402
from pyxdp.packets.build import ethernet, ipv4, ipv6, tcp, udp  # noqa: E402

INNER = ipv4(udp(b"inner", dport=7), src="10.1.1.1", dst="10.2.2.2")
EXT = bytes([6, 0]) + bytes(6)
PACKETS: dict[str, bytes] = {
    "drop_all": ethernet(ipv4(udp(b"x" * 18))),
    "count_protocols": ethernet(ipv4(udp(b"x" * 18))),
    "blocklist": ethernet(ipv4(udp(b"x" * 18), src="198.18.0.9")),
    "swap_macs": ethernet(ipv4(udp(b"x" * 18))),
    "ipv6_ext": ethernet(ipv6(EXT + tcp(b"", dport=23).data, next_header=60)),
    "decap": ethernet(ipv4(INNER, proto=4)),
    "devmap_redirect": ethernet(ipv4(udp(b"x" * 18)), dst="02:00:00:00:00:02"),
}


def setup(name: str, coll: Any) -> None:
    if name == "blocklist":
        m = coll.maps["blocked4"]
        key = (15).to_bytes(4, "little") + bytes([198, 18, 0, 0])
        m._update(key, bytes(8), 0)
    if name == "devmap_redirect":
        coll.maps["tx_ports"]._update((2).to_bytes(4, "little"), (1).to_bytes(4, "little"), 0)


def clang_object(name: str) -> bytes:
    src = ROOT / "bench" / "c" / f"compiler_{name}.c"
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "prog.o"
        subprocess.run(["clang", "-target", "bpf", "-O2", "-g",
                        "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(out)],
                       check=True)
        return out.read_bytes()


def measure(spec: Any, name: str, pkt: bytes, repeat: int, rounds: int) -> dict[str, Any]:
    with load_collection(spec) as coll:
        setup(name, coll)
        (prog,) = coll.programs.values()
        insns = prog.info().xlated_size // 8
        verdict = prog.test_run(pkt).retval
        ns = [prog.test_run(pkt, repeat=repeat).duration_ns for _ in range(rounds)]
    return {"insns": insns, "verdict": verdict, "ns": statistics.median(ns)}


ROUNDS = 3  # veth runs per flavour: identical programs differ by up to 4% in one run


def _veth_once(tb: Any, gen: Any, sink: Any, name: str, frame: bytes, spec: Any,
               count: int) -> float:
    """Mpps of one flavour of one example attached natively to the sink."""
    from pyxdp import xdp
    from pyxdp.trafficgen import Generator

    with load_collection(spec) as coll:
        setup(name, coll)
        if name == "devmap_redirect":  # redirect back out of veth1
            coll.maps["tx_ports"]._update((2).to_bytes(4, "little"),
                                          sink.ifindex.to_bytes(4, "little"), 0)
        (prog,) = coll.programs.values()
        att = tb.call("sink", xdp.attach, "veth1", prog, "native")
        try:
            before = prog.info().run_cnt

            def send() -> float:
                with Generator(gen.ifindex, frame) as g:
                    return g.run(count, duration=5, chunk=count).seconds

            seconds = tb.call("gen", send)
            time.sleep(0.05)
            return (prog.info().run_cnt - before) / seconds / 1e6
        finally:
            tb.call("sink", att.detach)


def veth_rates(objects: dict[str, dict[str, Any]], count: int) -> dict[str, dict[str, float]]:
    """Delivered Mpps of every (example, flavour) attached natively on one quiet veth bed."""
    from pyxdp import xdp
    from pyxdp.asm import programs as progs
    from pyxdp.isa import XdpAction
    from pyxdp.kernel import Map, Program, enable_stats
    from pyxdp.testbed import Testbed

    out: dict[str, dict[str, float]] = {}
    with Testbed() as tb, enable_stats():
        for ns in ("gen", "sink"):
            tb.namespace(ns)
            tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        gen, sink = tb.veth("gen", "veth0", "sink", "veth1",
                            ipv4=("198.18.0.1/24", "198.18.0.2/24"))
        # frames sent back (XDP_TX, redirect) need an XDP program on the receiving peer
        back_map = Map.create(progs.counters_spec())
        back = Program.load(progs.xdp_count(XdpAction.DROP), maps={progs.COUNTERS: back_map})
        back_att = tb.call("gen", xdp.attach, "veth0", back, "native")
        try:
            for name, flavours in objects.items():
                frame = (bytes.fromhex(sink.mac.replace(":", "")) +
                         bytes.fromhex(gen.mac.replace(":", "")) + PACKETS[name][12:])
                out[name] = {}
                samples: dict[str, list[float]] = {f: [] for f in flavours}
                order = list(flavours)
                for rnd in range(ROUNDS):  # alternate the order: drift hits both alike
                    for flavour in (order if rnd % 2 == 0 else order[::-1]):
                        samples[flavour].append(_veth_once(tb, gen, sink, name, frame,
                                                           flavours[flavour], count))
                for flavour, got in samples.items():
                    out[name][flavour] = statistics.median(got)
                print(f"veth {name}: ours {out[name]['ours']:.3f} Mpps, clang"
                      f" {out[name]['clang']:.3f} Mpps", flush=True)
        finally:
            tb.call("gen", back_att.detach)
            back.close()
            back_map.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--veth-count", type=int, default=2_000_000,
                    help="frames per program on the veth bed (0: skip)")
    args = ap.parse_args()
    rows = []
    objects: dict[str, dict[str, Any]] = {}
    for name, pkt in PACKETS.items():
        path = ROOT / "examples" / f"{name}.py"
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            obj = compile_module(str(path))
            times.append(time.perf_counter() - t0)
        ours = measure(obj.spec, name, pkt, args.repeat, args.rounds)
        clang_spec = load_object(clang_object(name))
        theirs = measure(clang_spec, name, pkt, args.repeat, args.rounds)
        objects[name] = {"ours": compile_module(str(path)).spec, "clang": clang_spec}
        row = {"program": name, "insns_ours": ours["insns"], "insns_clang": theirs["insns"],
               "insn_ratio": round(ours["insns"] / theirs["insns"], 3),
               "ns_ours": ours["ns"], "ns_clang": theirs["ns"],
               "speed_ratio": round(theirs["ns"] / ours["ns"], 3) if ours["ns"] else None,
               "compile_ms": round(min(times) * 1000, 1),
               "same_verdict": ours["verdict"] == theirs["verdict"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.veth_count:
        rates = veth_rates(objects, args.veth_count)
        for r in rows:
            ours, clang = rates[r["program"]]["ours"], rates[r["program"]]["clang"]
            r.update(mpps_ours=round(ours, 3), mpps_clang=round(clang, 3),
                     mpps_ratio=round(ours / clang, 3) if clang else None)
    summary = {
        "max_insn_ratio": max(r["insn_ratio"] for r in rows),
        "geomean_speed_ratio": round(statistics.geometric_mean(
            [r["speed_ratio"] for r in rows if r["speed_ratio"]]), 3),
        "max_compile_ms": max(r["compile_ms"] for r in rows),
        "geomean_mpps_ratio": round(statistics.geometric_mean(
            [r["mpps_ratio"] for r in rows if r.get("mpps_ratio")]), 3) if args.veth_count
        else None,
        "min_mpps_ratio": min(r["mpps_ratio"] for r in rows if r.get("mpps_ratio"))
        if args.veth_count else None,
        "targets": {"insn_ratio": "<= 1.10", "speed_ratio": ">= 0.97", "compile_ms": "< 300",
                    "mpps_ratio": ">= 0.97"},
    }
    result = {"kernel": platform.release(), "repeat": args.repeat, "rounds": args.rounds,
              "rows": rows, "summary": summary}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compiler_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# pyxdp.compiler vs clang -O2", "",
             f"Kernel {platform.release()}, BPF_PROG_TEST_RUN repeat={args.repeat},"
             f" median of {args.rounds}. speed ratio = clang ns / ours ns (>= 1: ours as fast).",
             " Mpps: delivered on a veth bed (generator and sink share a CPU), counted by the"
             " kernel's run statistics of the sink program, median of"
             f" {ROUNDS} alternating runs each.",
             "", "| program | insns ours | insns clang | ratio | ns ours | ns clang |"
             " speed ratio | Mpps ours | Mpps clang | Mpps ratio | compile ms | same verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['program']} | {r['insns_ours']} | {r['insns_clang']} |"
                     f" {r['insn_ratio']} | {r['ns_ours']} | {r['ns_clang']} |"
                     f" {r['speed_ratio']} | {r.get('mpps_ours', '-')} |"
                     f" {r.get('mpps_clang', '-')} | {r.get('mpps_ratio', '-')} |"
                     f" {r['compile_ms']} | {r['same_verdict']} |")
    lines += ["", f"max instruction ratio {summary['max_insn_ratio']} (target <= 1.10),"
              f" geomean speed ratio {summary['geomean_speed_ratio']} (target >= 0.97),"
              f" max compile {summary['max_compile_ms']} ms (target < 300),"
              f" geomean Mpps ratio {summary['geomean_mpps_ratio']} (min"
              f" {summary['min_mpps_ratio']}, target >= 0.97)", ""]
    (out / "compiler_quality.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

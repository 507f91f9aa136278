"""Emulator speed: (a) an ALU-heavy loop in eBPF instructions per second, (b) an
Ethernet/IPv4/UDP parser doing a hash-map lookup, in microseconds per packet.

Run: ``python bench/emu_speed.py``; writes ``bench/results/emu_speed.{json,md}``.
The ALU loop's instruction count is arithmetic; the parser's comes from an instrumented
translation (``emu.load(..., count=True)``) that adds every executed block's length.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from pyxdp import emu
from pyxdp.asm import assemble
from pyxdp.maps import MapSpec
from pyxdp.packets.build import ethernet, ipv4, udp
from pyxdp.spec import MapRef, MapType, ProgramSpec, ProgType

ALU_ITERATIONS = 200_000
ALU_LOOP = f"""
    r0 = 0
    r1 = 0
    r2 = 0x12345
loop:
    r0 += r1
    r0 ^= r2
    r3 = r0
    r3 >>= 7
    r0 += r3
    r2 *= 31
    r2 &= 0xffff
    r4 = r1
    r4 <<= 3
    r0 -= r4
    r5 = r0
    r5 |= 0x55
    r0 ^= r5
    r1 += 1
    if r1 < {ALU_ITERATIONS} goto loop
    exit
"""
ALU_INSNS = 3 + 14 * ALU_ITERATIONS + 1

# A UDP port policy, the shape of a typical XDP parser (what clang emits for the C in
# the comments): Ethernet -> IPv4 (version, ihl, protocol, not a fragment) -> UDP header at
# the ihl-dependent offset -> hash lookup keyed by the destination port -> count packets and
# bytes atomically -> return the verdict stored in the entry.  40 instructions; the hit path
# executes 38 of them (counted by an instrumented translation, see
# count_parser_insns).  struct policy { u32 action; u32 pad; u64 packets; u64 bytes; }
PARSER = """
    r2 = *(u32 *)(r1 + 0)           ; data
    r3 = *(u32 *)(r1 + 4)           ; data_end
    r4 = r2
    r4 += 34                        ; ethhdr + minimal iphdr
    if r4 > r3 goto pass
    r4 = *(u16 *)(r2 + 12)          ; h_proto
    if r4 != 0x8 goto pass          ; htons(ETH_P_IP)
    r5 = *(u8 *)(r2 + 14)           ; version | ihl
    r4 = r5
    r4 &= 0xf0
    if r4 != 0x40 goto pass         ; version 4
    r5 &= 0xf
    if r5 < 5 goto pass             ; ihl >= 5
    r4 = *(u8 *)(r2 + 23)           ; protocol
    if r4 != 17 goto pass           ; IPPROTO_UDP
    r4 = *(u16 *)(r2 + 20)          ; frag_off
    r4 &= 0xff3f                    ; htons(IP_MF | IP_OFFSET)
    if r4 != 0 goto pass            ; fragments are passed
    r6 = *(u16 *)(r2 + 16)          ; tot_len
    r6 = be16 r6
    r5 <<= 2
    r5 += r2
    r5 += 14                        ; udphdr = data + 14 + ihl * 4
    r4 = r5
    r4 += 8
    if r4 > r3 goto pass
    r4 = *(u16 *)(r5 + 2)           ; dest (network order)
    *(u32 *)(r10 - 4) = r4          ; key
    r2 = r10
    r2 += -4
    r1 = map[id:1]                  ; policy
    call 1                          ; bpf_map_lookup_elem
    if r0 == 0 goto pass
    r1 = 1
    lock *(u64 *)(r0 + 8) += r1     ; packets
    lock *(u64 *)(r0 + 16) += r6    ; bytes
    r0 = *(u32 *)(r0 + 0)           ; action
    exit
pass:
    r0 = 2
    exit
"""
POLICY_SPEC = MapSpec("policy", MapType.HASH, 4, 24, 1024)
POLICY_KEY = (53).to_bytes(2, "big") + bytes(2)       # dport 53, network order, u32
POLICY_VALUE = (1).to_bytes(4, "little") + bytes(20)  # XDP_DROP, counters 0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_alu() -> dict[str, float]:
    prog = emu.load(assemble(ALU_LOOP), budget=10 * ALU_INSNS)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        prog.run()
        best = min(best, time.perf_counter() - t)
    return {"insns": ALU_INSNS, "seconds": best, "insn_per_s": ALU_INSNS / best}


def parser_packet() -> bytes:
    return ethernet(ipv4(udp(b"x" * 18, sport=1234, dport=53), src="10.0.0.1",
                         dst="10.0.0.2"))


def parser_setup(count: bool = False) -> tuple[emu.EmuProgram, bytes]:
    policy = emu.create_map(POLICY_SPEC)
    policy[POLICY_KEY] = POLICY_VALUE
    prog = emu.load(parser_spec(), maps={"policy": policy}, count=count)
    return prog, parser_packet()


def count_parser_insns() -> int:
    """Executed instructions on the hit path, from the instrumented translation."""
    prog, pkt = parser_setup(count=True)
    assert prog.run_xdp(pkt).r0 == 1
    return prog.insn_count


def bench_parser(n: int = 100_000) -> dict[str, float]:
    insns = count_parser_insns()
    prog, pkt = parser_setup()
    res = prog.run_xdp(pkt)
    assert res.r0 == 1, res
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        run = prog.run_xdp
        for _ in range(n):
            run(pkt)
        best = min(best, time.perf_counter() - t)
    per = best / n
    return {"runs": n, "us_per_run": per * 1e6, "program_insns": len(parser_spec().instructions),
            "insns_per_run": insns, "insn_per_s": insns / per}


def parser_spec() -> ProgramSpec:
    insns = assemble(PARSER)
    ref = next(i for i, insn in enumerate(insns) if insn.opcode == 0x18)
    return ProgramSpec("parser", ProgType.XDP, insns, map_refs={ref: MapRef("policy")})


def bench_kernel(n: int = 100_000) -> dict[str, object]:
    """ns/packet of the same parser under BPF_PROG_TEST_RUN, when pyxdp.kernel can do it."""
    # ---- KERNEL BPF_PROG_TEST_RUN: the same program and packet in the real kernel -------
    try:
        from pyxdp import kernel
    except ImportError as e:
        return {"status": f"skipped: pyxdp.kernel not importable ({e})"}
    if not hasattr(kernel, "test_run"):
        return {"status": "skipped: pyxdp.kernel has no test_run"}
    if os.geteuid() != 0:
        return {"status": "skipped: needs root"}
    pkt = parser_packet()
    try:
        kmap = kernel.Map.create(POLICY_SPEC)
        try:
            kmap[POLICY_KEY] = POLICY_VALUE
            prog = kernel.Program.load(parser_spec(), maps={"policy": kmap})
            try:
                res = kernel.test_run(prog, pkt, repeat=n)
            finally:
                prog.close()
            hits = int.from_bytes(kmap[POLICY_KEY][8:16], "little")
        finally:
            kmap.close()
    except Exception as e:  # the comparison is optional; report why it did not run
        return {"status": f"skipped: {type(e).__name__}: {e}"}
    if res.retval != 1:
        return {"status": f"kernel returned {res.retval}, expected XDP_DROP (1)"}
    return {"status": "ok", "ns_per_packet": res.duration_ns, "repeat": n, "map_hits": hits}


def main() -> None:
    alu = bench_alu()
    parser = bench_parser()
    kern = bench_kernel()
    result = {
        "python": sys.version.split()[0], "implementation": platform.python_implementation(),
        "cpu": cpu_model(), "alu_loop": alu, "parser": parser, "kernel_test_run": kern,
    }
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "emu_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# pyxdp.emu speed",
        "",
        f"Python {result['python']} ({result['implementation']}), CPU: {result['cpu']}",
        "",
        "| benchmark | result | target |",
        "|---|---|---|",
        f"| ALU loop ({alu['insns']:,} insns) | {alu['insn_per_s'] / 1e6:.1f} M insn/s |"
        " >= 25 M insn/s |",
        f"| Eth/IPv4/UDP parser + hash lookup ({parser['program_insns']} insns,"
        f" {parser['insns_per_run']} executed) |"
        f" {parser['us_per_run']:.2f} us/run ({parser['insn_per_s'] / 1e6:.1f} M insn/s) |"
        " <= 1.5 us/run |",
        f"| kernel BPF_PROG_TEST_RUN, same parser | {kern.get('ns_per_packet', '-')}"
        f" ns/packet ({kern.get('status')}) | - |",
        "",
        "Per-run cost of `run_xdp` on the parser: a per-program closure builds a fresh",
        "256-byte-headroom frame in one allocation and calls the XDP entry `x0(P, C, E)`",
        "with the packet buffer, the context bytes and data_end.  In `x0` the fresh",
        "context is folded (data is a constant), bounds checks prove which packet bytes",
        "exist so the header loads they cover are read ahead in one struct unpack, the",
        "hash lookup is the map's own `dict.get` inline, and the value's address is only",
        "computed if the program reads it as a number (faulting accesses keep their",
        "buffer bounds checks).  The parser went from 2.16-2.26 to about 1.3 us/run with",
        "these changes (the 26-instruction parser before it: 3.03 -> 1.8).  Timings are",
        "the best of 7 x 100,000 runs on a shared 2-vCPU VM; expect",
        "+-10 % between runs.",
        "",
    ]
    (out / "emu_speed.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""``pyxdp emu``: run an XDP program in the emulator over a pcap or generated traffic, and
``pyxdp emu --conformance-plugin [MEM]``: the bpf_conformance plugin protocol.

PROG is a BPF ELF object (``--section`` picks the program when there are several), raw
little-endian bytecode, or assembly text; which one is decided by the contents, not the name.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pyxdp.cli._args import int_range
from pyxdp.cli._asm import ELF_MAGIC, read_elf, read_input
from pyxdp.cli._render import UsageError, add_json, print_json, table
from pyxdp.errors import EmulatorError, PyxdpError

DEFAULT_PACKETS = 1000


def load_program(path: str, section: str | None, syntax: str = "auto") -> Any:
    """An EmuProgram from an ELF object, raw bytecode or assembly text at ``path``."""
    from pyxdp import emu

    data = read_input(path)
    if data.startswith(ELF_MAGIC):
        from pyxdp.abi import ProgType

        obj = read_elf(data, path)
        if section is None:       # the only XDP program, else the only program
            xdp = [s for s in obj.programs.values() if s.type == ProgType.XDP]
            spec = xdp[0] if len(xdp) == 1 else obj.program()
        else:
            spec = obj.program(section)
        return emu.load(spec, maps=obj)
    if section is not None:
        raise PyxdpError(f"{path}: --section needs an ELF object")
    if b"\0" in data:     # bytecode always has NULs; assembly text never does
        if len(data) % 8:
            raise PyxdpError(f"{path}: {len(data)} bytes is not a whole number of 8-byte"
                             " instructions")
        try:
            return emu.load(data, name="prog")
        except PyxdpError as e:
            raise PyxdpError(f"{path}: not a valid program: {e}") from None
    from pyxdp.asm import assemble

    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise PyxdpError(f"{path}: neither an ELF object, bytecode nor assembly text"
                         ) from None
    return emu.load(assemble(text, syntax), name="prog")


def generated_traffic(n: int) -> Iterator[bytes]:
    """``n`` frames of a small, varied mix: DNS and other UDP, TCP, ICMP, IPv6, ARP."""
    from pyxdp.packets.build import ethernet, icmp, ipv4, ipv6, tcp, udp

    kinds = itertools.cycle(range(6))
    for i, kind in zip(range(n), kinds, strict=False):
        src = f"10.0.{i % 250}.{1 + i % 200}"
        if kind == 0:
            yield ethernet(ipv4(udp(b"q" * 20, sport=1024 + i % 5000, dport=53), src=src))
        elif kind == 1:
            yield ethernet(ipv4(udp(b"x" * 64, dport=4000 + i % 100), src=src))
        elif kind == 2:
            yield ethernet(ipv4(tcp(b"GET /", sport=2000 + i % 3000, dport=80), src=src))
        elif kind == 3:
            yield ethernet(ipv4(icmp(b"ping", seq=i & 0xFFFF), src=src))
        elif kind == 4:
            yield ethernet(ipv6(udp(b"v6", dport=53)))
        else:
            yield ethernet(bytes(28), ethertype=0x0806)


def _pcap_packets(path: str) -> list[bytes]:
    from pyxdp.packets.pcap import PcapError, read_pcap

    try:
        return [p.data for p in read_pcap(read_input(path))]
    except PcapError as e:
        raise PyxdpError(f"{path}: malformed pcap: {e}") from None


def cmd_emu(args: argparse.Namespace) -> int:
    if args.conformance_plugin is not None:
        from pyxdp.emu.plugin import conformance_plugin

        if args.json:
            raise UsageError("--json does not go with --conformance-plugin (whose output is"
                             " the plugin protocol)")
        argv = [args.conformance_plugin] if args.conformance_plugin else []
        return conformance_plugin(argv, sys.stdin, sys.stdout, sys.stderr)
    if args.prog is None:
        raise UsageError("PROG is required (or use --conformance-plugin)")
    prog = load_program(args.prog, args.section, args.syntax)
    # built up front so the timing below covers the emulator only
    packets = (_pcap_packets(args.pcap) if args.pcap
               else list(generated_traffic(args.packets or DEFAULT_PACKETS)))
    counts: Counter[str] = Counter()
    total = 0
    run = prog.run_xdp
    start = time.perf_counter()
    for total, pkt in enumerate(packets, 1):
        try:
            counts["XDP_" + run(pkt).verdict.name] += 1
        except EmulatorError as e:
            raise PyxdpError(f"packet {total}: {e}") from None
    seconds = time.perf_counter() - start
    source = args.pcap or f"{total} generated packets"
    if args.json:
        print_json({"program": prog.name, "source": source, "packets": total,
                    "verdicts": dict(counts), "seconds": seconds})
        return 0
    table(["verdict", "packets", "share"],
          [[v, n, f"{100 * n / total:.1f} %"] for v, n in counts.most_common()],
          title=f"{prog.name} over {source}", right={"packets", "share"})
    if total:
        print(f"{total} packets in {seconds:.3f} s ({seconds / total * 1e6:.2f} us/packet)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("emu")
    p.add_argument("prog", nargs="?", metavar="PROG",
                   help="ELF object, raw bytecode or assembly text ('-' for stdin)")
    p.add_argument("--pcap", metavar="FILE", help="packets to run (classic pcap)")
    p.add_argument("--packets", type=int_range(0, 10_000_000), metavar="N",
                   help=f"generated packets when there is no pcap (default {DEFAULT_PACKETS})")
    p.add_argument("--section", "--program", dest="section", metavar="NAME",
                   help="program (or section) of an ELF object")
    p.add_argument("--syntax", choices=("auto", "llvm", "ubpf"), default="auto",
                   help="syntax of assembly text")
    add_json(p)
    p.add_argument("--conformance-plugin", nargs="?", const="", metavar="MEM",
                   help="act as a bpf_conformance plugin: program hex on stdin, MEM as hex")
    p.set_defaults(func=cmd_emu)

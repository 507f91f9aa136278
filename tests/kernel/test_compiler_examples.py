"""Every example program: loads in the kernel, and kernel (BPF_PROG_TEST_RUN) and emulator
give the same verdicts, output bytes and map contents on the same packets."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyxdp.compiler import compile_module
from pyxdp.emu import EmuBackend
from pyxdp.kernel import KernelBackend
from pyxdp.packets.build import ethernet, icmp, ipv4, ipv6, tcp, udp

pytestmark = pytest.mark.kernel
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ext_hdr(nh: int, length_units: int = 0) -> bytes:
    return bytes([nh, length_units]) + bytes(6 + 8 * length_units)


def frag_hdr(nh: int) -> bytes:
    return bytes([nh, 0]) + bytes(6)


def gue(inner: bytes) -> bytes:
    return bytes([0, 4, 0, 0]) + inner


INNER = ipv4(udp(b"inner payload", dport=7), src="10.1.1.1", dst="10.2.2.2")
PACKETS: list[bytes] = [
    ethernet(ipv4(udp(b"hello"))),
    ethernet(ipv4(tcp(b"x" * 20, dport=23))),
    ethernet(ipv4(icmp(b"ping"), src="198.18.0.7")),
    ethernet(ipv6(udp(b"six"))),
    ethernet(ipv6(tcp(b"", dport=23), src="2001:db8:dead::1")),
    ethernet(ipv6(ext_hdr(6) + tcp(b"", dport=23).data, next_header=60)),
    ethernet(ipv6(ext_hdr(60, 1) + ext_hdr(6) + tcp(b"", dport=22).data, next_header=43)),
    ethernet(ipv6(frag_hdr(17) + udp(b"frag").data, next_header=44)),
    ethernet(ipv6(ext_hdr(60)[:4], next_header=43)),              # truncated extension
    ethernet(ipv4(INNER, proto=4, src="192.0.2.10")),             # IPIP
    ethernet(ipv4(udp(gue(INNER), dport=6080))),                  # GUE
    ethernet(ipv4(udp(gue(INNER), dport=6081))),                  # not GUE
    ethernet(b"\x00" * 46, ethertype=0x0806),
    ethernet(b"", ethertype=0x0800),                              # truncated IPv4
    bytes(14),                                                    # zero ethertype
]


def run_both(path: str, packets: list[bytes], setup: Callable[[dict[str, Any]], None] | None = None
             ) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    obj = compile_module(str(EXAMPLES / path))
    results = []
    with KernelBackend().load(obj.spec) as coll:
        kmaps = obj.typed_maps(coll)
        ecoll = EmuBackend().load(obj.spec)
        emaps = obj.typed_maps(ecoll)
        if setup:
            setup(kmaps)
            setup(emaps)
        (prog,) = coll.programs.values()
        (emu,) = ecoll.programs.values()
        for pkt in packets:
            k = prog.test_run(pkt)
            e = emu.run_xdp(pkt)
            assert k.retval == e.r0, (path, pkt.hex(), k.retval, e.r0)
            assert k.data_out == e.packet, (path, pkt.hex())
            results.append((k.retval, k.data_out, e))
        kstate = {n: dict(m.items()) for n, m in kmaps.items()}
    estate = {n: dict(m.items()) for n, m in emaps.items()}
    return kstate, estate, results


def test_drop_all() -> None:
    _, _, res = run_both("drop_all.py", PACKETS)
    assert {r[0] for r in res} == {1}


def test_count_protocols() -> None:
    k, e, res = run_both("count_protocols.py", PACKETS)
    assert {r[0] for r in res} == {2}
    ksum = {key: sum(v) for key, v in k["counts"].items() if sum(v)}
    esum = {key: sum(v) for key, v in e["counts"].items() if sum(v)}
    assert ksum == esum
    assert ksum[17] == 4 and ksum[6] == 2 and ksum[1] == 1 and ksum[4] == 1


def test_blocklist() -> None:
    def setup(maps: dict[str, Any]) -> None:
        maps["blocked4"]["198.18.0.0/15"] = 0
        maps["blocked6"]["2001:db8:dead::/48"] = 0

    k, e, res = run_both("blocklist.py", PACKETS, setup)
    verdicts = [r[0] for r in res]
    assert verdicts[2] == 1 and verdicts[4] == 1 and verdicts.count(1) == 2
    assert k == e
    net = (15, ipaddress.ip_address("198.18.0.0"))
    assert k["blocked4"][net] == 1


def test_swap_macs() -> None:
    _, _, res = run_both("swap_macs.py", PACKETS)
    for pkt, (verdict, out, _) in zip(PACKETS, res):
        if len(pkt) >= 14:
            assert verdict == 3 and out == pkt[6:12] + pkt[:6] + pkt[12:]
        else:
            assert verdict == 1


def test_ipv6_ext() -> None:
    _, _, res = run_both("ipv6_ext.py", PACKETS)
    assert [r[0] for r in res][3:9] == [2, 1, 1, 2, 1, 1]


def test_decap() -> None:
    _, _, res = run_both("decap.py", PACKETS)
    for i in (9, 10):
        verdict, out, _ = res[i]
        assert verdict == 2 and out == PACKETS[i][:14] + INNER
    assert res[11][1] == PACKETS[11]


def test_devmap_redirect() -> None:
    def setup(maps: dict[str, Any]) -> None:
        maps["tx_ports"][2] = 1          # frames to ..:02 go out of ifindex 1 (lo)

    pkts = [ethernet(ipv4(udp(b"a")), dst="02:00:00:00:00:02"),
            ethernet(ipv4(udp(b"b")), dst="02:00:00:00:00:03"), bytes(14)]
    _, _, res = run_both("devmap_redirect.py", pkts, setup)
    assert [r[0] for r in res] == [4, 2, 2]
    assert res[0][2].redirect is not None


def test_every_example_is_tested() -> None:
    tested = {"drop_all", "count_protocols", "blocklist", "swap_macs", "ipv6_ext", "decap",
              "devmap_redirect"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} >= tested
    assert struct.calcsize("!H") == 2

"""The AF_XDP examples on real veth beds: L2 forwarder, ARP/ICMP responder, pcap capture."""

from __future__ import annotations

import importlib.util
import io
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from pyxdp import xdp
from pyxdp.asm import programs as progs
from pyxdp.isa import XdpAction
from pyxdp.kernel import Map, Program
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

pytestmark = [pytest.mark.netns, pytest.mark.kernel]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "afxdp"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"afxdp_ex_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _quiet(tb: Testbed, *names: str) -> None:
    for ns in names:
        tb.namespace(ns)
        tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        tb.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")


def test_l2fwd_forwards_every_frame_out_of_the_other_interface() -> None:
    ex = _load("l2fwd")
    with Testbed() as tb:
        _quiet(tb, "gen", "fwd", "out")
        gen, fin = tb.veth("gen", "veth0", "fwd", "veth1", ipv4=("198.18.5.1/24",
                                                                  "198.18.5.2/24"))
        tb.veth("fwd", "veth2", "out", "veth3")
        m = Map.create(progs.counters_spec())
        p = Program.load(progs.xdp_count(XdpAction.DROP), maps={progs.COUNTERS: m})
        att = tb.call("out", xdp.attach, "veth3", p, "native")
        r, rx, tx = tb.call("fwd", ex.open_forwarder, "veth1", "veth2")
        stop = threading.Event()
        result: list[int] = []
        t = threading.Thread(target=lambda: result.append(ex.forward_loop(rx, tx, stop)))
        t.start()
        try:
            frame = template("udp", src=gen.ip4, dst=fin.ip4, smac=gen.mac, dmac=fin.mac)

            def go():
                with Generator(gen.ifindex, frame) as g:
                    return g.run(20_000, duration=30)
            sent = tb.call("gen", go).sent
            end = time.monotonic() + 5
            while progs.read_counters(m)[0] + rx.stats().rx_lost < sent \
                    and time.monotonic() < end:
                time.sleep(0.02)
        finally:
            stop.set()
            t.join()
            st = rx.stats()
            tb.call("fwd", r.close)
            tb.call("out", att.detach)
            p.close()
        # copy-mode TX (an skb per frame, 32 per sendto) is slower than RX: the fill ring
        # runs dry and the kernel drops (and counts) what it could not deliver
        assert sent == 20_000
        fwd = result[0]
        assert fwd > 0 and fwd + st.rx_lost == sent, (fwd, st)
        assert progs.read_counters(m) == (fwd, fwd * len(frame))
        m.close()


def test_responder_answers_arp_and_ping() -> None:
    ex = _load("responder")
    with Testbed() as tb:
        _quiet(tb, "gen", "sink")
        _gen, sink = tb.veth("gen", "veth0", "sink", "veth1",
                            ipv4=("198.18.6.1/24", "198.18.6.9/24"))
        from pyxdp.afxdp import XskRedirect

        r = tb.call("sink", XskRedirect, "veth1")
        s = tb.call("sink", r.socket, 0, mode="copy")
        stop = threading.Event()
        sent: list[int] = []
        mac = bytes.fromhex(sink.mac.replace(":", ""))
        ip = socket.inet_aton("198.18.6.2")  # not the stack's address: only we can answer
        t = threading.Thread(target=lambda: sent.append(ex.respond_loop(s, mac, ip, stop)))
        t.start()
        try:
            replies = tb.call("gen", _ping, "198.18.6.2", 3)
            neigh = tb.exec("gen", ["ip", "neigh", "show", "198.18.6.2"], check=False).stdout
        finally:
            stop.set()
            t.join()
            tb.call("sink", r.close)
        assert replies == [1, 2, 3]
        assert sink.mac.lower() in neigh.lower()  # the ARP answer came from the responder
        assert sent and sent[0] >= 4  # one ARP reply and three echo replies at least


def _ping(dst: str, count: int) -> list[int]:
    """Echo requests from a raw ICMP socket (the stack ARPs first); the sequence numbers of
    the echo replies that came back from ``dst``."""
    got: list[int] = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(2.0)
        for seq in range(1, count + 1):
            body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + b"pyxdp-afxdp"
            csum = _csum(body)
            s.sendto(body[:2] + struct.pack("!H", csum) + body[4:], (dst, 0))
            end = time.monotonic() + 2
            while time.monotonic() < end:
                try:
                    pkt, (src, _) = s.recvfrom(2048)
                except TimeoutError:
                    break
                ihl = (pkt[0] & 0x0F) * 4
                typ, _c, _c2, ident, rseq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
                if src == dst and typ == 0 and ident == 0x4242 and rseq == seq \
                        and pkt[ihl + 8:] == b"pyxdp-afxdp" and _csum(pkt[ihl:]) == 0:
                    got.append(seq)
                    break
    return got


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_reply_to_ignores_what_it_must_not_answer() -> None:
    ex = _load("responder")
    mac, ip = bytes(range(1, 7)), socket.inet_aton("198.18.6.2")
    arp_other = (b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
                 + b"\x02" * 6 + socket.inet_aton("198.18.6.1") + b"\0" * 6
                 + socket.inet_aton("198.18.6.3"))
    assert ex.reply_to(arp_other, mac, ip) is None
    assert ex.reply_to(b"\0" * 60, mac, ip) is None
    req = arp_other[:38] + ip
    rep = ex.reply_to(req, mac, ip)
    assert rep is not None and rep[20:22] == b"\x00\x02" and rep[22:28] == mac
    assert rep[28:32] == ip and rep[0:6] == b"\x02" * 6


def test_capture_writes_the_frames_to_pcap(tmp_path: Path) -> None:
    ex = _load("capture")
    from scapy.all import rdpcap

    from pyxdp.afxdp import XskRedirect

    with Testbed() as tb:
        _quiet(tb, "gen", "sink")
        gen, sink = tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.7.1/24",
                                                                   "198.18.7.2/24"))
        frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac,
                         size=99)
        with tb.call("sink", XskRedirect, "veth1") as r:
            s = tb.call("sink", r.socket, 0, mode="copy")

            def go():
                with Generator(gen.ifindex, frame) as g:
                    return g.run(300)
            tb.call("gen", go)
            buf = io.BytesIO()
            n = ex.capture(s, buf, 300, 5.0)
        assert n == 300
        raw = buf.getvalue()
        assert struct.unpack("=I", raw[:4])[0] == 0xA1B2C3D4
        tmp = tmp_path / "capture.pcap"
        tmp.write_bytes(raw)
        pkts = rdpcap(str(tmp))
        assert len(pkts) == 300 and all(bytes(p) == frame for p in pkts)

"""AF_XDP sockets on veth in private namespaces: RX byte for byte, TX, forwarding, shared
UMEM over two queues, bookkeeping over 1M frames, clean teardown, refusals."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time

import pytest

from pyxdp import xdp
from pyxdp.afxdp import Umem, XskError, XskRedirect, XskSocket
from pyxdp.isa import XdpAction
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

pytestmark = [pytest.mark.netns, pytest.mark.kernel]

ETH_P_ALL = 0x0003
ETHERTYPE = 0x88B5  # IEEE local experimental: nothing in the stack answers it


def _bed(tb: Testbed, queues: int = 1) -> Testbed:
    for ns in ("gen", "sink"):
        tb.namespace(ns)
        tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        tb.sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
    tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.4.1/24", "198.18.4.2/24"),
            queues=queues)
    return tb


@pytest.fixture
def bed():
    with Testbed() as tb:
        yield _bed(tb)


@pytest.fixture
def bed2():
    with Testbed() as tb:
        yield _bed(tb, queues=2)


def _ends(tb: Testbed):
    return tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]


def _send(tb: Testbed, frame: bytes, count: int, **kw):
    gen = tb.interfaces[("gen", "veth0")]

    def go():
        with Generator(gen.ifindex, frame) as g:
            return g.run(count, duration=30, **kw)

    return tb.call("gen", go)


def _drain(sock: XskSocket, want: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        got += sock.recv(256, timeout=0.05)
    time.sleep(0.05)
    got += sock.recv(4096)  # anything beyond ``want`` would be a bug: collect it too
    return got


class Capture:
    """An AF_PACKET socket on ``ns/ifname``, collecting frames of our test ethertype."""

    def __init__(self, tb: Testbed, ns: str, ifname: str) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
            s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: keep them all
            s.bind((ifname, 0))
            s.settimeout(0.2)
            return s
        self.sock = tb.call(ns, make)

    def collect(self, want: int, timeout: float = 5.0) -> list[bytes]:
        out: list[bytes] = []
        end = time.monotonic() + timeout
        while len(out) < want and time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                out.append(self.sock.recv(4096))
        self.sock.settimeout(0.1)
        try:
            while True:
                out.append(self.sock.recv(4096))
        except TimeoutError:
            pass
        return out

    def close(self) -> None:
        self.sock.close()


def _tagged(dst: str, src: str, i: int, size: int = 80) -> bytes:
    mac = lambda m: bytes.fromhex(m.replace(":", ""))  # noqa: E731
    body = struct.pack("!I", i) + bytes((i + k) & 0xFF for k in range(size - 18))
    return mac(dst) + mac(src) + struct.pack("!H", ETHERTYPE) + body


@pytest.mark.parametrize("attach_mode", ["native", "generic"])
def test_generated_frames_arrive_byte_for_byte(bed, attach_mode: str) -> None:
    gen, sink = _ends(bed)
    if attach_mode == "generic":
        bed.set_gro("sink", "veth1", True)  # live frames reach a generic-mode veth via NAPI
    frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, size=142)
    with bed.call("sink", XskRedirect, "veth1", attach_mode=attach_mode) as r:
        s = bed.call("sink", r.socket, 0, mode="copy")
        assert r.attach_mode.value == attach_mode
        assert (s.mode, s.zerocopy) == ("copy", False)
        rep = _send(bed, frame, 1500)
        got = _drain(s, 1500)
        assert rep.sent == 1500
        assert len(got) == 1500
        assert all(g == frame for g in got)
        st = s.stats()
        assert st.rx_lost == 0 and st.rx_invalid_descs == 0


def test_auto_mode_reports_copy_on_veth(bed) -> None:
    with bed.call("sink", XskRedirect, "veth1") as r:
        s = bed.call("sink", r.socket, 0, mode="auto")
        assert s.mode == "copy" and s.zerocopy is False


def test_tx_frames_arrive_at_the_peer(bed) -> None:
    gen, sink = _ends(bed)
    cap = Capture(bed, "gen", "veth0")
    try:
        with bed.call("sink", XskRedirect, "veth1") as r:
            s = bed.call("sink", r.socket, 0, mode="copy")
            frames = [_tagged(gen.mac, sink.mac, i, 60 + i % 300) for i in range(700)]
            sent = 0
            end = time.monotonic() + 10
            while sent < len(frames) and time.monotonic() < end:
                sent += s.send(frames[sent:])
                time.sleep(0.001)
            got = cap.collect(len(frames))
            assert sent == len(frames)
            assert sorted(got) == sorted(frames)
            assert s.stats().tx_invalid_descs == 0
            # every frame sent comes back through the completion ring to the free list
            end = time.monotonic() + 2
            while len(s.umem.free) + s.fill.pending() < s.umem.frame_count \
                    and time.monotonic() < end:
                s.send([])
                time.sleep(0.01)
            assert len(s.umem.free) + s.fill.pending() == s.umem.frame_count
    finally:
        cap.close()


def test_batch_forward_sends_received_frames_back_unchanged(bed) -> None:
    gen, sink = _ends(bed)
    cap = Capture(bed, "gen", "veth0")
    try:
        with bed.call("sink", XskRedirect, "veth1") as r:
            s = bed.call("sink", r.socket, 0, mode="copy")
            frames = [_tagged(sink.mac, gen.mac, i) for i in range(300)]

            def inject() -> None:
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as p:
                    p.bind(("veth0", 0))
                    for f in frames:
                        p.send(f)
            bed.call("gen", inject)
            done = 0
            end = time.monotonic() + 5
            while done < len(frames) and time.monotonic() < end:
                done += s.forward(64)
            got = cap.collect(len(frames))
            assert done == len(frames)
            assert sorted(got) == sorted(frames)
    finally:
        cap.close()


def test_rx_batch_views_and_in_place_edit(bed) -> None:
    gen, sink = _ends(bed)
    cap = Capture(bed, "gen", "veth0")
    try:
        with bed.call("sink", XskRedirect, "veth1") as r:
            s = bed.call("sink", r.socket, 0, mode="copy")
            frames = [_tagged(sink.mac, gen.mac, i) for i in range(40)]

            def inject() -> None:
                with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as p:
                    p.bind(("veth0", 0))
                    for f in frames:
                        p.send(f)
            bed.call("gen", inject)
            end = time.monotonic() + 5
            while s.rx.pending() < 40 and time.monotonic() < end:
                s.wait(0.05)
            b = s.rx_batch(64)
            assert len(b) == 40
            assert [bytes(f) for f in b] == frames
            try:
                import numpy as np
            except ImportError:
                np = None
            if np is not None:
                addrs, lens, area = b.numpy()
                assert list(lens) == [len(f) for f in frames]
                assert bytes(area[int(addrs[3]):int(addrs[3]) + int(lens[3])]) == frames[3]
            for f in b:  # swap MACs in place, then send them back
                dst = bytes(f[0:6])
                f[0:6] = f[6:12]
                f[6:12] = dst
            assert b.forward() == 40
            with pytest.raises(XskError, match="released already"):
                b.recycle()
            got = cap.collect(40)
            want = [f[6:12] + f[0:6] + f[12:] for f in frames]
            assert sorted(got) == sorted(want)
    finally:
        cap.close()


def test_shared_umem_over_two_queues(bed2) -> None:
    gen, sink = _ends(bed2)
    frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac)
    cpus = sorted(os.sched_getaffinity(0))
    with bed2.call("sink", XskRedirect, "veth1") as r:
        umem = bed2.call("sink", Umem, 4096)
        s0 = bed2.call("sink", r.socket, 0, umem=umem, mode="copy", fill_frames=1024)
        s1 = bed2.call("sink", r.socket, 1, umem=umem, mode="copy", fill_frames=1024)
        assert s0.umem is s1.umem and s1.fill is not s0.fill
        assert len(umem.free) == 4096 - 2048
        # native veth picks the rx queue by the sending CPU: one generator thread per CPU
        rep = _send(bed2, frame, 1800, threads=min(2, len(cpus)), cpus=cpus[:2])
        got0, got1 = _drain(s0, 1), _drain(s1, 1)
        end = time.monotonic() + 3
        while len(got0) + len(got1) < rep.sent and time.monotonic() < end:
            got0 += s0.recv(256, timeout=0.05)
            got1 += s1.recv(256, timeout=0.05)
        assert len(got0) + len(got1) == rep.sent == 1800
        assert all(g == frame for g in got0 + got1)
        if len(cpus) >= 2:
            assert got0 and got1
        with pytest.raises(XskError, match="already has a socket"):
            r.socket(1, umem=umem)


def test_million_frames_through_a_small_umem_never_leak_a_frame(bed) -> None:
    gen, sink = _ends(bed)
    frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac)
    with bed.call("sink", XskRedirect, "veth1") as r:
        umem = bed.call("sink", Umem, 64, fill_size=32, comp_size=32)
        s = bed.call("sink", r.socket, 0, umem=umem, mode="copy", rx_size=32, tx_size=32)
        assert s.fill.pending() == 32 and len(umem.free) == 32
        total = 1_000_000
        stop = threading.Event()
        received = [0]

        def receive() -> None:
            while not stop.is_set():
                n = s.drop(32)
                received[0] += n
                if not n:
                    s.wait(0.01)

        t = threading.Thread(target=receive)
        t.start()
        sent = 0
        deadline = time.monotonic() + 120
        try:
            while received[0] < total and time.monotonic() < deadline:
                sent += _send(bed, frame, 200_000).sent
        finally:
            time.sleep(0.1)
            stop.set()
            t.join()
        received[0] += s.drop(64)
        st = s.stats()
        assert received[0] >= total, (received[0], sent, st)
        assert received[0] <= sent
        assert st.rx_invalid_descs == 0
        # every chunk is exactly once in the fill ring or in userspace's free list
        f = s.fill
        in_fill = [int(f.words[(f.consumer[0] + i) & f.mask]) for i in range(f.pending())]
        chunks = sorted(umem.chunk_of(a) for a in in_fill + umem.free)
        assert chunks == list(range(0, umem.size, umem.frame_size))
        assert s.rx.pending() == 0


def test_close_detaches_and_frees_the_queue(bed) -> None:
    gen, sink = _ends(bed)
    r = bed.call("sink", XskRedirect, "veth1")
    s = bed.call("sink", r.socket, 0)
    fds = [s.fd, r.map.fd.fileno(), r.prog.fd.fileno()]
    bed.call("sink", r.close)
    assert not bed.call("sink", xdp.status, "veth1").attachments
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert s.closed and s.umem.closed
    # the queue is free again: a new UMEM can bind (the old one would make it EBUSY)
    with bed.call("sink", XskRedirect, "veth1", fallback=XdpAction.DROP) as r2:
        s2 = bed.call("sink", r2.socket, 0, mode="copy")
        frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac)
        _send(bed, frame, 100)
        assert len(_drain(s2, 100)) == 100


def test_removed_socket_leaves_the_fallback_verdict(bed) -> None:
    """With the socket gone, the program's fallback (PASS) hands frames to the stack."""
    gen, sink = _ends(bed)
    frame = template("udp", src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac, dport=9)

    def server() -> socket.socket:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        u.bind((sink.ip4, 9))
        u.settimeout(0.3)
        return u

    udp = bed.call("sink", server)
    try:
        with bed.call("sink", XskRedirect, "veth1", fallback=XdpAction.PASS) as r:
            s = bed.call("sink", r.socket, 0)
            _send(bed, frame, 50)
            assert len(_drain(s, 50)) == 50  # to the socket, not the stack
            r.remove(0)
            assert s.closed and r.sockets == {}
            _send(bed, frame, 200)
            n = 0
            try:
                while True:
                    udp.recv(2048)
                    n += 1
            except TimeoutError:
                pass
            assert n == 200
    finally:
        udp.close()


# -- refusals ------------------------------------------------------------------------------
def test_queue_that_does_not_exist(bed) -> None:
    with pytest.raises(XskError, match="veth1 has no queue 3: it has 1 rx queue"):
        bed.call("sink", XskSocket, "veth1", 3)


def test_no_such_interface(bed) -> None:
    with pytest.raises(XskError, match="nope0"):
        bed.call("sink", XskSocket, "nope0", 0)


def test_zero_copy_unsupported_on_veth(bed) -> None:
    with bed.call("sink", XskRedirect, "veth1") as r, \
            pytest.raises(XskError, match="zero-copy AF_XDP is not supported on veth1"):
        bed.call("sink", r.socket, 0, mode="zerocopy")
    assert not bed.call("sink", xdp.status, "veth1").attachments


def test_queue_busy_without_shared_umem(bed) -> None:
    with bed.call("sink", XskRedirect, "veth1") as r:
        bed.call("sink", r.socket, 0, mode="copy")
        with pytest.raises(XskError, match="already has an AF_XDP UMEM bound"):
            bed.call("sink", XskSocket, "veth1", 0, mode="copy")


@pytest.mark.parametrize(("kw", "match"), [
    ({"frame_count": 1}, "UMEM too small"),
    ({"frame_count": 0}, "UMEM too small"),
    ({"frame_size": 3000}, "chunk size 3000 is not aligned"),
    ({"frame_size": 1024}, "chunk size 1024 is not aligned"),
    ({"frame_size": 8192}, "chunk size 8192 is not aligned"),
    ({"fill_size": 1000}, "fill ring size must be a power of two"),
])
def test_bad_umem(kw: dict, match: str) -> None:
    with pytest.raises(XskError, match=match):
        Umem(**kw)


def test_umem_too_small_for_its_rings(bed) -> None:
    umem = bed.call("sink", Umem, 8)
    try:
        with pytest.raises(XskError, match="UMEM has 8 free frames, 16 wanted"):
            bed.call("sink", XskSocket, "veth1", 0, umem=umem, fill_frames=16)
        assert umem.owner is None and len(umem.free) == 8  # refused before anything bound
        with pytest.raises(XskError, match="must be 0..2048"):
            bed.call("sink", XskSocket, "veth1", 0, umem=umem, fill_frames=4096)
        s = bed.call("sink", XskSocket, "veth1", 0, umem=umem, fill_frames=8)
        assert s.fill.pending() == 8 and umem.free == []
    finally:
        umem.close()


def test_kernel_agrees_an_unaligned_chunk_is_refused() -> None:
    """Our check is not stricter than the kernel's: XDP_UMEM_REG itself refuses 3000."""
    import ctypes
    import mmap

    from pyxdp.abi import AF_XDP, SOL_XDP, XDP_UMEM_REG, XDP_UMEM_REG_FMT

    area = mmap.mmap(-1, 3000 * 16)
    anchor = ctypes.c_char.from_buffer(area)
    try:
        with socket.socket(AF_XDP, socket.SOCK_RAW, 0) as s, pytest.raises(OSError) as ei:
            s.setsockopt(SOL_XDP, XDP_UMEM_REG, struct.pack(
                XDP_UMEM_REG_FMT, ctypes.addressof(anchor), 3000 * 16, 3000, 0, 0, 0))
        assert ei.value.errno == 22
    finally:
        del anchor
        area.close()


def test_umem_whose_first_bind_failed_is_refused_afterwards(bed) -> None:
    umem = bed.call("sink", Umem, 64)
    try:
        with pytest.raises(XskError, match="zero-copy"):
            bed.call("sink", XskSocket, "veth1", 0, umem=umem, mode="zerocopy")
        with pytest.raises(XskError, match="first socket failed to bind"):
            bed.call("sink", XskSocket, "veth1", 0, umem=umem, mode="copy")
    finally:
        umem.close()


def test_bad_mode_and_ring_size(bed) -> None:
    with pytest.raises(XskError, match="unknown AF_XDP mode 'fast'"):
        bed.call("sink", XskSocket, "veth1", 0, mode="fast")
    with pytest.raises(XskError, match="rx ring size must be a power of two"):
        bed.call("sink", XskSocket, "veth1", 0, rx_size=100)


# -- ring arithmetic over plain memory (no kernel): wrap-around, order, index updates ----------
def _sock_on_fake_rings(size: int) -> XskSocket:
    from pyxdp.bench.afxdp_speed import _fake_ring

    s = XskSocket.__new__(XskSocket)
    s.rx, s.tx = _fake_ring(size, 16), _fake_ring(size, 16)
    s.fill, s.comp = _fake_ring(size, 8), _fake_ring(size, 8)
    s.need_wakeup_bound = True  # flags word 0: no wakeup syscall
    s.umem = Umem.__new__(Umem)
    return s


@pytest.mark.parametrize("start", [0, 3, 6, 0xFFFFFFFE])
def test_drop_moves_addresses_in_order_across_the_wrap(start: int) -> None:
    s = _sock_on_fake_rings(8)
    rx, fill = s.rx, s.fill
    rx.producer[0] = rx.consumer[0] = start
    fill.producer[0] = fill.consumer[0] = (start + 5) & 0xFFFFFFFF
    addrs = [0x1000 * (i + 1) + 256 for i in range(6)]
    for i, a in enumerate(addrs):
        slot = (start + i) & rx.mask
        rx.words[2 * slot], rx.words[2 * slot + 1] = a, 60 + i
    rx.producer[0] = (start + 6) & 0xFFFFFFFF
    assert s.drop(5) == 5
    assert rx.consumer[0] == (start + 5) & 0xFFFFFFFF
    f0 = (start + 5) & 0xFFFFFFFF
    assert fill.producer[0] == (f0 + 5) & 0xFFFFFFFF
    assert [fill.words[(f0 + i) & fill.mask] for i in range(5)] == addrs[:5]
    assert s.drop(64) == 1 and rx.pending() == 0


def test_forward_copies_whole_descriptors_and_recycles_completions() -> None:
    s = _sock_on_fake_rings(8)
    rx, tx, comp, fill = s.rx, s.tx, s.comp, s.fill
    s.umem.free = []
    start = 5
    for r in (rx, tx, comp, fill):
        r.producer[0] = r.consumer[0] = start
    for i in range(7):
        slot = (start + i) & rx.mask
        rx.words[2 * slot], rx.words[2 * slot + 1] = 0x2000 * (i + 1), (7 << 32) | (64 + i)
    rx.producer[0] = start + 7
    comp.words[start & comp.mask], comp.words[(start + 1) & comp.mask] = 0x9000, 0xA000
    comp.producer[0] = start + 2
    assert s.forward(64) == 7
    got = [(tx.words[2 * ((start + i) & 7)], tx.words[2 * ((start + i) & 7) + 1])
           for i in range(7)]
    assert got == [(0x2000 * (i + 1), (7 << 32) | (64 + i)) for i in range(7)]
    assert tx.producer[0] == start + 7 and rx.consumer[0] == start + 7
    assert comp.consumer[0] == start + 2 and fill.producer[0] == start + 2
    assert [fill.words[start & 7], fill.words[(start + 1) & 7]] == [0x9000, 0xA000]
    # a full tx ring takes only what fits; the rest stays in the rx ring
    rx.producer[0] = start + 7 + 3
    assert s.forward(64) == 1 and rx.pending() == 2

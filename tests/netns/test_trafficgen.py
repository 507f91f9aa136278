"""The live-frames generator against a counting sink: exact counts, threads, bounds."""

from __future__ import annotations

import time

import pytest

from pyxdp import xdp
from pyxdp.asm import programs as progs
from pyxdp.isa import XdpAction
from pyxdp.kernel import Map, Program
from pyxdp.testbed import Testbed
from pyxdp.trafficgen import Generator, template

pytestmark = [pytest.mark.netns, pytest.mark.kernel]


@pytest.fixture
def sink_bed():
    """gen <-> sink without IPv6 noise, a native counting drop on the sink."""
    with Testbed() as tb:
        for ns in ("gen", "sink"):
            tb.namespace(ns)
            tb.sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        tb.veth("gen", "veth0", "sink", "veth1", ipv4=("198.18.3.1/24", "198.18.3.2/24"))
        m = Map.create(progs.counters_spec())
        p = Program.load(progs.xdp_count(XdpAction.DROP), maps={progs.COUNTERS: m})
        att = tb.call("sink", xdp.attach, "veth1", p, "native")
        try:
            yield tb, m
        finally:
            tb.call("sink", att.detach)
            p.close()
            m.close()


def _frame(tb: Testbed, proto: str = "udp", family: int = 4) -> bytes:
    gen, sink = tb.interfaces[("gen", "veth0")], tb.interfaces[("sink", "veth1")]
    if family == 4:
        return template(proto, src=gen.ip4, dst=sink.ip4, smac=gen.mac, dmac=sink.mac)
    return template(proto, family=6, smac=gen.mac, dmac=sink.mac, size=80)


@pytest.mark.parametrize(("proto", "family"), [("udp", 4), ("tcp-syn", 6), ("icmp", 6)])
def test_every_frame_sent_is_counted_at_the_sink(sink_bed, proto: str, family: int) -> None:
    tb, m = sink_bed
    frame = _frame(tb, proto, family)
    ports = 16 if proto != "icmp" else 1

    def go():
        with Generator(tb.interfaces[("gen", "veth0")].ifindex, frame, sources=256,
                       ports=ports) as g:
            return g.run(300_000, duration=20)

    rep = tb.call("gen", go)
    time.sleep(0.05)
    assert rep.sent == 300_000 and rep.pps > 0 and rep.bps > rep.pps * 8 * len(frame)
    assert progs.read_counters(m) == (300_000, 300_000 * len(frame))


def test_two_threads_split_the_count(sink_bed) -> None:
    tb, m = sink_bed
    frame = _frame(tb)

    def go():
        with Generator(tb.interfaces[("gen", "veth0")].ifindex, frame) as g:
            return g.run(400_001, duration=20, threads=2)

    rep = tb.call("gen", go)
    assert rep.threads == 2 and sorted(rep.per_thread) == [200_000, 200_001]
    time.sleep(0.1)
    delivered = progs.read_counters(m)[0]
    # two senders into one receive ring can overrun it (veth drops then, as a NIC would):
    # what arrives is most, never more, of what was sent
    assert 0.5 * rep.sent <= delivered <= rep.sent


def test_duration_bounds_an_endless_count(sink_bed) -> None:
    tb, _ = sink_bed
    frame = _frame(tb)

    def go():
        with Generator(tb.interfaces[("gen", "veth0")].ifindex, frame) as g:
            return g.run(10**12, duration=0.5)

    t0 = time.monotonic()
    rep = tb.call("gen", go)
    took = time.monotonic() - t0
    assert rep.sent < 10**12 and rep.sent > 0
    assert took < 0.5 + 1.0, took  # at most one call past the deadline


def test_bad_arguments_are_refused(sink_bed) -> None:
    tb, _ = sink_bed
    frame = _frame(tb)

    def go(**kw):
        with Generator(tb.interfaces[("gen", "veth0")].ifindex, frame) as g:
            return g.run(**kw)

    with pytest.raises(ValueError, match="positive"):
        tb.call("gen", go, count=0)
    with pytest.raises(ValueError, match="batch_size"):
        tb.call("gen", go, count=10, batch_size=1000)

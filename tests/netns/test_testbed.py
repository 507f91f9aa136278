"""Test beds build real namespaces and veth pairs, pass traffic, and leave nothing behind."""

from __future__ import annotations

import os
import socket

import pytest

from pyxdp import testbed
from pyxdp.testbed import Testbed, TestbedError, check_address

pytestmark = pytest.mark.netns


def _ns_list() -> set[str]:
    try:
        return set(os.listdir(testbed.NETNS_DIR))
    except FileNotFoundError:
        return set()


def _udp_echo_once(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.18.0.2", port))
    s.settimeout(3)
    return s


def test_pair_passes_udp_both_families_and_cleans_up() -> None:
    before = _ns_list()
    with testbed.pair() as tb:
        created = _ns_list() - before
        assert len(created) == 2 and all(n.startswith(f"pyxdp-{os.getpid()}-") for n in created)
        sink = tb.interfaces[("sink", "veth1")]
        gen = tb.interfaces[("gen", "veth0")]
        assert sink.ip4 == "198.18.0.2" and gen.ip6 == "2001:db8::1"
        assert sink.ifindex > 0 and len(sink.mac) == 17

        for family, dst in ((socket.AF_INET, sink.ip4), (socket.AF_INET6, sink.ip6)):
            def server(family=family, dst=dst):
                s = socket.socket(family, socket.SOCK_DGRAM)
                s.bind((dst, 9999))
                s.settimeout(3)
                return s
            srv = tb.call("sink", server)
            try:
                def send(family=family, dst=dst):
                    with socket.socket(family, socket.SOCK_DGRAM) as c:
                        c.sendto(b"hello", (dst, 9999))
                tb.call("gen", send)
                data, _ = tb.call("sink", srv.recvfrom, 100)
                assert data == b"hello"
            finally:
                srv.close()
    assert _ns_list() == before


def test_addresses_outside_test_ranges_are_refused() -> None:
    with pytest.raises(TestbedError, match="outside 198.18.0.0/15"):
        check_address("10.0.0.1/24")
    with pytest.raises(TestbedError, match="outside 2001:db8::/32"):
        check_address("2001:db9::1/64")
    with pytest.raises(TestbedError, match="bad address"):
        check_address("198.18.0.300/24")


def test_bad_names_and_failures_raise_and_still_clean_up() -> None:
    before = _ns_list()
    with pytest.raises(TestbedError), Testbed() as tb:
        tb.namespace("a")
        tb.namespace("b")
        tb.veth("a", "x" * 16, "b", "y")
    with pytest.raises(TestbedError, match="no namespace"), Testbed() as tb:
        tb.veth("a", "x", "b", "y")
    assert _ns_list() == before


def test_stale_leftovers_of_dead_runs_are_removed() -> None:
    from pyroute2 import netns

    dead = "pyxdp-999999-abcdef-stale"
    netns.create(dead)
    try:
        assert dead in _ns_list()
        assert dead in testbed.remove_stale()
        assert dead not in _ns_list()
    finally:
        if dead in _ns_list():
            netns.remove(dead)


def test_exec_runs_inside_the_namespace() -> None:
    with testbed.pair() as tb:
        out = tb.exec("sink", ["ip", "-o", "addr", "show", "dev", "veth1"]).stdout
        assert "198.18.0.2/24" in out
        with pytest.raises(TestbedError, match="failed"):
            tb.exec("sink", ["ip", "link", "show", "dev", "nosuchdev"])


def test_bridge_joins_three_namespaces() -> None:
    with Testbed() as tb:
        for ns in ("client", "wire", "victim"):
            tb.namespace(ns)
        tb.veth("client", "eth0", "wire", "c0", ipv4=("198.18.5.1/24", "198.18.5.250/24"))
        tb.veth("victim", "eth0", "wire", "v0", ipv4=("198.18.5.2/24", "198.18.5.251/24"))
        assert tb.bridge("wire", "br0", ["c0", "v0"]) > 0

        def server():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("198.18.5.2", 9000))
            s.settimeout(3)
            return s

        srv = tb.call("victim", server)
        try:
            def send():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                    c.sendto(b"through the bridge", ("198.18.5.2", 9000))
            tb.call("client", send)
            assert tb.call("victim", srv.recvfrom, 100)[0] == b"through the bridge"
        finally:
            srv.close()
        with pytest.raises(TestbedError, match="no interface 'nope'"):
            tb.bridge("wire", "br1", ["nope"])

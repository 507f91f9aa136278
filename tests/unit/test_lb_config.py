"""The load balancer's pure parts: the weighted Maglev ring, the flow hash reference, the
configuration schema and the ``ipvsadm-save`` import."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyxdp.apps.lb import maglev
from pyxdp.apps.lb.config import LbError, from_dict, parse_ipvsadm, parse_service_key


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text("abcdef0123", min_size=1, max_size=6),
                       st.integers(1, 5), min_size=1, max_size=8),
       st.sampled_from([251, 1021, 4093]))
def test_shares_follow_the_weights(weights: dict[str, int], m: int) -> None:
    reals = {name: (i, w) for i, (name, w) in enumerate(sorted(weights.items()))}
    ring = maglev.build(reals, m)
    assert maglev.NONE not in ring
    total = sum(weights.values())
    got = maglev.shares(ring)
    for name, (slot, w) in reals.items():
        # each real within 1.5% of the ring (and a few entries) of its weighted share
        assert abs(got.get(slot, 0) - w / total) <= 0.015 + 3 / m, (name, got, weights)


def test_removing_one_of_n_moves_about_one_nth() -> None:
    for n in (3, 5, 10):
        reals = {f"198.18.10.{i}": (i, 1) for i in range(n)}
        ring = maglev.build(reals, 16381)
        gone = dict(reals)
        del gone["198.18.10.1"]
        moved = maglev.moved(ring, maglev.build(gone, 16381))
        assert 1 / n <= moved <= 1 / n + 0.02, (n, moved)


def test_the_ring_depends_on_the_set_not_the_order_and_weight_zero_takes_nothing() -> None:
    a = maglev.build({"x": (0, 1), "y": (1, 2), "z": (2, 1)}, 1021)
    b = maglev.build(dict(reversed(list({"x": (0, 1), "y": (1, 2), "z": (2, 1)}.items()))),
                     1021)
    assert a == b
    c = maglev.build({"x": (0, 1), "y": (1, 0)}, 1021)
    assert set(c) == {0}
    assert set(maglev.build({"x": (0, 0)}, 1021)) == {maglev.NONE}


def test_bad_ring_sizes_and_weights_are_named() -> None:
    for m in (1000, 1, 2, (1 << 20) + 7, True, "16381"):
        with pytest.raises(maglev.MaglevError, match="prime"):
            maglev.build({"x": (0, 1)}, m)  # type: ignore[arg-type]
    with pytest.raises(maglev.MaglevError, match="weight"):
        maglev.build({"x": (0, -1)}, 1021)


def base(**kw: Any) -> dict[str, Any]:
    return {"ports": ["l0"], "source4": "198.18.10.1", "source6": "2001:db8:10::1", **kw}


def svc(**kw: Any) -> dict[str, Any]:
    return {"vip": "198.18.100.1", "port": 80, "reals": [{"address": "198.18.10.11"}], **kw}


@pytest.mark.parametrize("cfg, match", [
    (base(service=[svc(vip="203.0.113.1")]), "outside the allowed ranges"),
    (base(service=[svc(), svc()]), "exists already"),
    (base(service=[svc(reals=[{"address": "198.18.10.11", "weight": 0}])]), "weight"),
    (base(service=[svc(reals=[{"address": "198.18.10.11", "weight": 65536}])]), "weight"),
    (base(service=[svc(reals=[{"address": "198.18.10.11"}] * 2)]), "given twice"),
    (base(service=[svc(method="dsr", reals=[{"address": "2001:db8:10::11"}])]), "IPv4 like"),
    (base(source6=None, service=[svc(reals=[{"address": "2001:db8:10::11"}])]), "source6"),
    (base(service=[svc(method="nat")]), "method"),
    (base(service=[svc(proto="sctp")]), "proto"),
    (base(service=[svc(port=70000)]), "port"),
    (base(service=[svc(bogus=1)]), "unknown key 'bogus'"),
    (base(service=[svc(port=0, health={"kind": "tcp"})]), "health.port"),
    (base(service=[svc(health={"kind": "icmp"})]), "health.kind"),
    (base(service=[svc(health={"kind": "http", "path": "x"})]), "health.path"),
    (base(ring_size=65536), "prime"),
    (base(source4="2001:db8::1"), "not an IPv4"),
    (base(second_hop=-1), "second_hop"),
    (base(mode="turbo"), "mode"),
    (base(service=[svc(quic=True)]), "quic routing needs proto udp"),
    (base(service=[svc(proto="udp", reals=[{"address": "198.18.10.11", "quic_id": 7}])]),
     "does not route QUIC"),
    (base(service=[svc(proto="udp", quic=True, reals=[
        {"address": "198.18.10.11", "quic_id": 7},
        {"address": "198.18.10.12", "quic_id": 7}])]), "quic_id 7 of 198.18.10.12"),
    (base(service=[svc(proto="udp", quic=True, reals=[
        {"address": "198.18.10.11", "quic_id": 70000}])]), "quic_id"),
    (base(service=[svc(proto="udp", quic="yes")]), "quic is true or false"),
])
def test_bad_configurations_are_named(cfg: dict[str, Any], match: str) -> None:
    if cfg.get("source6", "") is None:
        del cfg["source6"]
    with pytest.raises(LbError, match=match):
        from_dict(cfg)


def test_a_good_configuration_round_trips_its_service_keys() -> None:
    cfg = from_dict(base(service=[svc(), svc(vip="2001:db8:100::1", port=0, proto="udp",
                                             reals=[{"address": "198.18.10.12",
                                                     "weight": 3}])]))
    assert [s.key for s in cfg.services] == ["198.18.100.1:80/tcp",
                                             "[2001:db8:100::1]:0/udp"]
    assert cfg.services[1].reals[0].weight == 3
    assert parse_service_key("[2001:db8:100::1]:0/udp") == (
        ipaddress.ip_address("2001:db8:100::1"), 0, "udp")
    assert parse_service_key("198.18.100.1:80") == (ipaddress.ip_address("198.18.100.1"),
                                                    80, "tcp")
    for bad in ("198.18.100.1", "198.18.100.1:http", "[2001:db8::1]80", 7):
        with pytest.raises(LbError):
            parse_service_key(bad)  # type: ignore[arg-type]


def test_ipvsadm_save_output_imports_and_nat_is_refused() -> None:
    text = """-A -t 198.18.100.1:80 -s mh
-a -t 198.18.100.1:80 -r 198.18.10.11:80 -g -w 2
-a -t 198.18.100.1:80 -r 198.18.10.12:80 -g -w 1
-A -u [2001:db8:100::5]:53 -s rr
-a -u [2001:db8:100::5]:53 -r [2001:db8:10::11]:53 -i -w 1
"""
    s1, s2 = parse_ipvsadm(text)
    assert (s1.key, s1.method, [(str(r.address), r.weight) for r in s1.reals]) == (
        "198.18.100.1:80/tcp", "dsr", [("198.18.10.11", 2), ("198.18.10.12", 1)])
    assert (s2.key, s2.method, str(s2.reals[0].address)) == (
        "[2001:db8:100::5]:53/udp", "ipip", "2001:db8:10::11")
    with pytest.raises(LbError, match="line 2.*masquerading"):
        parse_ipvsadm("-A -t 198.18.100.1:80 -s rr\n-a -t 198.18.100.1:80 -r"
                      " 198.18.10.11:80 -m -w 1\n")
    with pytest.raises(LbError, match="line 1"):
        parse_ipvsadm("-a -t 198.18.100.1:80 -r 198.18.10.11:80 -g\n")

"""The switch's TOML config, VLAN and MAC validation, and its spec (pure: no kernel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyxdp.apps.switch import PortVlans, SwitchError
from pyxdp.apps.switch.config import Static, load_config, parse_config
from pyxdp.apps.switch.control import format_mac, parse_mac
from pyxdp.apps.switch.program import mac_key, switch_spec
from pyxdp.elf import get_variable


def test_config_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('ports = ["a", "b"]\nmode = "generic"\nage = 30\nfdb_size = 64\n'
                 '[vlans.a]\npvid = 10\n[vlans.b]\npvid = 0\ntagged = [10, 20]\n'
                 '[[static]]\nmac = "02:00:00:00:00:01"\nport = "b"\nvlan = 20\n')
    c = load_config(str(p))
    assert c.ports == ("a", "b") and c.mode == "generic" and c.age == 30.0
    assert c.fdb_size == 64
    assert c.vlans == {"a": PortVlans(10), "b": PortVlans(0, (10, 20))}
    assert c.static == (Static("02:00:00:00:00:01", "b", 20),)
    assert parse_config({"ports": ["a"]}).vlans is None


@pytest.mark.parametrize("d,msg", [
    ({"ports": ["a"], "speed": 1}, "unknown key.*speed"),
    ({}, "'ports' must be a non-empty list"),
    ({"ports": ["a"], "mode": "turbo"}, "'mode' must be one of"),
    ({"ports": ["a"], "age": 0}, "'age' must be seconds"),
    ({"ports": ["a"], "age": True}, "'age' must be seconds"),
    ({"ports": ["a"], "fdb_size": "big"}, "'fdb_size' must be an integer"),
    ({"ports": ["a"], "vlans": {"b": {"pvid": 1}}}, "'b' is not in 'ports'"),
    ({"ports": ["a"], "vlans": {"a": {"pvid": 4095}}}, "out of range"),
    ({"ports": ["a"], "vlans": {"a": {"pvid": 5, "tagged": [5]}}}, "PVID"),
    ({"ports": ["a"], "vlans": {"a": {"pvid": 5, "tagged": [6, 6]}}}, "listed twice"),
    ({"ports": ["a"], "vlans": {"a": {"pvid": 1, "trunk": True}}}, "unknown key.*trunk"),
    ({"ports": ["a"], "vlans": {"a": {"tagged": 7}}}, "'tagged' must be a list"),
    ({"ports": ["a"], "static": [{"mac": "zz", "port": "a"}]}, "not a MAC address"),
    ({"ports": ["a"], "static": [{"mac": "02:00:00:00:00:01", "port": "q"}]},
     "port 'q' is not in 'ports'"),
    ({"ports": ["a"], "static": [{"port": "a"}]}, "'mac' and 'port' are required"),
])
def test_config_refusals(d: dict[str, Any], msg: str) -> None:
    with pytest.raises(SwitchError, match=msg):
        parse_config(d)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SwitchError, match="cannot read switch config"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("ports = [")
    with pytest.raises(SwitchError, match="not valid TOML"):
        load_config(str(bad))


def test_macs() -> None:
    assert parse_mac("02:5E:00:00:10:01") == bytes.fromhex("025e00001001")
    assert format_mac(parse_mac("02:5e:00:00:10:01")) == "02:5e:00:00:10:01"
    # the key is the MAC as the data plane loads it: a little-endian integer, so the
    # group bit (first byte's bit 0) is bit 0 of the key
    assert mac_key(parse_mac("01:00:5e:00:00:01")) & 1 == 1
    assert mac_key(parse_mac("02:00:5e:00:00:01")) & 1 == 0
    for bad in ("02:5e:00:00:10", "02-5e-00-00-10-01", "02:5e:00:00:10:1g", "", "0:1:2:3:4:5"):
        with pytest.raises(SwitchError, match="not a MAC address"):
            parse_mac(bad)


def test_spec_sizes_and_constants() -> None:
    spec = switch_spec(9, vlans=True, age_s=2.5, fdb_size=100)
    assert spec.maps["ports"].max_entries == 10 and spec.maps["tx_ports"].max_entries == 10
    assert spec.maps["fdb"].max_entries == 100
    def var(sp: Any, name: str) -> int:
        return int.from_bytes(get_variable(sp, name), "little")

    assert var(spec, "VLAN_MODE") == 1
    assert var(spec, "AGE_NS") == 2_500_000_000
    assert var(switch_spec(3), "VLAN_MODE") == 0
    with pytest.raises(ValueError, match="out of range"):
        switch_spec(0)
    with pytest.raises(ValueError, match="aging time"):
        switch_spec(3, age_s=0)
    with pytest.raises(ValueError, match="fdb size"):
        switch_spec(3, fdb_size=8)

"""The router's TOML config and its refusals (pure: no kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyxdp.apps.router import RouterError, check_ports
from pyxdp.apps.router.config import RouterConfig, load_config, parse_config
from pyxdp.apps.router.program import router_spec
from pyxdp.elf import get_variable


def test_config_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('ports = ["a", "b"]\nmode = "generic"\ndirect = true\n')
    assert load_config(str(p)) == RouterConfig(("a", "b"), "generic", True, False)


@pytest.mark.parametrize("d,msg", [
    ({"ports": ["a"], "speed": 1}, "unknown key.*speed"),
    ({}, "'ports' must be a non-empty list"),
    ({"ports": []}, "'ports' must be a non-empty list"),
    ({"ports": ["a", 3]}, "'ports' must be a non-empty list"),
    ({"ports": ["a"], "mode": "turbo"}, "'mode' must be one of"),
    ({"ports": ["a"], "direct": "yes"}, "'direct' must be true or false"),
])
def test_config_refusals(d: dict, msg: str) -> None:
    with pytest.raises(RouterError, match=msg):
        parse_config(d)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(RouterError, match="cannot read router config"):
        load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("ports = [")
    with pytest.raises(RouterError, match="not valid TOML"):
        load_config(str(bad))


def test_port_list_refusals() -> None:
    with pytest.raises(RouterError, match="one or more"):
        check_ports([])
    with pytest.raises(RouterError, match="list"):
        check_ports("eth0")          # type: ignore[arg-type]
    with pytest.raises(RouterError, match="strings"):
        check_ports([3])             # type: ignore[list-item]


def test_spec_sizing_and_direct_flag() -> None:
    spec = router_spec(7, direct=True)
    assert spec.maps["tx_ports"].max_entries == 8 and spec.maps["egress"].max_entries == 8
    assert int.from_bytes(get_variable(spec, "FIB_FLAGS"), "little") == 1
    assert int.from_bytes(get_variable(router_spec(7), "FIB_FLAGS"), "little") == 0
    with pytest.raises(ValueError, match="out of range"):
        router_spec(0)

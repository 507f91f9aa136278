"""The tunnel app's configuration: what the ports are, which tunnels exist, and the map
entries that follow from them.  One TOML file, or the same as Python objects::

    ports = ["eth0", "eth1"]          # required
    mode = "native"                   # optional: native | generic
    gue_port = 6080                   # UDP ports of the UDP-based kinds (0: off)
    vxlan_port = 4789
    geneve_port = 6081
    icmp_source4 = "198.18.0.1"       # source of "fragmentation needed" answers (optional)
    icmp_source6 = "2001:db8::1"      # source of "packet too big" answers (optional)

    [[tunnel]]
    name = "to-b"                     # unique; names the counters
    protocol = "gue"                  # see PROTOCOLS
    local = "198.18.1.1"              # our endpoint (SRv6: our SID, decapsulated here)
    remote = "198.18.2.1"             # the far endpoint (SRv6: the SID to encapsulate to)
    source = "2001:db8::1"            # optional, SRv6: outer source (default: local)
    vni = 7                           # VXLAN/Geneve VNI (required there), GRE key
    routes = ["198.18.64.0/24"]       # inner destinations encapsulated towards remote
    decap = true                      # decapsulate what remote sends (the allow-list)
    action = "pass"                   # after decap: pass | forward | redirect:IFACE
    ttl = 0                           # outer TTL / hop limit (0: the inner one's)
    df = "inherit"                    # IPv4 outer DF: inherit | set | clear
    mtu = 0                           # outer path MTU (0: the egress route's)
    gue_variant = 0                   # 0 (a GUE header) or 1 (IP straight after UDP)
    inner_dmac = "02:00:00:00:00:01"  # L2 kinds: inner Ethernet destination on encap

Every mistake is a :class:`TunnelError` naming the tunnel and the key, raised before
anything is loaded or changed; unknown keys are errors, never ignored.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from pyxdp.apps._config import read_toml
from pyxdp.apps.tunnel import dataplane as dp
from pyxdp.errors import PyxdpError

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class TunnelError(PyxdpError):
    """A bad tunnel configuration, or the app cannot do what was asked."""


# protocol name -> (kind, outer family or None for either, L2 payload, VNI: None/"key"/"vni")
PROTOCOLS: dict[str, tuple[int, int | None, bool, str | None]] = {
    "ipip": (dp.K_IPIP, None, False, None),         # 4in4 / 4in6, by the addresses
    "ip6ip": (dp.K_IP6IP, None, False, None),       # 6in4 / 6in6
    "gue": (dp.K_GUE, None, False, None),
    "gre": (dp.K_GRE, None, False, "key"),
    "vxlan": (dp.K_VXLAN, None, True, "vni"),
    "geneve": (dp.K_GENEVE, None, True, "vni"),
    "end.dx4": (dp.K_DX4, 6, False, None),
    "end.dx6": (dp.K_DX6, 6, False, None),
}
ALIASES = {"4in4": ("ipip", 4), "4in6": ("ipip", 6), "6in4": ("ip6ip", 4),
           "sit": ("ip6ip", 4), "6in6": ("ip6ip", 6), "ip6ip6": ("ip6ip", 6)}
DF = {"inherit": dp.DF_INHERIT, "set": dp.DF_SET, "clear": dp.DF_CLEAR}
MODES = ("native", "generic", "drv", "skb")
TUNNEL_KEYS = {"name", "protocol", "local", "remote", "source", "vni", "routes", "decap",
               "action", "ttl", "df", "mtu", "gue_variant", "inner_dmac"}
TOP_KEYS = {"ports", "mode", "gue_port", "vxlan_port", "geneve_port", "icmp_source4",
            "icmp_source6", "tunnel"}


@dataclass(frozen=True)
class Tunnel:
    """One tunnel (validated by :func:`check_tunnel`)."""

    name: str
    protocol: str
    local: str
    remote: str
    source: str | None = None
    vni: int | None = None
    routes: tuple[str, ...] = ()
    decap: bool = True
    action: str = "pass"
    ttl: int = 0
    df: str = "inherit"
    mtu: int = 0
    gue_variant: int = 0
    inner_dmac: str | None = None

    @property
    def kind(self) -> int:
        return PROTOCOLS[self.protocol][0]

    @property
    def l2(self) -> bool:
        return PROTOCOLS[self.protocol][2]

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.remote).version

    @property
    def redirect(self) -> str | None:
        return self.action.split(":", 1)[1] if self.action.startswith("redirect:") else None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "protocol": self.protocol,
                             "local": self.local, "remote": self.remote}
        for k in ("source", "vni", "inner_dmac"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        d.update(routes=list(self.routes), decap=self.decap, action=self.action,
                 ttl=self.ttl, df=self.df, mtu=self.mtu, gue_variant=self.gue_variant)
        return d


@dataclass(frozen=True)
class TunnelConfig:
    ports: tuple[str, ...] = ()
    mode: str | None = None
    gue_port: int = 6080
    vxlan_port: int = 4789
    geneve_port: int = 6081
    icmp_source4: str | None = None
    icmp_source6: str | None = None
    tunnels: tuple[Tunnel, ...] = field(default=())

    def settings(self) -> dict[str, Any]:
        return {"gue_port": self.gue_port, "vxlan_port": self.vxlan_port,
                "geneve_port": self.geneve_port, "icmp_source4": self.icmp_source4,
                "icmp_source6": self.icmp_source6}

    def consts(self) -> dict[str, int]:
        """The data plane's ``.rodata`` settings."""
        a = b = 0
        if self.icmp_source6:
            a, b = struct.unpack("<QQ", ipaddress.IPv6Address(self.icmp_source6).packed)
        return {"GUE_PORT": self.gue_port, "VXLAN_PORT": self.vxlan_port,
                "GENEVE_PORT": self.geneve_port,
                "ICMP_SRC4": int(ipaddress.IPv4Address(self.icmp_source4))
                if self.icmp_source4 else 0,
                "ICMP_SRC6_A": a, "ICMP_SRC6_B": b}


def _addr(v: Any, where: str, key: str) -> IP:
    if not isinstance(v, str):
        raise TunnelError(f"{where}: {key!r} must be an address string, got {v!r}")
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        raise TunnelError(f"{where}: {key!r}: {v!r} is not an IPv4 or IPv6 address"
                          ) from None


def _int(d: dict[str, Any], key: str, lo: int, hi: int, default: int, where: str) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise TunnelError(f"{where}: {key!r} must be an integer {lo}..{hi}, got {v!r}")
    return v


def check_tunnel(d: dict[str, Any], where: str = "tunnel") -> Tunnel:
    """A :class:`Tunnel` from a TOML table / dict, every field checked."""
    if not isinstance(d, dict):
        raise TunnelError(f"{where}: a tunnel is a table of keys, got {d!r}")
    name = d.get("name")
    if not isinstance(name, str) or not name or len(name) > 64 or not all(
            ch.isalnum() or ch in "-_." for ch in name):
        raise TunnelError(f"{where}: 'name' must be 1-64 letters, digits, '-', '_' or '.',"
                          f" got {name!r}")
    where = f"{where} {name!r}"
    unknown = sorted(set(d) - TUNNEL_KEYS)
    if unknown:
        raise TunnelError(f"{where}: unknown key(s) {', '.join(unknown)} (known:"
                          f" {', '.join(sorted(TUNNEL_KEYS))})")
    proto = d.get("protocol")
    fam_of_alias = None
    if isinstance(proto, str) and proto.lower() in ALIASES:
        proto, fam_of_alias = ALIASES[proto.lower()]
    if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
        raise TunnelError(f"{where}: unknown tunnel protocol {d.get('protocol')!r} (known:"
                          f" {', '.join([*PROTOCOLS, *ALIASES])})")
    proto = proto.lower()
    kind, need_fam, l2, vni_kind = PROTOCOLS[proto]
    for key in ("local", "remote"):
        if key not in d:
            raise TunnelError(f"{where}: {key!r} is required")
    local, remote = _addr(d["local"], where, "local"), _addr(d["remote"], where, "remote")
    if local.version != remote.version:
        raise TunnelError(f"{where}: local {local} and remote {remote} are of different"
                          " address families")
    for a, key in ((local, "local"), (remote, "remote")):
        if a.is_multicast or a.is_unspecified or a.is_loopback:
            raise TunnelError(f"{where}: {key} {a} cannot be a tunnel endpoint")
    if need_fam is not None and remote.version != need_fam:
        raise TunnelError(f"{where}: {proto} needs IPv{need_fam} endpoints (SIDs), got"
                          f" {remote}")
    if fam_of_alias is not None and remote.version != fam_of_alias:
        raise TunnelError(f"{where}: protocol {d['protocol']!r} means an IPv{fam_of_alias}"
                          f" outer header, but the endpoints are IPv{remote.version}")
    source = d.get("source")
    if source is not None:
        if kind not in (dp.K_DX4, dp.K_DX6):
            raise TunnelError(f"{where}: 'source' is for SRv6 tunnels (others use 'local')")
        if _addr(source, where, "source").version != 6:
            raise TunnelError(f"{where}: 'source' must be an IPv6 address")
    vni = d.get("vni")
    if vni_kind is None and vni is not None:
        raise TunnelError(f"{where}: {proto} has no VNI or key (remove 'vni')")
    if vni_kind == "vni":
        if vni is None:
            raise TunnelError(f"{where}: {proto} needs a 'vni' (0..16777215)")
        vni = _int(d, "vni", 0, (1 << 24) - 1, 0, where)
    elif vni_kind == "key" and vni is not None:
        vni = _int(d, "vni", 0, (1 << 32) - 1, 0, where)
    routes_in = d.get("routes", [])
    if not isinstance(routes_in, list) or not all(isinstance(r, str) for r in routes_in):
        raise TunnelError(f"{where}: 'routes' must be a list of prefixes")
    routes: list[str] = []
    for r in routes_in:
        try:
            net = ipaddress.ip_network(r, strict=True)
        except ValueError as e:
            raise TunnelError(f"{where}: route {r!r}: {e}") from None
        want = {dp.K_IPIP: 4, dp.K_DX4: 4, dp.K_IP6IP: 6, dp.K_DX6: 6}.get(kind)
        if want is not None and net.version != want:
            raise TunnelError(f"{where}: route {r}: {proto} carries IPv{want} only")
        routes.append(str(net))
    if len(set(routes)) != len(routes):
        raise TunnelError(f"{where}: a route is given twice")
    decap = d.get("decap", True)
    if not isinstance(decap, bool):
        raise TunnelError(f"{where}: 'decap' must be true or false, got {decap!r}")
    action = d.get("action", "pass")
    if not isinstance(action, str) or not (
            action in ("pass", "forward") or (action.startswith("redirect:")
                                              and len(action) > len("redirect:"))):
        raise TunnelError(f"{where}: 'action' must be pass, forward or redirect:IFACE, got"
                          f" {action!r}")
    if action == "forward" and l2:
        raise TunnelError(f"{where}: {proto} carries Ethernet frames: 'forward' routes IP"
                          " packets; use pass or redirect:IFACE")
    if action.startswith("redirect:") and not l2:
        raise TunnelError(f"{where}: redirect:IFACE sends Ethernet frames as they are;"
                          f" {proto} carries IP packets: use forward (routed by the FIB)")
    df = d.get("df", "inherit")
    if df not in DF:
        raise TunnelError(f"{where}: 'df' must be one of {', '.join(DF)}, got {df!r}")
    if df != "inherit" and remote.version == 6:
        raise TunnelError(f"{where}: 'df' is an IPv4 outer header bit (IPv6 never"
                          " fragments on the path)")
    gv = _int(d, "gue_variant", 0, 1, 0, where)
    if gv and kind != dp.K_GUE:
        raise TunnelError(f"{where}: 'gue_variant' is for gue tunnels")
    imac = d.get("inner_dmac")
    if imac is not None:
        if not l2:
            raise TunnelError(f"{where}: 'inner_dmac' is for L2 tunnels (vxlan, geneve)")
        try:
            b = bytes.fromhex(imac.replace(":", "")) if isinstance(imac, str) else b""
        except ValueError:
            b = b""
        if len(b) != 6:
            raise TunnelError(f"{where}: 'inner_dmac' must be a MAC address, got {imac!r}")
    return Tunnel(name, proto, str(local), str(remote), source, vni, tuple(routes), decap,
                  action, _int(d, "ttl", 0, 255, 0, where), df,
                  _int(d, "mtu", 0, 65535, 0, where), gv, imac)


def check_tunnels(tunnels: Any, *, max_tunnels: int = dp.MAX_TUNNELS) -> tuple[Tunnel, ...]:
    """Validate a whole set: names unique, no two tunnels decapsulating the same traffic
    (same kind, remote endpoint and VNI/key; SRv6: the same SID), no prefix routed into
    two tunnels."""
    out = [t if isinstance(t, Tunnel) else check_tunnel(t, f"tunnel #{i + 1}")
           for i, t in enumerate(tunnels)]
    if len(out) > max_tunnels:
        raise TunnelError(f"{len(out)} tunnels: at most {max_tunnels}")
    names: set[str] = set()
    ends: dict[tuple[Any, ...], str] = {}
    routes: dict[str, str] = {}
    for t in out:
        if t.name in names:
            raise TunnelError(f"two tunnels are named {t.name!r}")
        names.add(t.name)
        if t.decap:
            key = decap_identity(t)
            if key in ends:
                what = (f"SID {t.local}" if t.kind in (dp.K_DX4, dp.K_DX6) else
                        f"{t.protocol} from {t.remote}"
                        + (f" with VNI/key {t.vni}" if t.vni is not None else ""))
                raise TunnelError(f"overlapping endpoints: tunnels {ends[key]!r} and"
                                  f" {t.name!r} both decapsulate {what}")
            ends[key] = t.name
        for r in t.routes:
            if r in routes:
                raise TunnelError(f"route {r} is sent into two tunnels: {routes[r]!r} and"
                                  f" {t.name!r}")
            routes[r] = t.name
    return tuple(out)


def decap_identity(t: Tunnel) -> tuple[Any, ...]:
    if t.kind in (dp.K_DX4, dp.K_DX6):
        return ("sid", ipaddress.ip_address(t.local))
    kind = t.kind
    if kind == dp.K_GRE and t.vni is not None:
        kind = dp.K_GRE_KEY
    return (kind, ipaddress.ip_address(t.remote), t.vni or 0)


def words(a: IP) -> tuple[int, int]:
    """An address as the data plane's two words (IPv4: host order, IPv6: raw)."""
    if a.version == 4:
        return int(a), 0
    x, y = struct.unpack("<QQ", a.packed)
    return x, y


def parse_config(d: dict[str, Any], where: str = "config") -> TunnelConfig:
    unknown = sorted(set(d) - TOP_KEYS)
    if unknown:
        raise TunnelError(f"{where}: unknown key(s) {', '.join(unknown)} (known:"
                          f" {', '.join(sorted(TOP_KEYS))})")
    ports = d.get("ports", [])
    if not isinstance(ports, list) or not all(isinstance(p, str) for p in ports):
        raise TunnelError(f"{where}: 'ports' must be a list of interface names")
    mode = d.get("mode")
    if mode is not None and mode not in MODES:
        raise TunnelError(f"{where}: 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    cfg = TunnelConfig(tuple(ports), mode,
                       _int(d, "gue_port", 0, 65535, 6080, where),
                       _int(d, "vxlan_port", 0, 65535, 4789, where),
                       _int(d, "geneve_port", 0, 65535, 6081, where))
    used = [p for p in (cfg.gue_port, cfg.vxlan_port, cfg.geneve_port) if p]
    if len(set(used)) != len(used):
        raise TunnelError(f"{where}: gue_port, vxlan_port and geneve_port must differ")
    for key, ver in (("icmp_source4", 4), ("icmp_source6", 6)):
        if d.get(key) is not None:
            a = _addr(d[key], where, key)
            if a.version != ver:
                raise TunnelError(f"{where}: {key!r} must be an IPv{ver} address")
            extra: dict[str, Any] = {key: str(a)}
            cfg = replace(cfg, **extra)
    tl = d.get("tunnel", [])
    if not isinstance(tl, list):
        raise TunnelError(f"{where}: 'tunnel' must be an array of tables ([[tunnel]])")
    return replace(cfg, tunnels=check_tunnels(tl))


def load_config(path: str) -> TunnelConfig:
    d = read_toml(path, TunnelError, "tunnel")
    return parse_config(d, path)


__all__ = ["ALIASES", "DF", "PROTOCOLS", "Tunnel", "TunnelConfig", "TunnelError",
           "check_tunnel", "check_tunnels", "load_config", "parse_config", "words"]

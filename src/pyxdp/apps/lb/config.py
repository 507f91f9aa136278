"""The load balancer's configuration: services, their reals, and the balancer's settings,
validated whole before anything changes (pure Python: no kernel).  One TOML file::

    ports = ["eth0"]                  # the LB's interfaces
    mode = "native"                   # optional: native | generic
    ring_size = 16381                 # Maglev ring entries per service (a prime)
    source4 = "198.18.10.1"           # outer source of IPIP/GUE to IPv4 reals
    source6 = "2001:db8:10::1"        # ... to IPv6 reals
    gue_port = 6080
    mtu = 0                           # outer MTU (0: the route's)
    second_hop = 60                   # seconds after a ring change that the second hop
                                      # (see dataplane) may deliver to the previous ring
    allowed = ["198.18.0.0/15", "2001:db8::/32"]    # where VIPs may be

    [[service]]
    vip = "198.18.100.1"
    port = 80                         # 0: every port
    proto = "tcp"                     # tcp | udp
    method = "gue"                    # ipip | gue | dsr
    gue_variant = 1                   # 1: IP right after UDP; 0: a GUE header
    health = { kind = "http", port = 80, path = "/", interval = 1.0, rise = 2, fall = 2 }
    reals = [{ address = "198.18.10.11", weight = 2 }, { address = "198.18.10.12" }]
    quic = false                      # UDP: route QUIC by the connection id's host id
                                      # (each real then has a quic_id = 1..65535)

Every mistake is an :class:`LbError` naming the service, the real and the key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

from pyxdp.apps._config import read_toml
from pyxdp.apps.lb import maglev
from pyxdp.errors import PyxdpError

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Net = ipaddress.IPv4Network | ipaddress.IPv6Network
METHODS = ("ipip", "gue", "dsr")
PROTOS = ("tcp", "udp")
STATES = ("active", "draining", "down")   # down: failed its health check
MAX_WEIGHT = 65535
DEFAULT_ALLOWED = ("198.18.0.0/15", "2001:db8::/32")


class LbError(PyxdpError):
    """A bad load-balancer configuration or change, or one the balancer cannot make."""


@dataclass(frozen=True)
class Health:
    kind: str = "tcp"          # tcp (connect) | http (GET, 2xx/3xx)
    port: int = 0              # 0: the service's port
    path: str = "/"
    interval: float = 1.0
    timeout: float = 0.5
    rise: int = 2
    fall: int = 2


@dataclass(frozen=True)
class RealCfg:
    address: IP
    weight: int = 1
    state: str = "active"
    quic_id: int = 0           # QUIC services: the host id in the real's connection ids

    @property
    def ring_weight(self) -> int:
        """The weight the ring uses: 0 (no new flows) unless active."""
        return self.weight if self.state == "active" else 0


@dataclass(frozen=True)
class ServiceCfg:
    vip: IP
    port: int
    proto: str
    method: str = "ipip"
    gue_variant: int = 1
    health: Health | None = None
    reals: tuple[RealCfg, ...] = ()
    quic: bool = False         # UDP: route QUIC packets by their connection id's host id

    @property
    def key(self) -> str:
        """``198.18.100.1:80/tcp``, ``[2001:db8::1]:80/tcp``: the service's name."""
        host = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        return f"{host}:{self.port}/{self.proto}"

    def real(self, address: Any) -> RealCfg:
        a = _ip(address, f"service {self.key}: real")
        for r in self.reals:
            if r.address == a:
                return r
        raise LbError(f"service {self.key}: no real {a} (its reals:"
                      f" {', '.join(str(r.address) for r in self.reals) or 'none'})")


@dataclass
class LbConfig:
    ports: tuple[str, ...] = ()
    mode: str | None = None
    ring_size: int = maglev.DEFAULT_SIZE
    source4: IP | None = None
    source6: IP | None = None
    icmp_source4: IP | None = None
    icmp_source6: IP | None = None
    gue_port: int = 6080
    mtu: int = 0
    second_hop: float = 60.0
    max_conns: int = 1 << 18
    allowed: tuple[Net, ...] = tuple(ipaddress.ip_network(n) for n in DEFAULT_ALLOWED)
    services: list[ServiceCfg] = field(default_factory=list)

    def service(self, key: str) -> ServiceCfg:
        for s in self.services:
            if s.key == key:
                return s
        raise LbError(f"no service {key} (services:"
                      f" {', '.join(s.key for s in self.services) or 'none'})")


def _ip(v: Any, what: str) -> IP:
    if isinstance(v, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return v
    if not isinstance(v, str):
        raise LbError(f"{what}: an address as text, not {v!r}")
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        raise LbError(f"{what}: {v!r} is not an IPv4 or IPv6 address") from None


def _int(v: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise LbError(f"{what}: {v!r} is not a whole number in {lo}..{hi}")
    return v


def parse_service_key(text: str) -> tuple[IP, int, str]:
    """``VIP:PORT/PROTO`` (``[v6]:PORT/PROTO``; ``/PROTO`` defaults to tcp)."""
    if not isinstance(text, str):
        raise LbError(f"a service as VIP:PORT[/tcp|udp], not {text!r}")
    body, _, proto = text.partition("/")
    proto = proto or "tcp"
    if body.startswith("["):
        host, sep, port = body[1:].partition("]:")
    else:
        host, sep, port = body.rpartition(":")
    if not sep or not port.isdigit() or not port.isascii():
        raise LbError(f"service {text!r}: write VIP:PORT[/tcp|udp] ([VIP]:PORT for IPv6;"
                      " port 0 for every port)")
    return _ip(host, f"service {text!r}"), _int(int(port), f"service {text!r}: port",
                                                0, 65535), proto


def check_service(cfg: LbConfig, s: ServiceCfg, others: list[ServiceCfg]) -> ServiceCfg:
    """``s`` validated against the balancer's settings and the other services."""
    where = f"service {s.key}"
    if not any(s.vip in n for n in cfg.allowed):
        raise LbError(f"{where}: VIP {s.vip} is outside the allowed ranges"
                      f" ({', '.join(map(str, cfg.allowed))})")
    if s.proto not in PROTOS:
        raise LbError(f"{where}: proto {s.proto!r}: one of {', '.join(PROTOS)}")
    if s.method not in METHODS:
        raise LbError(f"{where}: method {s.method!r}: one of {', '.join(METHODS)}")
    _int(s.port, f"{where}: port", 0, 65535)
    _int(s.gue_variant, f"{where}: gue_variant", 0, 1)
    for o in others:
        if o.key == s.key:
            raise LbError(f"{where}: a service {s.key} exists already")
    if not isinstance(s.quic, bool):
        raise LbError(f"{where}: quic is true or false, not {s.quic!r}")
    if s.quic and s.proto != "udp":
        raise LbError(f"{where}: quic routing needs proto udp")
    seen: set[IP] = set()
    ids: dict[int, IP] = {}
    for r in s.reals:
        check_real(cfg, s, r)
        if r.address in seen:
            raise LbError(f"{where}: real {r.address} given twice")
        seen.add(r.address)
        if r.quic_id:
            if not s.quic:
                raise LbError(f"{where}: real {r.address} has a quic_id, but the service"
                              " does not route QUIC (quic = true)")
            if r.quic_id in ids:
                raise LbError(f"{where}: quic_id {r.quic_id} of {r.address} is"
                              f" {ids[r.quic_id]}'s already")
            ids[r.quic_id] = r.address
    if s.health is not None:
        h = s.health
        if h.kind not in ("tcp", "http"):
            raise LbError(f"{where}: health.kind {h.kind!r}: tcp or http")
        _int(h.port, f"{where}: health.port", 0, 65535)
        _int(h.rise, f"{where}: health.rise", 1, 100)
        _int(h.fall, f"{where}: health.fall", 1, 100)
        for k in ("interval", "timeout"):
            v = getattr(h, k)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.01 <= v <= 3600:
                raise LbError(f"{where}: health.{k} {v!r}: seconds in 0.01..3600")
        if h.port == 0 and s.port == 0:
            raise LbError(f"{where}: an all-ports service needs health.port")
        if not h.path.startswith("/"):
            raise LbError(f"{where}: health.path {h.path!r} must start with /")
    return s


def check_real(cfg: LbConfig, s: ServiceCfg, r: RealCfg) -> RealCfg:
    where = f"service {s.key}: real {r.address}"
    _int(r.weight, f"{where}: weight", 1, MAX_WEIGHT)
    _int(r.quic_id, f"{where}: quic_id", 0, 65535)
    if r.state not in STATES:
        raise LbError(f"{where}: state {r.state!r}: one of {', '.join(STATES)}")
    if s.method == "dsr" and r.address.version != s.vip.version:
        raise LbError(f"{where}: method dsr sends the frame unchanged, so the real must be"
                      f" IPv{s.vip.version} like the VIP")
    if s.method != "dsr":
        src = cfg.source4 if r.address.version == 4 else cfg.source6
        if src is None:
            raise LbError(f"{where}: method {s.method} to an IPv{r.address.version} real"
                          f" needs source{r.address.version} (the outer source address)")
    return r


def _health(d: Any, where: str) -> Health:
    if not isinstance(d, dict):
        raise LbError(f"{where}: health is a table")
    known = {"kind", "port", "path", "interval", "timeout", "rise", "fall"}
    for k in d:
        if k not in known:
            raise LbError(f"{where}: health: unknown key {k!r} ({', '.join(sorted(known))})")
    return Health(**d)


def service_from_dict(d: Any, where: str) -> ServiceCfg:
    if not isinstance(d, dict):
        raise LbError(f"{where}: a [[service]] table")
    known = {"vip", "port", "proto", "method", "gue_variant", "health", "reals", "quic"}
    for k in d:
        if k not in known:
            raise LbError(f"{where}: unknown key {k!r} ({', '.join(sorted(known))})")
    if "vip" not in d or "port" not in d:
        raise LbError(f"{where}: vip and port are required")
    reals = []
    for j, r in enumerate(d.get("reals", [])):
        if not isinstance(r, dict) or "address" not in r or set(r) - {
                "address", "weight", "state", "quic_id"}:
            raise LbError(f"{where}: reals[{j}]: {{ address = ..., weight = N"
                          " [, quic_id = N] }")
        reals.append(RealCfg(_ip(r["address"], f"{where}: reals[{j}]"),
                             r.get("weight", 1), r.get("state", "active"),
                             r.get("quic_id", 0)))
    return ServiceCfg(vip=_ip(d["vip"], f"{where}: vip"), port=d["port"],
                      proto=d.get("proto", "tcp"), method=d.get("method", "ipip"),
                      gue_variant=d.get("gue_variant", 1),
                      health=_health(d["health"], where) if "health" in d else None,
                      reals=tuple(reals), quic=d.get("quic", False))


def from_dict(d: dict[str, Any], where: str = "config") -> LbConfig:
    known = {"ports", "mode", "ring_size", "source4", "source6", "icmp_source4",
             "icmp_source6", "gue_port", "mtu", "second_hop", "max_conns", "allowed",
             "service"}
    for k in d:
        if k not in known:
            raise LbError(f"{where}: unknown key {k!r} ({', '.join(sorted(known))})")
    cfg = LbConfig()
    ports = d.get("ports", [])
    if isinstance(ports, str) or not all(isinstance(p, str) for p in ports):
        raise LbError(f"{where}: ports is a list of interface names")
    cfg.ports = tuple(ports)
    cfg.mode = d.get("mode")
    if cfg.mode not in (None, "native", "generic"):
        raise LbError(f"{where}: mode {cfg.mode!r}: native or generic")
    try:
        cfg.ring_size = maglev.check_size(d.get("ring_size", maglev.DEFAULT_SIZE))
    except maglev.MaglevError as e:
        raise LbError(f"{where}: {e}") from None
    for k in ("source4", "source6", "icmp_source4", "icmp_source6"):
        if k in d:
            a = _ip(d[k], f"{where}: {k}")
            if a.version != int(k[-1]):
                raise LbError(f"{where}: {k} {a} is not an IPv{k[-1]} address")
            setattr(cfg, k, a)
    cfg.gue_port = _int(d.get("gue_port", 6080), f"{where}: gue_port", 1, 65535)
    cfg.mtu = _int(d.get("mtu", 0), f"{where}: mtu", 0, 65535)
    cfg.max_conns = _int(d.get("max_conns", 1 << 18), f"{where}: max_conns", 16, 1 << 26)
    sh = d.get("second_hop", 60.0)
    if not isinstance(sh, int | float) or isinstance(sh, bool) or not 0 <= sh <= 86400:
        raise LbError(f"{where}: second_hop {sh!r}: seconds in 0..86400")
    cfg.second_hop = float(sh)
    if "allowed" in d:
        try:
            cfg.allowed = tuple(ipaddress.ip_network(n) for n in d["allowed"])
        except (TypeError, ValueError) as e:
            raise LbError(f"{where}: allowed: {e}") from None
    services: list[ServiceCfg] = []
    for i, sd in enumerate(d.get("service", [])):
        s = service_from_dict(sd, f"{where}: service[{i}]")
        services.append(check_service(cfg, s, services))
    cfg.services = services
    return cfg


def load_file(path: str) -> LbConfig:
    return from_dict(read_toml(path, LbError, "lb"), path)


def service_to_dict(s: ServiceCfg) -> dict[str, Any]:
    d: dict[str, Any] = {"vip": str(s.vip), "port": s.port, "proto": s.proto,
                         "method": s.method, "gue_variant": s.gue_variant,
                         "reals": [{"address": str(r.address), "weight": r.weight,
                                    "state": r.state, **({"quic_id": r.quic_id}
                                                         if r.quic_id else {})}
                                   for r in s.reals]}
    if s.quic:
        d["quic"] = True
    if s.health is not None:
        d["health"] = dict(vars(s.health))
    return d


def with_real(s: ServiceCfg, r: RealCfg) -> ServiceCfg:
    """``s`` with real ``r`` replaced in place, or added at the end."""
    if any(x.address == r.address for x in s.reals):
        return replace(s, reals=tuple(r if x.address == r.address else x for x in s.reals))
    return replace(s, reals=(*s.reals, r))


def parse_ipvsadm(text: str, method_of: dict[str, str] | None = None) -> list[ServiceCfg]:
    """Services from ``ipvsadm-save -n`` output (``-A -t VIP:PORT -s SCHED`` and ``-a -t
    VIP:PORT -r REAL:PORT -g|-i|-m -w W``): -g (direct routing) is dsr, -i (tunnel) ipip;
    -m (NAT) has no equivalent here and is refused with its line."""
    services: dict[str, ServiceCfg] = {}
    forward = {"-g": "dsr", "-i": "ipip"}
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        where = f"ipvsadm line {n}"
        if words[0] not in ("-A", "-a") or len(words) < 3 or words[1] not in ("-t", "-u"):
            raise LbError(f"{where}: expected -A/-a -t|-u VIP:PORT ...: {line.strip()!r}")
        proto = "tcp" if words[1] == "-t" else "udp"
        vip, port, _ = parse_service_key(f"{words[2]}/{proto}")
        key = ServiceCfg(vip, port, proto).key
        if words[0] == "-A":
            services[key] = ServiceCfg(vip, port, proto, (method_of or {}).get(key, "ipip"))
            continue
        if key not in services:
            raise LbError(f"{where}: real of {key} before its -A line")
        opts: dict[str, str] = {}
        rest = iter(words[3:])
        for w in rest:
            if w in ("-r", "-w", "-x", "-y"):      # options with a value
                opts[w] = next(rest, "")
            else:
                opts[w] = ""
        if "-r" not in opts:
            raise LbError(f"{where}: -a without -r REAL")
        host = opts["-r"]
        if host.startswith("[") and "]" in host:
            host = host[1:host.index("]")]
        elif host.count(":") == 1:
            host = host.rsplit(":", 1)[0]
        real = _ip(host, f"{where}: -r")
        meth = next((forward[w] for w in opts if w in forward), None)
        if "-m" in opts:
            raise LbError(f"{where}: -m (masquerading/NAT) is not a method of this balancer"
                          " (dsr or ipip/gue: replies go straight to the client)")
        if not opts.get("-w", "1").isdigit():
            raise LbError(f"{where}: -w {opts['-w']!r} is not a weight")
        weight = int(opts.get("-w", "1"))
        s = services[key]
        if meth is not None:
            s = replace(s, method=meth)
        services[key] = replace(s, reals=(*s.reals, RealCfg(real, weight)))
    return list(services.values())


__all__ = ["DEFAULT_ALLOWED", "METHODS", "PROTOS", "STATES", "Health", "LbConfig", "LbError",
           "RealCfg", "ServiceCfg", "check_real", "check_service", "from_dict", "load_file",
           "parse_ipvsadm", "parse_service_key", "service_from_dict", "service_to_dict",
           "with_real"]

"""The ILA translator's control plane: validate SIR prefixes and mappings, attach to a set
of ports, replace or change the mapping table, read counters, detach.

One translator per network namespace, in one role: ``router`` (SIR address -> ILA
address: the SIR prefix replaced by the identifier's locator) or ``host`` (ILA address ->
SIR address, for the identifiers mapped to this host's locators).  Its lifecycle is
:class:`pyxdp.apps._ports.PortApp`'s: maps pinned under ``<pin_root>/netns<inode>/``,
links pinned, the ports, role, SIR prefixes and locator ranges saved in
``<state_root>/netns<inode>/state.json``; the mappings themselves live only in the pinned
maps, so :meth:`Ila.open` in any later process sees them.

Addresses are given as text.  A SIR prefix is a /64 (``2001:db8:1::/64``); an identifier
is the lower 64 bits, written as an IPv6 address (``::1:0:0:5``) or as the whole SIR
address (``2001:db8:1::1:0:0:5``, whose upper half then names the SIR prefix); a locator
is the upper 64 bits (``2001:db8:a::`` or ``2001:db8:a::/64``).  Identifiers follow the
draft's format: a 3-bit type (0 interface identifier, 1 locally unique, 2 virtual
networking IPv4, 3 virtual networking IPv6 unicast, 4 virtual networking IPv6 multicast;
5-7 reserved and refused), then the C-bit, which must be clear in a configured identifier
(the translator sets it on the wire in checksum-neutral mode).
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pyxdp import xdp
from pyxdp.apps import _ports
from pyxdp.apps._ports import Port, PortApp
from pyxdp.apps._state import locked
from pyxdp.apps.ila import dataplane as dp
from pyxdp.apps.ila import program as pg
from pyxdp.apps.ila.program import CHECKSUM, MAPS, PROGRAM, ROLES, UNKNOWN, compiled
from pyxdp.backend import LoadedCollection
from pyxdp.compiler import CompiledObject
from pyxdp.errors import PyxdpError
from pyxdp.kernel import KernelBackend

PIN_ROOT = "/sys/fs/bpf/pyxdp-ila"
STATE_ROOT = "/run/pyxdp-ila"

#: counter name -> index in the data plane's ``stats`` map
REASONS: dict[str, int] = {
    "translated": dp.R_TRANSLATED,
    "unknown_default": dp.R_UNKNOWN_DEFAULT,
    "unknown_pass": dp.R_UNKNOWN_PASS,
    "unknown_drop": dp.R_UNKNOWN_DROP,
    "pass_not_ipv6": dp.R_NOT_IPV6,
    "pass_malformed": dp.R_MALFORMED,
    "pass_not_ila": dp.R_NOT_ILA,
    "pass_cbit_mismatch": dp.R_CBIT,
    "translated_no_l4_checksum": dp.R_NO_L4,
    "translated_udp_zero_checksum": dp.R_UDP_ZERO,
    "pass_host_mismatch": dp.R_HOST_MISMATCH,
}

IDENT_TYPES = {0: "interface identifier", 1: "locally unique identifier",
               2: "virtual networking identifier for IPv4",
               3: "virtual networking identifier for IPv6 unicast",
               4: "virtual networking identifier for IPv6 multicast"}


class IlaError(PyxdpError):
    """The translator cannot do what was asked (bad address, mapping, config, ports...)."""


Entry = tuple[bytes, bytes, bytes]     # (sir8, ident8, locator8)


def _half(text: str) -> str:
    return str(ipaddress.IPv6Address(text))


def fmt_prefix(b8: bytes) -> str:
    return f"{ipaddress.IPv6Address(b8 + bytes(8))}/64"


def fmt_locator(b8: bytes) -> str:
    return str(ipaddress.IPv6Address(b8 + bytes(8)))


def fmt_ident(b8: bytes) -> str:
    return str(ipaddress.IPv6Address(bytes(8) + b8))


def parse_prefix(text: Any, what: str = "SIR prefix") -> bytes:
    """A /64 -> its 8 bytes."""
    if not isinstance(text, str):
        raise IlaError(f"{what} must be a string like '2001:db8:1::/64', got {text!r}")
    try:
        net = ipaddress.IPv6Network(text if "/" in text else text + "/64")
    except ValueError as e:
        raise IlaError(f"{what} {text!r}: {e}") from None
    if net.prefixlen != 64:
        raise IlaError(f"{what} {text!r}: ILA prefixes are /64, not /{net.prefixlen}")
    return net.network_address.packed[:8]


def parse_locator(text: Any) -> bytes:
    """A locator (``2001:db8:a::`` or ``.../64``, lower 64 bits zero) -> its 8 bytes."""
    if not isinstance(text, str):
        raise IlaError(f"locator must be a string like '2001:db8:a::', got {text!r}")
    try:
        a = ipaddress.IPv6Address(text[:-3] if text.endswith("/64") else text)
    except ValueError as e:
        raise IlaError(f"locator {text!r}: {e}") from None
    if a.packed[8:] != bytes(8):
        raise IlaError(f"locator {text!r}: the lower 64 bits must be zero (a locator is"
                       " the upper 64 bits of the address)")
    return a.packed[:8]


@dataclass(frozen=True)
class Sir:
    """One SIR prefix: what to do with identifiers it has no mapping for, and how
    translated packets keep valid transport checksums."""

    prefix: str
    default_locator: str | None = None
    unknown: str = "pass"          # pass | drop | default
    checksum: str = "neutral"      # neutral | adjust | none

    @property
    def prefix8(self) -> bytes:
        return parse_prefix(self.prefix)

    @property
    def default8(self) -> bytes | None:
        return None if self.default_locator is None else parse_locator(self.default_locator)

    def as_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "default_locator": self.default_locator,
                "unknown": self.unknown, "checksum": self.checksum}

    @classmethod
    def from_any(cls, s: Any, where: str = "sir") -> Sir:
        if isinstance(s, Sir):
            s = s.as_dict()
        if not isinstance(s, dict):
            raise IlaError(f"{where}: a SIR is a table with 'prefix', got {s!r}")
        known = {"prefix", "default_locator", "unknown", "checksum"}
        bad = sorted(set(s) - known)
        if bad:
            raise IlaError(f"{where}: unknown key(s) {', '.join(bad)} (known:"
                           f" {', '.join(sorted(known))})")
        if "prefix" not in s:
            raise IlaError(f"{where}: 'prefix' is required")
        p8 = parse_prefix(s["prefix"], f"{where}: prefix")
        unknown = s.get("unknown", "pass")
        if unknown not in UNKNOWN:
            raise IlaError(f"{where}: 'unknown' must be one of {', '.join(UNKNOWN)}, got"
                           f" {unknown!r}")
        cs = s.get("checksum", "neutral")
        if cs not in CHECKSUM:
            raise IlaError(f"{where}: 'checksum' must be one of {', '.join(CHECKSUM)}, got"
                           f" {cs!r}")
        d = s.get("default_locator")
        if d is not None:
            d = fmt_locator(parse_locator(d))
        if unknown == "default" and d is None:
            raise IlaError(f"{where}: unknown = \"default\" needs a default_locator")
        return cls(fmt_prefix(p8), d, unknown, cs)


def check_sirs(sirs: Iterable[Any], ranges: list[ipaddress.IPv6Network]) -> list[Sir]:
    out: list[Sir] = []
    seen: set[bytes] = set()
    for i, s in enumerate(sirs):
        sir = Sir.from_any(s, f"sir #{i + 1}")
        if sir.prefix8 in seen:
            raise IlaError(f"SIR prefix {sir.prefix} given twice")
        seen.add(sir.prefix8)
        out.append(sir)
    for sir in out:
        if sir.default8 is not None:
            check_locator(sir.default8, ranges, seen, f"SIR {sir.prefix}: default locator")
    return out


def parse_ranges(ranges: Iterable[Any]) -> list[ipaddress.IPv6Network]:
    out = []
    for r in ranges:
        try:
            net = ipaddress.IPv6Network(r)
        except (ValueError, TypeError) as e:
            raise IlaError(f"locator range {r!r}: {e}") from None
        if net.prefixlen > 64:
            raise IlaError(f"locator range {r}: longer than /64 (a locator is 64 bits)")
        out.append(net)
    return out


def check_locator(loc8: bytes, ranges: list[ipaddress.IPv6Network], sirs: set[bytes],
                  what: str) -> None:
    if loc8 in sirs:
        raise IlaError(f"{what} {fmt_locator(loc8)} is a SIR prefix (it would be"
                       " translated again)")
    if ranges:
        a = ipaddress.IPv6Address(loc8 + bytes(8))
        if not any(a in r for r in ranges):
            raise IlaError(f"{what} {fmt_locator(loc8)} is outside the locator ranges"
                           f" ({', '.join(str(r) for r in ranges)})")


class Table:
    """The validation context of one translator: its SIR prefixes and locator ranges."""

    def __init__(self, sirs: list[Sir], ranges: list[ipaddress.IPv6Network]) -> None:
        self.sirs = {s.prefix8: s for s in sirs}
        self.ranges = ranges

    def identifier(self, text: Any, sir: Any = None) -> tuple[bytes, bytes]:
        """(sir8, ident8) of an identifier, checked against the draft's format."""
        if not isinstance(text, str):
            raise IlaError(f"identifier must be a string like '::1:0:0:5', got {text!r}")
        try:
            a = ipaddress.IPv6Address(text).packed
        except ValueError as e:
            raise IlaError(f"identifier {text!r}: {e}") from None
        hi, ident = a[:8], a[8:]
        if sir is not None:
            s8 = parse_prefix(sir)
            if hi != bytes(8) and hi != s8:
                raise IlaError(f"identifier {text!r} is in {fmt_prefix(hi)}, not in the SIR"
                               f" prefix {sir}")
        elif hi != bytes(8):
            s8 = hi
        elif len(self.sirs) == 1:
            s8 = next(iter(self.sirs))
        else:
            raise IlaError(f"identifier {text!r}: name its SIR prefix (give the whole SIR"
                           f" address, or sir = ...): there are {len(self.sirs)} SIR"
                           " prefixes")
        info = self.sirs.get(s8)
        if info is None:
            have = ", ".join(s.prefix for s in self.sirs.values()) or "none"
            raise IlaError(f"identifier {text!r}: unknown SIR prefix {fmt_prefix(s8)}"
                           f" (configured: {have})")
        typ = ident[0] >> 5
        if typ not in IDENT_TYPES:
            raise IlaError(f"identifier {text!r}: type {typ} is reserved (the top 3 bits"
                           f" of the identifier: 0..4 are {', '.join(IDENT_TYPES.values())})")
        if ident[0] & 0x10:
            raise IlaError(f"identifier {text!r}: the C-bit (bit 3 of the identifier) is"
                           " set; a SIR address has it clear (the translator sets it on"
                           " the wire in checksum-neutral mode)")
        if info.checksum == "neutral" and ident[6:] in (b"\0\0", b"\xff\xff"):
            raise IlaError(f"identifier {text!r}: in checksum-neutral mode the low 16 bits"
                           " carry the adjustment and 0x0000/0xffff are one's-complement"
                           " zero, not restored exactly by the host side; use another"
                           " identifier or checksum = \"adjust\"")
        return s8, ident

    def locator(self, text: Any) -> bytes:
        loc8 = parse_locator(text)
        check_locator(loc8, self.ranges, set(self.sirs), "locator")
        return loc8

    def entry(self, m: Any, where: str) -> Entry:
        """One mapping (dict with identifier/locator[/sir], or a tuple)."""
        try:
            if isinstance(m, dict):
                bad = sorted(set(m) - {"identifier", "locator", "sir"})
                if bad:
                    raise IlaError(f"unknown key(s) {', '.join(bad)} (known: identifier,"
                                   " locator, sir)")
                if "identifier" not in m or "locator" not in m:
                    raise IlaError("a mapping needs 'identifier' and 'locator'")
                ident, loc, sir = m["identifier"], m["locator"], m.get("sir")
            elif isinstance(m, tuple | list) and len(m) in (2, 3):
                ident, loc = m[0], m[1]
                sir = m[2] if len(m) == 3 else None
            else:
                raise IlaError(f"a mapping is (identifier, locator[, sir]), got {m!r}")
            s8, i8 = self.identifier(ident, sir)
            return s8, i8, self.locator(loc)
        except IlaError as e:
            raise IlaError(f"{where}: {e}") from None

    def entries(self, mappings: Iterable[Any]) -> list[Entry]:
        out: list[Entry] = []
        seen: dict[bytes, int] = {}
        for n, m in enumerate(mappings, 1):
            e = self.entry(m, f"mapping #{n}")
            k = e[0] + e[1]
            if k in seen:
                raise IlaError(f"mapping #{n}: identifier {fmt_ident(e[1])} of"
                               f" {fmt_prefix(e[0])} is mapped already (mapping"
                               f" #{seen[k]})")
            seen[k] = n
            out.append(e)
        return out

    def host_locators(self, entries: list[Entry]) -> dict[bytes, tuple[bytes, str]]:
        """Host role: every locator -> the one SIR prefix it translates back to."""
        out: dict[bytes, tuple[bytes, str]] = {}
        for s8, _i8, loc in entries:
            got = out.get(loc)
            if got is not None and got[0] != s8:
                raise IlaError(f"host role: locator {fmt_locator(loc)} is used for two SIR"
                               f" prefixes ({fmt_prefix(got[0])}, {fmt_prefix(s8)}); a"
                               " host translates each locator back to one")
            out[loc] = (s8, self.sirs[s8].checksum)
        return out


def parse_mapping_file(path: str) -> list[tuple[str, ...]]:
    """The compact mapping file: one ``IDENTIFIER LOCATOR [SIR-PREFIX]`` per line, ``#``
    comments and blank lines ignored.  Raises :class:`IlaError` naming file and line."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise IlaError(f"cannot read mapping file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise IlaError(f"{path}: not a text file ({e})") from None
    out: list[tuple[str, ...]] = []
    for n, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) not in (2, 3):
            raise IlaError(f"{path}:{n}: expected 'IDENTIFIER LOCATOR [SIR-PREFIX]', got"
                           f" {line.strip()!r}")
        out.append(tuple(words))
    return out


_PENDING: contextvars.ContextVar[tuple[list[Entry], Any] | None] = contextvars.ContextVar(
    "_ila_pending", default=None)


class Ila(PortApp):
    """The ILA translator of one network namespace.  Build with :meth:`attach` or
    :meth:`open`."""

    APP = "ila"
    PIN_ROOT = PIN_ROOT
    STATE_ROOT = STATE_ROOT
    ERROR = IlaError
    PROGRAM = PROGRAM
    MAPS = MAPS
    STAGE = None
    WHY_ETHERNET = "the translator parses Ethernet frames, which needs an Ethernet device"

    # -- configuration -----------------------------------------------------------------------
    @property
    def role(self) -> str:
        return str(self.options.get("role", "router"))

    @property
    def sirs(self) -> list[Sir]:
        return [Sir.from_any(s) for s in self.options.get("sirs", [])]

    @property
    def locator_ranges(self) -> list[str]:
        return list(self.options.get("locator_ranges", []))

    def table(self) -> Table:
        return Table(self.sirs, parse_ranges(self.locator_ranges))

    @classmethod
    def attach(cls, ifaces: list[str], mode: str | None = None, *, role: str = "router",
               sirs: Iterable[Any] = (), mappings: Iterable[Any] = (),
               locator_ranges: Iterable[str] = (),
               max_mappings: int = pg.DEFAULT_MAX_MAPPINGS, allow_mtu_mismatch: bool = True,
               pin_root: str = PIN_ROOT, state_root: str = STATE_ROOT) -> Ila:
        """Validate everything, then load the translator in ``role`` (``router`` or
        ``host``) with its SIR prefixes and mappings and attach it to every interface of
        ``ifaces`` (``mode``: None lets the kernel choose, else ``native``/``generic``).
        Any error leaves nothing behind."""
        if role not in ROLES:
            raise IlaError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not isinstance(max_mappings, int) or not 0 < max_mappings <= pg.MAX_MAPPINGS_LIMIT:
            raise IlaError(f"max_mappings must be 1..{pg.MAX_MAPPINGS_LIMIT}, got"
                           f" {max_mappings!r}")
        ranges = parse_ranges(locator_ranges)
        sir_list = check_sirs(sirs, ranges)
        if not sir_list:
            raise IlaError("give the translator at least one SIR prefix")
        table = Table(sir_list, ranges)
        entries = table.entries(mappings)
        if len(entries) > max_mappings:
            raise IlaError(f"{len(entries)} mappings do not fit max_mappings {max_mappings}")
        locs = table.host_locators(entries) if role == "host" else None
        options = {"role": role, "sirs": [s.as_dict() for s in sir_list],
                   "locator_ranges": [str(r) for r in ranges], "max_mappings": max_mappings}
        token = _PENDING.set((entries, locs))
        try:
            return cls._attach(ifaces, mode, options, allow_mtu_mismatch=allow_mtu_mismatch,
                               pin_root=pin_root, state_root=state_root)
        finally:
            _PENDING.reset(token)

    @classmethod
    def _check(cls, ifaces: Any, allow_mtu_mismatch: bool, chained: frozenset[str],
               mode: str | None) -> list[Port]:
        # the translator never redirects: a port needs no XDP_REDIRECT target support,
        # only (for native mode) a driver with native XDP
        ports = _ports.check_ports(ifaces, cls.ERROR, cls.APP, cls.WHY_ETHERNET,
                                   allow_mtu_mismatch=allow_mtu_mismatch, chained=chained,
                                   mode="generic")
        if xdp.AttachMode.parse(mode) == xdp.AttachMode.NATIVE:
            for p in ports:
                try:
                    feats = xdp.features(p.ifindex)
                except xdp.XdpError:
                    continue
                if feats is not None and not feats & xdp.XdpFeature.BASIC:
                    raise IlaError(f"port {p.name!r} has no native XDP support in its"
                                   " driver: use generic mode (--mode generic)")
        return ports

    @classmethod
    def _compiled(cls) -> CompiledObject:
        return compiled()

    @classmethod
    def _load(cls, ports: list[Port], pin_dir: str, options: dict[str, Any]
              ) -> LoadedCollection:
        pending = _PENDING.get()
        entries, locs = pending if pending is not None else ([], None)
        return pg.load_ila(KernelBackend(), options["role"],
                           [Sir.from_any(s) for s in options["sirs"]], entries, locs,
                           max_mappings=options["max_mappings"], pin_dir=pin_dir)

    # -- the mapping table -------------------------------------------------------------------
    def _tables(self) -> dict[str, Any]:
        return {n: self._map(n) for n in MAPS}

    def set_mappings(self, mappings: Iterable[Any]) -> int:
        """Replace the whole mapping table atomically (packets see the old table or the new
        one); everything is validated first, nothing changes on an error.  Returns the
        number of mappings."""
        table = self.table()
        entries = table.entries(mappings)
        cap = int(self.options.get("max_mappings", pg.DEFAULT_MAX_MAPPINGS))
        if len(entries) > cap:
            raise IlaError(f"{len(entries)} mappings do not fit max_mappings {cap}")
        locs = table.host_locators(entries) if self.role == "host" else None
        maps = self._tables()
        with locked(self.state_dir, create=False):
            pg.install(maps, entries, locs)
        return len(entries)

    def load_file(self, path: str) -> int:
        """:meth:`set_mappings` from a compact mapping file."""
        rows = parse_mapping_file(path)
        try:
            return self.set_mappings(rows)
        except IlaError as e:
            raise IlaError(f"{path}: {e}") from None

    def _one(self, identifier: str, locator: str | None, sir: str | None, how: str) -> None:
        table = self.table()
        s8, i8 = table.identifier(identifier, sir)
        loc8 = table.locator(locator) if locator is not None else None
        maps = self._tables()
        with locked(self.state_dir, create=False):
            old = pg.lookup_one(maps, s8, i8)
            name = f"identifier {fmt_ident(i8)} of {fmt_prefix(s8)}"
            if how == "add" and old is not None:
                raise IlaError(f"{name} is mapped already (to {fmt_locator(old)}): use move")
            if how in ("move", "remove") and old is None:
                raise IlaError(f"{name} has no mapping")
            if self.role == "host" and loc8 is not None:
                cur = maps["locators"].get(pg.raw64(loc8))
                if cur is not None and cur.sir != pg.raw64(s8):
                    raise IlaError(f"host role: locator {fmt_locator(loc8)} translates back"
                                   " to another SIR prefix")
                pg.write_locators(maps, {loc8: (s8, table.sirs[s8].checksum)},
                                  remove_others=False)
            pg.update_one(maps, s8, i8, loc8)

    def add(self, identifier: str, locator: str, sir: str | None = None) -> None:
        """Map a new identifier (error if it is mapped already)."""
        self._one(identifier, locator, sir, "add")

    def move(self, identifier: str, locator: str, sir: str | None = None) -> None:
        """Point a mapped identifier at another locator: one map update."""
        self._one(identifier, locator, sir, "move")

    def remove(self, identifier: str, sir: str | None = None) -> None:
        self._one(identifier, None, sir, "remove")

    def mappings(self) -> list[dict[str, str]]:
        """The active table: ``sir``, ``identifier``, ``locator`` (text), sorted."""
        rows = pg.dump(self._tables())
        rows.sort()
        return [{"sir": fmt_prefix(s), "identifier": fmt_ident(i), "locator": fmt_locator(lc)}
                for s, i, lc in rows]

    # -- observation -------------------------------------------------------------------------
    def stats(self) -> dict[str, tuple[int, int]]:
        """(packets, bytes) per reason, summed over CPUs."""
        m = self._map("stats")
        out = {}
        for name, idx in REASONS.items():
            per_cpu = m[idx]
            out[name] = (sum(c.packets for c in per_cpu), sum(c.bytes for c in per_cpu))
        return out

    def __repr__(self) -> str:
        return f"<Ila role={self.role} ports={[p.name for p in self.ports]}>"


__all__ = ["IDENT_TYPES", "PIN_ROOT", "REASONS", "STATE_ROOT", "Ila", "IlaError", "Sir",
           "Table", "check_sirs", "parse_mapping_file", "parse_ranges"]

"""Differential test: every xdp-tools BPF object, loaded by bpftool (libbpf) and by pyxdp,
must behave the same in the kernel.

For each object of the ``libxdp1`` package that ``bpftool prog loadall`` accepts, both
instances run the same frames through BPF_PROG_TEST_RUN and must agree on the verdict, the
output bytes and, afterwards, every map's contents.  The xdp-filter objects get identical
deny/allow entries in their filter maps first, so their match (drop) paths run too.

Isolation: libbpf pins ``pinning = BY_NAME`` maps (``filter_ipv4``, ``xdp_stats_map``, ...)
under the *global* /sys/fs/bpf, where a real xdp-filter, a parallel test run or a previous
crash would share them.  So bpftool runs in a private mount namespace in which a fresh
directory of ours is bind-mounted over /sys/fs/bpf: every pin it makes, BY_NAME ones
included, lands in that directory, which the finalizer removes.  pyxdp loads without a pin
path, so its BY_NAME maps are private maps.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import secrets
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyxdp.elf import load_object
from pyxdp.errors import BpfError
from pyxdp.kernel import Map, Program, load_collection
from pyxdp.packets import ethernet, icmp, ipv4, ipv6, tcp, udp
from pyxdp.spec import ObjectSpec

pytestmark = pytest.mark.kernel

ENOTSUPP = 524
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10


def _libxdp_objects() -> list[str]:
    """The BPF objects the libxdp1 package installs (empty if it or dpkg is absent)."""
    if shutil.which("dpkg") is None:
        return []
    r = subprocess.run(["dpkg", "-L", "libxdp1"], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    return sorted(p for p in r.stdout.split() if p.endswith(".o") and os.path.isfile(p))


OBJECTS = _libxdp_objects()

# xdp-filter's map protocol (xdp-tools xdp-filter/common_kern_user.h): the value is a u64
# of match flags, the program adds 1 << COUNTER_SHIFT per hit
MAP_FLAG_SRC, MAP_FLAG_DST, MAP_FLAG_TCP, MAP_FLAG_UDP = 1, 2, 4, 8
DENIED_V4 = "198.51.100.7"
DENIED_V6 = "2001:db8::bad"
DENIED_MAC = "02:00:00:00:00:66"
DENIED_TCP_PORT = 22
DENIED_UDP_PORT = 5353


def _arp() -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, bytes.fromhex("020000000001"),
                       ipaddress.IPv4Address("192.0.2.1").packed, bytes(6),
                       ipaddress.IPv4Address("192.0.2.2").packed)
    return ethernet(body, ethertype=0x0806)


def frames() -> dict[str, bytes]:
    """~a dozen frames: the common protocols, the filter hits, and broken frames."""
    v4_udp = ethernet(ipv4(udp(b"dns?", dport=53)))
    return {
        "ipv4_tcp_syn": ethernet(ipv4(tcp(b"", dport=80))),
        "ipv4_udp": v4_udp,
        "ipv4_icmp": ethernet(ipv4(icmp(b"ping" * 8, ident=7, seq=1))),
        "ipv6_tcp": ethernet(ipv6(tcp(b"hello", sport=40000, dport=443, flags="PA"))),
        "ipv6_udp": ethernet(ipv6(udp(b"x" * 40, dport=123))),
        "ipv6_icmp": ethernet(ipv6(icmp(b"ping6", v6=True, type=128))),
        "arp": _arp(),
        "vlan_ipv4_udp": ethernet(ipv4(udp(b"v", dport=53)), vlan=42, ethertype=0x0800),
        "ipv4_tcp_denied_port": ethernet(ipv4(tcp(b"", dport=DENIED_TCP_PORT))),
        "ipv4_udp_denied_port": ethernet(ipv4(udp(b"mdns", dport=DENIED_UDP_PORT))),
        "ipv4_denied_src": ethernet(ipv4(udp(b"bad", dport=9), src=DENIED_V4)),
        "ipv6_denied_src": ethernet(ipv6(tcp(b"", dport=80), src=DENIED_V6)),
        "denied_mac": ethernet(ipv4(icmp(b"mac")), src=DENIED_MAC),
        "truncated_ipv4": v4_udp[:20],          # Ethernet + 6 bytes of an IPv4 header
        "runt_10_bytes": v4_udp[:10],           # shorter than Ethernet: the kernel says no
    }


def _port_key(port: int) -> bytes:
    """filter_ports is indexed by the port exactly as it sits in the header (network order)
    widened to a u32, i.e. ``htons(port)`` in host memory."""
    return struct.pack("=I", struct.unpack("=H", struct.pack("!H", port))[0])


def _populate_filters(maps: dict[str, Map]) -> None:
    """The same xdp-filter rules on either side: one entry per filter map present."""
    if "filter_ports" in maps:
        m = maps["filter_ports"]
        m.update(_port_key(DENIED_TCP_PORT), MAP_FLAG_DST | MAP_FLAG_TCP)
        m.update(_port_key(DENIED_UDP_PORT), MAP_FLAG_DST | MAP_FLAG_UDP)
    if "filter_ipv4" in maps:
        maps["filter_ipv4"].update(ipaddress.IPv4Address(DENIED_V4).packed, MAP_FLAG_SRC)
    if "filter_ipv6" in maps:
        maps["filter_ipv6"].update(ipaddress.IPv6Address(DENIED_V6).packed, MAP_FLAG_SRC)
    if "filter_ethernet" in maps:
        maps["filter_ethernet"].update(bytes.fromhex(DENIED_MAC.replace(":", "")),
                                       MAP_FLAG_SRC)


def _maps_of(prog: Program) -> dict[str, Map]:
    """The maps a loaded program uses, by kernel name (raw bytes keys, for the filters)."""
    out: dict[str, Map] = {}
    try:
        for map_id in prog.info().map_ids:
            m = Map.from_id(map_id, key_type=bytes)
            out[m.info().name] = m
    except BaseException:
        for m in out.values():
            m.close()
        raise
    return out


def _contents(m: Map) -> Any:
    """Every (key, value) in raw bytes, sorted; maps user space cannot read (XSKMAP, perf
    event arrays) are compared by their description only."""
    info = m.info()
    desc = (int(info.type), info.key_size, info.value_size, info.max_entries, info.flags)
    try:
        keys, values = m.dump_raw()
    except BpfError as e:
        if e.errno in (_errno.EOPNOTSUPP, ENOTSUPP, _errno.EINVAL):
            return desc, "unreadable"
        raise
    ks = info.key_size
    vw = len(values) // (len(keys) // ks) if keys else 0
    pairs = sorted((keys[i:i + ks], values[i // ks * vw:(i // ks + 1) * vw])
                   for i in range(0, len(keys), ks))
    return desc, pairs


def _run(prog: Program, frame: bytes) -> tuple[Any, ...]:
    try:
        r = prog.test_run(frame)
    except BpfError as e:
        return ("error", e.errno)
    return (r.retval, r.data_out)


@pytest.fixture
def one_cpu() -> Iterator[None]:
    """Run on one CPU, so both instances' per-CPU counters land in the same slot."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# what libbpf would pin globally for these objects if the isolation failed
_GLOBAL_PIN_NAMES = frozenset({"filter_ports", "filter_ipv4", "filter_ipv6", "filter_ethernet",
                               "xdp_stats_map", "xdpdump_perf_map", "xsks_map", "progs"})


@pytest.fixture
def private_bpffs() -> Iterator[str]:
    """A fresh /sys/fs/bpf/pyxdp-diff-<hex>, removed afterwards; and no pin of ours (or of
    bpftool's on our behalf) may appear in /sys/fs/bpf itself.  Other entries are not
    checked: parallel test runs and real users share that directory."""
    before = set(os.listdir("/sys/fs/bpf"))
    path = f"/sys/fs/bpf/pyxdp-diff-{secrets.token_hex(4)}"
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        new = set(os.listdir("/sys/fs/bpf")) - before
        leaked = {n for n in new if n in _GLOBAL_PIN_NAMES or n == os.path.basename(path)}
        assert not leaked, f"pins left behind in /sys/fs/bpf: {sorted(leaked)}"


def _bpftool_loadall(obj_path: str, spec: ObjectSpec, root: str) -> subprocess.CompletedProcess:
    """``bpftool prog loadall`` with ``root`` standing in for /sys/fs/bpf (see module doc).

    ``pinmaps`` must be /sys/fs/bpf itself: libbpf refuses to pin a BY_NAME map anywhere
    but its BY_NAME path.  ``type xdp`` only when every program is XDP; otherwise the
    section names decide, as they do for libbpf."""
    for tool in ("bpftool", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    typ = "type xdp" if all(p.type == 6 for p in spec.programs.values()) else ""
    script = (f"mount --bind {root} /sys/fs/bpf && exec bpftool prog loadall {obj_path}"
              f" /sys/fs/bpf/progs {typ} pinmaps /sys/fs/bpf")
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           script], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not OBJECTS, reason="libxdp1 (xdp-tools BPF objects) not installed")
@pytest.mark.parametrize("obj_path", OBJECTS or ["none"], ids=os.path.basename)
def test_same_behaviour_as_bpftool(obj_path: str, private_bpffs: str, one_cpu: None) -> None:
    spec = load_object(obj_path)
    r = _bpftool_loadall(obj_path, spec, private_bpffs)
    if r.returncode != 0:
        why = [ln for ln in r.stderr.splitlines() if ln.startswith(("Error", "libbpf"))]
        pytest.skip(f"bpftool cannot load {Path(obj_path).name} either: "
                    + " | ".join(why[-2:]))
    pinned = sorted(os.listdir(f"{private_bpffs}/progs"))
    assert pinned == sorted(spec.programs)

    theirs = {n: Program.from_pin(f"{private_bpffs}/progs/{n}") for n in pinned}
    opened: list[Any] = list(theirs.values())
    try:
        with load_collection(spec) as coll:
            ours = coll.programs
            assert set(ours) == set(theirs)
            maps_theirs: dict[str, Map] = {}
            maps_ours: dict[str, Map] = {}
            for name in sorted(ours):
                mt, mo = _maps_of(theirs[name]), _maps_of(ours[name])
                opened += [*mt.values(), *mo.values()]
                # same maps used.  Known difference: libbpf also binds the object's .rodata
                # to every program (BPF_PROG_BIND_MAP, so bpftool can show bpf_metadata_*
                # variables) even if the program never reads it; pyxdp does not
                assert set(mo) <= set(mt), name
                assert all(n.endswith(".rodata") for n in set(mt) - set(mo)), name
                maps_theirs.update(mt)
                maps_ours.update(mo)
                ti, oi = theirs[name].info(), ours[name].info()
                assert (ti.type, ti.gpl_compatible) == (oi.type, oi.gpl_compatible)
            for side in (maps_theirs, maps_ours):
                _populate_filters(side)
            assert {n: _contents(m) for n, m in maps_theirs.items()} == {
                n: _contents(m) for n, m in maps_ours.items()}, "maps differ before the runs"

            packets = frames()
            verdicts: dict[str, list[Any]] = {}
            for name in sorted(ours):
                for fname, frame in packets.items():
                    got_theirs = _run(theirs[name], frame)
                    got_ours = _run(ours[name], frame)
                    assert got_ours == got_theirs, f"{name} on {fname}"
                    verdicts.setdefault(name, []).append(
                        got_ours if got_ours[0] == "error" else got_ours[0])
            # the runt is refused by the kernel before either program runs
            assert ("error", _errno.EINVAL) in verdicts[sorted(ours)[0]]

            after_theirs = {n: _contents(m) for n, m in maps_theirs.items()}
            after_ours = {n: _contents(m) for n, m in maps_ours.items()}
            assert after_ours == after_theirs

            if any(n.startswith("filter_") for n in maps_ours):
                # the rules matched something: both verdicts (pass and drop) occur
                assert {1, 2} <= set(verdicts[sorted(ours)[0]]), verdicts
            if "xdp_stats_map" in maps_ours:
                # and the runs were counted (on our single CPU), identically on both sides
                assert after_ours["xdp_stats_map"][1] != _contents_zero(maps_ours)
    finally:
        for obj in opened:
            obj.close()


def _contents_zero(maps: dict[str, Map]) -> list[tuple[bytes, bytes]]:
    m = maps["xdp_stats_map"]
    width = len(m.dump_raw()[1]) // max(m.info().max_entries, 1)
    return [(i.to_bytes(4, "little"), bytes(width)) for i in range(m.info().max_entries)]


GLOBAL_DATA_OBJECTS = [p for p in OBJECTS
                       if Path(p).name in ("xdp-dispatcher.o", "xsk_def_xdp_prog.o")]


@pytest.mark.skipif(not GLOBAL_DATA_OBJECTS, reason="libxdp1 objects not installed")
@pytest.mark.parametrize("obj_path", GLOBAL_DATA_OBJECTS or ["none"], ids=os.path.basename)
def test_global_data_map_flags_like_libbpf(obj_path: str, private_bpffs: str) -> None:
    """Global data maps get libbpf's flags: BPF_F_MMAPABLE, and on ``.rodata`` also
    BPF_F_RDONLY_PROG (the full comparison in ``_contents`` checks them too)."""
    spec = load_object(obj_path)
    r = _bpftool_loadall(obj_path, spec, private_bpffs)
    assert r.returncode == 0, r.stderr
    name = sorted(spec.programs)[0]
    with Program.from_pin(f"{private_bpffs}/progs/{name}") as theirs, \
            load_collection(spec) as coll:
        mt, mo = _maps_of(theirs), _maps_of(coll.programs[name])
        try:
            got = {n: m.info().flags for n, m in mo.items() if "." in n}
            want = {n: m.info().flags for n, m in mt.items() if "." in n}
        finally:
            for m in [*mt.values(), *mo.values()]:
                m.close()
    assert got and got == want
    assert all(f & BPF_F_MMAPABLE for f in got.values())
    assert all(f & BPF_F_RDONLY_PROG for n, f in got.items() if ".rodata" in n)

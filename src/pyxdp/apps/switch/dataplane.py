# mypy: ignore-errors
"""The switch's packet path, in pyxdp's Python dialect (compiled, never imported to run).

Two programs share the maps:

``xdp_switch`` runs on every port's receive path.  Per frame: learn the source MAC (per
VLAN) into ``fdb``, an LRU hash of ``mac | vid << 48`` -> (port, last seen); then

* the port's own MAC, and link-local group addresses (01:80:c2:00:00:0x, STP/LLDP/LACP,
  which a bridge never forwards), go to the stack (``XDP_PASS``);
* a destination known on another port (seen within ``AGE_NS``) is redirected through
  ``tx_ports`` (a devmap keyed by ifindex); one known on the ingress port is dropped (the
  frame has already reached its segment);
* broadcast, multicast and unknown unicast are flooded to every other port with
  ``bpf_redirect_map(tx_ports, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS)``.

``xdp_switch_egress`` is the devmap program of every port (it runs once per copy, after the
redirect, with ``ctx.egress_ifindex``): it counts the port's transmitted frames and, with
VLANs on, enforces membership and pops the tag on untagged ports.

VLANs (``VLAN_MODE`` 1): inside the switch a frame always carries its 802.1Q tag.  An
untagged frame gets its port's PVID pushed on ingress (a port without one drops it); a
tagged frame must arrive on a port that carries its VLAN tagged.  ``vlans`` maps
``ifindex << 12 | vid`` to 1 (tagged member) or 2 (untagged member).  With VLANs off
frames are switched as they are, tagged or not, in one learning domain.

No spanning tree: the switch must not be wired into a loop (a flooded frame would
circulate).
"""

from pyxdp.compiler.lang import (  # type: ignore[attr-defined]
    ETH_P_8021Q,
    VLAN,
    XDP_DROP,
    XDP_PASS,
    ArrayMap,
    Const,
    DevMap,
    Ethernet,
    HashMap,
    LruHashMap,
    PerCpuArray,
    Struct,
    ktime_get_coarse_ns,
    u32,
    u64,
    xdp,
)

# reasons (indices into `stats`); pyxdp.apps.switch.control.REASONS names them
R_FORWARDED = 0       # unicast to the port its destination was learned on
R_FLOOD_MULTI = 1     # broadcast / multicast, flooded
R_FLOOD_UNKNOWN = 2   # unicast to an unknown (or aged-out) destination, flooded
R_LEARNED = 3         # a new fdb entry
R_MOVED = 4           # a known MAC seen on another port: the entry follows it
R_SAME_PORT = 5       # dropped: the destination is behind the ingress port
R_VLAN_IN = 6         # dropped on ingress: VLAN not allowed (or untagged, no PVID)
R_MALFORMED = 7       # dropped: shorter than an Ethernet (802.1Q) header
R_BAD_SRC = 8         # dropped: multicast source MAC
R_LOCAL = 9           # passed: for the port's own MAC
R_LINK_LOCAL = 10     # passed: 01:80:c2:00:00:0x
R_NOT_PORT = 11       # passed: received on an interface that is not a port
R_VLAN_OUT = 12       # dropped on egress: the port is not in the frame's VLAN
N_REASONS = 16

MAX_IFINDEX = 4096    # resized by the control plane to the largest port ifindex + 1
FDB_SIZE = 4096       # resized by the control plane
VLAN_ENTRIES = 4096

VLAN_MODE = Const(u32, 0)                  # 1: 802.1Q membership and tagging per port
AGE_NS = Const(u64, 300_000_000_000)       # fdb entries older than this are unknown
REFRESH_NS = 1_000_000_000                 # rewrite "last seen" at most once a second

MAC_MASK = 0xFFFFFFFFFFFF
LINK_LOCAL_MASK = 0xF0FFFFFFFFFF           # 01:80:c2:00:00:0x, as a little-endian u64
LINK_LOCAL = 0x0000C28001
F_STATIC = 1                               # fdb entry flag: never ages, never moves
TAGGED = 1
UNTAGGED = 2
BROADCAST_FLAGS = (1 << 3) | (1 << 4)      # BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS


class Counter(Struct):
    packets: u64
    bytes: u64


class PortCounter(Struct):
    rx_packets: u64
    rx_bytes: u64
    tx_packets: u64
    tx_bytes: u64


class PortConf(Struct):
    mac: u64          # the port's own MAC (little-endian, as loaded from the frame)
    pvid: u32         # the VLAN of untagged frames (0: untagged frames are dropped)
    member: u32       # 1: the interface is a switch port


class FdbEntry(Struct):
    ifindex: u32
    flags: u32
    seen: u64         # ktime_get_coarse_ns() of the last frame from this MAC


stats = PerCpuArray[u32, Counter](max_entries=N_REASONS)
port_stats = PerCpuArray[u32, PortCounter](max_entries=MAX_IFINDEX)
ports = ArrayMap[u32, PortConf](max_entries=MAX_IFINDEX)
fdb = LruHashMap[u64, FdbEntry](max_entries=FDB_SIZE)
vlans = HashMap[u32, u32](max_entries=VLAN_ENTRIES)
# value: ifindex | egress program fd << 32 (struct bpf_devmap_val)
tx_ports = DevMap[u32, u64](max_entries=MAX_IFINDEX)


def count(reason, length):
    c = stats.lookup(reason)
    if c:
        c.packets += 1
        c.bytes += length


def learn(src, vid, ifi, now):
    key = src | (vid << 48)
    e = fdb.lookup(key)
    if not e:
        fdb.update(key, FdbEntry(ifindex=ifi, flags=0, seen=now))
        count(R_LEARNED, 0)
    elif e.flags & F_STATIC:
        return
    elif e.ifindex != ifi:
        e.ifindex = ifi
        e.seen = now
        count(R_MOVED, 0)
    elif now - e.seen > REFRESH_NS:
        e.seen = now


@xdp
def xdp_switch(ctx):
    length = ctx.packet_len()
    ifi = ctx.ingress_ifindex
    pc = ports.lookup(ifi)
    if not pc or pc.member == 0:
        count(R_NOT_PORT, length)
        return XDP_PASS
    pvid = pc.pvid
    own = pc.mac
    c = ctx.cursor()
    eth = c.parse(Ethernet)
    if not eth:
        count(R_MALFORMED, length)
        return XDP_DROP
    dst = ctx.load(u64, 0).value & MAC_MASK
    src = ctx.load(u64, 6).value & MAC_MASK
    if src & 1:
        count(R_BAD_SRC, length)
        return XDP_DROP
    if dst & 1:
        if dst & LINK_LOCAL_MASK == LINK_LOCAL:
            count(R_LINK_LOCAL, length)
            return XDP_PASS
    elif dst == own:
        count(R_LOCAL, length)
        return XDP_PASS
    vid = 0
    if VLAN_MODE != 0:
        if eth.proto == ETH_P_8021Q:
            tag = c.parse(VLAN)
            if not tag:
                count(R_MALFORMED, length)
                return XDP_DROP
            vid = tag.tci & 0xFFF
            if vid == 0:
                # priority-tagged: the port's PVID, the priority bits kept
                if pvid == 0:
                    count(R_VLAN_IN, length)
                    return XDP_DROP
                vid = pvid
                tag.tci = (tag.tci & 0xF000) | vid
            else:
                m = vlans.lookup((ifi << 12) | vid)
                if not m or m.value != TAGGED:
                    count(R_VLAN_IN, length)
                    return XDP_DROP
        else:
            if pvid == 0:
                count(R_VLAN_IN, length)
                return XDP_DROP
            vid = pvid
            dmac, smac = eth.dst, eth.src
            if ctx.adjust_head(-4) != 0:
                count(R_MALFORMED, length)
                return XDP_DROP
            c2 = ctx.cursor()
            neth = c2.header(Ethernet)
            ntag = c2.header(VLAN)
            if not neth or not ntag:
                count(R_MALFORMED, length)
                return XDP_DROP
            neth.dst, neth.src, neth.proto = dmac, smac, ETH_P_8021Q
            ntag.tci = vid          # the inner type is where the old one was
    now = ktime_get_coarse_ns()
    learn(src, vid, ifi, now)
    pcnt = port_stats.lookup(ifi)
    if pcnt:
        pcnt.rx_packets += 1
        pcnt.rx_bytes += length
    if dst & 1:
        count(R_FLOOD_MULTI, length)
        return tx_ports.redirect(0, BROADCAST_FLAGS)
    d = fdb.lookup(dst | (vid << 48))
    if not d or (d.flags & F_STATIC == 0 and now - d.seen > AGE_NS):
        count(R_FLOOD_UNKNOWN, length)
        return tx_ports.redirect(0, BROADCAST_FLAGS)
    if d.ifindex == ifi:
        count(R_SAME_PORT, length)
        return XDP_DROP
    count(R_FORWARDED, length)
    return tx_ports.redirect(d.ifindex, XDP_DROP)


@xdp(section="xdp/devmap")
def xdp_switch_egress(ctx):
    length = ctx.packet_len()
    out = ctx.egress_ifindex
    if VLAN_MODE != 0:
        c = ctx.cursor()
        eth = c.parse(Ethernet)
        if not eth or eth.proto != ETH_P_8021Q:
            count(R_VLAN_OUT, length)
            return XDP_DROP
        tag = c.parse(VLAN)
        if not tag:
            count(R_VLAN_OUT, length)
            return XDP_DROP
        m = vlans.lookup((out << 12) | (tag.tci & 0xFFF))
        if not m or m.value == 0:
            count(R_VLAN_OUT, length)
            return XDP_DROP
        if m.value == UNTAGGED:
            inner = tag.proto
            dmac, smac = eth.dst, eth.src
            if ctx.adjust_head(4) != 0:
                count(R_VLAN_OUT, length)
                return XDP_DROP
            c2 = ctx.cursor()
            neth = c2.header(Ethernet)
            if not neth:
                count(R_VLAN_OUT, length)
                return XDP_DROP
            neth.dst, neth.src, neth.proto = dmac, smac, inner
            length -= 4
    p = port_stats.lookup(out)
    if p:
        p.tx_packets += 1
        p.tx_bytes += length
    return XDP_PASS

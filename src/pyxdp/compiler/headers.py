# mypy: disable-error-code="valid-type"
# (field annotations are dialect types, IntType objects such as be16 or u8[6] that Struct
# evaluates at class creation; mypy accepts only classes there, and reads these fields as Any)
"""Protocol headers as packed structs with network-order (``be*``) fields.

Reading ``ip.saddr`` gives a host-order ``u32``; sub-byte fields (``ip.ihl``,
``tcp.doff``) are bit fields of a stored byte.  ``_hdrlen_`` tells the cursor how far a
header with a length field really reaches (IPv4 options, TCP options, IPv6 extension
headers): ``(field, multiplier, addend)``, the length being ``field * mul + add`` and
never less than the fixed part.
"""

from __future__ import annotations

from pyxdp.compiler.structs import Struct
from pyxdp.compiler.types import be16, be32, u8


class Ethernet(Struct):
    _packed_ = True
    dst: u8[6]
    src: u8[6]
    proto: be16


class VLAN(Struct):
    """802.1Q/802.1AD tag, parsed after an Ethernet header whose proto is 0x8100/0x88A8."""

    _packed_ = True
    tci: be16
    proto: be16


class ARP(Struct):
    _packed_ = True
    htype: be16
    ptype: be16
    hlen: u8
    plen: u8
    op: be16
    sha: u8[6]
    spa: be32
    tha: u8[6]
    tpa: be32


class IPv4(Struct):
    _packed_ = True
    _bits_ = {"ihl": ("ver_ihl", 0, 4), "version": ("ver_ihl", 4, 4)}
    _hdrlen_ = ("ihl", 4, 0)
    ver_ihl: u8
    tos: u8
    tot_len: be16
    id: be16
    frag_off: be16
    ttl: u8
    protocol: u8
    check: be16
    saddr: be32
    daddr: be32


class IPv6(Struct):
    _packed_ = True
    _bits_ = {"version": ("ver_tc", 4, 4)}
    ver_tc: u8
    flow: u8[3]
    payload_len: be16
    nexthdr: u8
    hop_limit: u8
    saddr: u8[16]
    daddr: u8[16]


class IPv6Ext(Struct):
    """A generic IPv6 extension header (hop-by-hop, routing, destination options)."""

    _packed_ = True
    _hdrlen_ = ("hdrlen", 8, 8)
    nexthdr: u8
    hdrlen: u8
    opts: u8[6]


class TCP(Struct):
    _packed_ = True
    _bits_ = {"doff": ("doff_res", 4, 4), "fin": ("flags", 0, 1), "syn": ("flags", 1, 1),
              "rst": ("flags", 2, 1), "psh": ("flags", 3, 1), "ack_flag": ("flags", 4, 1),
              "urg": ("flags", 5, 1)}
    _hdrlen_ = ("doff", 4, 0)
    source: be16
    dest: be16
    seq: be32
    ack_seq: be32
    doff_res: u8
    flags: u8
    window: be16
    check: be16
    urg_ptr: be16


class UDP(Struct):
    _packed_ = True
    source: be16
    dest: be16
    len: be16
    check: be16


class ICMP(Struct):
    _packed_ = True
    type: u8
    code: u8
    checksum: be16
    id: be16
    sequence: be16


class ICMPv6(Struct):
    _packed_ = True
    type: u8
    code: u8
    checksum: be16
    data: be32


class GRE(Struct):
    _packed_ = True
    flags: be16
    proto: be16


class GUE(Struct):
    """GUE variant 0 header (RFC draft): hlen counts 32-bit words of options."""

    _packed_ = True
    _bits_ = {"hlen": ("ver_c_hlen", 0, 5), "version": ("ver_c_hlen", 6, 2)}
    _hdrlen_ = ("hlen", 4, 4)
    ver_c_hlen: u8
    proto_ctype: u8
    flags: be16


__all__ = ["ARP", "GRE", "GUE", "ICMP", "TCP", "UDP", "VLAN", "Ethernet", "ICMPv6", "IPv4",
           "IPv6", "IPv6Ext"]

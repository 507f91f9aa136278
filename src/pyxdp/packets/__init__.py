"""Test packets: tiny frame builders (:mod:`.build`) and classic pcap files (:mod:`.pcap`)."""

from pyxdp.packets.build import checksum, ethernet, icmp, ipv4, ipv6, tcp, udp
from pyxdp.packets.pcap import PcapError, PcapPacket, read_pcap, write_pcap

__all__ = ["PcapError", "PcapPacket", "checksum", "ethernet", "icmp", "ipv4", "ipv6",
           "read_pcap", "tcp", "udp", "write_pcap"]

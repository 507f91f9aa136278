"""Classic BPF (tcpdump's filter language, compiled by libpcap) translated to eBPF.

* :mod:`pyxdp.cbpf.libpcap`: ``pcap_compile`` and ``pcap_offline_filter`` of the system
  libpcap through ctypes (no headers, no build step): an expression becomes classic BPF,
  and libpcap itself is the reference a translation is tested against.
* :func:`translate`: classic BPF to an eBPF XDP program (pure) that returns what the
  classic filter returns (0: no match; else the snap length), with packet bounds checks
  the verifier accepts.

Classic BPF has no backward jumps, so the translation is a DAG the verifier walks once.
"""

from pyxdp.cbpf.translate import CbpfError, CbpfInsn, translate, translate_spec

__all__ = ["CbpfError", "CbpfInsn", "translate", "translate_spec"]

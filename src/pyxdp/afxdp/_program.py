"""The redirect program: an XSKMAP keyed by ``rx_queue_index``, with a fallback verdict.

Written with :class:`pyxdp.asm.Builder` (pure)::

    r2 = ctx->rx_queue_index
    return bpf_redirect_map(&xsks, r2, FALLBACK)

The low bits of ``bpf_redirect_map``'s flags are the verdict when the map has no socket at
that key (kernel 5.6+), so a queue without a socket passes (or drops) its frames instead of
losing them to ``XDP_ABORTED``.
"""

from __future__ import annotations

from pyxdp.abi import MapType, ProgType
from pyxdp.asm import R1, Builder
from pyxdp.isa import XdpAction
from pyxdp.maps import MapSpec
from pyxdp.spec import ProgramSpec

XSKS = "xsks"
RX_QUEUE_INDEX = 16  # offsetof(struct xdp_md, rx_queue_index)


def xskmap_spec(max_entries: int = 64, name: str = XSKS) -> MapSpec:
    """XSKMAP ``u32 queue -> u32 socket fd`` (lookups from BPF give the socket)."""
    return MapSpec(name, MapType.XSKMAP, 4, 4, max_entries)


def redirect_spec(fallback: XdpAction = XdpAction.PASS, *, name: str = "xsk_redirect",
                  map_name: str = XSKS) -> ProgramSpec:
    """XDP: redirect to the socket of this frame's rx queue, else ``fallback``."""
    if fallback not in (XdpAction.PASS, XdpAction.DROP, XdpAction.ABORTED):
        raise ValueError(f"fallback verdict must be PASS, DROP or ABORTED, not {fallback!r}"
                         " (redirect_map takes only those as its default)")
    b = Builder()
    b.mov64(6, R1)
    b.ldx("w", 2, 1, RX_QUEUE_INDEX)
    b.ld_map_fd(1, map_name).mov64(3, int(fallback)).call("redirect_map")
    b.exit()
    return ProgramSpec(name, ProgType.XDP, b.build(), map_refs=b.spec_map_refs())

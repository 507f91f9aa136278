"""The tunnel app against the kernel's own tunnel devices (the ones this kernel has): a
VXLAN device and SRv6 (seg6 encapsulation, a seg6local End.DX4 route) in the far
endpoint's namespace instead of a second XDP endpoint.  A real TCP transfer crosses both
ways: XDP decapsulates what the kernel's device sends and the kernel's device
decapsulates what XDP sends."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pyxdp.apps.router.bed import set_tx_checksum, tcp_receive, tcp_send, tcp_server
from pyxdp.apps.tunnel import TunnelApp, TunnelConfig
from pyxdp.apps.tunnel import bed as tbed
from pyxdp.testbed import Testbed

pytestmark = pytest.mark.netns
FAR = "198.18.40.1"          # an address of the far endpoint, reached only through the tunnel


def transfer(tb: Testbed, src: str, dst: str, dst_ip: str, size: int, port: int) -> None:
    import hashlib
    import os
    ls = tb.call(dst, tcp_server, dst_ip, port)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(tcp_receive(ls)))
    t.start()
    data = os.urandom(size)
    try:
        tb.call(src, tcp_send, dst_ip, port, data)
    finally:
        t.join(30)
    assert got == [(size, hashlib.sha256(data).hexdigest())]


@pytest.fixture
def bed() -> Iterator[Testbed]:
    with Testbed() as tb:
        tbed.build(tb)
        try:
            yield tb
        finally:
            tb.call("ta", TunnelApp.force_detach)


def stats(tb: Testbed) -> dict[str, int]:
    def get() -> dict[str, int]:
        with TunnelApp.open() as t:
            return {k: v[0] for k, v in t.stats().items()}
    return tb.call("ta", get)


def test_vxlan_with_the_kernel_vxlan_device(bed: Testbed) -> None:
    vx_mac = "02:aa:00:00:40:01"
    for argv in (["ip", "link", "add", "vx0", "address", vx_mac, "type", "vxlan", "id", "77",
                  "local", "198.18.20.2", "remote", "198.18.20.1", "dstport", "4789",
                  "dev", "tb1", "nolearning"],
                 ["ip", "addr", "add", f"{FAR}/24", "dev", "vx0"],
                 ["ip", "link", "set", "vx0", "up"],
                 ["ip", "route", "add", "198.18.10.0/24", "dev", "vx0"],
                 ["ip", "neigh", "add", "198.18.10.2", "lladdr", tbed.MAC["a0"], "dev", "vx0",
                  "nud", "permanent"]):
        bed.exec("tb", argv)
    for dev in ("vx0", "tb1"):    # XDP sends frames as they are: no checksums left to do
        bed.call("tb", set_tx_checksum, dev, False)
    tun = {"name": "kvx", "protocol": "vxlan", "local": "198.18.20.1",
           "remote": "198.18.20.2", "vni": 77, "routes": ["198.18.40.0/24"],
           "inner_dmac": vx_mac, "action": "redirect:ta0"}
    cfg = TunnelConfig(("ta0", "ta1"), **tbed.settings("ta"),
                       tunnels=(tun,))  # type: ignore[arg-type]
    bed.call("ta", lambda: TunnelApp.attach(cfg).close())
    transfer(bed, "a", "tb", FAR, 300_000, 7100)      # XDP encap -> kernel decap
    transfer(bed, "tb", "a", "198.18.10.2", 300_000, 7101)   # kernel encap -> XDP decap
    s = stats(bed)
    assert s["encapsulated"] > 100 and s["decapsulated"] > 100
    # (no "too big" answers here: the far end advertises the MSS of its 1450-byte vx0)


def test_srv6_end_dx4_with_kernel_seg6(bed: Testbed) -> None:
    bed.sysctl("tb", "net.ipv6.conf.all.seg6_enabled", "1")
    for argv in (["ip", "addr", "add", f"{FAR}/32", "dev", "lo"],
                 # the kernel encapsulates towards the XDP endpoint's SID (SRH, one segment)
                 ["ip", "route", "add", "198.18.10.0/24", "encap", "seg6", "mode", "encap",
                  "segs", "2001:db8:5a::d", "dev", "tb1"],
                 # and decapsulates what XDP sends to its own SID
                 ["ip", "-6", "route", "add", "2001:db8:5b::d/128", "encap", "seg6local",
                  "action", "End.DX4", "nh4", FAR, "dev", "tb1"]):
        bed.exec("tb", argv)
    bed.call("tb", set_tx_checksum, "tb1", False)
    tun = {"name": "kdx4", "protocol": "end.dx4", "local": "2001:db8:5a::d",
           "remote": "2001:db8:5b::d", "source": "2001:db8:20::1",
           "routes": ["198.18.40.0/24"], "action": "forward"}
    cfg = TunnelConfig(("ta0", "ta1"), **tbed.settings("ta"),
                       tunnels=(tun,))  # type: ignore[arg-type]
    bed.call("ta", lambda: TunnelApp.attach(cfg).close())
    transfer(bed, "a", "tb", FAR, 200_000, 7102)
    transfer(bed, "tb", "a", "198.18.10.2", 200_000, 7103)
    s = stats(bed)
    assert s["encapsulated"] > 50 and s["decapsulated"] > 50

"""``pyxdp tunnel``: tunnel termination and encapsulation at XDP (IPIP, 6in4, 6in6, GUE,
GRE, VXLAN, Geneve, SRv6 End.DX4/End.DX6), for kernels that lack the tunnel devices or
where the kernel's own path is too slow.  See :mod:`pyxdp.apps.tunnel.control`."""

from pyxdp.apps.tunnel.config import (
    PROTOCOLS,
    Tunnel,
    TunnelConfig,
    TunnelError,
    check_tunnel,
    check_tunnels,
    load_config,
    parse_config,
)
from pyxdp.apps.tunnel.control import PIN_ROOT, REASONS, STATE_ROOT, TunnelApp

__all__ = ["PIN_ROOT", "PROTOCOLS", "REASONS", "STATE_ROOT", "Tunnel", "TunnelApp",
           "TunnelConfig", "TunnelError", "check_tunnel", "check_tunnels", "load_config",
           "parse_config"]

"""``pyxdp router``: IPv4/IPv6 forwarding at XDP against the kernel's own FIB.

* :mod:`.dataplane` — the packet path, in pyxdp's Python dialect;
* :mod:`.program` — compiling it and loading it sized for a set of ports;
* :mod:`.control` — :class:`Router`: attach to ports, counters, detach;
* :mod:`.metrics` — the Prometheus exporter.
"""

from pyxdp.apps.router.control import (
    PIN_ROOT,
    REASONS,
    STATE_ROOT,
    Port,
    Router,
    RouterError,
    check_ports,
)

__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "Port", "Router", "RouterError",
           "check_ports"]

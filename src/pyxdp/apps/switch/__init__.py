"""``pyxdp switch``: an L2 learning switch at XDP between a set of ports.

* :mod:`.dataplane` — the packet path (ingress and devmap egress programs), in the dialect;
* :mod:`.program` — compiling it and loading it sized for a set of ports;
* :mod:`.control` — :class:`Switch`: attach to ports, counters, the learning table, detach;
* :mod:`.config` — the TOML configuration;
* :mod:`.metrics` — the Prometheus exporter.
"""

from pyxdp.apps.switch.control import (
    PIN_ROOT,
    REASONS,
    STATE_ROOT,
    FdbRow,
    Port,
    PortVlans,
    Switch,
    SwitchError,
)

__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "FdbRow", "Port", "PortVlans", "Switch",
           "SwitchError"]

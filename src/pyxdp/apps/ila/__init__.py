"""``pyxdp ila``: Identifier-Locator Addressing (draft-herbert-intarea-ila) at XDP.

* :mod:`.dataplane` — the packet path, in pyxdp's Python dialect (router and host roles,
  checksum-neutral / adjust-transport / no-action modes);
* :mod:`.program` — compiling it, loading it through a backend, writing its tables;
* :mod:`.control` — :class:`Ila`: attach to ports, replace or change mappings, counters;
* :mod:`.config` — the TOML configuration file;
* :mod:`.metrics` — the Prometheus exporter.
"""

from pyxdp.apps.ila.control import (
    PIN_ROOT,
    REASONS,
    STATE_ROOT,
    Ila,
    IlaError,
    Sir,
    Table,
)

__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "Ila", "IlaError", "Sir", "Table"]

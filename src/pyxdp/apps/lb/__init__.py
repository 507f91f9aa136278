"""``pyxdp lb``: an L4 load balancer at XDP (issue 15), a replacement for IPVS.

* :mod:`.dataplane` — the packet path, in pyxdp's Python dialect: virtual services by
  (VIP, port, protocol) or all ports, a connection table, weighted Maglev rings with two
  banks, a second hop, IPIP / GUE / DSR forwarding, "too big" answers;
* :mod:`.maglev` — the weighted Maglev ring;
* :mod:`.program` — compiling, loading through a backend, writing tables;
* :mod:`.config` — services, reals and settings (TOML, ``ipvsadm-save`` import);
* :mod:`.control` — :class:`LoadBalancer`: attach, change services and reals, drain,
  counters, detach;
* :mod:`.health` — TCP/HTTP health checks that drain and restore reals;
* :mod:`.bed` — a namespace test bed (clients, the LB, backends with real services).
"""

from pyxdp.apps.lb.config import Health, LbConfig, LbError, RealCfg, ServiceCfg
from pyxdp.apps.lb.control import PIN_ROOT, REASONS, STATE_ROOT, LoadBalancer
from pyxdp.apps.lb.health import HealthChecker

__all__ = ["PIN_ROOT", "REASONS", "STATE_ROOT", "Health", "HealthChecker", "LbConfig",
           "LbError", "LoadBalancer", "RealCfg", "ServiceCfg"]

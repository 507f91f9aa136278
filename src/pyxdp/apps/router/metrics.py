"""Prometheus metrics of a running router, read from its pinned maps at every scrape (the
exporter holds no counters of its own: a restarted exporter reports the same totals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.registry import Collector, CollectorRegistry

from pyxdp.apps import _metrics


class RouterCollector(Collector):
    """Exposes ``pyxdp_router_*`` metrics of one :class:`~pyxdp.apps.router.Router`."""

    def __init__(self, router: Any, call: Callable[..., Any] | None = None) -> None:
        self.router = router
        self.call = call or (lambda fn, *a: fn(*a))   # to read inside a namespace thread

    def collect(self) -> Iterator[Any]:
        yield from _metrics.counter_pair(
            "pyxdp_router", "reason", self.call(self.router.stats),
            "Packets per verdict reason (forwarded, or pass_* to the stack)",
            "Bytes per verdict reason")
        yield from _metrics.counter_pair(
            "pyxdp_router_egress", "iface", self.call(self.router.egress),
            "Packets forwarded at XDP out of each port",
            "Bytes forwarded at XDP out of each port")


def registry_for(router: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    return _metrics.registry(RouterCollector(router, call))


def serve(router: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    return _metrics.serve(registry_for(router, call), port, addr)


__all__ = ["RouterCollector", "registry_for", "serve"]

"""Prometheus metrics of a running router, read from its pinned maps at every scrape (the
exporter holds no counters of its own: a restarted exporter reports the same totals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class RouterCollector(Collector):
    """Exposes ``pyxdp_router_*`` metrics of one :class:`~pyxdp.apps.router.Router`."""

    def __init__(self, router: Any, call: Callable[..., Any] | None = None) -> None:
        self.router = router
        self.call = call or (lambda fn, *a: fn(*a))   # to read inside a namespace thread

    def collect(self) -> Iterator[Any]:
        stats = self.call(self.router.stats)
        pk = CounterMetricFamily("pyxdp_router_packets",
                                 "Packets per verdict reason (forwarded, or pass_* to the"
                                 " stack)", labels=["reason"])
        by = CounterMetricFamily("pyxdp_router_bytes", "Bytes per verdict reason",
                                 labels=["reason"])
        for name, (p, b) in stats.items():
            pk.add_metric([name], p)
            by.add_metric([name], b)
        yield pk
        yield by
        eg = self.call(self.router.egress)
        epk = CounterMetricFamily("pyxdp_router_egress_packets",
                                  "Packets forwarded at XDP out of each port",
                                  labels=["iface"])
        eby = CounterMetricFamily("pyxdp_router_egress_bytes",
                                  "Bytes forwarded at XDP out of each port", labels=["iface"])
        for name, (p, b) in eg.items():
            epk.add_metric([name], p)
            eby.add_metric([name], b)
        yield epk
        yield eby


def registry_for(router: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(RouterCollector(router, call))
    return reg


def serve(router: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry_for(router, call))
    return server


__all__ = ["RouterCollector", "registry_for", "serve"]

"""Prometheus metrics of a running ILA translator, read from its pinned maps at every
scrape (the exporter holds no counters of its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class IlaCollector(Collector):
    """Exposes ``pyxdp_ila_*`` metrics of one :class:`~pyxdp.apps.ila.Ila`."""

    def __init__(self, ila: Any, call: Callable[..., Any] | None = None) -> None:
        self.ila = ila
        self.call = call or (lambda fn, *a: fn(*a))

    def collect(self) -> Iterator[Any]:
        stats = self.call(self.ila.stats)
        pk = CounterMetricFamily("pyxdp_ila_packets", "Packets per verdict reason",
                                 labels=["reason"])
        by = CounterMetricFamily("pyxdp_ila_bytes", "Bytes per verdict reason",
                                 labels=["reason"])
        for name, (p, b) in stats.items():
            pk.add_metric([name], p)
            by.add_metric([name], b)
        yield pk
        yield by
        n = GaugeMetricFamily("pyxdp_ila_mappings", "Mappings in the active table")
        n.add_metric([], len(self.call(self.ila.mappings)))
        yield n


def registry_for(ila: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(IlaCollector(ila, call))
    return reg


def serve(ila: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry_for(ila, call))
    return server


__all__ = ["IlaCollector", "registry_for", "serve"]

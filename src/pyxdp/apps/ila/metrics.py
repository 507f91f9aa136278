"""Prometheus metrics of a running ILA translator, read from its pinned maps at every
scrape (the exporter holds no counters of its own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pyxdp.apps import _metrics


class IlaCollector(Collector):
    """Exposes ``pyxdp_ila_*`` metrics of one :class:`~pyxdp.apps.ila.Ila`."""

    def __init__(self, ila: Any, call: Callable[..., Any] | None = None) -> None:
        self.ila = ila
        self.call = call or (lambda fn, *a: fn(*a))

    def collect(self) -> Iterator[Any]:
        yield from _metrics.counter_pair("pyxdp_ila", "reason", self.call(self.ila.stats),
                                         "Packets per verdict reason",
                                         "Bytes per verdict reason")
        n = GaugeMetricFamily("pyxdp_ila_mappings", "Mappings in the active table")
        n.add_metric([], len(self.call(self.ila.mappings)))
        yield n


def registry_for(ila: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    return _metrics.registry(IlaCollector(ila, call))


def serve(ila: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    return _metrics.serve(registry_for(ila, call), port, addr)


__all__ = ["IlaCollector", "registry_for", "serve"]

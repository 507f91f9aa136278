"""Prometheus metrics of a running tunnel app, read from its pinned maps at every scrape
(the exporter holds no counters of its own: a restarted exporter reports the same totals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pyxdp.apps import _metrics


class TunnelCollector(Collector):
    """Exposes ``pyxdp_tunnel_*`` metrics of one :class:`~pyxdp.apps.tunnel.TunnelApp`."""

    def __init__(self, app: Any, call: Callable[..., Any] | None = None) -> None:
        self.app = app
        self.call = call or (lambda fn, *a: fn(*a))   # to read inside a namespace thread

    def collect(self) -> Iterator[Any]:
        yield from _metrics.counter_pair(
            "pyxdp_tunnel", "reason", self.call(self.app.stats),
            "Packets per outcome (decapsulated, encapsulated, pass_*, drop_*, icmp_*)",
            "Bytes per outcome")
        yield from _metrics.counter_pair(
            "pyxdp_tunnel_tunnel", "tunnel", self.call(self.app.tunnel_stats),
            "Packets decapsulated or encapsulated per tunnel",
            "Bytes decapsulated or encapsulated per tunnel")
        g = GaugeMetricFamily("pyxdp_tunnel_generation", "Generation of the tunnel set in"
                              " effect (one per change)")
        g.add_metric([], self.app.generation)
        yield g


def registry_for(app: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    return _metrics.registry(TunnelCollector(app, call))


def serve(app: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    return _metrics.serve(registry_for(app, call), port, addr)


__all__ = ["TunnelCollector", "registry_for", "serve"]

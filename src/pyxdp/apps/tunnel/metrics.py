"""Prometheus metrics of a running tunnel app, read from its pinned maps at every scrape
(the exporter holds no counters of its own: a restarted exporter reports the same totals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


class TunnelCollector(Collector):
    """Exposes ``pyxdp_tunnel_*`` metrics of one :class:`~pyxdp.apps.tunnel.TunnelApp`."""

    def __init__(self, app: Any, call: Callable[..., Any] | None = None) -> None:
        self.app = app
        self.call = call or (lambda fn, *a: fn(*a))   # to read inside a namespace thread

    def collect(self) -> Iterator[Any]:
        pk = CounterMetricFamily("pyxdp_tunnel_packets", "Packets per outcome (decapsulated,"
                                 " encapsulated, pass_*, drop_*, icmp_*)", labels=["reason"])
        by = CounterMetricFamily("pyxdp_tunnel_bytes", "Bytes per outcome", labels=["reason"])
        for name, (p, b) in self.call(self.app.stats).items():
            pk.add_metric([name], p)
            by.add_metric([name], b)
        yield pk
        yield by
        tp = CounterMetricFamily("pyxdp_tunnel_tunnel_packets", "Packets decapsulated or"
                                 " encapsulated per tunnel", labels=["tunnel"])
        tb = CounterMetricFamily("pyxdp_tunnel_tunnel_bytes", "Bytes decapsulated or"
                                 " encapsulated per tunnel", labels=["tunnel"])
        for name, (p, b) in self.call(self.app.tunnel_stats).items():
            tp.add_metric([name], p)
            tb.add_metric([name], b)
        yield tp
        yield tb
        g = GaugeMetricFamily("pyxdp_tunnel_generation", "Generation of the tunnel set in"
                              " effect (one per change)")
        g.add_metric([], self.app.generation)
        yield g


def registry_for(app: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(TunnelCollector(app, call))
    return reg


def serve(app: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry_for(app, call))
    return server


__all__ = ["TunnelCollector", "registry_for", "serve"]

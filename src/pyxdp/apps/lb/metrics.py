"""Prometheus metrics of a running load balancer, read from its pinned maps at every
scrape (the exporter holds no counters of its own): per reason, per service and per real
of a service (packets and bytes)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pyxdp.apps import _metrics


class LbCollector(Collector):
    """Exposes ``pyxdp_lb_*`` metrics of one :class:`~pyxdp.apps.lb.LoadBalancer`."""

    def __init__(self, lb: Any, call: Callable[..., Any] | None = None) -> None:
        self.lb = lb
        self.call = call or (lambda fn, *a: fn(*a))

    def collect(self) -> Iterator[Any]:
        st = self.call(self.lb.stats)
        yield from _metrics.counter_pair("pyxdp_lb", "reason", st["reasons"],
                                         "Packets per verdict reason",
                                         "Bytes per verdict reason")
        yield from _metrics.counter_pair(
            "pyxdp_lb_service", "service",
            {k: v["total"] for k, v in st["services"].items()},
            "Packets to a virtual service", "Bytes to a virtual service")
        pk = CounterMetricFamily("pyxdp_lb_real_packets", "Packets sent to a real",
                                 labels=["service", "real"])
        by = CounterMetricFamily("pyxdp_lb_real_bytes", "Bytes sent to a real",
                                 labels=["service", "real"])
        up = GaugeMetricFamily("pyxdp_lb_real_weight", "A real's weight in its ring (0:"
                               " draining or down)", labels=["service", "real"])
        weights = {(s.key, str(r.address)): r.ring_weight
                   for s in self.call(self.lb.services) for r in s.reals}
        for key, v in st["services"].items():
            for real, (p, b) in v["reals"].items():
                pk.add_metric([key, real], p)
                by.add_metric([key, real], b)
                up.add_metric([key, real], weights.get((key, real), 0))
        yield pk
        yield by
        yield up


def registry_for(lb: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    return _metrics.registry(LbCollector(lb, call))


def serve(lb: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    return _metrics.serve(registry_for(lb, call), port, addr)


__all__ = ["LbCollector", "registry_for", "serve"]

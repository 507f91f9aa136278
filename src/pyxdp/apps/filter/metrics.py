"""Prometheus metrics of a running filter, read from its pinned maps at every scrape.

The exporter holds no counters of its own: each scrape reads the kernel's per-rule
counters, so a restarted exporter (or control plane) reports the same totals.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pyxdp.apps import _metrics


class FilterCollector(Collector):
    """Exposes ``pyxdp_filter_*`` metrics of one :class:`~pyxdp.apps.filter.Filter`."""

    def __init__(self, filt: Any, call: Callable[..., Any] | None = None) -> None:
        self.filt = filt
        self.call = call or (lambda fn, *a: fn(*a))  # to read inside a namespace thread

    def collect(self) -> Iterator[Any]:
        stats = self.call(self.filt.stats)
        iface = self.filt.iface
        packets = CounterMetricFamily("pyxdp_filter_rule_packets",
                                      "Packets matched per rule (@default: default policy,"
                                      " @passed/@dropped: totals)", labels=["iface", "rule"])
        byts = CounterMetricFamily("pyxdp_filter_rule_bytes", "Bytes matched per rule",
                                   labels=["iface", "rule"])
        for name, (p, b) in sorted(stats.items()):
            packets.add_metric([iface, name], p)
            byts.add_metric([iface, name], b)
        yield packets
        yield byts
        gen = GaugeMetricFamily("pyxdp_filter_generation",
                                "Rule set generation (bumps at every atomic change)",
                                labels=["iface"])
        gen.add_metric([iface], self.filt.generation)
        yield gen
        nrules = GaugeMetricFamily("pyxdp_filter_rules", "Rules in force", labels=["iface"])
        nrules.add_metric([iface], len(self.filt.rules().rules))
        yield nrules
        talkers = GaugeMetricFamily("pyxdp_filter_top_dropped_source_packets",
                                    "Dropped packets of the top dropped sources",
                                    labels=["iface", "source"])
        for addr, n in self.call(self.filt.top_talkers, 10):
            talkers.add_metric([iface, str(addr)], n)
        yield talkers


def registry_for(filt: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    return _metrics.registry(FilterCollector(filt, call))


def serve(filt: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    return _metrics.serve(registry_for(filt, call), port, addr)

"""Prometheus metrics of a running switch, read from its pinned maps at every scrape (the
exporter holds no counters of its own: a restarted exporter reports the same totals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pyxdp.apps import _metrics


class SwitchCollector(Collector):
    """Exposes ``pyxdp_switch_*`` metrics of one :class:`~pyxdp.apps.switch.Switch`."""

    def __init__(self, switch: Any, call: Callable[..., Any] | None = None) -> None:
        self.switch = switch
        self.call = call or (lambda fn, *a: fn(*a))   # to read inside a namespace thread

    def collect(self) -> Iterator[Any]:
        yield from _metrics.counter_pair("pyxdp_switch", "reason",
                                         self.call(self.switch.stats),
                                         "Frames (or learning events) per reason",
                                         "Bytes per reason")
        fams = {k: CounterMetricFamily(f"pyxdp_switch_port_{k}", f"Per-port {k}",
                                       labels=["iface"])
                for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}
        for name, c in self.call(self.switch.port_stats).items():
            for k, fam in fams.items():
                fam.add_metric([name], c[k])
        yield from fams.values()
        g = GaugeMetricFamily("pyxdp_switch_fdb_entries", "MACs in the learning table")
        g.add_metric([], len(self.call(self.switch.fdb)))
        yield g


def registry_for(switch: Any, call: Callable[..., Any] | None = None) -> CollectorRegistry:
    return _metrics.registry(SwitchCollector(switch, call))


def serve(switch: Any, port: int, addr: str = "127.0.0.1",
          call: Callable[..., Any] | None = None) -> Any:
    """Start the HTTP exporter on ``addr:port``; returns the server (``.shutdown()``)."""
    return _metrics.serve(registry_for(switch, call), port, addr)


__all__ = ["SwitchCollector", "registry_for", "serve"]

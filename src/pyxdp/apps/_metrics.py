"""What the apps' Prometheus exporters share: a packets/bytes counter pair per label value,
and the registry and HTTP server around one collector."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


def counter_pair(name: str, label: str, rows: Mapping[str, tuple[int, int]],
                 help_packets: str, help_bytes: str) -> Iterator[CounterMetricFamily]:
    """``<name>_packets`` and ``<name>_bytes``, one sample per ``rows`` key (the
    ``label`` value) from its ``(packets, bytes)``."""
    pk = CounterMetricFamily(f"{name}_packets", help_packets, labels=[label])
    by = CounterMetricFamily(f"{name}_bytes", help_bytes, labels=[label])
    for key, (p, b) in rows.items():
        pk.add_metric([key], p)
        by.add_metric([key], b)
    yield pk
    yield by


def registry(collector: Collector) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(collector)
    return reg


def serve(reg: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> Any:
    """Start the HTTP exporter of ``reg`` on ``addr:port``; returns the server
    (``.shutdown()``)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=reg)
    return server


__all__ = ["counter_pair", "registry", "serve"]

"""The only module that speaks prometheus_client: a registry of this process's own, one
collector that turns the tally and the figures into metric families at each scrape, and the HTTP
server of /metrics.

Nothing is kept in prometheus_client's objects: the tally (gateway.core.tally) counts the events
and ``Figures`` reads the rest, so the message path never touches this library.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from gateway.core import tally as t
from gateway.metrics.figures import Figures

log = logging.getLogger("gateway.metrics")

__all__ = ["MetricsServer", "parse", "registry_of", "render"]

# The figures a scrape reads, with their help text (the names are the contract of the alert
# rules and the dashboard in contrib/prometheus).
DEADLINES_OPEN = "ipcgw_ledger_deadlines_open"
DEADLINES_DUE_SOON = "ipcgw_ledger_deadlines_due_within_1h"
DEADLINES_OVERDUE = "ipcgw_ledger_deadlines_overdue"
AUDIT_LENGTH = "ipcgw_ledger_audit_chain_length"
QUEUE_DEPTH = "ipcgw_outbound_queue_depth"
QUEUE_OLDEST = "ipcgw_outbound_queue_oldest_age_seconds"
QUARANTINED = "ipcgw_quarantine_items"
DISK_FREE = "ipcgw_spool_disk_free_bytes"
DISK_FLOOR = "ipcgw_spool_disk_floor_bytes"
OUR_KEY = "ipcgw_our_key_expiry_days"
PARTNER_KEY = "ipcgw_partner_key_expiry_days"

FIGURE_NAMES = (
    DEADLINES_OPEN,
    DEADLINES_DUE_SOON,
    DEADLINES_OVERDUE,
    AUDIT_LENGTH,
    QUEUE_DEPTH,
    QUEUE_OLDEST,
    QUARANTINED,
    DISK_FREE,
    DISK_FLOOR,
    OUR_KEY,
    PARTNER_KEY,
)


class GatewayCollector(Collector):
    """Everything a scrape shows, built at the scrape."""

    def __init__(self, tally: t.Tally, figures: Figures | None) -> None:
        self.tally = tally
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield from self._events()
        if self.figures is not None:
            yield from self._figures()

    def _events(self) -> Iterator[Metric]:
        snapshot = self.tally.snapshot()
        for metric in t.CATALOGUE.values():
            labels = list(metric.labels)
            # a counter family is named without its _total (prometheus_client adds it)
            if metric.kind == t.COUNTER:
                counter = CounterMetricFamily(
                    metric.name.removesuffix("_total"), metric.help, labels=labels
                )
                for key, value in snapshot.values.get(metric.name, {}).items():
                    counter.add_metric(list(key), value)
                yield counter
            elif metric.kind == t.GAUGE:
                gauge = GaugeMetricFamily(metric.name, metric.help, labels=labels)
                for key, value in snapshot.values.get(metric.name, {}).items():
                    gauge.add_metric(list(key), value)
                yield gauge
            else:
                histogram = HistogramMetricFamily(metric.name, metric.help, labels=labels)
                for key, data in snapshot.histograms.get(metric.name, {}).items():
                    cumulative, buckets = 0, []
                    for bound, count in zip(
                        [*map(_bound, metric.buckets), "+Inf"], data.buckets, strict=True
                    ):
                        cumulative += count
                        buckets.append((bound, float(cumulative)))
                    histogram.add_metric(list(key), buckets, data.total)
                yield histogram

    def _figures(self) -> Iterator[Metric]:
        assert self.figures is not None  # noqa: S101 - collect() checked
        now = self.figures.current()
        if now.ledger is not None:
            families = {
                DEADLINES_OPEN: "Deadlines open (ledger-wide: aggregate with max())",
                DEADLINES_DUE_SOON: "Open deadlines due within the hour (ledger-wide)",
                DEADLINES_OVERDUE: "Open deadlines past due (ledger-wide)",
            }
            made = {
                name: GaugeMetricFamily(name, text, labels=["kind", "owed_by"])
                for name, text in families.items()
            }
            for (kind, owed_by), counts in sorted(now.ledger.deadlines.items()):
                made[DEADLINES_OPEN].add_metric([kind, owed_by], counts.open)
                made[DEADLINES_DUE_SOON].add_metric([kind, owed_by], counts.due_soon)
                made[DEADLINES_OVERDUE].add_metric([kind, owed_by], counts.overdue)
            yield from made.values()
            yield GaugeMetricFamily(
                AUDIT_LENGTH,
                "Entries in the audit chain (ledger-wide)",
                value=now.ledger.audit_length,
            )
        if now.queue_depth is not None:
            yield GaugeMetricFamily(
                QUEUE_DEPTH, "Items waiting in this node's outbound spool", value=now.queue_depth
            )
        if now.queue_oldest_seconds is not None:
            yield GaugeMetricFamily(
                QUEUE_OLDEST,
                "Age of the oldest item waiting in this node's outbound spool (0 when empty)",
                value=now.queue_oldest_seconds,
            )
        quarantined = GaugeMetricFamily(
            QUARANTINED, "Items set aside in this node's spools", labels=["spool"]
        )
        for spool, count in sorted(now.quarantined.items()):
            quarantined.add_metric([spool], count)
        yield quarantined
        if now.disk_free_bytes is not None:
            yield GaugeMetricFamily(
                DISK_FREE, "Free bytes on the spool's file system", value=now.disk_free_bytes
            )
        yield GaugeMetricFamily(
            DISK_FLOOR,
            "The configured floor of free spool space ([metrics] disk_floor_mb)",
            value=now.disk_floor_bytes,
        )
        if now.our_key_days is not None:
            yield GaugeMetricFamily(
                OUR_KEY, "Days until our OpenPGP key expires (+Inf: never)", value=now.our_key_days
            )
        partners = GaugeMetricFamily(
            PARTNER_KEY,
            "Days until encrypting to the partner's pinned key stops (+Inf: never)",
            labels=["partner"],
        )
        for partner, days in sorted(now.partner_key_days.items()):
            partners.add_metric([partner], days)
        yield partners


def _bound(value: float) -> str:
    return repr(float(value))


def registry_of(tally: t.Tally, figures: Figures | None = None) -> CollectorRegistry:
    """A registry of this process's own (never prometheus_client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(tally, figures))
    return registry


def render(registry: CollectorRegistry) -> str:
    """The text exposition of a registry, as /metrics serves it."""
    return generate_latest(registry).decode()


def parse(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """A scrape parsed: each family's samples as (sample name, labels, value)."""
    return {
        family.name: [(s.name, dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


class MetricsServer:
    """/metrics over HTTP on its own thread; ``port`` is the one bound (for a configured 0)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port = int(server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

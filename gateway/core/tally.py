"""Events of this process counted for the metrics: counters, timings and last-known values by code
labels, safe to add to from any thread, read as a snapshot by the exporter (gateway.metrics).

The message path pays one lock and one addition per event: no library, no I/O. Every metric is
declared in ``CATALOGUE`` with its help text and label names; a label value is a code (a partner
bureau code, a form code, a reason code, a scheduler job's name, an outcome), never a reference,
a name or any other value taken from a form: a label value that is not a short code is counted
as ``other``.
"""

from __future__ import annotations

import bisect
import re
import threading
from dataclasses import dataclass, field
from typing import Final

COUNTER: Final = "counter"
HISTOGRAM: Final = "histogram"
GAUGE: Final = "gauge"

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
UNKNOWN: Final = "unknown"  # the partner of a refusal before the sender was known
OTHER: Final = "other"  # in place of a label value that is not a code

# Bounds of the timing histograms, in seconds.
_TO_250 = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_TO_RECEIPT = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0)
_HOUR = 3600.0
_TO_REPLY = tuple(h * _HOUR for h in (0.25, 0.5, 1, 2, 4, 8, 12, 24, 72, 168, 240, 720))


@dataclass(frozen=True)
class Metric:
    """One metric of this process: its kind, help text, label names and (histograms) bounds."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


ACCEPTED: Final = "ipcgw_messages_accepted_total"
REFUSED: Final = "ipcgw_messages_refused_total"
TIME_TO_250: Final = "ipcgw_time_to_250_seconds"
TIME_TO_RECEIPT: Final = "ipcgw_time_to_receipt_seconds"
TIME_TO_REPLY: Final = "ipcgw_time_to_reply_seconds"
REMINDERS: Final = "ipcgw_reminders_total"
ESCALATIONS: Final = "ipcgw_escalations_total"
ATTEMPTS: Final = "ipcgw_outbound_attempts_total"
JOB_LAST_RUN: Final = "ipcgw_scheduler_last_run_timestamp_seconds"
CERT_EXPIRY: Final = "ipcgw_partner_tls_certificate_expiry_days"
CERT_VALID: Final = "ipcgw_partner_tls_certificate_valid"

CATALOGUE: Final = {
    metric.name: metric
    for metric in (
        Metric(
            ACCEPTED,
            COUNTER,
            "Messages accepted (250) from partners, duplicates included",
            ("partner", "form"),
        ),
        Metric(
            REFUSED,
            COUNTER,
            "Messages and commands refused before the 250, by the error's class",
            ("partner", "reason"),
        ),
        Metric(
            TIME_TO_250,
            HISTOGRAM,
            "From the end of DATA to the 250 of an accepted message",
            ("partner",),
            _TO_250,
        ),
        Metric(
            TIME_TO_RECEIPT,
            HISTOGRAM,
            "From queuing a form of ours to the partner's signed receipt",
            ("partner", "form"),
            _TO_RECEIPT,
        ),
        Metric(
            TIME_TO_REPLY,
            HISTOGRAM,
            "From queuing a form of ours to the partner's reply form",
            ("partner", "form"),
            _TO_REPLY,
        ),
        Metric(REMINDERS, COUNTER, "Deadline reminders posted by the sweeps of this process"),
        Metric(ESCALATIONS, COUNTER, "Deadline escalations posted by the sweeps of this process"),
        Metric(
            ATTEMPTS,
            COUNTER,
            "Outbound delivery attempts by outcome: sent, retry, rejected, refused, failed",
            ("partner", "outcome"),
        ),
        Metric(
            JOB_LAST_RUN,
            GAUGE,
            "When each scheduled job last finished without an error (seconds since the epoch)",
            ("scheduler_job",),  # not "job": Prometheus gives that label to the scrape's job
        ),
        Metric(
            CERT_EXPIRY,
            GAUGE,
            "Days until the TLS certificate of the partner's SMTP server expires (last check)",
            ("partner",),
        ),
        Metric(
            CERT_VALID,
            GAUGE,
            "1 when the partner's SMTP certificate chain verified at the last check, else 0",
            ("partner",),
        ),
    )
}

Labels = tuple[str, ...]


@dataclass
class HistogramData:
    """One label set of a histogram: counts per bucket (not cumulative), the sum and count."""

    buckets: list[int]
    total: float = 0.0
    count: int = 0


@dataclass
class Snapshot:
    """Every metric's values by label set, copied at one instant."""

    values: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, HistogramData]] = field(default_factory=dict)


class Tally:
    """The in-process metrics: add from any thread, read a snapshot."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, HistogramData]] = {}

    def count(self, name: str, *labels: str, amount: float = 1.0) -> None:
        """Add ``amount`` to counter ``name`` for ``labels`` (codes, in the catalogue's order)."""
        key = _labels(name, COUNTER, labels)
        if amount <= 0:
            return
        with self._lock:
            series = self._values.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, *labels: str) -> None:
        """Gauge ``name`` for ``labels`` is now ``value``."""
        key = _labels(name, GAUGE, labels)
        with self._lock:
            self._values.setdefault(name, {})[key] = value

    def observe(self, name: str, seconds: float, *labels: str) -> None:
        """One timing of histogram ``name`` for ``labels``."""
        key = _labels(name, HISTOGRAM, labels)
        bounds = CATALOGUE[name].buckets
        where = bisect.bisect_left(bounds, seconds)  # le: a value on a bound counts in it
        with self._lock:
            series = self._histograms.setdefault(name, {})
            data = series.get(key)
            if data is None:
                data = series[key] = HistogramData([0] * (len(bounds) + 1))
            data.buckets[where] += 1
            data.total += seconds
            data.count += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                values={name: dict(series) for name, series in self._values.items()},
                histograms={
                    name: {
                        key: HistogramData(list(data.buckets), data.total, data.count)
                        for key, data in series.items()
                    }
                    for name, series in self._histograms.items()
                },
            )


def code(value: str | None) -> str:
    """A label value from a code that may be missing (``unknown``)."""
    return value if value else UNKNOWN


def _labels(name: str, kind: str, labels: tuple[str, ...]) -> Labels:
    metric = CATALOGUE.get(name)
    if metric is None or metric.kind != kind:
        raise ValueError(f"{name} is not a {kind} of the catalogue")
    if len(labels) != len(metric.labels):
        raise ValueError(f"{name} takes labels {metric.labels}, not {len(labels)} values")
    # A value that is not a short code is never exported (it could be anything): the event still
    # counts, under OTHER, and the message path never fails for a metric.
    return tuple(value if _CODE.fullmatch(value) else OTHER for value in labels)

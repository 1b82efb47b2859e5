"""The in-process tally and its exposition: counters, gauges and histograms by code labels, read
back through prometheus_client's own text parser; a label value that is not a code never shows."""

from __future__ import annotations

import threading

import pytest

from gateway.core import tally as t
from gateway.metrics.exporter import parse, registry_of, render


def scrape(tally: t.Tally) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return parse(render(registry_of(tally)))


def test_counters_add_up_by_labels_and_export_with_total() -> None:
    tally = t.Tally()
    tally.count(t.ACCEPTED, "NO-SIRENE", "G")
    tally.count(t.ACCEPTED, "NO-SIRENE", "G")
    tally.count(t.ACCEPTED, "RS-NCB", "IP-QUERY")
    tally.count(t.ESCALATIONS, amount=3)
    tally.count(t.ESCALATIONS, amount=0)  # nothing to add: no series made
    samples = scrape(tally)
    assert sorted(samples["ipcgw_messages_accepted"], key=lambda s: s[2]) == [
        ("ipcgw_messages_accepted_total", {"partner": "RS-NCB", "form": "IP-QUERY"}, 1.0),
        ("ipcgw_messages_accepted_total", {"partner": "NO-SIRENE", "form": "G"}, 2.0),
    ]
    assert samples["ipcgw_escalations"] == [("ipcgw_escalations_total", {}, 3.0)]
    assert samples["ipcgw_reminders"] == []  # declared, never counted: a family with no sample


def test_a_histogram_is_cumulative_with_its_sum_and_count() -> None:
    tally = t.Tally()
    for seconds in (0.03, 0.1, 0.7, 100.0):  # 0.1 lies on a bound: counted in it (le)
        tally.observe(t.TIME_TO_250, seconds, "NO-SIRENE")
    samples = scrape(tally)["ipcgw_time_to_250_seconds"]
    buckets = {labels["le"]: value for name, labels, value in samples if name.endswith("_bucket")}
    assert buckets["0.05"] == 1 and buckets["0.1"] == 2 and buckets["0.5"] == 2
    assert buckets["1.0"] == 3 and buckets["60.0"] == 3 and buckets["+Inf"] == 4
    rest = {name: value for name, _, value in samples if not name.endswith("_bucket")}
    assert rest["ipcgw_time_to_250_seconds_count"] == 4
    assert rest["ipcgw_time_to_250_seconds_sum"] == pytest.approx(100.83)


def test_a_gauge_keeps_the_last_value() -> None:
    tally = t.Tally()
    tally.set(t.CERT_EXPIRY, 12.5, "NO-SIRENE")
    tally.set(t.CERT_EXPIRY, 11.5, "NO-SIRENE")
    samples = scrape(tally)["ipcgw_partner_tls_certificate_expiry_days"]
    assert samples == [
        ("ipcgw_partner_tls_certificate_expiry_days", {"partner": "NO-SIRENE"}, 11.5)
    ]


@pytest.mark.parametrize(
    "value",
    ["Jane Doe", "jane@example.org", "RO-2026-000001 ", "x" * 65, "<Name>", "", "é"],
)
def test_a_label_value_that_is_not_a_code_is_counted_as_other(value: str) -> None:
    tally = t.Tally()
    tally.count(t.REFUSED, value, "InvalidForm")
    text = render(registry_of(tally))
    if value.strip():
        assert value not in text
    assert 'ipcgw_messages_refused_total{partner="other",reason="InvalidForm"} 1.0' in text


def test_unknown_metrics_and_wrong_label_counts_are_programming_errors() -> None:
    tally = t.Tally()
    with pytest.raises(ValueError, match="not a counter"):
        tally.count("ipcgw_nothing_total")
    with pytest.raises(ValueError, match="not a counter"):
        tally.count(t.TIME_TO_250, "NO-SIRENE")  # a histogram
    with pytest.raises(ValueError, match="takes labels"):
        tally.count(t.ACCEPTED, "NO-SIRENE")


def test_counting_from_many_threads_loses_nothing() -> None:
    tally = t.Tally()

    def work() -> None:
        for _ in range(2000):
            tally.count(t.ATTEMPTS, "NO-SIRENE", "sent")
            tally.observe(t.TIME_TO_250, 0.2, "NO-SIRENE")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = tally.snapshot()
    assert snapshot.values[t.ATTEMPTS][("NO-SIRENE", "sent")] == 16000
    assert snapshot.histograms[t.TIME_TO_250][("NO-SIRENE",)].count == 16000


def test_every_metric_name_is_prometheus_style_and_its_labels_are_codes() -> None:
    for name, metric in t.CATALOGUE.items():
        assert name.startswith("ipcgw_") and name == metric.name
        assert (metric.kind == t.COUNTER) == name.endswith("_total")
        assert set(metric.labels) <= {"partner", "form", "reason", "scheduler_job", "outcome"}
        assert (metric.kind == t.HISTOGRAM) == bool(metric.buckets)
        assert list(metric.buckets) == sorted(metric.buckets)

"""/metrics of real `gateway serve` processes after a few exchanges between the demo's bureaux:
the counters moved by what happened, the ledger's and the certificates' figures are there, and no
value of the forms sent (names, dates, references, free text) appears anywhere in a scrape."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from integration.promkit import alert_exprs, dashboard_exprs, family_of, metric_names
from integration.servekit import Served, smtp_send
from lxml import etree

from gateway.cli import demo
from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.metrics.exporter import parse
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, make_engine
from gateway.store.states import OutboundState

METRICS_AT = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")
WAIT = 60.0
Samples = dict[str, list[tuple[str, dict[str, str], float]]]


@dataclass
class Node:
    site: demo.Site
    served: Served
    port: int = 0
    metrics_port: int = 0

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"].startswith("text/plain")
            return str(answer.read().decode())

    def ledger(self) -> Ledger:
        config = configuration.load(self.site.config_path)
        return Ledger(make_engine(config.database_url), SystemClock())


@dataclass
class World:
    root: Path
    nodes: dict[str, Node]
    sent: list[Path]  # the forms sent, as submitted
    references: list[str]


def value(samples: Samples, family: str, sample: str, **labels: str) -> float:
    found = [v for name, have, v in samples.get(family, []) if name == sample and have == labels]
    assert len(found) == 1, (sample, labels, samples.get(family))
    return found[0]


def total(samples: Samples, family: str, sample: str, **labels: str) -> float:
    return sum(
        v
        for name, have, v in samples.get(family, [])
        if name == sample and all(have.get(k) == w for k, w in labels.items())
    )


async def until(what: str, check: Callable[[], bool], node: Node) -> None:
    deadline = time.monotonic() + WAIT
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen:\n{node.served.log_tail()}")
        await asyncio.sleep(0.1)


def send(node: Node, form: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "-c", str(node.site.config_path), "send", "--json",
         str(form)],
        capture_output=True, check=True, cwd=node.site.root,
    )  # fmt: skip
    return str(json.loads(done.stdout)["reference"])


def state_of(node: Node, partner: str, reference: str) -> str | None:
    ledger = node.ledger()
    try:
        row = ledger.find("outbound", partner, reference)
        return row.state if row is not None else None
    finally:
        ledger.engine.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("metrics")
    sites = demo.make_sites(root / "run", say=lambda _: None)
    nodes = {
        name: Node(sites[name], Served(sites[name].config_path, root / "logs" / name))
        # NO first, so that the certificate check RO runs at its start finds NO up; RS stays down
        for name in ("no", "ro")
    }
    try:
        yield asyncio.run(exchange(root, nodes))
    finally:
        asyncio.run(stop(nodes))


async def stop(nodes: dict[str, Node]) -> None:
    for node in nodes.values():
        if node.served.process is not None:
            await node.served.terminate()
        subprocess.run(
            ["gpgconf", "--homedir", str(node.site.root / "var" / "gnupg"), "--kill",
             "gpg-agent"], check=False, capture_output=True,
        )  # fmt: skip


async def exchange(root: Path, nodes: dict[str, Node]) -> World:
    """RO sends a G, NO answers with an M; two refusals at NO."""
    for node in nodes.values():
        node.port = await node.served.start()
        assert node.served.log_path is not None
        found = METRICS_AT.search(node.served.log_path.read_text())
        assert found, node.served.log_tail()
        node.metrics_port = int(found.group(1))
    ro, no = nodes["ro"], nodes["no"]
    hit = demo.DEMO_FORMS / "g-hit.xml"
    reference = await asyncio.to_thread(send, ro, hit)
    await until(
        "the G acknowledged",
        lambda: state_of(ro, "NO-SIRENE", reference) == OutboundState.ACKNOWLEDGED,
        ro,
    )
    reply = root / "m-reply.xml"
    reply.write_bytes(
        (demo.DEMO_FORMS / "m-reply.xml").read_bytes().replace(b"IN-REPLY-TO", reference.encode())
    )
    answer = await asyncio.to_thread(send, no, reply)
    await until(
        "the G answered",
        lambda: state_of(ro, "NO-SIRENE", reference) == OutboundState.ANSWERED,
        ro,
    )
    await until(
        "the M acknowledged",
        lambda: state_of(no, "RO-SIRENE", answer) == OutboundState.ACKNOWLEDGED,
        no,
    )
    # Two refusals at NO: a message RO's address sends that is no OpenPGP message at all,
    # and a sender NO does not know.
    context = ssl.create_default_context(cafile=str(root / "run" / "ca" / "demo-ca.crt"))
    garbage = (
        b"From: <gateway@ro-spoc.demo>\r\nTo: <sirene@no-spoc.demo>\r\n"
        b"Subject: x\r\n\r\nEXAMPLE Demo 1980-01-01\r\n"
    )
    code, _ = await smtp_send(no.port, garbage, context, sender="gateway@ro-spoc.demo")
    assert code >= 500
    code, _ = await smtp_send(no.port, garbage, context, sender="who@else.example")
    assert code == 550
    return World(root, nodes, [hit, reply], [reference, answer])


def test_no_counts_what_it_accepted_and_refused(world: World) -> None:
    samples = parse(world.nodes["no"].scrape())
    accepted = "ipcgw_messages_accepted"
    assert value(samples, accepted, f"{accepted}_total", partner="RO-SIRENE", form="G") == 1
    # the refusal of the message that is not OpenPGP, and of the unknown sender at MAIL
    refused = "ipcgw_messages_refused"
    by_reason = {
        labels["reason"]: v
        for name, labels, v in samples[refused]
        if name == f"{refused}_total" and labels["partner"] == "RO-SIRENE"
    }
    assert sum(by_reason.values()) == 1, by_reason
    assert value(samples, refused, f"{refused}_total", partner="unknown", reason="UnknownSender")
    # every message accepted had its time to 250 observed once
    everything = total(samples, accepted, f"{accepted}_total")
    timed = total(samples, "ipcgw_time_to_250_seconds", "ipcgw_time_to_250_seconds_count")
    assert everything == timed >= 2  # the G and RO's receipt of the M
    sent = total(samples, "ipcgw_outbound_attempts", "ipcgw_outbound_attempts_total",
                 partner="RO-SIRENE", outcome="sent")  # fmt: skip
    assert sent >= 2  # the receipt of the G and the M


def test_ro_times_the_receipt_and_the_reply(world: World) -> None:
    samples = parse(world.nodes["ro"].scrape())
    for family in ("ipcgw_time_to_receipt_seconds", "ipcgw_time_to_reply_seconds"):
        assert value(samples, family, f"{family}_count", partner="NO-SIRENE", form="G") == 1
        took = value(samples, family, f"{family}_sum", partner="NO-SIRENE", form="G")
        assert 0 <= took < WAIT
        inf = value(samples, family, f"{family}_bucket", partner="NO-SIRENE", form="G", le="+Inf")
        assert inf == 1
    assert value(samples, "ipcgw_messages_accepted", "ipcgw_messages_accepted_total",
                 partner="NO-SIRENE", form="M") == 1  # fmt: skip


def test_ledger_figures_scheduler_keys_and_certificates(world: World) -> None:
    ro = world.nodes["ro"]
    samples = parse(ro.scrape())
    ledger = ro.ledger()
    try:
        length = AuditLog(ledger.engine, SystemClock()).head()[0]
    finally:
        ledger.engine.dispose()
    chain = value(samples, "ipcgw_ledger_audit_chain_length", "ipcgw_ledger_audit_chain_length")
    assert 0 < chain <= length
    jobs = {
        labels["scheduler_job"]
        for name, labels, _ in samples["ipcgw_scheduler_last_run_timestamp_seconds"]
    }
    assert {"sweep", "desk-checks", "keys", "certificates", "purge", "report"} <= jobs
    assert value(samples, "ipcgw_our_key_expiry_days", "ipcgw_our_key_expiry_days") > 1
    assert {labels["partner"] for _, labels, _ in samples["ipcgw_partner_key_expiry_days"]} == {
        "NO-SIRENE",
        "RS-NCB",
    }
    valid = "ipcgw_partner_tls_certificate_valid"
    assert value(samples, valid, valid, partner="NO-SIRENE") == 1
    assert value(samples, valid, valid, partner="RS-NCB") == 0  # RS is down
    days = value(
        samples,
        "ipcgw_partner_tls_certificate_expiry_days",
        "ipcgw_partner_tls_certificate_expiry_days",
        partner="NO-SIRENE",
    )
    assert 0 < days <= 2  # the demo's certificates are made for two days
    assert value(samples, "ipcgw_outbound_queue_depth", "ipcgw_outbound_queue_depth") >= 0
    free = value(samples, "ipcgw_spool_disk_free_bytes", "ipcgw_spool_disk_free_bytes")
    assert free > 0
    quarantined = {labels["spool"] for _, labels, _ in samples["ipcgw_quarantine_items"]}
    assert quarantined == {"inbound", "outbound"}


def personal_values(form: Path, codes: set[str]) -> set[str]:
    """Every text and attribute value of a form, but the codes labels may carry."""
    tree = etree.parse(str(form))
    found = set()
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        texts = [element.text or "", *element.attrib.values()]
        found |= {text.strip() for text in texts if len(text.strip()) >= 3}
    return found - codes


def test_no_scrape_holds_a_value_of_the_forms_sent(world: World) -> None:
    codes = {"RO-SIRENE", "NO-SIRENE", "RS-NCB", "RO-NCB"}
    values = set(world.references)
    for form in world.sent:
        values |= personal_values(form, codes)
    assert {"EXAMPLE", "1980-01-01", "NO0000000000654321"} <= values
    for node in world.nodes.values():
        scrape = node.scrape()
        leaked = sorted(v for v in values if v in scrape)
        assert leaked == [], leaked


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_metric_the_rules_and_the_dashboard_read_is_served(world: World, source: str) -> None:
    families: set[str] = set()
    for node in world.nodes.values():
        families |= set(parse(node.scrape()))
    exprs = alert_exprs() if source == "alerts" else dashboard_exprs()
    names = metric_names(exprs)
    assert len(names) >= 12
    assert sorted(name for name in names if family_of(name, families) is None) == []

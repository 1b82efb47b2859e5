"""The log: one line per message event with its Reference, partner, form, outcome and timings,
plain or JSON lines; and the whole demo at DEBUG, every library included, logs no value of the
forms it sends (names, dates of birth, alert numbers, places, free text)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from gateway.cli import demo
from gateway.core import config as configuration
from gateway.core import logsetup, messagelog
from gateway.core.errors import ConfigError

# Codes and words a form shares with any log line: bureau codes, the channels' vocabulary.
CODES = {"RO-SIRENE", "NO-SIRENE", "RS-NCB", "RO-NCB", "IN-REPLY-TO"}


class Kept(logging.Handler):
    """Every record, as the plain and the JSON formatter write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        plain, lines = logsetup.formatter("plain"), logsetup.formatter("json")
        return [f(record) for record in self.records for f in (plain.format, lines.format)]


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kept, list[str]]]:
    kept = Kept()
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", *logsetup.CHATTY)}
    root.addHandler(kept)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    said: list[str] = []
    try:
        assert demo.run(tmp_path_factory.mktemp("demo") / "run", say=said.append) == 0
    finally:
        root.removeHandler(kept)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    yield kept, said


def personal_values() -> set[str]:
    """Every text and attribute value of the forms the demo sends, but codes."""
    found: set[str] = set()
    for form in sorted(demo.DEMO_FORMS.glob("*.xml")):
        for element in etree.parse(str(form)).iter():
            if isinstance(element.tag, str):
                texts = [element.text or "", *element.attrib.values()]
                found |= {text.strip() for text in texts if len(text.strip()) >= 3}
    return found - CODES


def test_no_log_line_holds_a_value_of_the_forms(demo_log: tuple[Kept, list[str]]) -> None:
    kept, _ = demo_log
    values = personal_values()
    assert {"EXAMPLE", "1980-01-01", "NO0000000000654321"} <= values
    lines = kept.lines()
    assert len(lines) > 500  # DEBUG: gpg, SMTP sessions, the scheduler and ours
    assert {record.name.split(".")[0] for record in kept.records} >= {"gateway", "mail"}
    leaks = sorted({value for line in lines for value in values if value in line})
    assert leaks == []


def test_one_info_line_per_message_event_with_its_fields(
    demo_log: tuple[Kept, list[str]],
) -> None:
    kept, _ = demo_log
    events = [r for r in kept.records if r.name == messagelog.log.name]
    assert all(r.levelno == logging.INFO for r in events)
    fields = [getattr(r, messagelog.FIELDS) for r in events]
    accepted = [f for f in fields if f["direction"] == "inbound" and f["outcome"] == "accepted"]
    # NO and RS received forms (G, the urgent G, IP-QUERY) and RO their replies and receipts
    assert {f["form"] for f in accepted} >= {"G", "M", "IP-QUERY", "IP-QUERY-RESULT", "ACK"}
    assert all(f["reference"] and f["partner"] and f["seconds_to_250"] >= 0 for f in accepted)
    # every accepted message has exactly one accepted line
    keys = [(f["partner"], f["reference"]) for f in accepted]
    assert len(keys) == len(set(keys))
    acknowledged = [f for f in fields if f["outcome"] == "acknowledged"]
    answered = [f for f in fields if f["outcome"] == "answered"]
    assert acknowledged and all(f["seconds_to_receipt"] >= 0 for f in acknowledged)
    assert {f["form"] for f in answered} >= {"G", "IP-QUERY"}
    sent = [f for f in fields if f["direction"] == "outbound" and f["outcome"] == "sent"]
    assert {f["form"] for f in sent} >= {"G", "M", "ACK"}
    plain = logsetup.formatter("plain").format(
        next(r for r in events if "accepted" in r.msg % r.args)
    )
    assert " INFO gateway.messages: received " in plain and ": accepted, 250 after " in plain


def test_json_lines_carry_the_fields() -> None:
    record = logging.LogRecord("gateway.messages", logging.INFO, __file__, 1, "%s", ("x",), None)
    record.fields = {"direction": "inbound", "reference": "NO-2026-000001", "seconds_to_250": 0.04}
    line = json.loads(logsetup.formatter("json").format(record))
    assert (
        line["message"] == "x" and line["level"] == "INFO" and line["logger"] == "gateway.messages"
    )
    assert line["reference"] == "NO-2026-000001" and line["seconds_to_250"] == 0.04
    assert line["time"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord(
            "gateway", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    assert "ValueError: boom" in json.loads(logsetup.formatter("json").format(failed))["error"]


def test_the_log_format_is_configured(tmp_path: Path) -> None:
    base = (configuration.PROJECT_ROOT / "config" / "gateway.example.toml").read_text()
    assert (
        configuration.load(
            configuration.PROJECT_ROOT / "config" / "gateway.example.toml"
        ).logging.format
        == "plain"
    )
    path = tmp_path / "gateway.toml"
    plain = '[logging]\nformat = "plain"'
    assert plain in base
    path.write_text(base.replace(plain, '[logging]\nformat = "json"', 1))
    assert configuration.load(path).logging.format == "json"
    path.write_text(base.replace(plain, '[logging]\nformat = "xml"', 1))
    with pytest.raises(ConfigError, match=r"logging\.format"):
        configuration.load(path)

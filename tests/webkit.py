"""Test kit for the console: a configuration on a real SQLite file (or the test PostgreSQL),
users of every role, received messages in the ledger and the inbound spool (their forms as the
pipeline keeps them), and the console app over it with a FakeClock and a cheap argon2 cost."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from accesskit import CHEAP, PASSWORD
from dbkit import upgraded
from starlette.applications import Starlette

from gateway.access.passwords import Passwords
from gateway.access.roles import Role
from gateway.access.setup import AccessServices, open_access
from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.crypto import pgpmime
from gateway.service.services import Services, open_services
from gateway.store.ledger import NewMessage
from gateway.store.states import InboundState
from gateway.web.app import build_app

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SAMPLE = (
    Path(__file__).resolve().parent.parent / "forms" / "samples" / "G" / "valid-person-arrested.xml"
)
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
CONFIG = """
[identity]
country = "RO"
address = "gateway@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[[partners]]
code = "NO-SIRENE"
channel = "sirene"
country = "NO"
address = "sirene@no.example"
smtp_host = "127.0.0.1"
fingerprint = "{fingerprint}"

[[desks]]
name = "sirene"
maildir = "desks/sirene"

[[desks]]
name = "interpol"
maildir = "desks/interpol"

[[routes]]
desk = "sirene"

[database]
url = "{url}"

[access]
password_time_cost = 2
password_memory_kib = 19456
totp_required = {totp_required}

[web]
host = "127.0.0.1"
port = 0
time_zone = "Europe/Bucharest"
login_attempts_per_minute = {per_minute}
page_size = {page_size}
{extra}
"""
USERS = {
    "ana": (frozenset({Role.HANDLER}), frozenset({"sirene"})),
    "ben": (frozenset({Role.HANDLER}), frozenset({"interpol"})),
    "sue": (frozenset({Role.SUPERVISOR}), frozenset()),
    "olaf": (frozenset({Role.OPERATOR}), frozenset()),
    "aud": (frozenset({Role.AUDITOR}), frozenset()),
}


def write_config(
    folder: Path,
    url: str,
    *,
    per_minute: int = 10,
    page_size: int = 50,
    totp_required: str = "[]",
    extra: str = "",
) -> Path:
    upgraded(url)
    path = folder / "gateway.toml"
    path.write_text(
        CONFIG.format(
            url=url,
            fingerprint="A" * 40,
            per_minute=per_minute,
            page_size=page_size,
            totp_required=totp_required,
            extra=extra,
        )
    )
    return path


# The free-text fields of the sample form G: any text is valid there.
FREE_TEXT = (
    "Officer",
    "UrgencyReason",
    "Locality",
    "FamilyName",
    "GivenName",
    "Number",
    "ActionTaken",
    "FurtherActionRequested",
)


def form_xml(reference: str, action: str = "Person arrested.", **fields: str) -> bytes:
    """The sample form G with another Reference, ActionTaken and any other field's text given
    by its element's name (XML-escaped: any text goes)."""
    text = SAMPLE.read_text(encoding="utf-8")
    text = text.replace("NO-2026-000123", reference)
    for tag, value in {"ActionTaken": action, **fields}.items():
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text, found = re.subn(rf"<{tag}>.*?</{tag}>", f"<{tag}>{escaped}</{tag}>", text, count=1)
        assert found == 1, tag
    return text.encode("utf-8")


def receive(
    services: Services,
    reference: str,
    *,
    desk: str = "sirene",
    form: bytes | None = None,
    priority: str = "urgent",
    reply_in: timedelta | None = timedelta(hours=12),
) -> int:
    """A received form G as the pipeline leaves it: its ledger row and events, its reply
    deadline, and the message in the inbound spool (a stand-in for the raw bytes, then the
    decrypted entity). Returns the ledger id."""
    spool_key = f"in-{reference}"
    raw = b"raw message as received\r\n"
    entity = pgpmime.build_entity(form if form is not None else form_xml(reference))
    services.inbound.put(spool_key, raw + entity, {"raw_length": len(raw)})
    ledger = services.ledger
    with ledger.transaction() as tx:
        ledger_id = ledger.record_in(
            tx,
            NewMessage(
                direction="inbound",
                partner="NO-SIRENE",
                channel="sirene",
                form="G",
                reference=reference,
                message_id=f"<{reference}@no.example>",
                priority=priority,
                content_sha256="a" * 64,
                raw_sha256="b" * 64,
                state=InboundState.RECEIVED,
                spool_key=spool_key,
                desk=desk,
            ),
            "spooled",
        )
        ledger.event_in(tx, ledger_id, "delivered", f"desk {desk}")
        if reply_in is not None:
            ledger.open_deadline_in(
                tx, ledger_id, kind="reply", owed_by="desk", due=services.clock.now() + reply_in
            )
    return ledger_id


@dataclass
class Console:
    services: Services
    access: AccessServices
    clock: FakeClock
    app: Starlette


@contextlib.contextmanager
def console(config_path: Path) -> Iterator[Console]:
    """The console app over the configuration, with the users of USERS (PASSWORD each)."""
    config = configuration.load(config_path)
    clock = FakeClock(START)
    with open_services(config, clock=clock) as services:
        access = open_access(config, services.ledger, clock, passwords=Passwords(CHEAP))
        for name, (roles, desks) in USERS.items():
            access.accounts.add(name, roles, desks, PASSWORD)
        yield Console(services, access, clock, build_app(services, access))


class _FormReader(HTMLParser):
    """What a browser would submit from one form of a page: text and hidden inputs, ticked
    boxes and radio buttons, selected options, text areas (no button)."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.values: dict[str, str] = {}
        self.select: str | None = None
        self.first_option: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = attributes.get("id") == self.form_id
        if not self.inside:
            return
        name = attributes.get("name", "")
        if tag == "input" and name:
            kind = attributes.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    self.values[name] = attributes.get("value", "on")
            elif kind not in ("submit", "button"):
                self.values[name] = attributes.get("value", "")
        elif tag == "select":
            self.select, self.first_option = name, None
        elif tag == "option" and self.select is not None:
            value = attributes.get("value", "")
            if self.first_option is None:
                self.first_option = value
                self.values.setdefault(self.select, value)
            if "selected" in attributes:
                self.values[self.select] = value
        elif tag == "textarea":
            self.textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.values[self.textarea] += data


def form_values(page: str, form_id: str) -> dict[str, str]:
    """The values the form ``form_id`` of ``page`` submits as it stands."""
    reader = _FormReader(form_id)
    reader.feed(page)
    return reader.values

"""Test kit for the console: a configuration on a real SQLite file (or the test PostgreSQL),
users of every role, received messages in the ledger and the inbound spool (their forms as the
pipeline keeps them), and the console app over it with a FakeClock and a cheap argon2 cost."""

from __future__ import annotations

import contextlib
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from html.parser import HTMLParser
from pathlib import Path

from accesskit import CHEAP, PASSWORD
from dbkit import upgraded
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.access.passwords import Passwords
from gateway.access.roles import Role
from gateway.access.setup import AccessServices, open_access
from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.crypto import pgpmime
from gateway.outbound.retry import iso
from gateway.service.services import Services, open_services
from gateway.store.ledger import NewMessage
from gateway.store.states import InboundState, OutboundState
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
    "cai": (frozenset({Role.HANDLER}), frozenset({"sirene"})),
    "dora": (frozenset({Role.DUTY_OFFICER}), frozenset()),
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


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG image (8-bit RGB, a red-green pattern) made here with zlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((255, 0, 0) if (x + y) % 2 else (0, 160, 0)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def listing(attachments: tuple[pgpmime.Attachment, ...]) -> str:
    """The form's Attachment elements for these files (name, media type, SHA-256)."""
    return "".join(
        f"<Attachment><FileName>{escape(item.filename)}</FileName>"
        f"<MediaType>{escape(item.media_type)}</MediaType><SHA256>{item.sha256}</SHA256>"
        "</Attachment>"
        for item in attachments
    )


def attached_form(reference: str, attachments: tuple[pgpmime.Attachment, ...]) -> bytes:
    """The sample form G with another Reference and an Attachment list naming ``attachments``."""
    text = form_xml(reference).decode("utf-8")
    return text.replace("</FormG>", listing(attachments) + "</FormG>").encode("utf-8")


def receive(
    services: Services,
    reference: str,
    *,
    desk: str = "sirene",
    form: bytes | None = None,
    priority: str = "urgent",
    reply_in: timedelta | None = timedelta(hours=12),
    attachments: tuple[pgpmime.Attachment, ...] = (),
) -> int:
    """A received form G as the pipeline leaves it: its ledger row and events, its reply
    deadline, and the message in the inbound spool (a stand-in for the raw bytes, then the
    decrypted entity, with ``attachments`` after the form, which lists them unless ``form`` is
    given). Returns the ledger id."""
    spool_key = f"in-{reference}"
    raw = b"raw message as received\r\n"
    if form is None:
        form = attached_form(reference, attachments) if attachments else form_xml(reference)
    entity = pgpmime.build_entity(form, attachments)
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


# The ledger states an outbound message passes through to reach each state, and the detail of
# each move as delivery writes it.
PATHS = {
    "queued": (),
    "sent": ("sent",),
    "acknowledged": ("sent", "acknowledged"),
    "answered": ("sent", "acknowledged", "answered"),
    "unacknowledged": ("sent", "unacknowledged"),
    "rejected": ("rejected",),
    "failed": ("failed",),
}
DETAILS = {
    "sent": "250 2.0.0 Ok: queued as 4F2A",
    "acknowledged": "receipt matched",
    "answered": "reply NO-2026-000900",
    "unacknowledged": "no receipt after 2 re-sends",
    "rejected": "550 5.1.1 <sirene@no.example>: recipient unknown",
    "failed": "gave up after 4 attempts: 451 4.3.0 mailbox busy",
}


def sent(
    services: Services,
    reference: str,
    *,
    state: str = "sent",
    desk: str = "sirene",
    errors: tuple[str, ...] = (),
    form: bytes | None = None,
) -> int:
    """A form of ours to NO-SIRENE as delivery leaves it in ``state``: its ledger row and events
    (a "deferred" event for each of ``errors``), and for one still queued (deferred: its next
    attempt 20 minutes ahead), rejected or failed (quarantined) its item in the outbound spool,
    whose payload stands for the sealed form: the form itself, so that a page that showed it
    would be seen. Returns the ledger id."""
    key = f"form.{reference}"
    ledger = services.ledger
    now = services.clock.now()
    with ledger.transaction() as tx:
        ledger_id = ledger.record_in(
            tx,
            NewMessage(
                direction="outbound",
                partner="NO-SIRENE",
                channel="sirene",
                form="G",
                reference=reference,
                message_id=f"<{reference}@ro.example>",
                priority="normal",
                content_sha256="c" * 64,
                raw_sha256="d" * 64,
                state=OutboundState.QUEUED,
                spool_key=key,
                desk=desk,
            ),
            "queued for NO-SIRENE",
        )
        for number, error in enumerate(errors, 1):
            ledger.event_in(tx, ledger_id, "deferred", f"attempt {number}: {error}")
        for step in PATHS[state]:
            ledger.set_state_in(tx, ledger_id, OutboundState(step), DETAILS[step])
    if state in ("queued", "rejected", "failed"):
        services.outbound.put(
            key,
            form if form is not None else form_xml(reference),
            {
                "to": "sirene@no.example",
                "partner": "NO-SIRENE",
                "reference": reference,
                "form": "G",
                "kind": "form",
                "ledger_id": ledger_id,
                "queued_at": iso(now),
                "attempts": len(errors),
                "not_before": iso(now + timedelta(minutes=20)),
                "last_error": errors[-1] if errors else "",
            },
        )
        if state != "queued":
            [item] = services.outbound.claim([key])
            services.outbound.set_aside(item, f"{state}: {DETAILS[state]}")
    return ledger_id


def quarantine_inbound(services: Services, spool_key: str, why: str) -> None:
    """An inbound message whose hand-off gave up: its item set aside with ``why`` as last error."""
    [item] = services.inbound.claim([spool_key])
    services.inbound.set_aside(item, why, {**item.meta, "attempts": 5, "last_error": why})


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


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found is not None, "no CSRF field in the page"
    return found.group(1)


def login(
    client: TestClient, name: str, password: str = PASSWORD, code: str = ""
) -> tuple[int, str]:
    """Log in through the form as a browser does; the status of the POST and the page it led to
    (the redirect is not followed: its target is fetched when it was a 303)."""
    token = csrf_of(client.get("/login").text)
    answer = client.post(
        "/login",
        data={"csrf": token, "name": name, "password": password, "code": code},
        follow_redirects=False,
    )
    if answer.status_code == 303:
        return 303, client.get(answer.headers["location"]).text
    return answer.status_code, answer.text


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
            elif kind not in ("submit", "button", "file"):  # a file input sends a file
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

"""Notices to a desk (failed delivery, missing receipt, reminder, escalation, report): once each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path

from gateway.config import Config, Desk
from gateway.desks import PLACEHOLDER_DOMAIN, deliver

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_WRITE_LINESEP = "\r\n"


@dataclass(frozen=True)
class Notice:
    """What a desk is told. ``key`` names the event uniquely (e.g. ``failed.42`` or
    ``reminder.17.1``): posting the same key twice leaves one message in the Maildir.

    Subject and body carry codes, References, instants and partners' replies: never the content
    of a form (the form itself is in the desk's copy of the message)."""

    kind: str  # failed | rejected | unacknowledged | reminder | escalation | key-expiry | report
    key: str
    subject: str
    body: str
    reference: str | None = None


def render_notice(config: Config, desk: Desk, notice: Notice, at: datetime) -> bytes:
    """The notice as an RFC 5322 message from the gateway to the desk."""
    domain = config.listen.hostname or PLACEHOLDER_DOMAIN
    message = MIMEText(notice.body, "plain", "utf-8")
    message["From"] = formataddr(("IPC Gateway", config.identity.address))
    message["To"] = formataddr((f"{desk.name} desk", desk.email or f"desk-{desk.name}@{domain}"))
    message["Date"] = format_datetime(at, usegmt=True)
    message["Message-ID"] = f"<notice.{_UNSAFE.sub('_', notice.key)}@{domain}>"
    message["Subject"] = f"[NOTICE] {notice.subject}"
    message["X-IPC-Notice"] = notice.kind
    if notice.reference:
        message["X-IPC-Reference"] = notice.reference
    return message.as_bytes(policy=message.policy.clone(linesep=_WRITE_LINESEP))


def post(config: Config, desk_name: str, notice: Notice, at: datetime) -> Path:
    """Deliver ``notice`` into the desk's Maildir exactly once (the name is fixed by its key).
    Raises StorageFull or StoreUnavailable when the Maildir cannot take it."""
    desk = config.desk(desk_name)
    name = "notice." + _UNSAFE.sub("_", notice.key)[:90]
    return deliver(desk.maildir, name, render_notice(config, desk, notice, at))

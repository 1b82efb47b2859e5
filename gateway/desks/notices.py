"""Notices to a desk (failed delivery, missing receipt, reminder, escalation, report): once each,
into its Maildir (and, with LMTP desk delivery, into its Dovecot mailbox) and, when it has an
e-mail address and a relay is configured, by mail.

The mail is queued in the outbound spool as an item of kind ``notice`` whose key follows from the
notice's key, so posting a notice twice sends one mail; delivery sends it only through the relay
(``[smtp.relay]``), with STARTTLS when the relay requires TLS. Notices carry codes, References,
instants and partners' replies, never the content of a form, and they are not encrypted.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path

from gateway.core.config import Config, Desk
from gateway.core.errors import DeskRefused
from gateway.desks.lmtp import LmtpSink
from gateway.desks.maildir import PLACEHOLDER_DOMAIN, deliver
from gateway.desks.sink import DeskCopy
from gateway.store.spool import KEY_PATTERN, SUFFIX, Spool

log = logging.getLogger("gateway.notices")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAIL_LINESEP = "\r\n"  # the copy that goes over SMTP; the Maildir copy ends its lines in LF
MAIL_KIND = "notice"  # the kind of an outbound spool item that is a notice by mail


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


def render_notice(
    config: Config, desk: Desk, notice: Notice, at: datetime, *, linesep: str = _MAIL_LINESEP
) -> bytes:
    """The notice as an RFC 5322 message from the gateway to the desk: CRLF for the mail, LF
    (``linesep="\\n"``) for the Maildir file."""
    domain = config.listen.hostname or PLACEHOLDER_DOMAIN
    message = MIMEText(notice.body, "plain", "utf-8")
    message["From"] = formataddr(("IPC Gateway", config.identity.address))
    message["To"] = formataddr((f"{desk.name} desk", desk.email or f"desk-{desk.name}@{domain}"))
    message["Date"] = format_datetime(at, usegmt=True)
    message["Message-ID"] = _message_id(config, notice)
    message["Subject"] = f"[NOTICE] {notice.subject}"
    message["X-IPC-Notice"] = notice.kind
    if notice.reference:
        message["X-IPC-Reference"] = notice.reference
    return message.as_bytes(policy=message.policy.clone(linesep=linesep))


def post(config: Config, desk_name: str, notice: Notice, at: datetime) -> Path:
    """Deliver ``notice`` into the desk's Maildir exactly once (the name is fixed by its key),
    with LMTP desk delivery into its Dovecot mailbox once too (looked for by its Message-ID
    first), then, for a desk with an e-mail address when a relay is configured, queue it once
    for delivery by mail. Raises StorageFull or StoreUnavailable when the Maildir or the outbound
    spool cannot take it, DeskUnavailable when Dovecot cannot (posting again later leaves one of
    each)."""
    desk = config.desk(desk_name)
    name = "notice." + _UNSAFE.sub("_", notice.key)[:90]
    copy = render_notice(config, desk, notice, at, linesep="\n")
    path = deliver(desk.maildir, name, copy)
    if config.desk_delivery.method == "lmtp":
        _to_dovecot(config, DeskCopy(desk, name, _message_id(config, notice), copy))
    if desk.email and config.relay is not None:
        queue_mail(config, desk, notice, render_notice(config, desk, notice, at), at)
    return path


def _message_id(config: Config, notice: Notice) -> str:
    domain = config.listen.hostname or PLACEHOLDER_DOMAIN
    return f"<notice.{_UNSAFE.sub('_', notice.key)}@{domain}>"


def _to_dovecot(config: Config, copy: DeskCopy) -> None:
    """The notice into the desk's Dovecot mailbox too, once: always looked for first (its
    Message-ID follows from its key). DeskUnavailable when Dovecot cannot take it now (posting
    again later leaves one); a lasting refusal is logged, the Maildir copy stays."""
    (outcome,) = LmtpSink(config.desk_delivery, config.listen.hostname).deliver([copy])
    if isinstance(outcome, DeskRefused):
        log.error("%s not delivered to the %s desk by LMTP: %s", copy.name, copy.desk.name, outcome)
    elif outcome is not None:
        raise outcome


def mail_key(notice_key: str) -> str:
    """The outbound spool key of a notice's mail: ``notice.<its key>``, or a digest of the key
    when that would not fit a spool key."""
    key = "notice." + _UNSAFE.sub("_", notice_key)
    if KEY_PATTERN.fullmatch(key) and key == "notice." + notice_key:
        return key
    return "notice." + hashlib.sha256(notice_key.encode()).hexdigest()[:40]


def queue_mail(config: Config, desk: Desk, notice: Notice, message: bytes, at: datetime) -> bool:
    """Put the rendered notice into the outbound spool for ``desk.email``; False when it was
    queued before (waiting, sent or set aside: one mail per notice key)."""
    if desk.email is None:
        raise ValueError(f"the {desk.name} desk has no e-mail address")
    spool = Spool(config.paths.spool / "outbound")
    key = mail_key(notice.key)
    if spool.exists(key) or (spool.quarantine / f"{key}{SUFFIX}").exists():
        return False
    meta = {
        "kind": MAIL_KIND,
        "to": desk.email,
        "desk": desk.name,
        "notice": notice.kind,
        "reference": notice.reference or "",
        "queued_at": at.astimezone(UTC).isoformat(),
    }
    try:
        spool.put(key, message, meta)
    except FileExistsError:
        return False
    log.info("notice %s queued for the %s desk's e-mail address", key, desk.name)
    return True

"""The alert register (`gateway alerts`, /alerts): every SIS alert and Interpol notice an exchanged
message refers to, its exchanges classified by what they were, its partners and the desk that
follows it; each view recorded in the access log, each change in the audit chain.

Who sees what: the register's lines come from what the forms say (field 005, a notice's
reference), so it is for the roles that read forms (Permission.CONTENT): a handler the alerts
that a message of her desks refers to or that her desk follows, with those desks' exchanges
only; supervisors and duty officers every alert. Operators and auditors do not see it. Setting
the desk that follows an alert, or recording that a message said it was deleted, is for the
roles with Permission.DASHBOARDS.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.access.accesslog import AccessLog, Purpose
from gateway.access.roles import Permission, Principal, Role
from gateway.forms.entities import REFERENCE
from gateway.search import index
from gateway.service.services import Services
from gateway.store import alert_rows
from gateway.store.alert_rows import DELETED, INTERPOL_NOTICE, SIS_ALERT, Exchange, Mark

# What an exchange about an alert was, by its form (FORMS.md): a hit report, supplementary
# information, an update of the alert's data or effect, or a deletion (a message the register
# marked as the one that told it; no form of the catalogue says so in its structure).
HIT, SUPPLEMENTARY, UPDATE, DELETION, OTHER = (
    "hit",
    "supplementary",
    "update",
    "deletion",
    "other",
)
CLASSES = (HIT, SUPPLEMENTARY, UPDATE, DELETION, OTHER)
BY_FORM = {
    "G": HIT,  # hit, action taken
    "H": HIT,  # hit, the procedure cannot be followed
    "IP-QUERY-RESULT": HIT,  # a search's result: hit or no hit
    "A": SUPPLEMENTARY,  # on a person wanted for arrest (EAW)
    "M": SUPPLEMENTARY,  # miscellaneous, also the reply to G H I J
    "Q": SUPPLEMENTARY,  # misused identity
    "I": SUPPLEMENTARY,  # request to use the alert's data for another purpose
    "IP-MSG": SUPPLEMENTARY,
    "IP-DIFF": SUPPLEMENTARY,
    "IP-NOTICE": SUPPLEMENTARY,
    "EU-INFO": SUPPLEMENTARY,
    "EU-RFI": SUPPLEMENTARY,
    "J": UPDATE,  # data found inaccurate, correction (or deletion of a field) proposed
    "F": UPDATE,  # flagging: the alert's action is not to be executed on that territory
}
KINDS = ("sis", "notice", *(f"art-{article}" for article in ("26", "32", "34", "36", "38", "40")))
# Why a role reads the register, written in the access log.
PURPOSES = {
    Role.HANDLER: Purpose.CASE_WORK,
    Role.SUPERVISOR: Purpose.SUPERVISION,
    Role.DUTY_OFFICER: Purpose.ESCALATION,
}
LISTING = "alerts"
AUDIT_REFERENCE = 64  # the audit chain's reference column
NEVER = datetime.min.replace(tzinfo=UTC)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ./_-]{1,63}")


class AlertRefused(Exception):
    """The principal's roles do not allow this (the console answers 403, the command exits 1)."""


class NoSuchAlert(LookupError):
    """No alert of that id the principal may see (the console answers 404, as for another
    desk's: the same refusal for both)."""


@dataclass(frozen=True)
class Classified:
    exchange: Exchange
    what: str  # one of CLASSES


@dataclass(frozen=True)
class Alert:
    """One line of the register, with the exchanges the reader may see (oldest first)."""

    key: str
    register: str
    shown: str
    article: str | None
    exchanges: tuple[Classified, ...]
    desk: str | None  # the desk that follows it
    desk_by_hand: bool  # set by a supervisor (else: the desk its last received message reached)
    status: str  # active | deleted
    told_by: int | None  # the message that said it was deleted
    hidden: int = 0  # exchanges on desks the reader does not see
    mark: Mark | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        if self.register == INTERPOL_NOTICE:
            return "Interpol notice"
        return f"SIS art. {self.article}" if self.article else "SIS alert"

    @property
    def first(self) -> datetime | None:
        return self.exchanges[0].exchange.at if self.exchanges else None

    @property
    def last(self) -> datetime | None:
        return self.exchanges[-1].exchange.at if self.exchanges else None

    @property
    def partners(self) -> tuple[str, ...]:
        return tuple(sorted({item.exchange.partner for item in self.exchanges}))

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(item.what for item in self.exchanges)
        return {what: counted[what] for what in CLASSES if counted[what]}


@dataclass(frozen=True)
class Listing:
    alerts: tuple[Alert, ...]
    role: Role
    complete: bool  # False: more exchanges than one listing reads


def key_of(alert_id: str) -> str:
    """The register's key of an alert id as a user types it (the index's folded form)."""
    return index.fold(REFERENCE, alert_id)[1]


def classify(form: str, message_id: int, mark: Mark | None) -> str:
    if mark is not None and mark.status == DELETED and mark.told_by == message_id:
        return DELETION
    return BY_FORM.get(form, OTHER)


def reader_role(principal: Principal) -> tuple[Role, frozenset[str] | None]:
    """The role that lets ``principal`` read the register and the desks it covers (None: every
    desk); AlertRefused when none does."""
    desks = principal.desks_for(Permission.CONTENT)
    if desks is not None and not desks:
        raise AlertRefused("your role does not see the alert register (it is read from forms)")
    role = principal.role_for(Permission.CONTENT) or next(
        role
        for desk in sorted(desks or ())
        if (role := principal.role_for(Permission.CONTENT, desk)) is not None
    )
    return role, desks


def listing(
    services: Services,
    access_log: AccessLog,
    principal: Principal,
    *,
    kind: str | None = None,
    desk: str | None = None,
) -> Listing:
    """The alerts ``principal`` may see, the last exchanged first, of ``kind`` (one of KINDS)
    and followed by ``desk`` when given; the view recorded in the access log."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{kind!r} is not a kind of alert: one of {', '.join(KINDS)}")
    role, desks = reader_role(principal)
    with services.ledger.reading() as tx:
        found = alert_rows.exchanges(tx, desks=desks, limit=alert_rows.LIMIT + 1)
        marks = alert_rows.marks(tx)
    complete = len(found) <= alert_rows.LIMIT
    alerts = [
        alert
        for alert in _alerts(found[-alert_rows.LIMIT :], marks, desks)
        if _is_kind(alert, kind) and (desk is None or alert.desk == desk)
    ]
    alerts.sort(key=lambda alert: (alert.last or NEVER, alert.key), reverse=True)
    with services.ledger.transaction() as tx:
        access_log.record_listing(
            tx,
            principal.name,
            role,
            LISTING,
            shown=len(alerts),
            purpose=PURPOSES.get(role, Purpose.CASE_WORK),
        )
    return Listing(tuple(alerts), role, complete)


def show(services: Services, access_log: AccessLog, principal: Principal, alert_id: str) -> Alert:
    """One alert with its exchanges on the desks ``principal`` sees; NoSuchAlert when there is
    none; the view recorded in the access log."""
    role, desks = reader_role(principal)
    alert = _read(services, alert_id, desks)
    with services.ledger.transaction() as tx:
        access_log.record_listing(
            tx,
            principal.name,
            role,
            "alert",
            shown=len(alert.exchanges),
            purpose=PURPOSES.get(role, Purpose.CASE_WORK),
            reference=alert.key[:AUDIT_REFERENCE],
        )
    return alert


def follow(services: Services, principal: Principal, alert_id: str, desk: str | None) -> Alert:
    """Set the desk that follows an alert (None: the desk its messages reach again); audited."""
    _require_supervision(principal)
    if desk is not None and desk not in {item.name for item in services.config.desks}:
        raise ValueError(f"no desk {desk!r} in the configuration")
    alert = _read(services, alert_id, None)
    now = services.clock.now()
    with services.ledger.transaction() as tx:
        alert_rows.set_desk_in(tx, alert.key, alert.register, desk=desk, by=principal.name, at=now)
        services.audit.append_in(
            tx,
            "alert.followed",
            reference=alert.key[:AUDIT_REFERENCE],
            reason=f"user={principal.name} desk={desk or '-'}",
        )
    return _read(services, alert_id, None)


def set_status(
    services: Services,
    principal: Principal,
    alert_id: str,
    status: str,
    told_by: int | None,
) -> Alert:
    """Record an alert's status as a message said it (``told_by``: a message that refers to the
    alert; required for deleted); audited. ValueError for a message that does not refer to it."""
    _require_supervision(principal)
    if status not in alert_rows.STATUSES:
        raise ValueError(f"{status!r} is not a status: one of {', '.join(alert_rows.STATUSES)}")
    alert = _read(services, alert_id, None)
    if status == DELETED and told_by is None:
        raise ValueError("a deletion names the message that told it (its ledger id)")
    referring = {item.exchange.message_id for item in alert.exchanges}
    if told_by is not None and told_by not in referring:
        raise ValueError(f"message {told_by} does not refer to alert {alert.shown}")
    now = services.clock.now()
    with services.ledger.transaction() as tx:
        alert_rows.set_status_in(
            tx, alert.key, alert.register, status=status, told_by=told_by, by=principal.name, at=now
        )
        services.audit.append_in(
            tx,
            f"alert.{status}",
            reference=alert.key[:AUDIT_REFERENCE],
            reason=f"user={principal.name} ledger={told_by if told_by is not None else '-'}",
        )
    return _read(services, alert_id, None)


def of_message(services: Services, message_id: int) -> list[tuple[str, str]]:
    """The alerts a message refers to: (key, id as written), for a link from its page."""
    with services.ledger.reading() as tx:
        return [(key, shown) for key, _, shown in alert_rows.of_message(tx, message_id)]


def as_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.shown,
        "key": alert.key,
        "register": alert.register,
        "kind": alert.kind,
        "article": alert.article,
        "status": alert.status,
        "told_by": alert.told_by,
        "desk": alert.desk,
        "desk_by_hand": alert.desk_by_hand,
        "first": alert.first.isoformat() if alert.first else None,
        "last": alert.last.isoformat() if alert.last else None,
        "partners": list(alert.partners),
        "counts": alert.counts,
        "hidden": alert.hidden,
        "exchanges": [
            {
                "ledger_id": item.exchange.message_id,
                "what": item.what,
                "direction": item.exchange.direction,
                "partner": item.exchange.partner,
                "form": item.exchange.form,
                "reference": item.exchange.reference,
                "desk": item.exchange.desk,
                "state": item.exchange.state,
                "at": item.exchange.at.isoformat(),
            }
            for item in alert.exchanges
        ],
    }


def _require_supervision(principal: Principal) -> None:
    if not principal.may(Permission.DASHBOARDS):
        raise AlertRefused("only supervisors and duty officers change the alert register")


def _read(services: Services, alert_id: str, desks: frozenset[str] | None) -> Alert:
    if _ID.fullmatch(alert_id.strip()) is None:
        raise NoSuchAlert(alert_id)
    key = key_of(alert_id)
    with services.ledger.reading() as tx:
        found = alert_rows.exchanges(tx, alert=key, desks=desks)
        marks = alert_rows.marks(tx, [key])
    alerts = _alerts(found, marks, desks)
    if not alerts:
        raise NoSuchAlert(alert_id)
    return alerts[0]


def _alerts(
    found: Sequence[Exchange], marks: dict[str, Mark], desks: frozenset[str] | None
) -> list[Alert]:
    """The exchanges grouped by alert (each list oldest first, as read)."""
    grouped: dict[str, list[Exchange]] = {}
    for exchange in found:
        grouped.setdefault(exchange.alert, []).append(exchange)
    return [_alert(key, items, marks.get(key), desks) for key, items in grouped.items()]


def _alert(
    key: str, items: list[Exchange], mark: Mark | None, desks: frozenset[str] | None
) -> Alert:
    seen = [item for item in items if desks is None or item.desk in desks]
    newest = items[-1]
    article = next((item.article for item in reversed(items) if item.article), None)
    received = [item for item in items if item.direction == "inbound" and item.desk]
    handled = (received or [item for item in items if item.desk] or [newest])[-1].desk
    by_hand = mark is not None and mark.desk is not None
    return Alert(
        key=key,
        register=newest.register,
        shown=newest.shown,
        article=article if newest.register == SIS_ALERT else None,
        exchanges=tuple(
            Classified(item, classify(item.form, item.message_id, mark)) for item in seen
        ),
        desk=mark.desk if mark is not None and mark.desk is not None else handled,
        desk_by_hand=by_hand,
        status=mark.status if mark is not None else alert_rows.ACTIVE,
        told_by=mark.told_by if mark is not None else None,
        hidden=len(items) - len(seen),
        mark=mark,
    )


def _is_kind(alert: Alert, kind: str | None) -> bool:
    if kind is None:
        return True
    if kind == "notice":
        return alert.register == INTERPOL_NOTICE
    if kind == "sis":
        return alert.register == SIS_ALERT
    return alert.register == SIS_ALERT and alert.article == kind.removeprefix("art-")

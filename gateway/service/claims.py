"""Claims on received messages as the console (and any other caller) makes them: claim, release,
hand over to another handler of the desk, close; who may do which, one holder at a time, each
change an event of the message and an audit entry (the user and the ledger id, never content).

The rules: whoever may claim on the message's desk claims one that nobody holds and that is not
closed (of two at once, one wins and the other is told who holds it); the holder releases it,
hands it over or closes it, and so may a supervisor or a duty officer (``Permission.DASHBOARDS``)
whoever holds it. A hand-over goes to an enabled user who may claim on that desk. Closing a
message also closes its open reply deadline: nothing more is owed, no reminder follows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from gateway.access.principals import principal_of
from gateway.access.roles import NAME, Permission, Principal
from gateway.store import claims, users
from gateway.store.audit import AuditLog
from gateway.store.claims import Claim
from gateway.store.ledger import Ledger, MessageRow
from gateway.store.states import DeadlineState
from gateway.store.unit import Transaction

log = logging.getLogger("gateway.claims")


class ClaimRefused(Exception):
    """A change that cannot be made as asked; ``str()`` says why in one line, for the user."""


class HeldByOther(ClaimRefused):
    """Somebody else holds the message: the loser of a race is told who, and since when."""

    def __init__(self, holder: str, since: datetime | None) -> None:
        super().__init__(f"already claimed by {holder}")
        self.holder = holder
        self.since = since


@dataclass(frozen=True)
class Done:
    """What a change left: the message's claim as it now stands."""

    claim: Claim


class Claims:
    def __init__(self, ledger: Ledger, audit: AuditLog) -> None:
        self.ledger = ledger
        self.audit = audit

    def current(self, message_id: int) -> Claim | None:
        with self.ledger.reading() as tx:
            return claims.get(tx, message_id)

    def candidates(self, desk: str | None) -> list[str]:
        """The users a message of ``desk`` may be handed over to, by name."""
        with self.ledger.reading() as tx:
            found = users.all_users(tx)
        return sorted(user.name for user in found if _may_take(user, desk))

    def claim(self, principal: Principal, row: MessageRow) -> Done:
        """``principal`` holds the message from now; HeldByOther when another does, ClaimRefused
        when it is closed. Claiming one's own claim again changes nothing."""
        self._require(principal, Permission.CLAIM, row)
        now = self.ledger.clock.now()
        with self.ledger.transaction() as tx:
            taken = claims.take_in(tx, row.id, principal.name, now)
            found = self._read(tx, row.id)
            if not taken:
                if found.closed_at is not None:
                    raise ClaimRefused("it is closed")
                if found.holder != principal.name:
                    raise HeldByOther(found.holder or "?", found.since)
                return Done(found)
            self._record(tx, row, "claim.claimed", principal.name)
        log.info("ledger %d claimed", row.id)
        return Done(found)

    def release(self, principal: Principal, row: MessageRow) -> Done:
        """Nobody holds it any more."""
        with self.ledger.transaction() as tx:
            holder = self._held_for(tx, principal, row)
            if holder is None:
                raise ClaimRefused("nobody holds it")
            if not claims.release_in(tx, row.id, holder, self.ledger.clock.now()):
                raise ClaimRefused("it changed hands meanwhile: reload the page")
            self._record(tx, row, "claim.released", principal.name, holder=holder)
            found = self._read(tx, row.id)
        log.info("ledger %d released", row.id)
        return Done(found)

    def hand_over(self, principal: Principal, row: MessageRow, to: str) -> Done:
        """``to`` holds it from now: an enabled user who may claim on the message's desk."""
        if NAME.fullmatch(to) is None:
            raise ClaimRefused("name the user to hand it over to")
        with self.ledger.transaction() as tx:
            holder = self._held_for(tx, principal, row)
            if holder is None:
                raise ClaimRefused("nobody holds it: claim it first")
            if to == holder:
                raise ClaimRefused(f"{to} already holds it")
            target = users.user_by_name(tx, to)
            if target is None or target.disabled:
                raise ClaimRefused(f"there is no active user {to}")
            if not _may_take(target, row.desk):
                raise ClaimRefused(f"{to} does not work on desk {row.desk}")
            if not claims.hand_over_in(tx, row.id, holder, to, self.ledger.clock.now()):
                raise ClaimRefused("it changed hands meanwhile: reload the page")
            self._record(tx, row, "claim.handed-over", principal.name, holder=holder, to=to)
            found = self._read(tx, row.id)
        log.info("ledger %d handed over", row.id)
        return Done(found)

    def close(self, principal: Principal, row: MessageRow) -> Done:
        """Closed on the desk (held by nobody after), its open reply deadline closed too."""
        with self.ledger.transaction() as tx:
            holder = self._held_for(tx, principal, row)
            if not claims.close_in(tx, row.id, holder, principal.name, self.ledger.clock.now()):
                raise ClaimRefused("it changed hands meanwhile: reload the page")
            reason = f"closed on the desk by {principal.name}"
            if self.ledger.close_deadline_in(tx, row.id, "reply", DeadlineState.CLOSED, reason):
                self.ledger.event_in(tx, row.id, "deadline-closed", f"reply deadline {reason}")
            self._record(tx, row, "claim.closed", principal.name, holder=holder)
            found = self._read(tx, row.id)
        log.info("ledger %d closed", row.id)
        return Done(found)

    # -- the rules and the records ----------------------------------------------------------

    def _require(self, principal: Principal, permission: Permission, row: MessageRow) -> None:
        if row.direction != "inbound" or not principal.may(permission, row.desk):
            raise ClaimRefused("your role may not claim messages of this desk")

    def _held_for(self, tx: Transaction, principal: Principal, row: MessageRow) -> str | None:
        """Who holds the message now (None: nobody), if ``principal`` may act on that claim;
        ClaimRefused otherwise (closed; HeldByOther: another holds it and ``principal`` has no
        supervisor's right)."""
        self._require(principal, Permission.CLAIM, row)
        found = claims.get(tx, row.id)
        if found is not None and found.closed_at is not None:
            raise ClaimRefused("it is closed")
        holder = found.holder if found is not None else None
        if holder is None:
            return None
        if holder != principal.name and not principal.may(Permission.DASHBOARDS):
            raise HeldByOther(holder, found.since if found is not None else None)
        return holder

    def _read(self, tx: Transaction, message_id: int) -> Claim:
        found = claims.get(tx, message_id)
        assert found is not None  # noqa: S101 (every change above made or kept the row)
        return found

    def _record(
        self,
        tx: Transaction,
        row: MessageRow,
        kind: str,
        user: str,
        *,
        holder: str | None = None,
        to: str | None = None,
    ) -> None:
        """The event on the message's timeline (``claimed``, ``released``...: the part of the
        kind after the dot) and the audit entry, last in the transaction. Names only: a user's
        name is a code."""
        said = [f"to {to}"] if to is not None else []
        said.append(f"by {user}")
        if holder is not None and holder != user:
            said.append(f"(held by {holder})")
        self.ledger.event_in(tx, row.id, kind.split(".", 1)[1], " ".join(said))
        fields = {"user": user, "ledger": str(row.id), "holder": holder, "to": to}
        reason = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        self.audit.append_in(
            tx,
            kind,
            partner=row.partner,
            form=row.form,
            reference=row.reference,
            reason=reason,
        )


def _may_take(user: users.UserRow, desk: str | None) -> bool:
    """Whether a message of ``desk`` may be handed over to ``user``: enabled, allowed to claim
    on that desk."""
    if user.disabled:
        return False
    return principal_of(user.name, user.roles, user.desks).may(Permission.CLAIM, desk)

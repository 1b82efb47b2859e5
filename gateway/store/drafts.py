"""The console's drafts in the ledger: a form's field values kept per user and desk; named
operations inside the caller's Transaction, SQL only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update

from gateway.store.ledger import as_utc, drafts
from gateway.store.unit import Transaction


@dataclass(frozen=True)
class DraftRow:
    id: int
    user_name: str
    desk: str
    form: str
    partner: str
    reply_to: int | None
    values: dict[str, str]
    created_at: datetime
    updated_at: datetime


def save(
    tx: Transaction,
    *,
    draft_id: int | None,
    user_name: str,
    desk: str,
    form: str,
    partner: str,
    reply_to: int | None,
    values: Mapping[str, str],
    now: datetime,
) -> int:
    """Keep the values: a new draft, or ``draft_id`` replaced when it is this user's (otherwise
    a new one). Returns the draft's id."""
    encoded = json.dumps(dict(values), ensure_ascii=False, sort_keys=True)
    if draft_id is not None:
        done = tx.connection.execute(
            update(drafts)
            .where(drafts.c.id == draft_id, drafts.c.user_name == user_name)
            .values(
                desk=desk,
                form=form,
                partner=partner,
                reply_to=reply_to,
                field_values=encoded,
                updated_at=now,
            )
        )
        if done.rowcount == 1:
            return draft_id
    key = tx.connection.execute(
        insert(drafts).values(
            user_name=user_name,
            desk=desk,
            form=form,
            partner=partner,
            reply_to=reply_to,
            field_values=encoded,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new draft")
    return int(key[0])


def get(tx: Transaction, draft_id: int, user_name: str) -> DraftRow | None:
    """The draft if it is this user's; None otherwise (another's is as one that does not exist)."""
    row = tx.connection.execute(
        select(drafts).where(drafts.c.id == draft_id, drafts.c.user_name == user_name)
    ).first()
    return _row(dict(row._mapping)) if row is not None else None


def of_user(tx: Transaction, user_name: str, desks: frozenset[str] | None) -> list[DraftRow]:
    """The user's drafts, newest first, of the given desks (None: every desk)."""
    statement = select(drafts).where(drafts.c.user_name == user_name)
    if desks is not None:
        statement = statement.where(drafts.c.desk.in_(sorted(desks)))
    rows = tx.connection.execute(statement.order_by(drafts.c.id.desc())).all()
    return [_row(dict(row._mapping)) for row in rows]


def remove(tx: Transaction, draft_id: int, user_name: str) -> bool:
    done = tx.connection.execute(
        delete(drafts).where(drafts.c.id == draft_id, drafts.c.user_name == user_name)
    )
    return done.rowcount == 1


def _row(mapping: Mapping[str, object]) -> DraftRow:
    values = json.loads(str(mapping["field_values"]))
    return DraftRow(
        id=int(str(mapping["id"])),
        user_name=str(mapping["user_name"]),
        desk=str(mapping["desk"]),
        form=str(mapping["form"]),
        partner=str(mapping["partner"]),
        reply_to=int(str(mapping["reply_to"])) if mapping["reply_to"] is not None else None,
        values={str(key): str(value) for key, value in values.items()},
        created_at=as_utc(mapping["created_at"]),  # type: ignore[arg-type]
        updated_at=as_utc(mapping["updated_at"]),  # type: ignore[arg-type]
    )

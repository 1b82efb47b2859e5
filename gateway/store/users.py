"""The console's users, API keys and sessions in the ledger: named operations, SQL only.

What a row means (roles, lockout, expiry) is decided in gateway.access; these operations read
and write rows inside the caller's Transaction (``ledger.transaction()`` / ``ledger.reading()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from gateway.store.ledger import api_keys, as_utc, sessions, users
from gateway.store.unit import Transaction


@dataclass(frozen=True)
class UserRow:
    id: int
    name: str
    display_name: str
    roles: str
    desks: str
    password_hash: str
    totp_secret: str | None
    totp_last_step: int | None
    disabled: bool
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApiKeyRow:
    id: int
    name: str
    key_sha256: str
    roles: str
    desks: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class SessionRow:
    token_sha256: str
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


def _instants(data: dict[str, Any]) -> dict[str, Any]:
    return {
        key: as_utc(value) if isinstance(value, datetime) else value for key, value in data.items()
    }


# Users


def insert_user(
    tx: Transaction,
    *,
    name: str,
    roles: str,
    desks: str,
    password_hash: str,
    now: datetime,
    display_name: str = "",
) -> int:
    """A new user; LedgerConflict when the name is taken."""
    key = tx.connection.execute(
        insert(users).values(
            name=name,
            display_name=display_name,
            roles=roles,
            desks=desks,
            password_hash=password_hash,
            disabled=False,
            failed_logins=0,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new user")
    return int(key[0])


def user_by_name(tx: Transaction, name: str, *, for_update: bool = False) -> UserRow | None:
    """The user called ``name``; ``for_update`` locks the row until the commit (PostgreSQL; on
    SQLite the write transaction holds the database already)."""
    statement = select(users).where(users.c.name == name)
    if for_update and tx.dialect == "postgresql":
        statement = statement.with_for_update()
    row = tx.connection.execute(statement).first()
    return UserRow(**_instants(dict(row._mapping))) if row else None


def user_by_id(tx: Transaction, user_id: int) -> UserRow | None:
    row = tx.connection.execute(select(users).where(users.c.id == user_id)).first()
    return UserRow(**_instants(dict(row._mapping))) if row else None


def all_users(tx: Transaction) -> list[UserRow]:
    rows = tx.connection.execute(select(users).order_by(users.c.name)).all()
    return [UserRow(**_instants(dict(row._mapping))) for row in rows]


def update_user(tx: Transaction, user_id: int, now: datetime, **values: Any) -> None:
    """Set columns of a user (password_hash, roles, desks, disabled, totp_secret, totp_last_step,
    failed_logins, locked_until, last_login_at, display_name); ``updated_at`` becomes ``now``."""
    allowed = {
        "password_hash",
        "roles",
        "desks",
        "disabled",
        "totp_secret",
        "totp_last_step",
        "failed_logins",
        "locked_until",
        "last_login_at",
        "display_name",
    }
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"not a column a user's update may set: {', '.join(sorted(unknown))}")
    tx.connection.execute(
        update(users).where(users.c.id == user_id).values(**values, updated_at=now)
    )


# Sessions


def insert_session(
    tx: Transaction, token_sha256: str, user_id: int, *, now: datetime, expires_at: datetime
) -> None:
    tx.connection.execute(
        insert(sessions).values(
            token_sha256=token_sha256,
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
        )
    )


def session_by_hash(tx: Transaction, token_sha256: str) -> SessionRow | None:
    row = tx.connection.execute(
        select(sessions).where(sessions.c.token_sha256 == token_sha256)
    ).first()
    return SessionRow(**_instants(dict(row._mapping))) if row else None


def touch_session(tx: Transaction, token_sha256: str, now: datetime) -> None:
    tx.connection.execute(
        update(sessions).where(sessions.c.token_sha256 == token_sha256).values(last_seen_at=now)
    )


def delete_session(tx: Transaction, token_sha256: str) -> bool:
    gone = tx.connection.execute(
        delete(sessions).where(sessions.c.token_sha256 == token_sha256)
    ).rowcount
    return bool(gone)


def delete_sessions_of(tx: Transaction, user_id: int) -> int:
    """End every session of a user (disabled, password or roles changed); how many."""
    return int(
        tx.connection.execute(delete(sessions).where(sessions.c.user_id == user_id)).rowcount
    )


def delete_stale_sessions(tx: Transaction, *, now: datetime, idle_before: datetime) -> int:
    """Delete sessions past their absolute end or unused since ``idle_before``; how many."""
    return int(
        tx.connection.execute(
            delete(sessions).where(
                or_(sessions.c.expires_at <= now, sessions.c.last_seen_at <= idle_before)
            )
        ).rowcount
    )


# API keys


def insert_api_key(
    tx: Transaction, *, name: str, key_sha256: str, roles: str, desks: str, now: datetime
) -> int:
    """A new API key; LedgerConflict when the name is taken."""
    key = tx.connection.execute(
        insert(api_keys).values(
            name=name, key_sha256=key_sha256, roles=roles, desks=desks, created_at=now
        )
    ).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new API key")
    return int(key[0])


def api_key_by_hash(tx: Transaction, key_sha256: str) -> ApiKeyRow | None:
    row = tx.connection.execute(select(api_keys).where(api_keys.c.key_sha256 == key_sha256)).first()
    return ApiKeyRow(**_instants(dict(row._mapping))) if row else None


def all_api_keys(tx: Transaction) -> list[ApiKeyRow]:
    rows = tx.connection.execute(select(api_keys).order_by(api_keys.c.name)).all()
    return [ApiKeyRow(**_instants(dict(row._mapping))) for row in rows]


def touch_api_key(tx: Transaction, key_id: int, now: datetime) -> None:
    tx.connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))


def revoke_api_key(tx: Transaction, name: str, now: datetime) -> bool:
    """Revoke the key called ``name``; False when there is none, or it was revoked already."""
    revoked = tx.connection.execute(
        update(api_keys)
        .where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    return bool(revoked)

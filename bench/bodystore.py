"""For bench/inbound.py --bodies database: two ledgers on one PostgreSQL, one gateway keeping the
bodies in its spool and one keeping them in the ledger, each with its own spool and desks."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from gateway.core import config as configuration
from gateway.core.config import ClusterSettings, StoreSettings
from gateway.store import schema
from gateway.store.ledger import make_engine


@contextmanager
def schemas(url: str, count: int) -> Iterator[list[str]]:
    """``count`` new, empty schemas on the PostgreSQL at ``url`` (dropped afterwards), as URLs
    whose connections see only their own, each upgraded to this gateway's revision."""
    if not url.startswith("postgresql"):
        raise SystemExit("--bodies database needs --database postgresql+psycopg://...")
    names = [f"bench_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    admin = make_engine(url)
    try:
        with admin.begin() as connection:
            for name in names:
                connection.execute(text(f'CREATE SCHEMA "{name}"'))
        urls = [f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{n}" for n in names]
        for one in urls:
            engine = make_engine(one)
            try:
                schema.upgrade(engine)
            finally:
                engine.dispose()
        yield urls
    finally:
        with admin.begin() as connection:
            for name in names:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def variant(
    config: configuration.Config, base: Path, url: str, bodies: str
) -> configuration.Config:
    """The benchmark's configuration on ledger ``url`` with the bodies kept in ``bodies``,
    its spool and desks under ``base/<bodies>``."""
    root = base / bodies
    desks = tuple(
        dataclasses.replace(desk, maildir=root / "desks" / desk.name) for desk in config.desks
    )
    return dataclasses.replace(
        config,
        database_url=url,
        paths=dataclasses.replace(config.paths, spool=root / "spool"),
        desks=desks,
        store=StoreSettings(bodies=bodies),
        cluster=ClusterSettings(node=f"bench-{bodies}"),
    )

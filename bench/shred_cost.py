"""Benchmark: what shredding costs on SQLite.

A ledger of --messages received messages (each with a spooled item, a desk copy and six index
entries: five persons and a document) is shredded by the retention purge, and measured:
- the purge per message (digests read, files deleted and synced, index rows deleted, stub and
  audit line written: two transactions a message), with ``secure_delete`` on (the gateway's
  setting) and off;
- what ``secure_delete`` costs the intake: recording a message with its index rows, and its
  state changed, per message, on and off;
- the clearing after a run (the trigram indexes merged, the log written back and truncated).

    .venv/bin/python bench/shred_cost.py [--messages 2000] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import index
from gateway.store import search_rows, shred_rows
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, NewMessage, create_schema, make_engine
from gateway.store.search_rows import Where
from gateway.store.spool import Spool
from gateway.store.states import InboundState
from gateway.tracking.retention import Purger

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=31)
SYLLABLES = ("ko", "va", "ler", "mi", "stan", "dra", "pe", "nu", "zi", "gor", "al", "bert")
CONFIG = """
[identity]
country = "RO"
address = "sirene@ro.example"
bureaux = {{ sirene = "RO-SIRENE" }}

[paths]
gnupg_home = "{folder}/gnupg"
spool = "{folder}/spool"

[database]
url = "sqlite:///{folder}/ledger.db"

[[desks]]
name = "sirene"
maildir = "{folder}/desks/sirene"

[[routes]]
desk = "sirene"

[[retention]]
keep = "P30D"
"""


def name(pick: random.Random) -> str:
    def word() -> str:
        return "".join(pick.choice(SYLLABLES) for _ in range(pick.randint(2, 4))).capitalize()

    return f"{word()} {word()}"


def message(number: int) -> NewMessage:
    return NewMessage(
        direction="inbound",
        partner="NO-SIRENE",
        channel="sirene",
        form="G",
        reference=f"NO-2026-{number:06d}",
        message_id=f"<{number}@no.example>",
        priority="normal",
        content_sha256="a" * 64,
        raw_sha256="b" * 64,
        state=InboundState.RECEIVED,
        spool_key=f"NO-SIRENE.NO-2026-{number:06d}.0123456789abcdef",
        desk="sirene",
    )


@contextmanager
def gateway(folder: Path, *, secure: bool) -> Iterator[tuple[configuration.Config, Ledger]]:
    folder.mkdir(parents=True)
    path = folder / "gateway.toml"
    path.write_text(CONFIG.format(folder=folder))
    config = configuration.load(path)
    engine = make_engine(config.database_url)

    @event.listens_for(engine, "connect")
    def _secure(connection: Any, _record: Any) -> None:  # after the gateway's own pragmas
        connection.execute(f"PRAGMA secure_delete={'ON' if secure else 'OFF'}")

    create_schema(engine)
    try:
        yield config, Ledger(engine, FakeClock(NOW))
    finally:
        engine.dispose()


def fill(config: configuration.Config, ledger: Ledger, count: int, seed: int) -> float:
    """``count`` received messages with their files and index rows; seconds per message."""
    pick = random.Random(seed)
    inbound = Spool(config.paths.spool / "inbound")
    maildir = config.desk("sirene").maildir / "cur"
    maildir.mkdir(parents=True)
    body = bytes(pick.getrandbits(8) for _ in range(20_000))
    start = time.perf_counter()
    for number in range(count):
        new = message(number)
        with ledger.transaction() as tx:
            ledger_id = ledger.record_in(tx, new, "spooled")
            persons = [Entity("person", "name", name(pick), "1980-01-01") for _ in range(5)]
            found = [*persons, Entity("document", "passport", f"X{pick.randrange(10**8):08d}")]
            index.write_in(tx, Where(ledger_id, "inbound", "NO-SIRENE", "sirene", "G"), found, NOW)
            ledger.set_state_in(tx, ledger_id, InboundState.DELIVERED, "desk sirene")
        assert new.spool_key is not None
        inbound.put(new.spool_key, body, {"raw_length": 100})
        inbound.finish(inbound.claim([new.spool_key]))
        (maildir / f"{ledger_id}.{new.reference}:2,S").write_bytes(body[:8000])
    return (time.perf_counter() - start) / count


def run(folder: Path, count: int, *, secure: bool) -> dict[str, float]:
    with gateway(folder, secure=secure) as (config, ledger):
        intake = fill(config, ledger, count, seed=7)
        purger = Purger(
            config=config,
            ledger=ledger,
            audit=AuditLog(ledger.engine, ledger.clock),
            inbound=Spool(config.paths.spool / "inbound"),
            outbound=Spool(config.paths.spool / "outbound"),
        )
        start = time.perf_counter()
        done = purger.purge(LATER)
        purge = time.perf_counter() - start
        assert done.messages == count, done
        start = time.perf_counter()
        shred_rows.clear_sqlite(ledger.engine)
        clear_again = time.perf_counter() - start
    return {
        "intake_ms_per_message": round(intake * 1e3, 3),
        "purge_ms_per_message": round(purge / count * 1e3, 3),
        "purge_seconds": round(purge, 2),
        "clear_seconds_nothing_to_do": round(clear_again, 3),
    }


def clearing(folder: Path, count: int) -> dict[str, float]:
    """The merge of the trigram indexes and the log's truncation after deleting a tenth of the
    entries of a ledger of ``count`` messages."""
    with gateway(folder, secure=True) as (config, ledger):
        fill(config, ledger, count, seed=9)
        with ledger.transaction() as tx:
            for ledger_id in range(1, count // 10 + 1):
                search_rows.delete_of_message_in(tx, ledger_id)
        start = time.perf_counter()
        cleared = shred_rows.clear_sqlite(ledger.engine)
        seconds = time.perf_counter() - start
        size = (folder / "ledger.db").stat().st_size
    return {"clear_seconds": round(seconds, 3), "log_truncated": cleared, "ledger_mb": size >> 20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shred") as tmp:
        root = Path(tmp)
        result = {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "messages": args.messages,
            "secure_delete_on": run(root / "on", args.messages, secure=True),
            "secure_delete_off": run(root / "off", args.messages, secure=False),
            "clearing": clearing(root / "clear", args.messages * 5),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

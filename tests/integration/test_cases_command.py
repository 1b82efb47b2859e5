"""`gateway cases`: list and show (text and JSON), the actions by hand as a user with a reason
(refused without one, or for a role that may not act, with nothing changed), and regroup."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbkit import RECEIVED, upgraded
from integration.test_users_command import CONFIG, PASSWORD

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.store.audit import AuditLog
from gateway.store.ledger import Ledger, make_engine


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """A ledger with users and a request, its reply (recorded before cases: in no case yet) and
    a lone message."""
    url = upgraded(f"sqlite:///{tmp_path / 'ledger.db'}")
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(url=url))
    loaded = configuration.load(path)
    engine = make_engine(url)
    ledger = Ledger(engine, SystemClock())
    access = open_access(loaded, ledger, SystemClock())
    access.accounts.add("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}), PASSWORD)
    access.accounts.add("olga", frozenset({Role.OPERATOR}), frozenset(), PASSWORD)
    with ledger.transaction() as tx:
        for number, reply_to in ((1, None), (2, "NO-2026-000001"), (3, None)):
            reference = f"NO-2026-{number:06d}"
            new = dataclasses.replace(
                RECEIVED, reference=reference, spool_key=reference, in_reply_to=reply_to
            )
            ledger.record_in(tx, new, "spooled")
    engine.dispose()
    yield path


def run(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(config), "cases", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_regroup_list_show_and_act(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    assert run(capsys, config) == (0, "(no case)\n", "")
    code, out, _ = run(capsys, config, "regroup", "--json")
    assert (code, json.loads(out)) == (0, {"grouped": 1})
    code, out, _ = run(capsys, config, "list", "--status", "open", "--json")
    [case] = json.loads(out)
    assert (case["status"], case["desk"], case["messages"]) == ("open", "sirene", 2)
    number = case["number"]
    code, out, _ = run(capsys, config, "show", number)
    assert code == 0 and "NO-2026-000002" in out and "reply-chain" in out

    code, _, err = run(
        capsys, config, "link", number, "NO-2026-000003", "--user", "ana", "--reason", " "
    )
    assert code == 1 and "reason is required" in err
    code, _, err = run(capsys, config, "close", number, "--user", "olga", "--reason", "done")
    assert code == 1 and f"no case {number}" in err
    code, _, err = run(capsys, config, "close", number, "--user", "nobody", "--reason", "done")
    assert code == 2 and "no user" in err
    assert json.loads(run(capsys, config, "show", number, "--json")[1])["status"] == "open"

    code, out, _ = run(
        capsys, config, "link", number, "NO-2026-000003", "--user", "ana", "--reason", "same matter"
    )
    assert code == 0 and "3 message(s)" in out
    code, _, err = run(
        capsys, config, "desk", number, "interpol", "--user", "ana", "--reason", "theirs"
    )
    assert code == 1 and "supervisor" in err
    code, _, err = run(
        capsys, config, "merge", number, "--into", number, "--user", "ana", "--reason", "x"
    )
    assert code == 1 and "into itself" in err
    code, out, _ = run(capsys, config, "close", number, "--user", "ana", "--reason", "done")
    assert (code, out) == (0, f"{number}: closed, desk sirene, 3 message(s)\n")
    shown = json.loads(run(capsys, config, "show", number, "--json")[1])
    assert [event["kind"] for event in shown["timeline"]] == [
        "opened",
        "linked",
        "linked",
        "linked",
        "closed",
    ]
    assert shown["closed_by"] == "ana"
    assert run(capsys, config, "list", "--status", "open")[1] == "(no case)\n"
    engine = make_engine(configuration.load(config).database_url)
    try:
        log = AuditLog(engine, SystemClock())
        kinds = [entry.kind for entry in log.entries() if entry.kind.startswith("case.")]
        assert kinds == ["case.linked", "case.closed"]
        assert log.verify() == []
    finally:
        engine.dispose()

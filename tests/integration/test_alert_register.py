"""The alert register (`gateway alerts`) on SQLite and PostgreSQL, over sample forms exchanged as
the intake and submit record them: exchanges classified by their form, the desk that followed the
alert, a deletion recorded from the message that told it, desk isolation (another desk's alert is
not there, as one that does not exist), operators refused, every view in the access log without
any personal data, and refused changes that store nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alertkit import exchange, sample
from dbkit import postgres_schema, upgraded
from integration.test_users_command import CONFIG, PASSWORD
from sqlalchemy import func, select

from gateway.access.roles import Role
from gateway.access.setup import open_access
from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.forms.entities import Entity
from gateway.search import index
from gateway.service.services import open_services
from gateway.store import alert_rows, search_rows
from gateway.store.audit import AuditLog
from gateway.store.ledger import ALERT_ENTRIES, alert_register, make_engine
from gateway.store.search_rows import Where
from gateway.store.unit import reading

START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
RO_ALERT = "RO0000000000123456"  # art. 26: the A, G, J and M samples name it
NL_ALERT = "NL00000000000098765"  # art. 38: the G (vehicle) and I samples name it
NOTICE = "2026/12345-1"


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """Users of every role and the exchanges: the RO alert on desk sirene (an A sent, a G hit
    received, the M answering it sent, a J received), the NL alert on desk interpol (a G and
    an I received), an Interpol notice on desk interpol (an index entry as a schema set with
    NoticeReference leaves it). The ledger ids by name."""
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{tmp_path / 'ledger.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema())
        )
        path = tmp_path / "gateway.toml"
        path.write_text(CONFIG.format(url=upgraded(url)))
        loaded = configuration.load(path)
        clock = FakeClock(START)
        ids: dict[str, int] = {}
        with open_services(loaded, clock=clock) as services:
            access = open_access(loaded, services.ledger, clock)
            for name, roles, desks in (
                ("ana", {Role.HANDLER}, {"sirene"}),
                ("ivo", {Role.HANDLER}, {"interpol"}),
                ("sue", {Role.SUPERVISOR}, set()),
                ("olga", {Role.OPERATOR}, set()),
            ):
                access.accounts.add(name, frozenset(roles), frozenset(desks), PASSWORD)
            for name, form, file, direction in (
                ("A", "A", "valid-eaw-prosecution", "outbound"),
                ("G", "G", "valid-person-arrested", "inbound"),
                ("M", "M", "valid-reply-to-hit", "outbound"),
                ("J", "J", "valid-factual-date-of-birth", "inbound"),
            ):
                reference = f"{'NO' if direction == 'inbound' else 'RO'}-2026-0001{len(ids):02d}"
                data = sample(form, file, reference=reference)
                ids[name] = exchange(services, data, direction=direction, desk="sirene")
                clock.advance(timedelta(minutes=10))
            for name, form, file in (
                ("NL-G", "G", "valid-vehicle-seized"),
                ("NL-I", "I", "valid-prevention-of-serious-crime"),
            ):
                data = sample(form, file, reference=f"NL-2026-0002{len(ids):02d}")
                ids[name] = exchange(services, data, partner="NL-SIRENE", desk="interpol")
                clock.advance(timedelta(minutes=10))
            data = sample("IP-MSG", "valid-urgent-request", reference="RS-2026-000300")
            ids["IP"] = exchange(services, data, partner="RS-NCB", desk="interpol")
            notice = index.index_rows(
                [Entity("reference", "interpol-notice", NOTICE, element="NoticeReference")]
            )
            with services.ledger.transaction() as tx:
                where = Where(ids["IP"], "inbound", "RS-NCB", "interpol", "IP-MSG")
                search_rows.add_in(tx, where, notice, clock.now())
        yield path, ids


def run(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(path), "alerts", *args])
    out, err = capsys.readouterr()
    return code, out, err


def views(path: Path) -> list[tuple[str, str, str]]:
    engine = make_engine(configuration.load(path).database_url)
    try:
        return [
            (entry.kind, entry.reference, entry.reason)
            for entry in AuditLog(engine, FakeClock(START)).entries()
            if entry.kind.startswith(("access.", "alert."))
        ]
    finally:
        engine.dispose()


def marks(path: Path) -> int:
    engine = make_engine(configuration.load(path).database_url)
    try:
        with reading(engine) as tx:
            return int(
                tx.connection.execute(select(func.count()).select_from(alert_register)).scalar_one()
            )
    finally:
        engine.dispose()


def test_a_supervisor_lists_every_alert_with_its_exchanges_classified(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = config
    code, out, _ = run(capsys, path, "list", "--user", "sue", "--json")
    assert code == 0
    listed = {alert["id"]: alert for alert in json.loads(out)}
    assert set(listed) == {RO_ALERT, NL_ALERT, NOTICE}
    ro = listed[RO_ALERT]
    assert ro["kind"] == "SIS art. 26" and ro["status"] == "active"
    assert ro["counts"] == {"hit": 1, "supplementary": 2, "update": 1}
    assert ro["partners"] == ["NO-SIRENE"] and ro["desk"] == "sirene"
    assert ro["first"] == "2026-12-04T08:00:00+00:00" and ro["last"] == "2026-12-04T08:30:00+00:00"
    assert listed[NL_ALERT]["kind"] == "SIS art. 38"
    assert listed[NL_ALERT]["counts"] == {"hit": 1, "supplementary": 1}
    assert listed[NOTICE]["kind"] == "Interpol notice"
    # The last exchanged first.
    assert list(listed) == [NOTICE, NL_ALERT, RO_ALERT]

    code, out, _ = run(capsys, path, "list", "--user", "sue", "--kind", "art-38")
    assert code == 0 and NL_ALERT in out and RO_ALERT not in out
    code, out, _ = run(capsys, path, "list", "--user", "sue", "--kind", "notice", "--json")
    assert [alert["id"] for alert in json.loads(out)] == [NOTICE]
    code, out, _ = run(capsys, path, "list", "--user", "sue", "--desk", "sirene", "--json")
    assert [alert["id"] for alert in json.loads(out)] == [RO_ALERT]


def test_show_gives_each_exchange_with_what_it_was(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = config
    code, out, _ = run(capsys, path, "show", RO_ALERT, "--user", "ana", "--json")
    assert code == 0
    shown = json.loads(out)
    assert [(item["form"], item["what"], item["direction"]) for item in shown["exchanges"]] == [
        ("A", "supplementary", "outbound"),
        ("G", "hit", "inbound"),
        ("M", "supplementary", "outbound"),
        ("J", "update", "inbound"),
    ]
    assert [item["ledger_id"] for item in shown["exchanges"]] == [
        ids["A"], ids["G"], ids["M"], ids["J"],
    ]  # fmt: skip
    # The id as a person types it: lower case, spaces.
    code, out, _ = run(capsys, path, "show", "ro 0000000000123456", "--user", "ana")
    assert code == 0 and "SIS art. 26" in out and "hit" in out and "update" in out


def test_a_handler_sees_only_the_alerts_of_her_desks(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = config
    code, out, _ = run(capsys, path, "list", "--user", "ana", "--json")
    assert code == 0 and [alert["id"] for alert in json.loads(out)] == [RO_ALERT]
    code, out, _ = run(capsys, path, "list", "--user", "ivo", "--json")
    assert {alert["id"] for alert in json.loads(out)} == {NL_ALERT, NOTICE}
    # Another desk's alert is refused as one that does not exist.
    other = run(capsys, path, "show", RO_ALERT, "--user", "ivo")
    missing = run(capsys, path, "show", "XX0000000000000000", "--user", "ivo")
    assert other[0] == missing[0] == 1
    assert other[2].replace(RO_ALERT, "X") == missing[2].replace("XX0000000000000000", "X")


def test_an_operator_does_not_see_the_register(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = config
    before = views(path)
    code, out, err = run(capsys, path, "list", "--user", "olga")
    assert code == 1 and out == "" and "does not see the alert register" in err
    assert views(path) == before  # nothing shown, nothing recorded


def test_every_view_is_in_the_access_log_without_personal_data(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = config
    assert run(capsys, path, "list", "--user", "ana")[0] == 0
    assert run(capsys, path, "show", RO_ALERT, "--user", "sue")[0] == 0
    lines = views(path)
    assert lines[-2:] == [
        ("access.view", "", "user=ana role=handler purpose=case-work list=alerts shown=1"),
        (
            "access.view",
            "R00000000000123456",  # the register's key: the id folded (O read as 0)
            "user=sue role=supervisor purpose=supervision list=alert shown=4",
        ),
    ]
    assert not any("EXEMPLU" in reason or "19" in reason for _, _, reason in lines)


def test_a_deletion_told_by_a_message_marks_the_alert_and_classifies_that_message(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, ids = config
    code, out, _ = run(
        capsys, path, "status", RO_ALERT, "deleted", "--message", str(ids["M"]), "--user", "sue"
    )
    assert code == 0 and out == f"{RO_ALERT}: deleted\n"
    code, out, _ = run(capsys, path, "show", RO_ALERT, "--user", "ana", "--json")
    shown = json.loads(out)
    assert shown["status"] == "deleted" and shown["told_by"] == ids["M"]
    assert [item["what"] for item in shown["exchanges"]] == [
        "supplementary", "hit", "deletion", "update",
    ]  # fmt: skip
    code, out, _ = run(capsys, path, "list", "--user", "sue", "--json")
    counts = {alert["id"]: alert["counts"] for alert in json.loads(out)}
    assert counts[RO_ALERT] == {"hit": 1, "supplementary": 1, "update": 1, "deletion": 1}
    assert ("alert.deleted", "R00000000000123456", f"user=sue ledger={ids['M']}") in views(path)


def test_a_supervisor_sets_the_desk_that_follows_an_alert(
    config: tuple[Path, dict[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = config
    assert run(capsys, path, "follow", NL_ALERT, "--desk", "sirene", "--user", "sue")[0] == 0
    _, out, _ = run(capsys, path, "list", "--user", "ana", "--json")
    # Followed by her desk: she sees it now, without the other desk's exchanges.
    assert {alert["id"]: alert["desk"] for alert in json.loads(out)} == {
        RO_ALERT: "sirene", NL_ALERT: "sirene",
    }  # fmt: skip
    _, out, _ = run(capsys, path, "show", NL_ALERT, "--user", "ana", "--json")
    shown = json.loads(out)
    assert shown["desk_by_hand"] is True and shown["exchanges"] == [] and shown["hidden"] == 2
    assert run(capsys, path, "follow", NL_ALERT, "--unset", "--user", "sue")[0] == 0
    _, out, _ = run(capsys, path, "list", "--user", "ana", "--json")
    assert [alert["id"] for alert in json.loads(out)] == [RO_ALERT]


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (("status", RO_ALERT, "deleted", "--user", "sue"), 2, "names the message that told it"),
        (("status", RO_ALERT, "deleted", "--message", "NL-G", "--user", "sue"), 2, "not refer"),
        (("follow", RO_ALERT, "--desk", "nowhere", "--user", "sue"), 2, "no desk 'nowhere'"),
        (("follow", RO_ALERT, "--desk", "sirene", "--user", "ana"), 1, "only supervisors"),
        (("status", RO_ALERT, "deleted", "--message", "M", "--user", "ana"), 1, "only supervisors"),
        (("follow", "ZZ0000000000000000", "--desk", "sirene", "--user", "sue"), 1, "no alert"),
        (("list", "--user", "nobody"), 2, "no user 'nobody'"),
    ],
)
def test_a_refused_change_stores_nothing(
    config: tuple[Path, dict[str, int]],
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    exit_code: int,
    says: str,
) -> None:
    path, ids = config
    args = tuple(str(ids[arg]) if arg in ids else arg for arg in args)
    before = views(path)
    code, out, err = run(capsys, path, *args)
    assert (code, out) == (exit_code, "")
    assert says in err
    assert marks(path) == 0 and views(path) == before


def test_a_listing_reads_the_newest_exchanges_by_the_partial_index(
    config: tuple[Path, dict[str, int]],
) -> None:
    path, ids = config
    # The partial index's predicate names every register the rows are read from.
    assert all(f"'{register}'" in ALERT_ENTRIES for register in alert_rows.REGISTERS)
    engine = make_engine(configuration.load(path).database_url)
    try:
        with reading(engine) as tx:
            newest = alert_rows.exchanges(tx, limit=2)
            every = alert_rows.exchanges(tx)
    finally:
        engine.dispose()
    assert [item.message_id for item in newest] == [ids["NL-I"], ids["IP"]]
    assert [item.message_id for item in every][-2:] == [ids["NL-I"], ids["IP"]]
    assert len(every) == 7

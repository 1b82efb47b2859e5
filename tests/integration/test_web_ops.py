"""The operators' and the auditor's pages of the console against the real app, a real ledger and
real spool folders: the outbound list and its retry, the quarantine and queues with release,
send now and drop, the access log with its filters and the chain's verification, the navigation;
no form content reaches an operator or an auditor, every action needs its CSRF token and is
audited, and the roles without the permission are refused."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from dbkit import postgres_schema
from starlette.testclient import TestClient
from webkit import (
    Console,
    console,
    csrf_of,
    form_xml,
    login,
    quarantine_inbound,
    receive,
    sent,
    write_config,
)

from gateway.outbound.retry import not_before
from gateway.store.ledger import audit as audit_table
from gateway.store.spool import Spool

# The personal data of the forms in the ledger: no operator's or auditor's page may hold any.
PERSONAL = {
    "FamilyName": "QUARTZLEWINSKY",
    "GivenName": "Zebulon",
    "Number": "ZX9182736",
    "Locality": "Vardohusbyen",
}
ACTION = "Suspect detained pending surrender."
SECRETS = (*PERSONAL.values(), ACTION)
STUCK = "in-NO-2026-000002"  # the inbound message whose hand-off gave up


def personal_form(reference: str) -> bytes:
    return form_xml(reference, ACTION, **PERSONAL)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    """A ledger with two received forms (one quarantined after its hand-off gave up) and our
    forms in every outbound state, the queued, rejected and failed ones in the spool."""
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        seed(made)
        yield made


def seed(desk: Console) -> dict[str, int]:
    services = desk.services
    ids = {"in-1": receive(services, "NO-2026-000001", form=personal_form("NO-2026-000001"))}
    ids["in-2"] = receive(services, "NO-2026-000002", form=personal_form("NO-2026-000002"))
    quarantine_inbound(services, STUCK, "cannot deliver into the Maildir: disk full")
    for number, (state, errors) in enumerate(
        (
            ("answered", ()),
            ("acknowledged", ("421 4.7.0 try again later",)),
            ("sent", ()),
            ("queued", ("451 4.3.0 mailbox busy", "451 4.3.0 mailbox busy again")),
            ("rejected", ()),
            ("failed", ("451 4.3.0 a", "451 4.3.0 b", "451 4.3.0 c")),
        ),
        1,
    ):
        desk.clock.advance(timedelta(minutes=1))
        reference = f"RO-2026-00000{number}"
        ids[state] = sent(
            services, reference, state=state, errors=errors, form=personal_form(reference)
        )
    ids["interpol"] = sent(services, "RO-2026-000007", desk="interpol")
    return ids


@pytest.fixture
def client(desk: Console) -> Iterator[TestClient]:
    with TestClient(desk.app, follow_redirects=False) as made:
        yield made


def signed_in(desk: Console, name: str) -> TestClient:
    client = TestClient(desk.app, follow_redirects=False)
    assert login(client, name)[0] == 303
    return client


def queue_audit(desk: Console) -> list[tuple[str, str, str]]:
    return [
        (entry.kind, entry.reference, entry.reason)
        for entry in desk.services.audit.entries()
        if entry.kind.startswith("queue.")
    ]


def folder_of(spool: Spool, key: str) -> str:
    """Where the spool holds ``key``: new, cur, done or quarantine ("" when it does not)."""
    try:
        return spool.get(key).path.parent.name
    except KeyError:
        return ""


def ids_of(page: str, ident: str) -> list[str]:
    return re.findall(rf'id="{ident}-([^"]+)"', page)


def token(client: TestClient, url: str = "/quarantine") -> str:
    return csrf_of(client.get(url).text)


# -- no content for operators and auditors ------------------------------------------------------


def test_operators_and_auditors_never_receive_form_content(desk: Console) -> None:
    with signed_in(desk, "ana") as handler:  # the control: the content is there to be seen
        page = handler.get("/messages/1").text
        assert all(secret in page for secret in SECRETS)
    operator_pages = [
        "/",
        "/?form=G",
        "/messages/1",
        "/messages/2",
        "/outbound",
        "/outbound?receipts=1",
        "/outbound?state=failed",
        "/outbound?state=queued",
        "/quarantine",
        "/queues",
        "/queues?queue=inbound",
        f"/queues/drop?queue=inbound&key={STUCK}",
        "/queues/drop?queue=outbound&key=form.RO-2026-000006",
        "/queues/drop?queue=outbound&key=form.RO-2026-000004",
    ]
    bodies: list[str] = []
    with signed_in(desk, "olaf") as operator:
        for url in operator_pages:
            answer = operator.get(url)
            assert answer.status_code == 200, url
            bodies.append(answer.text)
        # Its actions' pages too: release, send now, retry, and the redirects' pages.
        csrf = token(operator)
        for url, fields in (
            ("/queues/release", {"queue": "inbound", "key": STUCK}),
            ("/queues/retry", {"key": "form.RO-2026-000004"}),
            (f"/outbound/{_id(desk, 'RO-2026-000006')}/retry", {}),
        ):
            answer = operator.post(url, data={"csrf": csrf, **fields})
            assert answer.status_code == 303, (url, answer.text)
            bodies.append(operator.get(answer.headers["location"]).text)
    with signed_in(desk, "aud") as auditor:
        for url in ("/access-log", "/access-log?kind=all", "/access-log?user=ana", "/"):
            answer = auditor.get(url)
            bodies.append(answer.text)
            assert answer.status_code in (200, 303)
        for url in ("/messages/1", "/outbound", "/quarantine"):
            answer = auditor.get(url)
            assert answer.status_code == 403
            bodies.append(answer.text)
    assert "NO-2026-000001" in "".join(bodies)  # metadata is there
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
        # Nothing inline that the Content-Security-Policy would have to allow: a script is a
        # static file.
        assert re.findall(r"<script(?![^>]* src=\"/static/)", body) == []
        assert "style=" not in body and "<style" not in body


def _id(desk: Console, reference: str) -> int:
    [row] = desk.services.ledger.by_reference(reference)
    return row.id


# -- who may use which page ---------------------------------------------------------------------


def test_each_role_sees_its_pages_in_the_navigation(desk: Console) -> None:
    expected = {
        "ana": ["worklist", "outbound", "compose", "search", "cases", "alerts"],
        "sue": [
            "worklist",
            "outbound",
            "compose",
            "search",
            "cases",
            "alerts",
            "deadlines",
            "dashboard",
            "subject-report",
        ],
        "olaf": ["worklist", "outbound", "dashboard", "quarantine"],
        "aud": ["cases", "access-log", "subject-report"],
    }
    for name, links in expected.items():
        with signed_in(desk, name) as client:
            home = client.get("/")
            if home.status_code == 303:
                home = client.get(home.headers["location"])
            page = home.text
            nav = page[page.index('id="nav"') : page.index("</nav>")]
            assert re.findall(r'id="nav-([a-z-]+)"', nav) == links, name


def test_a_handler_gets_403_on_the_operators_and_auditors_pages(desk: Console) -> None:
    with signed_in(desk, "ana") as handler:
        csrf = token(handler, "/")
        for url in ("/quarantine", "/queues", f"/queues/drop?queue=inbound&key={STUCK}"):
            assert handler.get(url).status_code == 403, url
        assert handler.get("/access-log").status_code == 403
        for url, fields in (
            ("/queues/release", {"queue": "inbound", "key": STUCK}),
            ("/queues/retry", {"key": "form.RO-2026-000004"}),
            ("/queues/drop", {"queue": "inbound", "key": STUCK, "reason": "x"}),
            (f"/outbound/{_id(desk, 'RO-2026-000006')}/retry", {}),
            ("/access-log/verify", {}),
        ):
            assert handler.post(url, data={"csrf": csrf, **fields}).status_code == 403, url
    with signed_in(desk, "sue") as supervisor:  # every desk, but no queues
        assert supervisor.get("/quarantine").status_code == 403
        assert supervisor.get("/outbound").status_code == 200
    with signed_in(desk, "olaf") as operator:
        assert operator.get("/access-log").status_code == 403
    assert folder_of(desk.services.inbound, STUCK) == "quarantine"
    assert folder_of(desk.services.outbound, "form.RO-2026-000006") == "quarantine"
    assert queue_audit(desk) == []


def test_without_a_session_the_new_pages_lead_to_the_login(client: TestClient) -> None:
    for url in ("/outbound", "/quarantine", "/queues", "/access-log"):
        answer = client.get(url)
        assert (answer.status_code, answer.headers["location"]) == (303, "/login"), url
    for url in ("/queues/release", "/queues/drop", "/outbound/1/retry", "/access-log/verify"):
        assert client.post(url).headers["location"] == "/login"


# -- the outbound list --------------------------------------------------------------------------


def test_the_outbound_list_shows_state_attempts_and_the_last_error(desk: Console) -> None:
    with signed_in(desk, "olaf") as operator:
        page = operator.get("/outbound").text
        order = re.findall(r'<td class="reference">(RO-2026-\d+)</td>', page)
        assert order == [f"RO-2026-00000{n}" for n in range(7, 0, -1)]  # newest first
        failed = _row(page, _id(desk, "RO-2026-000006"))
        assert ">failed<" in failed and "<td>4</td>" in failed  # three deferred, then given up
        assert "gave up after 4 attempts: 451 4.3.0 mailbox busy" in failed
        queued = _row(page, _id(desk, "RO-2026-000004"))
        assert "<td>2</td>" in queued and "451 4.3.0 mailbox busy again" in queued
        rejected = _row(page, _id(desk, "RO-2026-000005"))
        assert "550 5.1.1 &lt;sirene@no.example&gt;: recipient unknown" in rejected
        assert "<td>1</td>" in _row(page, _id(desk, "RO-2026-000002"))  # acknowledged after one
        # Retry is offered for the rejected and the failed ones only.
        assert sorted(re.findall(r'id="retry-(\d+)"', page)) == sorted(
            str(_id(desk, ref)) for ref in ("RO-2026-000005", "RO-2026-000006")
        )
        by_state = {
            state: re.findall(
                r'<td class="reference">(RO-2026-\d+)</td>',
                operator.get(f"/outbound?state={state}").text,
            )
            for state in ("queued", "sent", "acknowledged", "answered", "failed", "rejected")
        }
        assert by_state == {
            "queued": ["RO-2026-000004"],
            "sent": ["RO-2026-000007", "RO-2026-000003"],
            "acknowledged": ["RO-2026-000002"],
            "answered": ["RO-2026-000001"],
            "failed": ["RO-2026-000006"],
            "rejected": ["RO-2026-000005"],
        }
        assert 'id="empty"' in operator.get("/outbound?partner=XX-NCB").text
        for bad in ("state=lost", "partner=<x>", "before=-1", "receipts=yes"):
            assert operator.get(f"/outbound?{bad}").status_code == 400, bad
    with signed_in(desk, "ana") as handler:  # a handler: its desks' messages, no retry
        page = handler.get("/outbound").text
        assert "RO-2026-000007" not in page and "RO-2026-000006" in page
        assert 'id="retry-' not in page


def _row(page: str, ledger_id: int) -> str:
    start = page.index(f'id="sent-{ledger_id}"')
    return page[start : page.index("</tr>", start)]


def test_the_outbound_list_pages_by_ledger_id(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", page_size=5)
    with console(config) as desk, signed_in(desk, "olaf") as operator:
        for number in range(1, 13):
            sent(desk.services, f"RO-2026-{number:06d}", state="failed" if number % 2 else "sent")
        seen, url = [], "/outbound"
        while url:
            page = operator.get(url).text
            seen.append(re.findall(r'<td class="reference">RO-2026-0000(\d\d)</td>', page))
            found = re.search(r'id="older" href="([^"]+)"', page)
            url = found.group(1).replace("&amp;", "&") if found else ""
        assert seen == [
            ["12", "11", "10", "09", "08"],
            ["07", "06", "05", "04", "03"],
            ["02", "01"],
        ]
        page = operator.get("/outbound?state=failed").text
        older = re.search(r'id="older" href="([^"]+)"', page)
        assert older is not None and "state=failed" in older.group(1)
        rest = operator.get(older.group(1).replace("&amp;", "&")).text
        assert re.findall(r'<td class="reference">(RO-2026-\d+)</td>', rest) == ["RO-2026-000001"]


def test_retry_of_a_failed_message_queues_it_again_and_is_audited(desk: Console) -> None:
    ledger_id = _id(desk, "RO-2026-000006")
    key = "form.RO-2026-000006"
    with signed_in(desk, "olaf") as operator:
        csrf = token(operator, "/outbound")
        answer = operator.post(
            f"/outbound/{ledger_id}/retry", data={"csrf": csrf, "reason": "partner fixed INC-7"}
        )
        assert (answer.status_code, answer.headers["location"]) == (
            303,
            f"/outbound?retried={ledger_id}",
        )
        assert 'id="done"' in operator.get(answer.headers["location"]).text
        item = desk.services.outbound.get(key)
        assert item.path.parent == desk.services.outbound.new  # really back in the queue
        assert "attempts" not in item.meta and item.meta["releases"] == 1
        assert desk.services.ledger.get(ledger_id).state == "queued"
        assert queue_audit(desk) == [
            (
                "queue.release",
                "RO-2026-000006",
                f"outbound {key} release by olaf: partner fixed INC-7",
            )
        ]
        # Not again: it is no longer quarantined, nor deferred.
        again = operator.post(f"/outbound/{ledger_id}/retry", data={"csrf": csrf})
        assert again.status_code == 409 and "is not deferred" in again.text
        # A sent message has no item left; an inbound id or none at all is not found.
        done = operator.post(f"/outbound/{_id(desk, 'RO-2026-000003')}/retry", data={"csrf": csrf})
        assert done.status_code == 409 and "no item" in done.text
        assert operator.post("/outbound/1/retry", data={"csrf": csrf}).status_code == 404
        assert operator.post("/outbound/9999/retry", data={"csrf": csrf}).status_code == 404
        bad = operator.post(
            f"/outbound/{_id(desk, 'RO-2026-000005')}/retry",
            data={"csrf": csrf, "reason": "two\x00lines"},
        )
        assert bad.status_code == 400 and "one printable line" in bad.text
    assert folder_of(desk.services.outbound, "form.RO-2026-000005") == "quarantine"
    assert len(queue_audit(desk)) == 1


# -- the quarantine and the queues --------------------------------------------------------------


def test_the_quarantine_lists_set_aside_items_and_the_queues_every_item(desk: Console) -> None:
    with signed_in(desk, "olaf") as operator:
        page = operator.get("/quarantine").text
        assert ids_of(page, "item") == [
            f"inbound-{STUCK}",
            "outbound-form.RO-2026-000005",
            "outbound-form.RO-2026-000006",
        ]
        assert "cannot deliver into the Maildir: disk full" in page
        assert page.count('class="release"') == 3 and 'class="send-now"' not in page
        every = operator.get("/queues").text
        assert ids_of(every, "item") == [
            "inbound-in-NO-2026-000001",  # waiting for its hand-off
            f"inbound-{STUCK}",
            "outbound-form.RO-2026-000004",
            "outbound-form.RO-2026-000005",
            "outbound-form.RO-2026-000006",
        ]
        assert every.count('class="send-now"') == 1  # the deferred one
        inbound = operator.get("/queues?queue=inbound").text
        assert ids_of(inbound, "item") == ["inbound-in-NO-2026-000001", f"inbound-{STUCK}"]
        assert operator.get("/queues?queue=sideways").status_code == 400


def test_release_puts_a_quarantined_item_back_and_is_audited(desk: Console) -> None:
    with signed_in(desk, "olaf") as operator:
        csrf = token(operator)
        answer = operator.post(
            "/queues/release",
            data={"csrf": csrf, "queue": "inbound", "key": STUCK, "back": "/quarantine"},
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/quarantine?done=release&queue=inbound&key={STUCK}"
        page = operator.get(answer.headers["location"]).text
        assert f"inbound {STUCK} is back in its queue." in page
        assert f"item-inbound-{STUCK}" not in page
        assert folder_of(desk.services.inbound, STUCK) == "new"
        row = desk.services.ledger.by_spool_key(STUCK)
        assert row is not None and desk.services.ledger.events_of(row.id)[-1][1:] == (
            "released",
            "by olaf",
        )
        assert queue_audit(desk) == [
            ("queue.release", "NO-2026-000002", f"inbound {STUCK} release by olaf")
        ]
        again = operator.post("/queues/release", data={"csrf": csrf, "key": STUCK})
        assert again.status_code == 409 and "is not quarantined (it is waiting)" in again.text
    assert len(queue_audit(desk)) == 1


def test_send_now_brings_a_deferred_item_forward(desk: Console) -> None:
    key = "form.RO-2026-000004"
    with signed_in(desk, "olaf") as operator:
        csrf = token(operator, "/queues")
        answer = operator.post("/queues/retry", data={"csrf": csrf, "key": key, "back": "/queues"})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/queues?")
        item = desk.services.outbound.get(key)
        assert item.path.parent.name == "new"
        due = not_before(item.meta)
        assert due is not None and due <= desk.clock.now()
        assert item.meta["attempts"] == 2
        assert [line[0] for line in queue_audit(desk)] == ["queue.retry"]
        refused = operator.post("/queues/retry", data={"csrf": csrf, "key": STUCK})
        assert refused.status_code == 409 and "is an inbound item" in refused.text


def test_drop_asks_for_a_confirmation_and_a_reason_then_removes_the_item(desk: Console) -> None:
    key = "form.RO-2026-000004"
    ledger_id = _id(desk, "RO-2026-000004")
    with signed_in(desk, "olaf") as operator:
        confirm = operator.get(f"/queues/drop?queue=outbound&key={key}&back=/queues")
        assert confirm.status_code == 200 and 'id="confirm-drop"' in confirm.text
        assert folder_of(desk.services.outbound, key) == "new"  # asking drops nothing
        csrf = csrf_of(confirm.text)
        fields = {"csrf": csrf, "queue": "outbound", "key": key, "back": "/queues"}
        for reason in ("", "   ", "x" * 201, "bad\nline\x07"):
            answer = operator.post("/queues/drop", data={**fields, "reason": reason})
            assert answer.status_code == 400 and "the reason must be" in answer.text
        assert folder_of(desk.services.outbound, key) == "new"
        assert queue_audit(desk) == []
        answer = operator.post("/queues/drop", data={**fields, "reason": "superseded INC-9"})
        assert answer.status_code == 303 and answer.headers["location"].startswith("/queues?")
        assert f"outbound {key} was dropped." in operator.get(answer.headers["location"]).text
    assert folder_of(desk.services.outbound, key) == ""  # gone from every folder
    assert desk.services.ledger.get(ledger_id).state == "failed"
    assert queue_audit(desk) == [
        ("queue.drop", "RO-2026-000004", f"outbound {key} drop by olaf: superseded INC-9")
    ]
    notices = list((desk.services.config.desk("sirene").maildir / "new").iterdir())
    assert [path.name for path in notices] == [f"notice.dropped.outbound.{key}"]


def test_bad_and_unknown_keys_are_refused(desk: Console) -> None:
    with signed_in(desk, "olaf") as operator:
        csrf = token(operator)
        for key in ("../etc/passwd", "", "a" * 65, ".."):
            answer = operator.post("/queues/release", data={"csrf": csrf, "key": key})
            assert answer.status_code == 400, key
            assert operator.get(f"/queues/drop?key={key}").status_code == 400, key
        answer = operator.post("/queues/release", data={"csrf": csrf, "key": "no-such-item"})
        assert answer.status_code == 409 and "no item no-such-item" in answer.text
        assert operator.get("/queues/drop?key=no-such-item").status_code == 404
        wrong = operator.post(
            "/queues/release", data={"csrf": csrf, "queue": "sideways", "key": STUCK}
        )
        assert wrong.status_code == 400
        # A "back" that is not one of the pages goes to the quarantine, never elsewhere.
        answer = operator.post(
            "/queues/release",
            data={"csrf": csrf, "queue": "inbound", "key": STUCK, "back": "https://evil.example/"},
        )
        assert answer.headers["location"].startswith("/quarantine?")
    assert [line[0] for line in queue_audit(desk)] == ["queue.release"]


def test_every_action_without_or_with_a_wrong_csrf_token_is_403(desk: Console) -> None:
    actions: tuple[tuple[str, dict[str, str]], ...] = (
        ("/queues/release", {"queue": "inbound", "key": STUCK}),
        ("/queues/retry", {"key": "form.RO-2026-000004"}),
        ("/queues/drop", {"queue": "inbound", "key": STUCK, "reason": "x"}),
        (f"/outbound/{_id(desk, 'RO-2026-000006')}/retry", {}),
        ("/access-log/verify", {}),
    )
    with signed_in(desk, "olaf") as operator, signed_in(desk, "aud") as auditor:
        other = token(auditor, "/access-log")  # another session's token
        for url, fields in actions:
            client = auditor if url.startswith("/access-log") else operator
            for csrf in (None, "", "0" * 64, other if client is operator else token(operator)):
                data = fields if csrf is None else {**fields, "csrf": csrf}
                answer = client.post(url, data=data)
                assert answer.status_code == 403, (url, csrf)
                assert "security token" in answer.text
    assert folder_of(desk.services.inbound, STUCK) == "quarantine"
    assert folder_of(desk.services.outbound, "form.RO-2026-000004") == "new"
    assert folder_of(desk.services.outbound, "form.RO-2026-000006") == "quarantine"
    assert desk.services.ledger.get(_id(desk, "RO-2026-000006")).state == "failed"
    assert queue_audit(desk) == []


# -- the access log -----------------------------------------------------------------------------


def test_the_auditor_filters_the_access_log_by_user_kind_and_time(desk: Console) -> None:
    third = receive(desk.services, "NO-2026-000003")
    with signed_in(desk, "ana") as handler:
        assert handler.get("/messages/1").status_code == 200  # at 08:06 UTC
        for _ in range(2):  # within the session's idle time
            desk.clock.advance(timedelta(minutes=27))
            handler.get("/")
        # 09:00 UTC, 11:00 in Bucharest: "from" includes it, "until" does not.
        assert handler.get(f"/messages/{third}").status_code == 200
    with signed_in(desk, "sue") as supervisor:
        supervisor.get("/messages/1")
    with signed_in(desk, "aud") as auditor:
        page = auditor.get("/access-log").text
        rows = _entries(page)
        assert [(row[2], row[3], row[4], row[7]) for row in rows] == [
            ("sue", "supervisor", "supervision", "NO-2026-000001"),
            ("ana", "handler", "case-work", "NO-2026-000003"),
            ("ana", "handler", "case-work", "NO-2026-000001"),
        ]
        assert rows[0][1] == "access.view" and rows[0][8] == "ledger=1 part=form"
        assert [row[2] for row in _entries(auditor.get("/access-log?user=ana").text)] == [
            "ana",
            "ana",
        ]
        assert _entries(auditor.get("/access-log?user=olaf").text) == []
        # In the bureau's zone: 11:00 Bucharest is 09:00 UTC.
        late = _entries(auditor.get("/access-log?since=2026-12-01T11:00").text)
        assert [row[7] for row in late] == ["NO-2026-000001", "NO-2026-000003"]
        early = _entries(auditor.get("/access-log?until=2026-12-01T11:00&user=ana").text)
        assert [row[7] for row in early] == ["NO-2026-000001"]
        assert _entries(auditor.get("/access-log?kind=search").text) == []
        logins = _entries(auditor.get("/access-log?kind=accounts").text)
        assert {row[1] for row in logins} == {"login.ok", "user.created"}
        every = _entries(auditor.get("/access-log?kind=all").text)
        assert {"access.view", "login.ok"} <= {row[1] for row in every}
        bad_filters = ("kind=peek", "user=<b>", "since=yesterday", "until=2026-13-01T00:00")
        for bad in (*bad_filters, "before=x"):
            assert auditor.get(f"/access-log?{bad}").status_code == 400, bad


def _entries(page: str) -> list[list[str]]:
    """The access log's table as cells' text (the instant's <time> element left out)."""
    if 'id="access-entries"' not in page:
        return []
    body = page[page.index("<tbody>") : page.index("</tbody>")]
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_access_log_pages_by_sequence_number(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", page_size=5)
    with console(config) as desk:
        for number in range(1, 12):
            receive(desk.services, f"NO-2026-{number:06d}")
        with signed_in(desk, "ana") as handler:
            for ledger_id in range(1, 12):
                handler.get(f"/messages/{ledger_id}")
        with signed_in(desk, "sue") as supervisor:
            supervisor.get("/messages/1")
        with signed_in(desk, "aud") as auditor:
            seen, url = [], "/access-log?user=ana"
            while url:
                page = auditor.get(url).text
                seen.append([row[7][-2:] for row in _entries(page)])
                found = re.search(r'id="older" href="([^"]+)"', page)
                url = found.group(1).replace("&amp;", "&") if found else ""
                assert not found or "user=ana" in url
    assert seen == [
        ["11", "10", "09", "08", "07"],
        ["06", "05", "04", "03", "02"],
        ["01"],
    ]


def test_the_access_log_shows_the_chains_verification(desk: Console) -> None:
    with signed_in(desk, "aud") as auditor:
        page = auditor.get("/access-log").text
        assert 'class="chain intact"' in page
        head = desk.services.audit.head()
        assert f"Intact: {len(desk.services.audit.entries())} entries, head {head[0]}:" in page
        # Someone edits an entry in the database: seen at the next verification asked for.
        with desk.services.ledger.transaction() as tx:
            tx.connection.execute(
                audit_table.update().where(audit_table.c.seq == 2).values(reason="edited")
            )
        assert 'class="chain intact"' in auditor.get("/access-log").text  # the last check's
        csrf = token(auditor, "/access-log")
        answer = auditor.post("/access-log/verify", data={"csrf": csrf})
        assert (answer.status_code, answer.headers["location"]) == (303, "/access-log")
        page = auditor.get("/access-log").text
        assert 'class="chain broken"' in page and "seq 2: edited" in page


@pytest.mark.postgres
def test_the_operators_pages_on_postgresql(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema())
        desk = stack.enter_context(console(write_config(tmp_path, url)))
        seed(desk)
        operator = stack.enter_context(signed_in(desk, "olaf"))
        failed = re.findall(
            r'<td class="reference">(RO-2026-\d+)</td>', operator.get("/outbound?state=failed").text
        )
        assert failed == ["RO-2026-000006"]
        csrf = token(operator)
        answer = operator.post(
            f"/outbound/{_id(desk, 'RO-2026-000006')}/retry", data={"csrf": csrf}
        )
        assert answer.status_code == 303
        assert desk.services.ledger.get(_id(desk, "RO-2026-000006")).state == "queued"
        with signed_in(desk, "ana") as handler:
            handler.get("/messages/1")
        auditor = stack.enter_context(signed_in(desk, "aud"))
        page = auditor.get("/access-log?user=ana").text
        assert [row[7] for row in _entries(page)] == ["NO-2026-000001"]
        assert 'class="chain intact"' in page

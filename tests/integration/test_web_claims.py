"""The console's desk work against the real app on a real ledger: claim, release, hand over and
close from the message view and the worklist (CSRF 403, another desk's message 404, the loser
told who holds it), the worklist's states and filters, the message's thread, the deadlines board
(supervisors and duty officers only; overdue red, escalations, holders), nothing inline, an
injection attempt inert."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from dbkit import postgres_schema
from starlette.testclient import TestClient
from webkit import XSS, Console, console, csrf_of, login, receive, write_config

from gateway.store import deadline_rows
from gateway.store.ledger import NewMessage
from gateway.store.states import DeadlineState, InboundState, OutboundState


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Console]:
    with console(write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")) as made:
        yield made


@contextlib.contextmanager
def signed_in(desk: Console, name: str) -> Iterator[tuple[TestClient, str]]:
    """A client signed in as ``name`` and its session's CSRF token."""
    with TestClient(desk.app, follow_redirects=False) as client:
        status, page = login(client, name)
        assert status == 303, page
        yield client, csrf_of(page)


def claim_kinds(desk: Console) -> list[str]:
    return [e.kind for e in desk.services.audit.entries() if e.kind.startswith("claim.")]


def post(
    client: TestClient, ledger_id: int, action: str, token: str | None, **fields: str
) -> Any:  # the test client's response
    data = dict(fields)
    if token is not None:
        data["csrf"] = token
    return client.post(f"/messages/{ledger_id}/{action}", data=data)


def test_claim_from_the_message_view_and_the_loser_is_told_who(desk: Console) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    with signed_in(desk, "ana") as (ana, ana_token), signed_in(desk, "cai") as (cai, cai_token):
        page = ana.get(f"/messages/{ledger_id}").text
        assert 'id="claim"' in page and 'id="release"' not in page
        assert '<span class="state state-seen">seen</span>' in page  # opened just now
        answer = post(ana, ledger_id, "claim", ana_token)
        assert (answer.status_code, answer.headers["location"]) == (303, f"/messages/{ledger_id}")
        page = ana.get(f"/messages/{ledger_id}").text
        assert '<strong id="holder">ana</strong> since' in page
        assert 'id="release"' in page and 'id="close"' in page and 'id="claim"' not in page
        assert '<option value="cai">cai</option>' in page  # hand over to cai, of the desk
        assert '<option value="ben">' not in page  # ben works on interpol
        desk.clock.advance(timedelta(minutes=3))
        lost = post(cai, ledger_id, "claim", cai_token)
        assert lost.status_code == 409
        assert "already claimed by ana since 2026-12-01 10:00 EET" in lost.text
        theirs = cai.get(f"/messages/{ledger_id}").text
        assert 'id="claim"' not in theirs and 'id="release"' not in theirs  # not hers to act on
        assert post(cai, ledger_id, "release", cai_token).status_code == 409
        handed = post(ana, ledger_id, "hand-over", ana_token, to="cai")
        assert handed.status_code == 303
        assert 'id="release"' in cai.get(f"/messages/{ledger_id}").text
        assert post(cai, ledger_id, "close", cai_token).status_code == 303
        closed = cai.get(f"/messages/{ledger_id}").text
        assert '<span class="state state-closed">closed</span> by cai' in closed
        assert 'id="claim"' not in closed and "(closed" in closed  # the reply deadline too
        assert post(ana, ledger_id, "claim", ana_token).status_code == 409
    assert claim_kinds(desk) == ["claim.claimed", "claim.handed-over", "claim.closed"]
    timeline = [kind for _, kind, _ in desk.services.ledger.events_of(ledger_id)]
    assert timeline[-4:] == ["claimed", "handed-over", "deadline-closed", "closed"]


def test_without_the_csrf_token_every_action_is_403_and_nothing_changes(desk: Console) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    with signed_in(desk, "ana") as (client, token):
        for action in ("claim", "release", "hand-over", "close"):
            assert post(client, ledger_id, action, None).status_code == 403
            assert post(client, ledger_id, action, "0" * len(token)).status_code == 403
        with signed_in(desk, "cai") as (_, other_token):
            assert post(client, ledger_id, "claim", other_token).status_code == 403
    assert claim_kinds(desk) == []
    assert desk.access.ledger.events_of(ledger_id)[-1][1] == "delivered"
    with TestClient(desk.app, follow_redirects=False) as anonymous:
        answer = anonymous.post(f"/messages/{ledger_id}/claim", data={"csrf": token})
        assert (answer.status_code, answer.headers["location"]) == (303, "/login")


def test_another_desks_message_is_404_as_no_message(desk: Console) -> None:
    theirs = receive(desk.services, "NO-2026-000001", desk="interpol")
    with signed_in(desk, "ana") as (client, token):
        for action in ("claim", "release", "hand-over", "close"):
            one = post(client, theirs, action, token)
            none = post(client, 424242, action, token)
            assert one.status_code == none.status_code == 404
            assert one.text == none.text
        assert post(client, theirs, "unknown", token).status_code == 404
    with signed_in(desk, "olaf") as (operator, token):  # sees it, claims nothing
        assert post(operator, theirs, "claim", token).status_code == 403
    assert claim_kinds(desk) == []


def test_a_hand_over_is_refused_with_the_reason_and_an_injection_is_inert(desk: Console) -> None:
    ledger_id = receive(desk.services, "NO-2026-000001")
    with signed_in(desk, "ana") as (client, token):
        assert post(client, ledger_id, "hand-over", token, to="cai").status_code == 409
        post(client, ledger_id, "claim", token)
        for to, why in (
            ("ben", "ben does not work on desk sirene"),
            ("nobody", "there is no active user nobody"),
            (XSS, "name the user to hand it over to"),
        ):
            answer = post(client, ledger_id, "hand-over", token, to=to)
            assert answer.status_code == 409 and why in answer.text
            assert "<script" not in answer.text and "<img" not in answer.text
        # A "back" that leads elsewhere is not followed: the message's page instead.
        for back in ("https://evil.example/", "//evil.example", "/\\evil", "/messages/1/../x"):
            answer = post(client, ledger_id, "release", token, back=back)
            assert answer.headers["location"] == f"/messages/{ledger_id}"
            post(client, ledger_id, "claim", token)
    assert claim_kinds(desk).count("claim.handed-over") == 0


def test_the_worklist_shows_states_and_claims_from_its_rows(desk: Console) -> None:
    new = receive(desk.services, "NO-2026-000001")
    seen = receive(desk.services, "NO-2026-000002")
    held = receive(desk.services, "NO-2026-000003")
    with signed_in(desk, "ana") as (client, token):
        client.get(f"/messages/{seen}")
        answer = post(client, held, "claim", token, back="/?priority=urgent")
        assert answer.headers["location"] == "/?priority=urgent"
        page = client.get("/").text
        rows = dict(re.findall(r"(NO-2026-00000\d)</a>(.*?)</tr>", page, re.S))
        assert 'state-new">new' in rows["NO-2026-000001"]
        assert f'action="/messages/{new}/claim"' in rows["NO-2026-000001"]
        assert 'state-seen">seen' in rows["NO-2026-000002"]
        assert (
            'state-claimed">claimed</span> <span class="holder">ana</span>'
            in rows["NO-2026-000003"]
        )
        assert f'action="/messages/{held}/release"' in rows["NO-2026-000003"]
        assert 'name="back" value="/"' in page
    with signed_in(desk, "cai") as (other, _):
        page = other.get("/").text
        assert f'action="/messages/{held}/release"' not in page  # not hers
        assert f'action="/messages/{held}/claim"' not in page  # held


def test_the_worklist_filters_by_priority_and_time_left(desk: Console) -> None:
    receive(desk.services, "NO-2026-000001", priority="normal", reply_in=timedelta(hours=30))
    receive(desk.services, "NO-2026-000002", reply_in=timedelta(hours=2))
    receive(desk.services, "NO-2026-000003", reply_in=timedelta(minutes=30))
    receive(desk.services, "NO-2026-000004", reply_in=None)
    desk.clock.advance(timedelta(hours=1))  # 000003 is overdue now
    with signed_in(desk, "ana") as (client, _):

        def shown(url: str) -> list[str]:
            answer = client.get(url)
            assert answer.status_code == 200, answer.text
            return re.findall(r'class="open">(NO-2026-\d+)<', answer.text)

        assert shown("/?due=overdue") == ["NO-2026-000003"]
        assert shown("/?due=4") == ["NO-2026-000003", "NO-2026-000002"]
        assert shown("/?due=48") == ["NO-2026-000003", "NO-2026-000002", "NO-2026-000001"]
        assert shown("/?priority=normal") == ["NO-2026-000001"]
        assert shown("/?priority=urgent&due=4") == ["NO-2026-000003", "NO-2026-000002"]
        page = client.get("/?due=overdue").text
        assert '<option value="overdue" selected>' in page
        for bad in ("/?due=0", "/?due=-1", "/?due=soon", "/?due=9999", "/?priority=high"):
            answer = client.get(bad)
            assert answer.status_code == 400, bad
            assert "due must be" in answer.text or "priority must be" in answer.text


def test_the_pager_keeps_the_new_filters(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", page_size=5)
    with console(config) as desk:
        for n in range(1, 12):
            receive(desk.services, f"NO-2026-{n:06d}", reply_in=timedelta(hours=n / 2))
        with signed_in(desk, "ana") as (client, _):
            page = client.get("/?due=4&priority=urgent").text
            found = re.search(r'id="older" href="([^"]+)"', page)
            assert found is not None
            url = found.group(1).replace("&amp;", "&")
            assert "due=4" in url and "priority=urgent" in url
            assert re.findall(r'class="open">(NO-2026-\d+)<', client.get(url).text) == [
                "NO-2026-000003",
                "NO-2026-000002",
                "NO-2026-000001",
            ]


def test_the_thread_links_the_related_messages_the_user_may_see(desk: Console) -> None:
    services = desk.services
    request = receive(services, "NO-2026-000001")
    ledger = services.ledger
    base = NewMessage(
        direction="outbound",
        partner="NO-SIRENE",
        channel="sirene",
        form="M",
        reference="RO-2026-000001",
        message_id="<r1@ro.example>",
        priority="normal",
        content_sha256="c" * 64,
        raw_sha256="d" * 64,
        state=OutboundState.QUEUED,
        in_reply_to="NO-2026-000001",
        desk="sirene",
    )
    with ledger.transaction() as tx:
        reply = ledger.record_in(tx, base)
        # The partner answers our reply; a receipt of it is no part of the thread.
        follow = ledger.record_in(
            tx,
            replace(
                base,
                direction="inbound",
                reference="NO-2026-000009",
                message_id="<f@no.example>",
                in_reply_to="RO-2026-000001",
                state=InboundState.RECEIVED,
            ),
        )
        ledger.record_in(
            tx,
            replace(
                base,
                direction="inbound",
                form="ACK",
                reference="NO-2026-000010",
                message_id="<ack@no.example>",
                in_reply_to="RO-2026-000001",
                state=InboundState.RECEIVED,
            ),
        )
        unrelated = ledger.record_in(
            tx, replace(base, reference="RO-2026-000002", in_reply_to=None, message_id="<u@x>")
        )
        elsewhere = ledger.record_in(
            tx,
            replace(
                base,
                reference="RO-2026-000003",
                in_reply_to="NO-2026-000009",
                desk="interpol",
                message_id="<e@x>",
            ),
        )
    with signed_in(desk, "ana") as (client, _):
        page = client.get(f"/messages/{request}").text
        thread = page[page.index('id="thread"') :]
        assert f'href="/messages/{reply}">M RO-2026-000001' in thread
        assert f'href="/messages/{follow}">M NO-2026-000009' in thread
        assert "NO-2026-000010" not in thread  # the receipt
        assert f"/messages/{unrelated}" not in thread
        assert f"/messages/{elsewhere}" not in thread  # interpol's: not ana's to see
        ours = client.get(f"/messages/{reply}")
        assert ours.status_code == 200 and 'id="our-form"' in ours.text
        assert 'id="claim"' not in ours.text
        assert f'href="/messages/{request}"' in ours.text
        assert post(client, reply, "claim", csrf_of(ours.text)).status_code == 404
    with signed_in(desk, "sue") as (supervisor, _):
        page = supervisor.get(f"/messages/{request}").text
        assert f'href="/messages/{elsewhere}"' in page  # every desk is hers


def test_the_deadlines_board(desk: Console) -> None:
    services = desk.services
    late = receive(services, "NO-2026-000001", reply_in=timedelta(hours=1))
    soon = receive(services, "NO-2026-000002", desk="interpol", reply_in=timedelta(hours=5))
    done = receive(services, "NO-2026-000003", reply_in=timedelta(hours=2))
    with services.ledger.transaction() as tx:
        services.ledger.close_deadline_in(tx, done, "reply", DeadlineState.MET, "answered")
    desk.clock.advance(timedelta(hours=2))
    now = services.clock.now()
    with services.ledger.transaction() as tx:  # as the sweep leaves it: reminded, escalated once
        for deadline_id in deadline_rows.due_ids(tx, now, 100):
            held = deadline_rows.claim_due(tx, deadline_id, now)
            if held is not None and held.message_id == late:
                counters = deadline_rows.Counters(
                    reminders_sent=2,
                    escalations=1,
                    resends=0,
                    due=held.due,
                    next_action_at=now + timedelta(hours=1),
                    state=DeadlineState.OPEN,
                )
                assert deadline_rows.store_counters(tx, held, counters, now)
    with signed_in(desk, "ana") as (handler, token):
        post(handler, late, "claim", token)
        assert handler.get("/deadlines").status_code == 403
        assert 'id="nav-deadlines"' not in handler.get("/").text
    for name in ("sue", "dora"):
        with signed_in(desk, name) as (client, _):
            answer = client.get("/deadlines")
            assert answer.status_code == 200 and answer.headers["refresh"] == "60"
            page = answer.text
            assert 'id="nav-deadlines"' in page
            assert page.index("NO-2026-000001") < page.index("NO-2026-000002")  # by time left
            assert "NO-2026-000003" not in page  # met: not open
            rows = dict(re.findall(r'class="open">(NO-2026-\d+)</a>(.*?)</tr>', page, re.S))
            first = page[page.rindex("<tr", 0, page.index("NO-2026-000001")) :]
            assert first.startswith('<tr class="late escalated">')
            assert '<td class="left overdue">overdue 1 h 00 min</td>' in first
            assert '<td class="escalations">1</td>' in rows["NO-2026-000001"]
            assert '<td class="holder">ana</td>' in rows["NO-2026-000001"]
            assert '<td class="holder">-</td>' in rows["NO-2026-000002"]
            assert f'href="/messages/{soon}"' in page
            assert '2 open, <span class="overdue">1 overdue</span>, 1 escalated' in page
            assert "Person arrested" not in page and "EXAMPLE" not in page  # metadata only
            assert "<script" not in page and "style=" not in page
    with signed_in(desk, "olaf") as (operator, _):
        assert operator.get("/deadlines").status_code == 403


@pytest.mark.postgres
def test_claims_and_the_board_on_postgresql(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres_schema())
        desk = stack.enter_context(console(write_config(tmp_path, url)))
        mine = receive(desk.services, "NO-2026-000001")
        ana, token = stack.enter_context(signed_in(desk, "ana"))
        cai, cai_token = stack.enter_context(signed_in(desk, "cai"))
        assert post(ana, mine, "claim", token).status_code == 303
        lost = post(cai, mine, "claim", cai_token)
        assert lost.status_code == 409 and "already claimed by ana" in lost.text
        sue, _ = stack.enter_context(signed_in(desk, "sue"))
        assert '<td class="holder">ana</td>' in sue.get("/deadlines").text
        assert 'state-claimed">claimed' in ana.get("/").text

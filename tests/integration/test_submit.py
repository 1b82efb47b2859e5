"""A handler's form into the outbound queue: Submitter.submit, `gateway send` and the outboxes.

Real gpg (the world's throwaway homes), the built-in XSDs and a real ledger. What is queued must
open with plain gpg in the partner's home and carry our signature; what is refused must leave no
trace: no spool file, no ledger row, no audit entry, no number taken from the sequence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from dbkit import postgres_schema, upgraded
from integration.inboundkit import World, gateway_config, gateway_fingerprint
from integration.submitkit import (
    ACK,
    G_ARRESTED,
    G_SEIZED,
    IP_INFORMATION,
    IP_REPLY,
    NOW,
    Env,
    UnusableKeys,
    assert_nothing_queued,
    count_rows,
    decrypt_as,
    environment,
    header_field,
    open_as,
    outgoing,
    sequence_values,
    spool_files,
    unusable_keys,
    with_attachment_digest,
)
from sqlalchemy import select

from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.errors import GatewayError, InvalidForm, KeyUnusable, SubmissionRefused
from gateway.core.limits import XmlLimits
from gateway.crypto.pgpmime import Attachment
from gateway.forms.xmlforms import FormValidator
from gateway.outbound.outbox import Outbox
from gateway.outbound.submit import Submitter
from gateway.service.cases import Cases
from gateway.store import schema
from gateway.store.ledger import NewMessage, as_utc, deadlines, make_engine, messages
from gateway.store.states import InboundState

THIS_YEAR = f"RO-{NOW.year}"
PDF = b"%PDF-1.7\n% seizure report of the border police\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0 register photo \xff\xd9"
NO_OFFSET = "2027-02-01T09:00:00"  # Created must say its offset from UTC: one error


def g_for_norway(reference: str | None = None, created: str | None = None) -> bytes:
    """Form G from our SIRENE bureau to Norway's, without Reference and Created unless given."""
    return outgoing(
        G_ARRESTED, sender="RO-SIRENE", recipient="NO-SIRENE", reference=reference, created=created
    )


def seized_for_norway(report: bytes = PDF) -> bytes:
    """Form G listing seizure-report.pdf with the digest of ``report``."""
    form = outgoing(G_SEIZED, sender="RO-SIRENE", recipient="NO-SIRENE")
    return with_attachment_digest(form, report)


def reply_to_serbia() -> bytes:
    """An Interpol reply to RS-2026-004417, listing register-photo.jpg (JPEG)."""
    form = outgoing(IP_REPLY, sender="RO-NCB", recipient="RS-NCB")
    return with_attachment_digest(form, JPEG)


@pytest.fixture(scope="module")
def keys(world: World) -> UnusableKeys:
    return unusable_keys(world)


@pytest.fixture
def env(
    world: World, keys: UnusableKeys, tmp_path: Path, validator: FormValidator
) -> Iterator[Env]:
    """A submitter on a SQLite ledger file."""
    with environment(world, tmp_path, validator, keys) as made:
        yield made


@pytest.fixture(params=["sqlite", "postgresql"])
def any_env(
    world: World, tmp_path: Path, validator: FormValidator, request: pytest.FixtureRequest
) -> Iterator[Env]:
    """A submitter on a SQLite ledger file, and on a private schema of the test PostgreSQL
    (skipped, saying so, when GATEWAY_TEST_POSTGRES_URL is not set)."""
    if request.param == "sqlite":
        with environment(world, tmp_path, validator) as made:
            yield made
        return
    with (
        postgres_schema() as url,
        environment(world, tmp_path, validator, database_url=url) as made,
    ):
        yield made


def received_from_serbia(env: Env) -> None:
    """An inbound message of RS-NCB in the ledger, as the hand-off records it."""
    with env.audit.begin() as connection:
        env.ledger.record_in(
            connection,
            NewMessage(
                direction="inbound",
                partner="RS-NCB",
                channel="interpol",
                form="IP-MSG",
                reference="RS-2026-004417",
                message_id="<ipc.RS-2026-004417.1@rs.example>",
                priority="urgent",
                content_sha256="0" * 64,
                raw_sha256="1" * 64,
                state=InboundState.DELIVERED,
            ),
        )


# ---------------------------------------------------------------------- queued


def test_references_are_numbered_from_our_sequence_without_gaps(any_env: Env) -> None:
    first = any_env.submitter.submit(g_for_norway())
    second = any_env.submitter.submit(g_for_norway())
    assert (first.reference, second.reference) == (f"{THIS_YEAR}-000001", f"{THIS_YEAR}-000002")
    assert sequence_values(any_env.engine) == {THIS_YEAR: 2}
    assert (first.partner, first.form) == ("NO-SIRENE", "G")
    assert first.message_id != second.message_id


def test_the_queued_form_is_recorded_with_its_desk_its_deadline_and_an_audit_entry(
    any_env: Env,
) -> None:
    submitted = any_env.submitter.submit(g_for_norway())
    row = any_env.ledger.get(submitted.ledger_id)
    assert (row.direction, row.partner, row.channel, row.form) == (
        "outbound",
        "NO-SIRENE",
        "sirene",
        "G",
    )
    assert (row.state, row.reference, row.priority) == ("queued", submitted.reference, "urgent")
    assert row.desk == "duty"  # the route of urgent forms
    assert row.alert_article == "26"  # the form's AlertRef/@article, for the reports
    assert (row.spool_key, row.message_id) == (submitted.spool_key, submitted.message_id)
    assert row.created_at == NOW
    assert [(kind, detail) for _, kind, detail in any_env.ledger.events_of(row.id)] == [
        ("queued", "queued for NO-SIRENE")
    ]
    with any_env.engine.connect() as connection:
        owed = connection.execute(select(deadlines).where(deadlines.c.message_id == row.id)).all()
    assert len(owed) == 1
    deadline = owed[0]
    assert (deadline.kind, deadline.owed_by, deadline.state) == ("reply", "partner", "open")
    assert as_utc(deadline.due) == NOW + timedelta(hours=12)  # G: a reply within 12 hours
    assert as_utc(deadline.next_action_at) == NOW + timedelta(hours=6)  # first reminder at 50 %
    [entry] = any_env.audit.entries()
    assert (entry.kind, entry.partner, entry.form, entry.reference) == (
        "queued",
        "NO-SIRENE",
        "G",
        submitted.reference,
    )
    assert entry.digest == row.content_sha256
    assert any_env.audit.verify() == []


def test_the_spooled_message_opens_for_the_partner_and_carries_our_signature(
    env: Env, world: World
) -> None:
    submitted = env.submitter.submit(g_for_norway())
    reference = submitted.reference
    assert spool_files(env.outbound) == [f"new/form.{reference}.msg"]
    item = env.outbound.get(submitted.spool_key)
    assert item.meta == {
        "to": "sirene@no.example",
        "partner": "NO-SIRENE",
        "reference": reference,
        "form": "G",
        "kind": "form",
        "message_id": submitted.message_id,
        "ledger_id": submitted.ledger_id,
        "queued_at": NOW.isoformat(),
    }
    raw = item.payload()
    row = env.ledger.get(submitted.ledger_id)
    assert row.raw_sha256 == hashlib.sha256(raw).hexdigest()

    opened = open_as(world.no.home, raw)
    assert opened.outer["To"] == "sirene@no.example"
    assert opened.outer["From"] == "sirene@ro.example"
    assert opened.outer["Subject"] == f"SIRENE G {reference}"
    assert opened.outer["Message-ID"] == submitted.message_id
    assert opened.signed_by() == [gateway_fingerprint(world)]
    [(filename, kind, form)] = opened.parts()
    assert (filename, kind) == ("form.xml", "application/xml")
    assert header_field(form, "Reference") == reference
    assert header_field(form, "Created") == "2027-02-01T08:00:00Z"
    assert header_field(form, "Sender/{*}Bureau") == "RO-SIRENE"
    # Nobody else can read it: not the other partner.
    code, plaintext, _ = decrypt_as(world.rs.home, raw)
    assert code != 0 and plaintext == b""


def test_a_reference_of_ours_written_by_hand_is_kept_and_the_sequence_skips_it(
    env: Env, world: World
) -> None:
    by_hand = env.submitter.submit(
        g_for_norway(reference=f"{THIS_YEAR}-000001", created="2027-02-01T09:00:00+01:00")
    )
    assert by_hand.reference == f"{THIS_YEAR}-000001"
    assert sequence_values(env.engine) == {}  # a number written by hand takes none
    opened = open_as(world.no.home, env.outbound.get(by_hand.spool_key).payload())
    form = opened.parts()[0][2]
    assert header_field(form, "Created") == "2027-02-01T09:00:00+01:00"
    numbered = env.submitter.submit(g_for_norway())
    assert numbered.reference == f"{THIS_YEAR}-000002"


def test_a_reply_to_a_message_we_received_goes_with_its_attachment(env: Env, world: World) -> None:
    received_from_serbia(env)
    photo = Attachment("register-photo.jpg", "image/jpeg", JPEG)
    submitted = env.submitter.submit(reply_to_serbia(), [photo], desk="sirene")
    row = env.ledger.get(submitted.ledger_id)
    assert (row.partner, row.channel, row.form, row.in_reply_to, row.desk) == (
        "RS-NCB",
        "interpol",
        "IP-MSG",
        "RS-2026-004417",
        "sirene",
    )
    with env.engine.connect() as connection:  # a reply owes no reply
        assert connection.execute(select(deadlines)).all() == []
    opened = open_as(world.rs.home, env.outbound.get(submitted.spool_key).payload())
    assert opened.signed_by() == [gateway_fingerprint(world)]
    assert opened.outer["Subject"] == f"INTERPOL IP-MSG {submitted.reference}"
    parts = opened.parts()
    assert [(name, kind) for name, kind, _ in parts] == [
        ("form.xml", "application/xml"),
        ("register-photo.jpg", "image/jpeg"),
    ]
    assert parts[1][2] == JPEG


def refusal_to_serbia() -> bytes:
    """A refusal (a form of every channel) of RS-2026-004417, from our NCB."""
    form = outgoing(
        "REFUSAL/valid-europol-directive-grounds.xml", sender="RO-NCB", recipient="RS-NCB"
    )
    return form.replace(b"RO-2026-000841", b"RS-2026-004417")


def test_a_form_of_every_channel_goes_on_the_partner_s_channel(env: Env, world: World) -> None:
    received_from_serbia(env)
    submitted = env.submitter.submit(refusal_to_serbia())
    row = env.ledger.get(submitted.ledger_id)
    assert (row.partner, row.channel, row.form, row.in_reply_to) == (
        "RS-NCB",
        "interpol",
        "REFUSAL",
        "RS-2026-004417",
    )
    with env.engine.connect() as connection:  # a refusal owes no reply
        assert connection.execute(select(deadlines)).all() == []
    opened = open_as(world.rs.home, env.outbound.get(submitted.spool_key).payload())
    assert opened.outer["Subject"] == f"INTERPOL REFUSAL {submitted.reference}"


def test_listed_attachments_that_match_are_sent(env: Env, world: World) -> None:
    report = Attachment("seizure-report.pdf", "application/pdf", PDF)
    submitted = env.submitter.submit(seized_for_norway(), [report])
    opened = open_as(world.no.home, env.outbound.get(submitted.spool_key).payload())
    assert [(name, data) for name, _, data in opened.parts()[1:]] == [("seizure-report.pdf", PDF)]


# ---------------------------------------------------------------------- refused


@dataclass(frozen=True)
class Refusal:
    form: Callable[[], bytes]
    error: type[GatewayError]
    says: str
    attachments: tuple[Attachment, ...] = ()


REFUSALS = {
    "invalid form": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="NO-SIRENE").replace(
            b"<Language>en</Language>", b"<Language>english</Language>"
        ),
        InvalidForm,
        "/FormG/Header/Language",
    ),
    "unknown partner": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="DK-SIRENE"),
        SubmissionRefused,
        "unknown partner DK-SIRENE: no such bureau configured",
    ),
    "partner key not in our keyring": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="DE-SIRENE"),
        KeyUnusable,
        "no key for DE-SIRENE in our keyring",
    ),
    "partner key expired": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="FR-SIRENE"),
        KeyUnusable,
        r"the key of FR-SIRENE \(\w{40}\) has expired",
    ),
    "partner key revoked": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="IT-SIRENE"),
        KeyUnusable,
        r"the key of IT-SIRENE \(\w{40}\) is revoked",
    ),
    "sirene form to an interpol partner": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="RS-NCB"),
        SubmissionRefused,
        "form G is a sirene form; RS-NCB is a interpol partner",
    ),
    "interpol form to a sirene partner": Refusal(
        lambda: outgoing(IP_INFORMATION, sender="RO-NCB", recipient="NO-SIRENE"),
        SubmissionRefused,
        "form IP-MSG is a interpol form; NO-SIRENE is a sirene partner",
    ),
    "sender bureau not ours": Refusal(
        lambda: outgoing(G_ARRESTED, sender="RO-NCB", recipient="NO-SIRENE"),
        SubmissionRefused,
        "the form says it is from RO-NCB; on the sirene channel we are RO-SIRENE",
    ),
    "in reply to nothing we received": Refusal(
        reply_to_serbia,
        SubmissionRefused,
        "InReplyTo RS-2026-004417 names no message we received from RS-NCB",
        (Attachment("register-photo.jpg", "image/jpeg", JPEG),),
    ),
    "reference not ours": Refusal(
        lambda: g_for_norway(reference="NO-2027-000123"),
        SubmissionRefused,
        r"Reference NO-2027-000123 is not one of ours \(RO-...\)",
    ),
    "listed attachment missing": Refusal(
        seized_for_norway, SubmissionRefused, "do not match the form's Attachment list"
    ),
    "attachment other than listed": Refusal(
        seized_for_norway,
        SubmissionRefused,
        "do not match the form's Attachment list",
        (Attachment("seizure-report.pdf", "application/pdf", PDF + b"changed"),),
    ),
    "attachment not listed": Refusal(
        g_for_norway,
        SubmissionRefused,
        "do not match the form's Attachment list",
        (Attachment("seizure-report.pdf", "application/pdf", PDF),),
    ),
    "refusal of nothing we received": Refusal(
        refusal_to_serbia,
        SubmissionRefused,
        "InReplyTo RS-2026-004417 names no message we received from RS-NCB",
    ),
    "ack by hand": Refusal(
        lambda: outgoing(ACK, sender="RO-NCB", recipient="RS-NCB"),
        SubmissionRefused,
        "ACK forms are made by the gateway, not by handlers",
    ),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_refused_with_nothing_queued(env: Env, case: Refusal) -> None:
    with pytest.raises(case.error, match=case.says):
        env.submitter.submit(case.form(), case.attachments)
    assert_nothing_queued(env)
    assert env.submitter.submit(g_for_norway()).reference == f"{THIS_YEAR}-000001"


def test_a_key_is_judged_at_the_clock_s_instant(env: Env) -> None:
    """NO-SIRENE's key expires two years after it was made: at the clock's instant three years
    on, nothing may be encrypted to it."""
    env.clock.advance(timedelta(days=3 * 365))
    with pytest.raises(KeyUnusable, match=r"the key of NO-SIRENE \(\w{40}\) has expired"):
        env.submitter.submit(g_for_norway())
    assert_nothing_queued(env)


def test_an_invalid_form_lists_every_error_one_a_line(env: Env) -> None:
    form = (
        outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="NO-SIRENE", created=NO_OFFSET)
        .replace(b"<Language>en</Language>", b"<Language>english</Language>")
        .replace(b"<Country>NO</Country>", b"<Country>XX</Country>")
    )
    with pytest.raises(InvalidForm) as refused:
        env.submitter.submit(form)
    lines = refused.value.detail.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "/FormG/Header/Created",
        "/FormG/Header/Language",
        "/FormG/Hit/Place/Country",
    ]
    assert_nothing_queued(env)


def test_an_invalid_form_shows_the_configured_number_of_errors_and_counts_the_rest(
    env: Env,
) -> None:
    config = dataclasses.replace(env.config, xml=XmlLimits(max_errors=2))
    submitter = Submitter(
        config=config,
        gpg=env.gpg,
        validator=env.submitter.validator,
        ledger=env.ledger,
        outbound=env.outbound,
        audit=env.audit,
        clock=env.clock,
    )
    form = (
        g_for_norway(created=NO_OFFSET)
        .replace(b"<Language>en</Language>", b"<Language>english</Language>")
        .replace(b"<Country>NO</Country>", b"<Country>XX</Country>")
    )
    with pytest.raises(InvalidForm) as refused:
        submitter.submit(form)
    lines = refused.value.detail.splitlines()
    assert len(lines) == 3 and lines[2] == "(and 1 more)"
    assert_nothing_queued(env)


def test_the_errors_of_a_form_without_reference_name_the_lines_the_handler_wrote(
    env: Env,
) -> None:
    form = g_for_norway().replace(b"<Language>en</Language>", b"<Language>english</Language>")
    handler_line = form[: form.index(b"<Language>")].count(b"\n") + 1
    with pytest.raises(InvalidForm) as refused:
        env.submitter.submit(form)
    assert refused.value.detail.startswith(f"{handler_line}: /FormG/Header/Language: ")


def test_a_reference_of_ours_already_used_is_refused(env: Env) -> None:
    first = env.submitter.submit(g_for_norway())
    before = spool_files(env.outbound)
    with pytest.raises(SubmissionRefused, match=f"Reference {first.reference} was already used"):
        env.submitter.submit(g_for_norway(reference=first.reference))
    to_serbia = outgoing(
        IP_INFORMATION, sender="RO-NCB", recipient="RS-NCB", reference=first.reference
    )
    with pytest.raises(SubmissionRefused, match="was already used"):  # by any partner's form
        env.submitter.submit(to_serbia)
    assert spool_files(env.outbound) == before
    assert count_rows(env.engine, messages) == 1
    assert [entry.kind for entry in env.audit.entries()] == ["queued"]
    assert sequence_values(env.engine) == {THIS_YEAR: 1}


def test_an_unknown_desk_is_a_usage_error(env: Env) -> None:
    with pytest.raises(KeyError, match="unknown desk 'nowhere'"):
        env.submitter.submit(g_for_norway(), desk="nowhere")
    assert_nothing_queued(env)


def test_a_spool_item_left_by_a_crash_before_the_commit_does_not_block_the_next_form(
    env: Env,
) -> None:
    """The process died after spooling form.RO-...-000001 and before the commit: no row, the
    sequence still at 0. The next form gets the same number and must still be queued."""
    env.outbound.put(f"form.{THIS_YEAR}-000001", b"left by a crash", {"kind": "form"})
    submitted = env.submitter.submit(g_for_norway())
    assert submitted.reference == f"{THIS_YEAR}-000001"
    item = env.outbound.get(submitted.spool_key)
    assert item.meta["ledger_id"] == submitted.ledger_id


# ---------------------------------------------------------------------- gateway send


@pytest.fixture
def send_config(world: World, tmp_path: Path) -> Path:
    """The world's configuration with a SQLite ledger in the spool (the default)."""
    return gateway_config(world, tmp_path)


def send(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["-c", str(config), "send", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def queued_rows(config: Path) -> list[tuple[str, str, str | None]]:
    """(partner, reference, desk) of every outbound message of the configured ledger."""
    loaded = configuration.load(config)
    engine = make_engine(loaded.database_url)
    try:
        schema.upgrade(engine)
        with engine.connect() as connection:
            rows = connection.execute(
                select(messages.c.partner, messages.c.reference, messages.c.desk).where(
                    messages.c.direction == "outbound"
                )
            ).all()
    finally:
        engine.dispose()
    return [(row.partner, row.reference, row.desk) for row in rows]


def write_form(folder: Path, name: str, form: bytes) -> Path:
    path = folder / name
    path.write_bytes(form)
    return path


def test_send_on_a_fresh_installation_prints_the_reference(
    send_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before `gateway serve` ever ran, the spool folder (where the ledger is) does not exist:
    `send` names the operator's first step, and works once it is taken."""
    form = write_form(tmp_path, "g.xml", g_for_norway())
    code, out, err = send(capsys, send_config, str(form))
    assert (code, out) == (2, "")
    assert err.endswith(
        f"this gateway needs {schema.head()}: run `gateway -c {send_config} db upgrade`\n"
    )
    assert main(["-c", str(send_config), "db", "upgrade"]) == 0
    assert (
        f"created the empty ledger's tables at revision {schema.head()}" in capsys.readouterr().out
    )
    assert queued_rows(send_config) == []
    code, out, err = send(capsys, send_config, str(form))
    assert (code, err) == (0, "")
    assert re.fullmatch(r"RO-\d{4}-000001\n", out)


@pytest.fixture
def installed(send_config: Path) -> Path:
    """A configuration whose spool folder and ledger exist, as after `gateway db upgrade`."""
    loaded = configuration.load(send_config)
    loaded.paths.spool.mkdir(parents=True)
    upgraded(loaded.database_url)
    return send_config


def test_send_prints_the_reference_and_queues_the_form(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    form = write_form(tmp_path, "g.xml", g_for_norway())
    code, out, err = send(capsys, installed, str(form))
    assert (code, err) == (0, "")
    reference = out.strip()
    assert re.fullmatch(r"RO-\d{4}-000001", reference)
    assert queued_rows(installed) == [("NO-SIRENE", reference, "duty")]
    outbound = configuration.load(installed).paths.spool / "outbound" / "new"
    assert [path.name for path in outbound.iterdir()] == [f"form.{reference}.msg"]


def test_send_json_with_an_attachment_and_a_desk(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    form = write_form(tmp_path, "seized.xml", seized_for_norway())
    report = write_form(tmp_path, "seizure-report.pdf", PDF)
    code, out, err = send(
        capsys, installed, str(form), "--attach", str(report), "--desk", "sirene", "--json"
    )
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["partner"] == "NO-SIRENE" and result["form"] == "G"
    assert result["state"] == "queued" and result["message_id"].startswith("<RO-")
    assert queued_rows(installed) == [("NO-SIRENE", result["reference"], "sirene")]


def test_send_an_invalid_form_exits_1_with_the_errors(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = g_for_norway(created=NO_OFFSET).replace(
        b"<Country>NO</Country>", b"<Country>XX</Country>"
    )
    form = write_form(tmp_path, "bad.xml", bad)
    code, out, err = send(capsys, installed, str(form))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f"{form}: invalid, nothing queued:"
    assert "/FormG/Header/Created: " in lines[1] and "/FormG/Hit/Place/Country: " in lines[2]
    assert queued_rows(installed) == []


def test_send_a_refused_form_exits_1_with_the_reason(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    form = write_form(
        tmp_path, "g.xml", outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="DK-SIRENE")
    )
    code, out, err = send(capsys, installed, str(form))
    assert (code, out) == (1, "")
    assert (
        err == f"gateway: {form}: not sent: unknown partner DK-SIRENE: no such bureau configured\n"
    )
    assert queued_rows(installed) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--desk", "nowhere"), "gateway: unknown desk 'nowhere'"),
        (("--attach", "/nonexistent/photo.jpg"), "/nonexistent/photo.jpg: No such file"),
    ],
    ids=["unknown desk", "missing attachment"],
)
def test_send_usage_errors_exit_2(
    installed: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    says: str,
) -> None:
    form = write_form(tmp_path, "g.xml", g_for_norway())
    code, out, err = send(capsys, installed, str(form), *args)
    assert (code, out) == (2, "")
    assert says in err
    assert queued_rows(installed) == []


def test_send_a_missing_file_exits_2(
    installed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = send(capsys, installed, str(tmp_path / "nowhere.xml"))
    assert (code, out) == (2, "")
    assert err == f"gateway: {tmp_path / 'nowhere.xml'}: No such file or directory\n"


# ---------------------------------------------------------------------- outboxes


@pytest.fixture
def outbox(env: Env) -> Path:
    """The sirene desk's outbox folder (the default, in the spool)."""
    folder = env.config.outbox(env.config.desk("sirene"))
    assert folder == env.config.paths.spool / "outbox" / "sirene"
    folder.mkdir(parents=True)
    return folder


def origin_of(desk: str, form: bytes) -> str:
    return f"outbox {desk} sha256:{hashlib.sha256(form).hexdigest()}"


def listing(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_a_form_dropped_in_an_outbox_is_queued_and_moved_to_sent(env: Env, outbox: Path) -> None:
    form = g_for_norway()
    write_form(outbox, "arrest.xml", form)
    write_form(outbox, "notes.txt", b"not a form")
    write_form(outbox, ".half-written.xml", b"<Form")
    [outcome] = Outbox(env.config, env.submitter).scan_once()
    reference = f"{THIS_YEAR}-000001"
    assert (outcome.desk, outcome.name, outcome.reference, outcome.error) == (
        "sirene",
        "arrest.xml",
        reference,
        None,
    )
    assert listing(outbox) == [".half-written.xml", "notes.txt", f"sent/{reference}.xml"]
    assert (outbox / "sent" / f"{reference}.xml").read_bytes() == form
    [row] = env.ledger.by_reference(reference)
    assert row.desk == "sirene"  # the desk whose outbox it was, not the route's
    assert env.ledger.events_of(row.id)[0][2] == f"queued for NO-SIRENE {origin_of('sirene', form)}"
    assert spool_files(env.outbound) == [f"new/form.{reference}.msg"]


def test_a_dropped_form_takes_its_attachments_from_the_files_folder(
    env: Env, outbox: Path, world: World
) -> None:
    write_form(outbox, "seized.xml", seized_for_norway())
    (outbox / "seized.files").mkdir()
    write_form(outbox / "seized.files", "seizure-report.pdf", PDF)
    [outcome] = Outbox(env.config, env.submitter).scan_once()
    assert outcome.reference == f"{THIS_YEAR}-000001", outcome.error
    raw = env.outbound.get(f"form.{outcome.reference}").payload()
    parts = open_as(world.no.home, raw).parts()
    assert [(name, kind, data) for name, kind, data in parts[1:]] == [
        ("seizure-report.pdf", "application/pdf", PDF)
    ]


def test_attachments_of_a_sent_form_are_not_reused_by_the_next_of_that_name(
    env: Env, outbox: Path
) -> None:
    write_form(outbox, "form.xml", seized_for_norway())
    (outbox / "form.files").mkdir()
    write_form(outbox / "form.files", "seizure-report.pdf", PDF)
    outbox_run = Outbox(env.config, env.submitter)
    [first] = outbox_run.scan_once()
    assert first.error is None
    write_form(outbox, "form.xml", g_for_norway())  # lists no attachment
    [second] = outbox_run.scan_once()
    assert (second.reference, second.error) == (f"{THIS_YEAR}-000002", None)


def test_an_invalid_dropped_form_is_refused_with_its_errors(env: Env, outbox: Path) -> None:
    bad = g_for_norway(created=NO_OFFSET)
    write_form(outbox, "bad.xml", bad)
    [outcome] = Outbox(env.config, env.submitter).scan_once()
    assert outcome.reference is None and outcome.error is not None
    assert listing(outbox) == ["refused/bad.xml", "refused/bad.xml.errors.txt"]
    assert (outbox / "refused" / "bad.xml").read_bytes() == bad
    report = (outbox / "refused" / "bad.xml.errors.txt").read_text()
    assert "/FormG/Header/Created: " in report and report.endswith("\n")
    assert_nothing_queued(env)


def test_a_refused_dropped_form_says_why(env: Env, outbox: Path) -> None:
    write_form(outbox, "dk.xml", outgoing(G_ARRESTED, sender="RO-SIRENE", recipient="DK-SIRENE"))
    [outcome] = Outbox(env.config, env.submitter).scan_once()
    assert outcome.error == "unknown partner DK-SIRENE: no such bureau configured"
    assert (outbox / "refused" / "dk.xml.errors.txt").read_text() == outcome.error + "\n"
    assert_nothing_queued(env)


def test_a_claimed_form_whose_submission_committed_is_not_sent_again(
    env: Env, outbox: Path
) -> None:
    """A crash between the commit and the move to sent/ left the file in .sending/."""
    form = g_for_norway()
    submitted = env.submitter.submit(form, desk="sirene", origin=origin_of("sirene", form))
    (outbox / ".sending").mkdir()
    write_form(outbox / ".sending", "arrest.xml", form)
    [outcome] = Outbox(env.config, env.submitter).scan_once()
    assert (outcome.reference, outcome.error) == (submitted.reference, None)
    assert listing(outbox) == [f"sent/{submitted.reference}.xml"]
    assert count_rows(env.engine, messages) == 1
    assert sequence_values(env.engine) == {THIS_YEAR: 1}
    assert spool_files(env.outbound) == [f"new/form.{submitted.reference}.msg"]


def test_a_claimed_form_whose_submission_did_not_commit_is_sent(env: Env, outbox: Path) -> None:
    form = g_for_norway()
    (outbox / ".sending").mkdir()
    write_form(outbox / ".sending", "arrest.xml", form)
    [outcome] = Outbox(env.config, env.submitter).scan_once()
    assert (outcome.reference, outcome.error) == (f"{THIS_YEAR}-000001", None)
    assert listing(outbox) == [f"sent/{THIS_YEAR}-000001.xml"]
    assert count_rows(env.engine, messages) == 1


def test_a_reply_we_send_joins_the_case_of_the_message_it_answers(env: Env) -> None:
    """Grouping at queueing, in the same transaction: our reply and the message it answers make
    a case (reply chain), owned by the received message's desk."""
    received_from_serbia(env)
    submitted = env.submitter.submit(
        reply_to_serbia(), [Attachment("register-photo.jpg", "image/jpeg", JPEG)], desk="sirene"
    )
    cases = Cases(env.ledger, env.audit)
    [case] = cases.listed(None)
    view = cases.view(None, case.number)
    assert [(m.reference, m.how) for m in view.members] == [
        ("RS-2026-004417", "reply-chain"),
        (submitted.reference, "reply-chain"),
    ]
    assert view.case.title == "IP-MSG RS-2026-004417"

"""Desk delivery: readable by any Maildir client, written once, refused cleanly when it cannot."""

from __future__ import annotations

import email
import email.policy
import errno
import mailbox
import os
import stat
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest

from gateway.core.config import BUILTIN_FORMS, Desk, Route
from gateway.core.errors import StorageFull, StoreUnavailable
from gateway.crypto.pgpmime import Attachment
from gateway.desks import maildir as desks
from gateway.desks.maildir import Delivery, choose_desk, deliver, render
from gateway.forms import formwording
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator

SAMPLES = BUILTIN_FORMS / "samples" / "G"
ARRESTED = (SAMPLES / "valid-person-arrested.xml").read_bytes()
SEIZED = (SAMPLES / "valid-vehicle-seized.xml").read_bytes()
RECEIVED = datetime(2026, 11, 25, 8, 15, 30, tzinfo=UTC)
SIRENE_DESK = Desk("sirene", Path("unused"))
PDF = Attachment("seizure-report.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 4)


@pytest.fixture(scope="module")
def validator() -> FormValidator:
    return load_validator(None)


def delivery(
    validator: FormValidator,
    form: bytes,
    address: str,
    *,
    reply_due: datetime | None = None,
    attachments: tuple[Attachment, ...] = (),
    desk: Desk = SIRENE_DESK,
) -> Delivery:
    validation = validator.validate(form)
    validation.raise_for_errors()
    assert validation.form is not None
    header = validation.header()
    return Delivery(
        partner=header.sender,
        partner_address=address,
        channel=validation.form.channel,
        form=validation.form.code,
        title=validation.form.title,
        header=header,
        outline=tuple(validation.outline()),
        form_xml=form,
        received_at=RECEIVED,
        desk=desk.name,
        desk_email=desk.email,
        attachments=attachments,
        reply_due=reply_due,
    )


def read_back(maildir: Path) -> EmailMessage:
    """The one message in the Maildir, as a mail client would list and parse it."""
    box = mailbox.Maildir(maildir, factory=None, create=False)
    keys = box.keys()
    assert len(keys) == 1
    raw = box.get_bytes(keys[0])
    return email.message_from_bytes(raw, policy=email.policy.default)


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    assert part.get_content_charset() == "utf-8"
    return cast(str, part.get_content())


def attachments(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    return {
        str(part.get_filename()): (part.get_content_type(), cast(bytes, part.get_content()))
        for part in message.iter_attachments()
    }


def test_urgent_form_with_deadline(validator: FormValidator, tmp_path: Path) -> None:
    due = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    item = delivery(validator, ARRESTED, "sirene@no.example", reply_due=due)
    raw = render(item)
    deliver(tmp_path / "sirene", "1.NO-2026-000123", raw)
    [on_disk] = (tmp_path / "sirene" / "new").iterdir()
    written = on_disk.read_bytes()
    assert written == raw and b"\n" in written
    assert b"\r" not in written  # LF on disk, the Maildir convention: no ^M in mutt

    message = read_back(tmp_path / "sirene")
    assert message["Subject"] == (
        "[URGENT] SIRENE G from NO-SIRENE NO-2026-000123, reply due 2026-11-26 09:00 UTC"
    )
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("NO-SIRENE", "sirene@no.example")
    desk = message["To"].addresses[0]
    assert (desk.display_name, desk.addr_spec) == ("sirene desk", "desk-sirene@gateway.invalid")
    assert message["Date"].datetime == RECEIVED
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(">")
    assert message["In-Reply-To"] is None and message["References"] is None
    assert message["X-IPC-Reference"] == "NO-2026-000123"
    assert message["X-IPC-Form"] == "G"
    assert message["X-IPC-Partner"] == "NO-SIRENE"

    body = text_body(message)
    assert body.splitlines()[0] == "SIRENE form G: Hit, action taken"
    for line in (
        "Reference:   NO-2026-000123",
        "Created:     2026-11-25 08:14 UTC",
        "Sender:      NO-SIRENE, Duty officer 4",
        "Recipient:   RO-SIRENE",
        "Priority:    URGENT - Person held at the border; decision on detention needed within "
        "hours.",
        "Alert:       RO0000000000123456 (article 26)",
        "Language:    en",
        "Reply due:   2026-11-26 09:00 UTC",
        "Received:    2026-11-25 08:15 UTC",
        "Hit",
        "    Locality: Oslo Gardermoen",
        "  Time: 2026-11-25T08:40:00+01:00",
        "      Family name: EXAMPLE",
        "      Date of birth: 1980-01-01",
        "      Identity document",
        "        Issuing country: RO",
        "  Action taken: Person arrested on the basis of the European Arrest Warrant and held "
        "in custody.",
        "  Further action requested: Please confirm the EAW and send form A if not yet sent.",
        "Attachments: none",
    ):
        assert line in body.splitlines(), line
    assert "Header" not in body and "Urgency reason" not in body and "In reply to" not in body

    assert attachments(message) == {"form.xml": ("application/xml", ARRESTED)}


def test_normal_form_without_deadline(validator: FormValidator, tmp_path: Path) -> None:
    desk = Desk("duty", tmp_path / "duty", email="duty@ipc.example")
    item = delivery(validator, SEIZED, "sirene@ro.example", attachments=(PDF,), desk=desk)
    deliver(desk.maildir, "7.RO-2026-004512", render(item))

    message = read_back(desk.maildir)
    assert message["Subject"] == "SIRENE G from RO-SIRENE RO-2026-004512"
    assert message["To"].addresses[0].addr_spec == "duty@ipc.example"
    assert message["To"].addresses[0].display_name == "duty desk"
    body = text_body(message).splitlines()
    for line in (
        "Priority:    normal",
        "Recipient:   NL-SIRENE, Case 77/2026",
        "Alert:       NL00000000000098765 (article 38)",
        "Handling",
        "  H0",
        "  H3: Not to be shared with third countries.",
        "    Locality: Nădlac border crossing",
        "      VIN: WVWZZZ1JZXW000001",
        "      Registration country: NL",
        "  Action taken: Vehicle seized and held at the border police compound.",
        "Attachments: 1",
        f"  seizure-report.pdf (application/pdf, {len(PDF.data):,} bytes)",
        f"    SHA-256 {PDF.sha256}",
    ):
        assert line in body, line
    assert not any(line.startswith("Reply due") for line in body)

    assert attachments(message) == {
        "form.xml": ("application/xml", SEIZED),
        "seizure-report.pdf": ("application/pdf", PDF.data),
    }


def test_each_rendering_has_its_own_message_id(validator: FormValidator) -> None:
    item = delivery(validator, SEIZED, "sirene@ro.example")
    ids = {
        email.message_from_bytes(render(item), policy=email.policy.default)["Message-ID"]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_a_fixed_message_id_is_kept(validator: FormValidator) -> None:
    item = replace(delivery(validator, SEIZED, "sirene@ro.example"), message_id="<desk.7.X@h>")
    ids = {
        email.message_from_bytes(render(item), policy=email.policy.default)["Message-ID"]
        for _ in range(2)
    }
    assert ids == {"<desk.7.X@h>"}


def test_the_cross_checks_hits_follow_the_header(validator: FormValidator) -> None:
    plain = delivery(validator, SEIZED, "sirene@ro.example")
    hit = "plate B 123 XYZ in a G form from NO-SIRENE, 2026-03-02, ledger 17"
    both = replace(plain, earlier=(hit,), earlier_elsewhere=2)
    lines = desks.body(both).splitlines()
    start = lines.index("Earlier exchanges:")
    assert lines[start - 1] == "" and lines.index("Handling") < start  # after the header
    assert lines[start + 1 : start + 4] == [
        f"  {hit}",
        "  and 2 on other desks (not described here: a supervisor sees them)",
        "",
    ]
    others = desks.body(replace(plain, earlier_elsewhere=1)).splitlines()
    at = others.index("Earlier exchanges:")
    assert others[at + 1] == "  1 on other desks (not described here: a supervisor sees them)"
    assert "Earlier exchanges" not in desks.body(plain)  # none found: no section
    capped = desks.body(replace(plain, earlier=(hit,), earlier_capped=True)).splitlines()
    at = capped.index("Earlier exchanges:")
    assert capped[at + 2] == "  (the most recent only: a search finds any others)"


def test_naive_times_are_utc(validator: FormValidator) -> None:
    aware = delivery(validator, SEIZED, "sirene@ro.example", reply_due=RECEIVED)
    naive = replace(
        aware, received_at=RECEIVED.replace(tzinfo=None), reply_due=RECEIVED.replace(tzinfo=None)
    )
    assert desks.subject(naive) == desks.subject(aware)
    assert desks.body(naive) == desks.body(aware)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("DateOfBirth", "Date of birth"),
        ("VIN", "VIN"),
        ("InReplyTo", "In reply to"),
        ("EAWNumber", "EAW number"),
        ("SHA256", "SHA256"),
        ("H3", "H3"),
        ("article", "Article"),
    ],
)
def test_element_names_read_as_words(name: str, label: str) -> None:
    assert formwording.words(name) == label


def test_directories_are_private(tmp_path: Path) -> None:
    maildir = tmp_path / "desk"
    deliver(maildir, "1.X", b"Subject: x\r\n\r\nx\r\n")
    for folder in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_redelivery_is_a_no_op(tmp_path: Path) -> None:
    maildir = tmp_path / "desk"
    first = deliver(maildir, "12.NO-2026-000123", b"Subject: first\r\n\r\nbody\r\n")
    assert first == maildir / "new" / "12.NO-2026-000123"
    again = deliver(maildir, "12.NO-2026-000123", b"Subject: second\r\n\r\nbody\r\n")
    assert again == first
    assert first.read_bytes().startswith(b"Subject: first")
    assert list((maildir / "tmp").iterdir()) == []

    read = maildir / "cur" / "12.NO-2026-000123:2,S"  # a mail client marked it read
    first.rename(read)
    assert deliver(maildir, "12.NO-2026-000123", b"Subject: third\r\n\r\n") == read
    assert list((maildir / "new").iterdir()) == []
    assert len(mailbox.Maildir(maildir, create=False)) == 1

    other = deliver(maildir, "12.NO-2026-000123.1", b"Subject: other\r\n\r\n")
    assert other == maildir / "new" / "12.NO-2026-000123.1"


def test_deliver_many_writes_each_once_and_syncs_new_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = tmp_path / "desk"
    deliver(maildir, "2.B", b"Subject: b before\r\n\r\n")
    (maildir / "new" / "2.B").rename(maildir / "cur" / "2.B:2,S")
    synced: list[str] = []
    monkeypatch.setattr(desks, "fsync_dir", lambda folder: synced.append(folder.name))
    paths = desks.deliver_many(
        maildir,
        [("1.A", b"Subject: a\r\n\r\n"), ("2.B", b"Subject: b again\r\n\r\n"), ("3.C", b"c")],
    )
    assert paths == [maildir / "new" / "1.A", maildir / "cur" / "2.B:2,S", maildir / "new" / "3.C"]
    assert synced == ["new"], "one sync of new/ for the whole batch"
    assert (maildir / "cur" / "2.B:2,S").read_bytes().startswith(b"Subject: b before")
    assert sorted(path.name for path in (maildir / "new").iterdir()) == ["1.A", "3.C"]
    assert list((maildir / "tmp").iterdir()) == []
    assert desks.deliver_many(maildir, []) == []


def test_deliver_many_lists_the_maildir_unless_every_name_is_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = tmp_path / "desk"
    deliver(maildir, "2.B", b"Subject: b before\r\n\r\n")
    (maildir / "new" / "2.B").rename(maildir / "cur" / "2.B:2,S")
    looks: list[Path] = []
    real = desks._delivered_names

    def counting(folder: Path) -> dict[str, Path]:
        looks.append(folder)
        return real(folder)

    monkeypatch.setattr(desks, "_delivered_names", counting)
    desks.deliver_many(maildir, [("1.A", b"a"), ("3.C", b"c")], unseen={"1.A", "3.C"})
    assert looks == [], "names never delivered: no look at the Maildir"
    # One name that may have been delivered before (a retry): the Maildir is looked at, and the
    # copy a reader moved to cur/ is found rather than written again.
    paths = desks.deliver_many(maildir, [("2.B", b"b again"), ("4.D", b"d")], unseen={"4.D"})
    assert looks == [maildir]
    assert paths == [maildir / "cur" / "2.B:2,S", maildir / "new" / "4.D"]
    assert (maildir / "cur" / "2.B:2,S").read_bytes().startswith(b"Subject: b before")
    assert sorted(path.name for path in (maildir / "new").iterdir()) == ["1.A", "3.C", "4.D"]


def test_deliver_many_failing_midway_leaves_nothing_in_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = tmp_path / "desk"
    deliver(maildir, "0.OLD", b"Subject: old\r\n\r\n")
    real_fsync = os.fsync
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:  # the third message's file
            raise OSError(errno.ENOSPC, "simulated")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StorageFull, match=r"3\.C"):
        desks.deliver_many(maildir, [(f"{n}.{c}", b"x") for n, c in ((1, "A"), (2, "B"), (3, "C"))])
    assert [path.name for path in (maildir / "new").iterdir()] == ["0.OLD"], "only what was there"
    assert list((maildir / "tmp").iterdir()) == []
    monkeypatch.undo()
    desks.deliver_many(maildir, [(f"{n}.{c}", b"x") for n, c in ((1, "A"), (2, "B"), (3, "C"))])
    assert len(list((maildir / "new").iterdir())) == 4


def test_deliver_many_failing_to_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails while the batch's files are written (none synced yet): no file in
    new/ or tmp/, no descriptor left open."""
    maildir = tmp_path / "desk"
    deliver(maildir, "0.OLD", b"Subject: old\r\n\r\n")
    fds = len(list(Path("/proc/self/fd").iterdir()))
    real_write = os.write
    calls: list[int] = []

    def write(fd: int, data: bytes) -> int:
        calls.append(fd)
        if len(calls) == 2:  # the second message's file
            raise OSError(errno.ENOSPC, "simulated")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(StorageFull, match=r"2\.B"):
        desks.deliver_many(maildir, [(f"{n}.{c}", b"x") for n, c in ((1, "A"), (2, "B"), (3, "C"))])
    monkeypatch.undo()
    assert [path.name for path in (maildir / "new").iterdir()] == ["0.OLD"]
    assert list((maildir / "tmp").iterdir()) == []
    assert len(list(Path("/proc/self/fd").iterdir())) == fds


@pytest.mark.parametrize("group", [64, 2])
def test_deliver_many_writes_a_group_before_syncing_and_syncs_each_before_its_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: int
) -> None:
    """The copies of a group are all written, then all synced, then all renamed into new/
    (their syncs then share the file system's commits); each synced before its rename."""
    maildir = tmp_path / "desk"
    desks.deliver_many(maildir, [])  # the folders made first
    calls: list[str] = []
    real = {call: getattr(os, call) for call in ("write", "fsync", "rename")}
    for call in ("write", "fsync", "rename"):

        def recording(
            *args: object, _call: str = call, _real: object = getattr(os, call)
        ) -> object:
            if _call == "fsync" and stat.S_ISDIR(os.fstat(cast(int, args[0])).st_mode):
                calls.append("sync new/")
            else:
                calls.append(_call)
            return cast(Callable[..., object], real[_call])(*args)

        monkeypatch.setattr(os, call, recording)
    monkeypatch.setattr(desks, "SYNC_GROUP", group)
    desks.deliver_many(maildir, [(f"{n}.X", b"x") for n in range(4)], unseen={"0.X"})
    monkeypatch.undo()
    if group == 64:
        assert calls == ["write"] * 4 + ["fsync"] * 4 + ["rename"] * 4 + ["sync new/"]
    else:
        assert calls == (["write"] * 2 + ["fsync"] * 2 + ["rename"] * 2) * 2 + ["sync new/"]
    assert sorted(path.name for path in (maildir / "new").iterdir()) == [f"{n}.X" for n in range(4)]


def test_deliver_many_refuses_a_bad_name_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Maildir name"):
        desks.deliver_many(tmp_path / "desk", [("1.A", b"x"), ("../x", b"y")])
    assert not (tmp_path / "desk").exists()


def test_stale_tmp_file_is_replaced(tmp_path: Path) -> None:
    maildir = tmp_path / "desk"
    for folder in ("tmp", "new", "cur"):
        (maildir / folder).mkdir(parents=True)
    (maildir / "tmp" / "3.RO-2026-000001").write_bytes(b"half a messa")
    path = deliver(maildir, "3.RO-2026-000001", b"Subject: whole\r\n\r\nbody\r\n")
    assert path.read_bytes() == b"Subject: whole\r\n\r\nbody\r\n"
    assert list((maildir / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "../x", "a b", "a:2,S", "ü", "x" * 101]
)
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="Maildir name"):
        deliver(tmp_path / "desk", name, b"Subject: x\r\n\r\n")
    assert not (tmp_path / "desk").exists()


@pytest.mark.parametrize("failing_call", [1, 2], ids=["file-fsync", "directory-fsync"])
@pytest.mark.parametrize(
    ("code", "error"),
    [(errno.ENOSPC, StorageFull), (errno.EIO, StoreUnavailable)],
    ids=["ENOSPC", "EIO"],
)
def test_write_failure_leaves_nothing_in_new(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing_call: int,
    code: int,
    error: type[StoreUnavailable],
) -> None:
    maildir = tmp_path / "desk"
    for folder in ("tmp", "new", "cur"):
        (maildir / folder).mkdir(parents=True)
    calls: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing_call:
            raise OSError(code, "simulated")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(error) as raised:
        deliver(maildir, "5.NO-2026-000999", b"Subject: x\r\n\r\nbody\r\n")
    assert type(raised.value) is error
    assert "5.NO-2026-000999" in str(raised.value)
    assert list((maildir / "new").iterdir()) == []
    assert list((maildir / "tmp").iterdir()) == []

    monkeypatch.undo()  # the disk has room again: the same delivery now succeeds
    assert deliver(maildir, "5.NO-2026-000999", b"Subject: x\r\n\r\nbody\r\n").is_file()


def test_unusable_maildir_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "desk"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable) as raised:
        deliver(blocker, "1.X", b"Subject: x\r\n\r\n")
    assert not isinstance(raised.value, StorageFull)


ROUTES = (
    Route(desk="duty", priority="urgent", channel="sirene"),
    Route(desk="sirene-no", channel="sirene", partner="NO-SIRENE"),
    Route(desk="sirene-j", form="J"),
    Route(desk="sirene", channel="sirene"),
    Route(desk="europol", channel="europol"),
)


@pytest.mark.parametrize(
    ("channel", "form", "priority", "partner", "desk"),
    [
        ("sirene", "G", "urgent", "NO-SIRENE", "duty"),
        ("sirene", "G", "normal", "NO-SIRENE", "sirene-no"),
        ("sirene", "J", "normal", "NO-SIRENE", "sirene-no"),
        ("sirene", "J", "normal", "DE-SIRENE", "sirene-j"),
        ("sirene", "G", "normal", "DE-SIRENE", "sirene"),
        ("europol", "EU-RFI", "urgent", "DE-ENU", "europol"),
    ],
)
def test_first_matching_route_wins(
    channel: str, form: str, priority: str, partner: str, desk: str
) -> None:
    assert choose_desk(ROUTES, channel, form, priority, partner) == desk


def test_catch_all_route_and_no_route() -> None:
    with pytest.raises(LookupError, match=r"no route matches channel 'interpol', form 'IP-MSG'"):
        choose_desk(ROUTES, "interpol", "IP-MSG", "normal", "RS-NCB")
    fallback = (*ROUTES, Route(desk="duty"))
    assert choose_desk(fallback, "interpol", "IP-MSG", "normal", "RS-NCB") == "duty"
    with pytest.raises(LookupError):
        choose_desk((), "sirene", "G", "normal", "NO-SIRENE")

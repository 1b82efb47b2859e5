"""The desk sink's parts that need no Dovecot: names and Message-IDs fixed by the ledger id,
LMTP replies read as verdicts, the Maildir sink's outcomes, serve's check of the IMAP password
file. Dovecot itself: tests/integration/test_lmtp_desks.py and test_lmtp_crash.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gateway.core import config as configuration
from gateway.core import crashpoints
from gateway.core.config import Desk, DeskDelivery
from gateway.core.errors import ConfigError, DeskRefused, DeskUnavailable, StoreUnavailable
from gateway.desks.imapcheck import CopyFinder
from gateway.desks.lmtp import verdict
from gateway.desks.sink import DeskCopy, MaildirSink, copy_message_id, copy_name
from gateway.service import preflight


def test_name_and_message_id_follow_from_the_ledger_id() -> None:
    assert copy_name(42, "NO-2026-000123") == "42.NO-2026-000123"
    assert copy_name(42, "NO 2026/1") == "42.NO_2026_1"
    assert copy_message_id(42, "NO-2026-000123", "gw.example") == (
        "<desk.42.NO-2026-000123@gw.example>"
    )
    assert copy_message_id(42, "NO-2026-000123", "gw.example") == copy_message_id(
        42, "NO-2026-000123", "gw.example"
    )


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (250, None),
        (251, None),
        (421, DeskUnavailable),
        (452, DeskUnavailable),
        (550, DeskRefused),
        (552, DeskRefused),
        (503, DeskRefused),
    ],
)
def test_lmtp_replies_are_verdicts(code: int, kind: type[Exception] | None) -> None:
    found = verdict("DATA", code, b"4.2.2 <sirene> Quota\r\nexceeded")
    if kind is None:
        assert found is None
        return
    assert isinstance(found, kind)
    assert str(found) == f"LMTP DATA: {code} 4.2.2 <sirene> Quota exceeded"
    assert found.transient is (kind is DeskUnavailable)


def test_the_maildir_sink_delivers_once_and_fails_per_desk(tmp_path: Path) -> None:
    good = Desk(name="sirene", maildir=tmp_path / "sirene")
    (tmp_path / "blocked").write_text("a file where the Maildir should be")
    bad = Desk(name="duty", maildir=tmp_path / "blocked")
    copies = [
        DeskCopy(good, "1.A", "<desk.1.A@h>", b"Subject: a\n\na\n"),
        DeskCopy(bad, "2.B", "<desk.2.B@h>", b"Subject: b\n\nb\n"),
        DeskCopy(good, "3.C", "<desk.3.C@h>", b"Subject: c\n\nc\n"),
    ]
    sink = MaildirSink()
    outcome = sink.deliver(copies, unseen={"1.A", "2.B", "3.C"})
    assert outcome[0] is None and outcome[2] is None
    assert isinstance(outcome[1], (StoreUnavailable, OSError))
    assert sorted(p.name for p in (tmp_path / "sirene" / "new").iterdir()) == ["1.A", "3.C"]
    assert sink.deliver(copies[:1]) == [None]  # again: the name makes it a no-op
    assert sorted(p.name for p in (tmp_path / "sirene" / "new").iterdir()) == ["1.A", "3.C"]


def lmtp_config(tmp_path: Path, password: Path) -> configuration.Config:
    config = configuration.load(configuration.PROJECT_ROOT / "config" / "gateway.example.toml")
    settings = DeskDelivery(
        method="lmtp",
        lmtp="/run/dovecot/lmtp",
        imap="127.0.0.1:143",
        imap_user="gateway",
        imap_password_file=password,
    )
    return dataclasses.replace(config, desk_delivery=settings)


def test_serve_checks_the_imap_password_file(tmp_path: Path) -> None:
    password = tmp_path / "imap.password"
    with pytest.raises(ConfigError) as missing:
        preflight.desk_delivery(lmtp_config(tmp_path, password), "gateway.toml")
    assert missing.value.key == "desk_delivery.imap_password_file"
    assert "cannot read" in missing.value.reason and str(password) in missing.value.reason
    password.write_text("")
    with pytest.raises(ConfigError) as empty:
        preflight.desk_delivery(lmtp_config(tmp_path, password), "gateway.toml")
    assert "is empty" in empty.value.reason
    password.write_text("secret\n")
    preflight.desk_delivery(lmtp_config(tmp_path, password), "gateway.toml")
    maildir = configuration.load(configuration.PROJECT_ROOT / "config" / "gateway.example.toml")
    preflight.desk_delivery(maildir, "gateway.toml")  # nothing to check


def test_a_crash_point_must_be_known_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown crash point"):
        crashpoints.reached("handoff.nowhere")
    monkeypatch.setenv(crashpoints.ENV_VAR, "another.point")
    crashpoints.reached(crashpoints.DESK_DELIVERED)  # not the one named: the process lives on


def test_the_imap_look_refuses_a_message_id_it_cannot_quote(tmp_path: Path) -> None:
    settings = lmtp_config(tmp_path, tmp_path / "unused").desk_delivery
    finder = CopyFinder(settings, "secret")
    with pytest.raises(ValueError, match="not a desk copy's Message-ID"):
        finder.present("sirene", ['<a"b@h>'])

"""Every error class carries its protocol meaning, and its SMTP reply is derived from it."""

from __future__ import annotations

import re

import pytest

from gateway.core import errors
from gateway.core.errors import GatewayError

CLASSES = sorted(
    (
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, GatewayError)
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_every_error_has_its_codes(cls: type[GatewayError]) -> None:
    assert 400 <= cls.smtp_code < 600
    assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", cls.enhanced)
    assert str(cls.smtp_code)[0] == cls.enhanced[0], "reply class and enhanced class agree"
    assert cls.transient == (cls.smtp_code < 500)
    assert cls.summary


@pytest.mark.parametrize(
    ("cls", "reply"),
    [
        (errors.TLSRequired, "530 5.7.0"),
        (errors.UnknownSender, "550 5.7.1"),
        (errors.MessageTooBig, "552 5.3.4"),
        (errors.CannotDecrypt, "550 5.7.5"),
        (errors.BadSignature, "550 5.7.7"),
        (errors.InvalidForm, "550 5.6.0"),
        (errors.StoreUnavailable, "451 4.3.0"),
        (errors.StorageFull, "452 4.3.1"),
    ],
)
def test_design_codes(cls: type[GatewayError], reply: str) -> None:
    assert cls().smtp_reply().startswith(reply + " ")


def test_reply_is_one_line() -> None:
    reply = errors.InvalidForm("line one\r\nline two\rthree\nfour").smtp_reply()
    assert reply == "550 5.6.0 line one line two three four"


def test_config_error_names_file_and_key() -> None:
    error = errors.ConfigError("gateway.toml", "partners[0].smtp_port", "bad port")
    assert str(error) == "gateway.toml: partners[0].smtp_port: bad port"

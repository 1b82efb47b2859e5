"""The desk sink made from a Config: Maildir (the default) or LMTP to Dovecot."""

from __future__ import annotations

from gateway.core.config import Config
from gateway.desks.lmtp import LmtpSink
from gateway.desks.sink import DeskSink, MaildirSink


def open_sink(config: Config) -> DeskSink:
    """The sink ``[desk_delivery] method`` names; for LMTP the IMAP password is read now (a
    ConfigError when its file cannot be read)."""
    if config.desk_delivery.method == "lmtp":
        return LmtpSink(config.desk_delivery, config.listen.hostname)
    return MaildirSink()

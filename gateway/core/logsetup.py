"""The log of `gateway serve`: one line per event on stderr; libraries' chatter at DEBUG only."""

from __future__ import annotations

import logging

# aiosmtpd logs every SMTP command of every session at INFO, with the peer as a Python tuple;
# APScheduler logs each job it adds and runs. Both are for debugging, not for an operator.
CHATTY = ("mail.log", "apscheduler", "alembic")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _NoAuthListing(logging.Filter):
    """aiosmtpd lists its built-in AUTH mechanisms when a session starts even though the
    gateway never offers AUTH: a line that would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Available AUTH mechanisms")


def configure(level: str) -> None:
    """Log at ``level`` (a logging level name) to stderr; the chatty libraries at WARNING unless
    ``level`` is DEBUG."""
    logging.basicConfig(level=level, format=FORMAT)
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in CHATTY:
        logging.getLogger(name).setLevel(quiet)
    smtp = logging.getLogger("mail.log")
    if not any(isinstance(existing, _NoAuthListing) for existing in smtp.filters):
        smtp.addFilter(_NoAuthListing())

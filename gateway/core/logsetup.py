"""The log of `gateway serve`: one line per event on stderr, plain text or JSON lines; libraries'
chatter at DEBUG only."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from gateway.core.messagelog import FIELDS

# aiosmtpd logs every SMTP command of every session at INFO, with the peer as a Python tuple;
# APScheduler logs each job it adds and runs. Both are for debugging, not for an operator.
CHATTY = ("mail.log", "apscheduler", "alembic")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _NoAuthListing(logging.Filter):
    """aiosmtpd lists its built-in AUTH mechanisms when a session starts even though the
    gateway never offers AUTH: a line that would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Available AUTH mechanisms")


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's
    structured fields (a message's Reference, partner, form, outcome, timings) and the
    exception's traceback, if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            line.update({key: value for key, value in fields.items() if key not in line})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(style: str) -> logging.Formatter:
    """The formatter of ``[logging] format``: ``plain`` or ``json``."""
    return JsonLines() if style == "json" else logging.Formatter(FORMAT)


def configure(level: str, style: str = "plain") -> None:
    """Log at ``level`` (a logging level name) to stderr, as ``style`` says (plain or json); the
    chatty libraries at WARNING unless ``level`` is DEBUG."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(style))
    logging.basicConfig(level=level, handlers=[handler])
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in CHATTY:
        logging.getLogger(name).setLevel(quiet)
    smtp = logging.getLogger("mail.log")
    if not any(isinstance(existing, _NoAuthListing) for existing in smtp.filters):
        smtp.addFilter(_NoAuthListing())

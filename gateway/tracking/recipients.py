"""Which desk a scheduled notice goes to: the first configured desk among those it names."""

from __future__ import annotations

from gateway.core.config import Config


def first_desk(config: Config, *names: str | None, fallback: bool = True) -> str | None:
    """The first of ``names`` that is a configured desk; else, with ``fallback``, the first desk
    of the configuration (a deadline notice is never lost for want of a desk); else None."""
    configured = [desk.name for desk in config.desks]
    for name in names:
        if name is not None and name in configured:
            return name
    return configured[0] if configured and fallback else None


def owner_desk(config: Config, desk: str | None) -> str | None:
    """The desk that owns a message (its ``desk``), else the duty desk, else the supervisor."""
    return first_desk(config, desk, config.deadlines.duty_desk, config.scheduler.supervisor_desk)


def duty_desk(config: Config, desk: str | None) -> str | None:
    """Where escalations go: the duty desk, else the desk that owns the message."""
    return first_desk(config, config.deadlines.duty_desk, desk, config.scheduler.supervisor_desk)


def supervisor_desk(config: Config) -> str | None:
    """Key-expiry warnings and the daily report: the supervisor desk, else the duty desk; None
    when neither is configured (they are then only logged)."""
    return first_desk(
        config, config.scheduler.supervisor_desk, config.deadlines.duty_desk, fallback=False
    )

"""What every endpoint of the API works with: the services, the access services, the limit on
failed keys per client address; instants written as JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.requests import Request

from gateway.access.setup import AccessServices
from gateway.core.config import WebSettings
from gateway.service.services import Services
from gateway.web.ratelimit import RateLimit

PREFIX = "/api/v1"


@dataclass(frozen=True)
class Api:
    services: Services
    access: AccessServices
    settings: WebSettings
    key_limit: RateLimit  # failed keys per client address

    @classmethod
    def of(cls, services: Services, access: AccessServices) -> Api:
        settings = services.config.web
        return cls(
            services=services,
            access=access,
            settings=settings,
            key_limit=RateLimit(settings.login_attempts_per_minute, services.clock),
        )


def api_of(request: Request) -> Api:
    api: Api = request.app.state.api
    return api


def instant(value: datetime | None) -> str | None:
    """An instant as RFC 3339 in UTC to the second (``2026-12-01T08:00:00Z``)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def seconds_left(due: datetime, now: datetime) -> int:
    """Whole seconds until ``due``; negative when overdue."""
    return int((due - now).total_seconds() // 1)

"""The console's small parts alone: the login rate limit's buckets, the client behind a proxy,
the times shown, the CSRF comparison, the [web] configuration and its refusals."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.requests import Request

from gateway.core import config as configuration
from gateway.core.clock import FakeClock
from gateway.core.errors import ConfigError
from gateway.web import csrf, times
from gateway.web.client import client_of
from gateway.web.ratelimit import RateLimit

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MINIMAL = """
[identity]
country = "RO"
address = "gateway@ro.example"
bureaux = { sirene = "RO-SIRENE" }

[[desks]]
name = "sirene"
maildir = "desks/sirene"

[[routes]]
desk = "sirene"
"""


def test_a_bucket_allows_its_rate_then_refuses_with_the_wait() -> None:
    clock = FakeClock(START)
    limit = RateLimit(10, clock)
    assert all(limit.take("192.0.2.1").allowed for _ in range(10))
    first, second = limit.take("192.0.2.1"), limit.take("192.0.2.1")
    assert (first.allowed, first.retry_after, first.first_refusal) == (False, 6, True)
    assert (second.allowed, second.first_refusal) == (False, False)
    assert limit.take("192.0.2.2").allowed  # another address, another bucket
    clock.advance(timedelta(seconds=6))
    assert limit.take("192.0.2.1").allowed
    refused = limit.take("192.0.2.1")
    assert not refused.allowed and refused.first_refusal  # a new window, told again


def test_the_buckets_are_bounded_forgetting_the_idle_first() -> None:
    clock = FakeClock(START)
    limit = RateLimit(2, clock, max_addresses=100)
    for _ in range(2):
        limit.take("203.0.113.1")  # emptied: remembered
    for n in range(1000):
        clock.advance(timedelta(milliseconds=1))
        limit.take(f"10.0.{n // 250}.{n % 250}")
    assert len(limit) <= 100
    limit_kept = RateLimit(2, clock, max_addresses=3)
    for _ in range(2):
        limit_kept.take("203.0.113.1")
    clock.advance(timedelta(seconds=1))
    limit_kept.take("10.0.0.1")
    limit_kept.take("10.0.0.2")
    limit_kept.take("10.0.0.3")  # the fullest bucket goes: the emptied one is still known
    assert not limit_kept.take("203.0.113.1").allowed


def request_from(peer: str, headers: dict[str, str], scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "server": ("console", 443 if scheme == "https" else 80),
            "client": (peer, 5000),
            "path": "/",
            "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            "query_string": b"",
        }
    )


def test_forwarded_headers_count_only_from_a_trusted_proxy() -> None:
    settings = configuration.WebSettings(
        behind_proxy=True,
        trusted_proxies=(
            ipaddress.ip_network("10.0.0.0/8"),
            ipaddress.ip_network("fd00::/8"),
        ),
    )
    forwarded = {
        "x-forwarded-for": "198.51.100.1, 192.0.2.5, 10.1.1.1",
        "x-forwarded-proto": "https",
    }
    seen = client_of(request_from("10.0.0.1", forwarded), settings)
    assert (seen.address, seen.secure) == ("192.0.2.5", True)  # the first hop not a proxy
    seen = client_of(request_from("192.0.2.9", forwarded), settings)
    assert (seen.address, seen.secure) == ("192.0.2.9", False)
    garbled = {"x-forwarded-for": "evil, 192.0.2.5", "x-forwarded-proto": "http"}
    seen = client_of(request_from("fd00::1", garbled), settings)
    assert (seen.address, seen.secure) == ("192.0.2.5", False)
    forged_only = {"x-forwarded-for": "not-an-address"}
    assert client_of(request_from("10.0.0.1", forged_only), settings).address == "10.0.0.1"
    direct = configuration.WebSettings()
    assert client_of(request_from("10.0.0.1", forwarded), direct).address == "10.0.0.1"
    assert client_of(request_from("10.0.0.1", {}, "https"), direct).secure


def test_times_are_shown_in_the_bureaus_zone_with_utc_on_hover() -> None:
    shown = times.shown(datetime(2026, 7, 1, 21, 30, tzinfo=UTC), ZoneInfo("Europe/Bucharest"))
    assert (shown.iso, shown.local, shown.utc) == (
        "2026-07-01T21:30:00Z",
        "2026-07-02 00:30 EEST",
        "2026-07-01 21:30 UTC",
    )
    assert times.time_left(START + timedelta(hours=3, minutes=5), START) == "3 h 05 min"
    assert times.time_left(START + timedelta(days=2, hours=4), START) == "2 d 04 h"
    assert times.time_left(START - timedelta(minutes=15), START) == "overdue 15 min"
    assert times.time_left(START + timedelta(seconds=59), START) == "0 min"


def test_csrf_tokens_are_per_session_and_compared_whole() -> None:
    one, two = csrf.session_token("a" * 43), csrf.session_token("b" * 43)
    assert one != two and len(one) == 64
    assert csrf.same(one, one)
    assert not csrf.same(one, one[:-1]) and not csrf.same(one, None) and not csrf.same(None, None)
    assert not csrf.same("", "")


def load(tmp_path: Path, web: str) -> configuration.Config:
    path = tmp_path / "gateway.toml"
    path.write_text(MINIMAL + "\n[web]\n" + web)
    return configuration.load(path)


def test_the_web_section_and_its_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "").web == configuration.WebSettings()
    web = load(
        tmp_path,
        'port = 8443\ntls_cert = "c.pem"\ntls_key = "k.pem"\ntime_zone = "Europe/Oslo"\n',
    ).web
    assert (web.port, web.tls, web.tls_cert, web.time_zone) == (
        8443,
        True,
        tmp_path / "c.pem",
        "Europe/Oslo",
    )
    pdf = load(tmp_path, "subject_pdf_rows = 500\nsubject_pdf_at_once = 2\n").web
    assert (pdf.subject_pdf_rows, pdf.subject_pdf_at_once) == (500, 2)
    proxied = load(tmp_path, 'behind_proxy = true\ntrusted_proxies = ["127.0.0.1", "fd00::/8"]\n')
    assert [str(n) for n in proxied.web.trusted_proxies] == ["127.0.0.1/32", "fd00::/8"]


@pytest.mark.parametrize(
    ("web", "key", "reason"),
    [
        ('tls_cert = "c.pem"', "web.tls_key", "tls_cert and tls_key go together"),
        ("behind_proxy = true", "web.trusted_proxies", "behind_proxy needs the proxy's addresses"),
        ('trusted_proxies = ["10.0.0.0/8"]', "web.trusted_proxies", "only with behind_proxy"),
        (
            'behind_proxy = true\ntrusted_proxies = ["10.0.0.0/8"]\ntls_cert = "c"\ntls_key = "k"',
            "web.tls_cert",
            "give one or the other",
        ),
        (
            'behind_proxy = true\ntrusted_proxies = ["10.0.0.0/33"]',
            "web.trusted_proxies[0]",
            "CIDR",
        ),
        ('time_zone = "Mars/Olympus"', "web.time_zone", "is not a time zone"),
        ("port = 70000", "web.port", ""),
        ("login_attempts_per_minute = 0", "web.login_attempts_per_minute", ""),
        ("listen = 1", "web.listen", ""),
        ("subject_pdf_rows = 0", "web.subject_pdf_rows", ""),
        ("subject_pdf_rows = 20001", "web.subject_pdf_rows", ""),
        ("subject_pdf_at_once = 0", "web.subject_pdf_at_once", ""),
        ("subject_pdf_at_once = 9", "web.subject_pdf_at_once", ""),
    ],
)
def test_web_mistakes_name_the_key_and_why(tmp_path: Path, web: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, web + "\n")
    assert caught.value.key == key
    assert reason in caught.value.reason

"""`gateway web` as an operator runs it (a subprocess): over TLS with HSTS and `__Host-` cookies,
stopped by SIGTERM with exit 0; a bad [web] section or an outdated ledger refused in one line."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from integration.inboundkit import _certificate
from webkit import write_config

GATEWAY = (sys.executable, "-m", "gateway")


def test_over_tls_with_hsts_and_host_cookies_stopped_by_sigterm(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    config = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        extra=f'tls_cert = "{cert}"\ntls_key = "{key}"',
    )
    process = subprocess.Popen(
        [*GATEWAY, "-c", str(config), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "serving the console at https://127.0.0.1:" in line, line
        url = line.rsplit(" ", 1)[1].strip()
        context = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(url + "login", context=context, timeout=10) as answer:  # noqa: S310
            assert answer.status == 200
            assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
            cookie = answer.headers["Set-Cookie"]
            assert cookie.startswith("__Host-gateway-login=")
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        plain = url.replace("https://", "http://")
        try:
            urllib.request.urlopen(plain + "login", timeout=10)  # noqa: S310
            raise AssertionError("the console answered in clear text")
        except OSError:
            pass
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "Shutting down" in output


def test_a_bad_web_section_is_refused_in_one_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}", extra="behind_proxy = true"
    )
    done = subprocess.run(
        [*GATEWAY, "-c", str(config), "web"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"gateway: configuration error: {config}: web.trusted_proxies: behind_proxy needs the "
        "proxy's addresses (CIDR networks such as 127.0.0.1/32)"
    )


def test_an_outdated_ledger_is_refused_naming_the_upgrade(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    (tmp_path / "ledger.db").unlink()
    done = subprocess.run(
        [*GATEWAY, "-c", str(config), "web"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "db upgrade" in done.stderr and done.stdout == ""

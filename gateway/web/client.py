"""Who is on the other end of a request: the client's address and whether it came over TLS,
from the connection itself or, behind a trusted reverse proxy, from X-Forwarded-For/-Proto."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from gateway.core.config import WebSettings, in_networks


@dataclass(frozen=True)
class Client:
    address: str  # "" when the server was not told (a test transport, a Unix socket)
    secure: bool  # reached us over TLS: ours, or the trusted proxy's


def client_of(connection: HTTPConnection, settings: WebSettings) -> Client:
    """The client as ``settings`` lets us believe it. Forwarded headers count only when the
    connection comes from a trusted proxy; X-Forwarded-For is read from its right end, skipping
    the trusted proxies, so an address the client wrote itself is never taken."""
    peer = connection.client.host if connection.client else ""
    secure = connection.url.scheme == "https"
    if not (settings.behind_proxy and in_networks(peer, settings.trusted_proxies)):
        return Client(peer, secure)
    proto = connection.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    address = peer
    hops = [hop.strip() for hop in connection.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # a forged or garbled hop: stop at the last address we could believe
        address = hop
        if not in_networks(hop, settings.trusted_proxies):
            break
    return Client(address, proto == "https")

"""A cap on request bodies: the console's forms are a few hundred bytes, so anything over the cap
is refused with 413 before it is read into memory (by its Content-Length, or while it streams)."""

from __future__ import annotations

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024


class BodyTooLarge(Exception):
    """Raised from receive() when a body without Content-Length passes the cap."""


class BodyLimit:
    def __init__(
        self, app: ASGIApp, *, max_body: int = MAX_BODY, json_under: str | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.json_under = json_under  # a path prefix whose refusals are JSON (the API's)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._too_large(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def noting(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, noting)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body too large: at most {self.max_body} bytes"
        response: Response
        if self.json_under is not None and str(scope.get("path", "")).startswith(self.json_under):
            body = {"error": {"code": "body_too_large", "message": message, "details": []}}
            response = JSONResponse(body, status_code=413)
        else:
            response = PlainTextResponse(message, status_code=413)
        await response(scope, receive, send)

"""A cap on request bodies: the console's forms are a few hundred bytes, so anything over the cap
is refused with 413 before it is read into memory (by its Content-Length, or while it streams).
A form sent with files (multipart/form-data, POST to an upload path) has a larger cap of its own,
counted the same way."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 64 * 1024
MULTIPART = b"multipart/form-data"


class BodyTooLarge(Exception):
    """Raised from receive() when a body without Content-Length passes the cap."""


class BodyLimit:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = MAX_BODY,
        json_under: str | None = None,
        upload_paths: Sequence[str] = (),
        max_upload: int = MAX_BODY,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.json_under = json_under  # a path prefix whose refusals are JSON (the API's)
        # Paths (a prefix when it ends in "/") that take files, and the cap of such a request.
        self.upload_paths = tuple(upload_paths)
        self.max_upload = max(max_upload, max_body)

    def cap(self, scope: Scope) -> int:
        """The cap of this request: the upload cap for a multipart POST to an upload path."""
        if scope.get("method") != "POST" or not self.upload_paths:
            return self.max_body
        kind = dict(scope["headers"]).get(b"content-type", b"")
        if not kind.lower().startswith(MULTIPART):
            return self.max_body
        path = str(scope.get("path", ""))
        for allowed in self.upload_paths:
            if path == allowed or (allowed.endswith("/") and path.startswith(allowed)):
                return self.max_upload
        return self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await self._too_large(scope, receive, send, cap)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
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
            await self._too_large(scope, receive, send, cap)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        message = f"request body too large: at most {cap} bytes"
        if cap > self.max_body:
            message += " (the files attached and the form together)"
        response: Response
        if self.json_under is not None and str(scope.get("path", "")).startswith(self.json_under):
            body = {"error": {"code": "body_too_large", "message": message, "details": []}}
            response = JSONResponse(body, status_code=413)
        else:
            response = PlainTextResponse(message, status_code=413)
        await response(scope, receive, send)

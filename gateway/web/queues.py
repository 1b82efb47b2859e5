"""The spools as operators see them: the quarantine (and every waiting item, as `gateway queue
list` shows them), metadata only, never a message's content; release, send now and drop (after a
confirmation) for the roles that manage the queues, through the service the CLI uses, audited."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.roles import Permission
from gateway.service.queues import DIRECTIONS, QueueItem, QueueRefusal, Queues, checked_reason
from gateway.store.spool import KEY_PATTERN
from gateway.web import params
from gateway.web.console import Console, SignedIn, check_csrf, console_of, require_user

PAGES = ("/quarantine", "/queues")  # where an action goes back to
OUTCOMES = {
    "release": "is back in its queue",
    "retry": "goes at the next delivery pass",
    "drop": "was dropped",
}


async def queues_page(request: Request) -> Response:
    """GET /quarantine (quarantined items) and /queues (every item waiting, claimed or
    quarantined), of one direction when asked."""
    console = console_of(request)
    signed = await _operator(request)
    direction = params.choice(request, "queue", DIRECTIONS)
    quarantined = request.url.path == "/quarantine"

    def read() -> list[QueueItem]:
        return _queues(console, signed).items(direction, quarantined=quarantined)

    items = await run_in_threadpool(read)
    return console.page(
        request,
        "queues.html",
        {
            "signed": signed,
            "items": items,
            "quarantined": quarantined,
            "here": request.url.path,
            "queue": direction or "",
            "directions": DIRECTIONS,
            "done": _done(request),
        },
    )


async def drop_page(request: Request) -> Response:
    """GET /queues/drop?queue=Q&key=K: the item, and the form that drops it with a reason."""
    console = console_of(request)
    signed = await _operator(request)
    direction = params.choice(request, "queue", DIRECTIONS)
    key = _key(request.query_params.get("key", ""))
    item = await run_in_threadpool(_get, console, signed, key, direction)
    return console.page(
        request,
        "drop.html",
        {"signed": signed, "item": item, "back": _back(request.query_params.get("back", ""))},
    )


async def release(request: Request) -> Response:
    return await _act(request, "release", required=False)


async def send_now(request: Request) -> Response:
    return await _act(request, "retry", required=False)


async def drop(request: Request) -> Response:
    return await _act(request, "drop", required=True)


async def _act(request: Request, action: str, *, required: bool) -> Response:
    """A POSTed action on one item (CSRF checked first): its outcome, or its refusal as 409."""
    console = console_of(request)
    signed = await _operator(request)
    form = await check_csrf(request, signed)
    direction = form.get("queue") or None
    if direction is not None and direction not in DIRECTIONS:
        raise HTTPException(400, f"queue must be one of {', '.join(DIRECTIONS)}")
    key = _key(form.get("key", ""))
    try:
        reason = checked_reason(form.get("reason", ""), required=required)
    except ValueError as error:
        raise HTTPException(400, f"the reason must be {error}") from None

    def act() -> QueueItem:
        queues = _queues(console, signed)
        actions: dict[str, Callable[[], QueueItem]] = {
            "release": lambda: queues.release(key, reason, direction),
            "retry": lambda: queues.retry(key, reason),
            "drop": lambda: queues.drop(key, reason, direction),
        }
        try:
            return actions[action]()
        except QueueRefusal as refusal:
            raise HTTPException(409, str(refusal)) from None

    item = await run_in_threadpool(act)
    done = urlencode({"done": action, "queue": item.direction, "key": item.key})
    return RedirectResponse(f"{_back(form.get('back', ''))}?{done}", status_code=303)


async def _operator(request: Request) -> SignedIn:
    signed = await require_user(request)
    if not signed.user.principal.may(Permission.QUEUES):
        raise HTTPException(403, "your role does not manage the queues")
    return signed


def _queues(console: Console, signed: SignedIn) -> Queues:
    return Queues(console.services, actor=signed.user.principal.name)


def _get(console: Console, signed: SignedIn, key: str, direction: str | None) -> QueueItem:
    try:
        return _queues(console, signed).get(key, direction)
    except QueueRefusal as refusal:
        raise HTTPException(404, str(refusal)) from None


def _key(value: str) -> str:
    if KEY_PATTERN.fullmatch(value) is None or not value.strip("."):
        raise HTTPException(400, "key must be a spool item's key, as the list shows it")
    return value


def _back(value: str) -> str:
    return value if value in PAGES else PAGES[0]


def _done(request: Request) -> str:
    """The sentence that says what the last action did (from the redirect's query)."""
    action = request.query_params.get("done", "")
    direction = request.query_params.get("queue", "")
    key = request.query_params.get("key", "")
    if action not in OUTCOMES or direction not in DIRECTIONS or not KEY_PATTERN.fullmatch(key):
        return ""
    return f"{direction} {key} {OUTCOMES[action]}"

"""Compose pages: choose a form, a partner and a desk (or open a draft); the form's page,
generated from its schema, with a file input when the form lists attachments; its POST adds or
removes repeated parts, saves a draft (without the files: the page says so), or checks the form
(its Attachment list filled from the files) with the validator of `gateway send` and sends it
with them, each error beside its field; files over the limits are refused, nothing kept. A reply
comes from the message view, prefilled. Desks without SEND, and other users' drafts: 404."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.accesslog import Purpose, Seen
from gateway.access.roles import Permission
from gateway.core.errors import GatewayError
from gateway.forms.formbuild import Placed, added, removed
from gateway.forms.formfields import FormDescription
from gateway.service import attaching, compose
from gateway.service.attaching import UploadLimits
from gateway.service.compose import Checked, NotFound, Target, Unsuitable
from gateway.web import composeform, uploads
from gateway.web.console import Console, SignedIn, check_csrf, console_of, require_user

log = logging.getLogger("gateway.web")
# The page's own fields beside the form's.
OWN = frozenset({"csrf", "partner", "desk", "reply", "draft", "action", "once", uploads.FIELD})
MAX_FIELD = 64 * 1024  # a field of the page (the whole page's fields are in BodyLimit's cap)
FILES_NOT_KEPT = (
    "The {count} file(s) you chose were not kept (a draft, a page shown again, keeps no files): "
    "choose them again before you send."
)


@dataclass
class Draft:
    """What a compose page shows: its target, the values, and what to tell."""

    goal: Target
    description: FormDescription
    values: dict[str, str]
    draft_id: int | None = None
    once: str = field(default_factory=compose.new_once)
    checked: Checked | None = None
    notice: str = ""
    refused: list[str] = field(default_factory=list)
    files_note: str = ""


async def compose_home(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    allowed = _sending_desks(signed)
    query = request.query_params
    code = query.get("form", "")
    if code:
        target = {"partner": query.get("partner", ""), "desk": query.get("desk", "")}
        return RedirectResponse(f"/compose/{code}?{urlencode(target)}", status_code=303)
    services = console.services
    kept = await run_in_threadpool(compose.drafts_of, services, signed.user.principal.name, allowed)
    return console.page(
        request,
        "compose_choose.html",
        {
            "signed": signed,
            "forms": compose.sendable(services),
            "partners": compose.partners_of(services),
            "desks": compose.sending_desks(services, allowed),
            "drafts": kept,
        },
    )


async def compose_page(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    allowed = _sending_desks(signed)
    query = request.query_params
    code = request.path_params["form"]
    draft_id = _number(query.get("draft", ""))
    if draft_id is not None:
        shown = await run_in_threadpool(_open_draft, console, signed, allowed, draft_id)
    else:
        shown = await run_in_threadpool(
            lambda: _new(
                console,
                signed,
                allowed,
                code,
                partner=query.get("partner", ""),
                desk=query.get("desk", ""),
                reply_to=_number(query.get("reply", "")),
            )
        )
    if shown.goal.form.code != code:
        raise HTTPException(404, "no such draft")
    return _render(request, console, signed, shown)


async def compose_post(request: Request) -> Response:
    console = console_of(request)
    signed = await require_user(request)
    allowed = _sending_desks(signed)
    services = console.services
    limits = uploads.limits_of(services.config)
    received = await uploads.parse(request, limits, max_field=MAX_FIELD)
    try:
        return await _post(request, console, signed, allowed, received=received, limits=limits)
    finally:
        await uploads.close(received)


async def _post(
    request: Request,
    console: Console,
    signed: SignedIn,
    allowed: frozenset[str] | None,
    *,
    received: uploads.Received,
    limits: UploadLimits,
) -> Response:
    submitted = await check_csrf(request, signed)
    if received.others:
        raise HTTPException(400, "files are sent in the page's attachment field only")
    code = request.path_params["form"]
    goal = await run_in_threadpool(
        lambda: _target(
            console,
            allowed,
            code,
            partner=submitted.get("partner", ""),
            desk=submitted.get("desk", ""),
            reply_to=_number(submitted.get("reply", "")),
        )
    )
    services = console.services
    description = services.descriptions.get(code)
    given = {key: value for key, value in submitted.items() if key not in OWN}
    values = compose.without_attachments(description, given)
    values.update(compose.fixed(services, description, goal))
    once = submitted.get("once", "")
    if compose.ONCE.fullmatch(once) is None:
        raise HTTPException(400, "the page's form is incomplete: reload the page")
    shown = Draft(goal, description, values, _number(submitted.get("draft", "")), once)
    action = submitted.get("action", "")
    user = signed.user.principal.name
    try:
        files = await uploads.taken(received.files, limits)
    except attaching.UploadRefused as refused:
        shown.refused = [*refused.reasons, "Nothing was sent or saved."]
        return _render(request, console, signed, shown, status=413 if refused.too_large else 422)
    if files and action != "send":
        shown.files_note = FILES_NOT_KEPT.format(count=len(files))
    if action.startswith("add:"):
        key = action[4:]
        shown.values = added(values, key, _count(values, key))
    elif action.startswith("remove:"):
        key = action[7:]
        shown.values = removed(values, key, _count(values, key.rpartition("[")[0] + "#"))
    elif action == "save":
        shown.draft_id = await run_in_threadpool(
            compose.save_draft, services, user, goal, values, shown.draft_id
        )
        shown.notice = "Draft saved."
    elif action == "send":
        listed = compose.attach(description, values, files)
        checked = await run_in_threadpool(
            compose.check, services, description, listed, console.zone
        )
        shown.checked = checked
        if checked.valid:
            try:
                sent = await run_in_threadpool(
                    lambda: compose.send(services, checked, goal, user, once, attachments=files)
                )
            except GatewayError as error:
                shown.refused = error.detail.splitlines()
            else:
                if shown.draft_id is not None:
                    await run_in_threadpool(compose.discard_draft, services, user, shown.draft_id)
                return RedirectResponse(f"/messages/{sent}", status_code=303)
        if files:
            shown.files_note = FILES_NOT_KEPT.format(count=len(files))
        return _render(request, console, signed, shown, status=422)
    else:
        raise HTTPException(400, "unknown action")
    return _render(request, console, signed, shown)


def _sending_desks(signed: SignedIn) -> frozenset[str] | None:
    allowed = signed.user.principal.desks_for(Permission.SEND)
    if allowed is not None and not allowed:
        raise HTTPException(403, "your role does not send forms")
    return allowed


def _target(
    console: Console,
    allowed: frozenset[str] | None,
    code: str,
    *,
    partner: str,
    desk: str,
    reply_to: int | None,
) -> Target:
    try:
        return compose.target(
            console.services, allowed, code, partner=partner, desk=desk, reply_to=reply_to
        )
    except NotFound as missing:
        raise HTTPException(404, str(missing)) from None
    except Unsuitable as unsuitable:
        raise HTTPException(400, str(unsuitable)) from None


def _new(
    console: Console,
    signed: SignedIn,
    allowed: frozenset[str] | None,
    code: str,
    *,
    partner: str,
    desk: str,
    reply_to: int | None,
) -> Draft:
    """A new form's page; for a reply, the answered form is read (its alert, its language):
    that view is recorded in the access log first."""
    goal = _target(console, allowed, code, partner=partner, desk=desk, reply_to=reply_to)
    services = console.services
    description = services.descriptions.get(code)
    original = goal.reply_to
    if original is not None:
        principal = signed.user.principal
        role = principal.role_for(Permission.CONTENT, goal.desk)
        if role is not None:
            with services.ledger.transaction() as tx:
                console.access.access_log.record_view(
                    tx,
                    principal.name,
                    role,
                    Seen(
                        original.id,
                        partner=original.partner,
                        form=original.form,
                        reference=original.reference,
                    ),
                    Purpose.REPLY,
                )
    return Draft(goal, description, compose.first_values(services, description, goal))


def _open_draft(
    console: Console, signed: SignedIn, allowed: frozenset[str] | None, draft_id: int
) -> Draft:
    """A kept draft (this user's, on a desk they may send from), its view recorded first."""
    services = console.services
    principal = signed.user.principal
    try:
        kept = compose.draft(services, principal.name, draft_id, allowed)
    except NotFound:
        raise HTTPException(404, "no such draft") from None
    goal = _target(
        console, allowed, kept.form, partner=kept.partner, desk=kept.desk, reply_to=kept.reply_to
    )
    role = principal.role_for(Permission.SEND, kept.desk)
    if role is None:  # pragma: no cover - compose.draft checked the desk
        raise HTTPException(404, "no such draft")
    with services.ledger.transaction() as tx:
        console.access.access_log.record_view(
            tx,
            principal.name,
            role,
            Seen(kept.reply_to or 0, partner=kept.partner, form=kept.form, part=f"draft-{kept.id}"),
            Purpose.REPLY if kept.reply_to is not None else Purpose.CASE_WORK,
        )
    description = services.descriptions.get(kept.form)
    values = {**kept.values, **compose.fixed(services, description, goal)}
    return Draft(goal, description, values, kept.id)


def _render(
    request: Request, console: Console, signed: SignedIn, shown: Draft, *, status: int = 200
) -> Response:
    goal = shown.goal
    placed = shown.checked.placed if shown.checked is not None else None
    hidden = compose.hidden(shown.description, goal)
    layout = composeform.page(shown.description, shown.values, placed or Placed(), hidden)
    context: dict[str, Any] = {
        "signed": signed,
        "goal": goal,
        "form": goal.form,
        "rows": layout.rows,
        "general": layout.general + shown.refused,
        "error_count": shown.checked.validation.error_count if shown.checked else 0,
        "draft_id": shown.draft_id,
        "once": shown.once,
        "notice": shown.notice,
        "reply": goal.reply_to,
        "files": compose.attachment_list(shown.description),
        "limits": uploads.limits_of(console.services.config),
        "files_note": shown.files_note,
    }
    return console.page(request, "compose.html", context, status=status)


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 12 else None


def _count(values: Mapping[str, str], key: str) -> int:
    given = values.get(key, "0")
    return int(given) if given.isdigit() else 0

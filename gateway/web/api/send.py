"""A form sent through the API: the XML body (or, as multipart/form-data, the part ``form`` and
the files of the parts ``attachment``) checked and queued by the Submitter (the checks of
`gateway send`, the files against the form's Attachment list), once per Idempotency-Key. The key
is stored with the SHA-256 of the request (of the form, and of the files when there are any) and
the answer in the transaction that queues the form, so it exists if and only if the form was
queued: a retry after a lost answer (or a crash at any point) gets the first answer again, never
a second message. The same key with another body is refused; an invalid form leaves no key."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.access.roles import Permission, Principal
from gateway.core.errors import (
    GatewayError,
    InvalidForm,
    KeyUnusable,
    StoreUnavailable,
    SubmissionRefused,
)
from gateway.crypto.pgpmime import Attachment
from gateway.forms.xmlforms import FormRefused
from gateway.outbound.submit import Submitted
from gateway.service import attaching
from gateway.store import idempotency
from gateway.store.idempotency import KeyTaken, StoredKey
from gateway.store.states import OutboundState
from gateway.store.unit import Transaction
from gateway.web import uploads
from gateway.web.api.auth import principal_of
from gateway.web.api.context import PREFIX, Api, api_of
from gateway.web.api.errors import ApiError

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,64}")
MULTIPART = "multipart/form-data"
MEDIA_TYPES = ("application/xml", MULTIPART)
FORM_PART = "form"
SEND_PARAMETERS = ("desk",)
RETRY_AFTER = "5"


@dataclass(frozen=True)
class Outcome:
    status: int  # 201 queued now, 200 the first answer again
    answer: dict[str, Any]


async def post_message(request: Request) -> Response:
    api = api_of(request)
    principal = await principal_of(request)
    desk = _sending_desk(api, principal, request)
    multipart = _check_media_type(request)
    key = _idempotency_key(request)
    if multipart:
        form, files = await _multipart(api, request)
    else:
        form, files = await request.body(), ()
    digest = request_digest(form, files)
    outcome = await run_in_threadpool(
        lambda: _submit_once(api, principal, key, form, desk, files=files, digest=digest)
    )
    headers = {"Location": f"{PREFIX}/messages/{outcome.answer['id']}"}
    if outcome.status == 200:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(outcome.answer, status_code=outcome.status, headers=headers)


async def _multipart(api: Api, request: Request) -> tuple[bytes, tuple[Attachment, ...]]:
    """The form (part ``form``, as a field or a file) and the files (parts ``attachment``) of
    a multipart request, each checked against the limits before it is read."""
    config = api.services.config
    limits = uploads.limits_of(config)
    received = await uploads.parse(request, limits, max_field=config.xml.max_bytes)
    try:
        if uploads.FIELD in received.fields:
            raise _bad_part(f"{uploads.FIELD}: send each file as a file part (with a filename)")
        unknown = sorted(({*received.fields} | {*received.others}) - {FORM_PART})
        if unknown:
            raise _bad_part(f"{unknown[0]}: unknown part; send {FORM_PART} and {uploads.FIELD}")
        if FORM_PART in received.others:
            form = await uploads.read_part(received.others[FORM_PART], config.xml.max_bytes)
            if form is None:
                raise ApiError(
                    413, "body_too_large", f"the form is over {config.xml.max_bytes} bytes"
                )
        elif FORM_PART in received.fields:
            form = received.fields[FORM_PART].encode("utf-8")
        else:
            raise _bad_part(f"{FORM_PART}: the form's XML is missing")
        try:
            files = await uploads.taken(received.files, limits)
        except attaching.UploadRefused as refused:
            raise ApiError(
                413 if refused.too_large else 422,
                "attachments_refused",
                f"{refused.reasons[0]}: nothing was queued",
                details=[{"part": uploads.FIELD, "reason": reason} for reason in refused.reasons],
            ) from None
        return form, files
    finally:
        await uploads.close(received)


def request_digest(form: bytes, files: Sequence[Attachment]) -> str:
    """What an Idempotency-Key is stored with: the SHA-256 of the form alone (as of an XML
    body), or of the form and every file (name, media type, SHA-256, in order) when there are
    files, so that the same key with other files is another body."""
    if not files:
        return hashlib.sha256(form).hexdigest()
    whole = hashlib.sha256(b"form+attachments\n" + hashlib.sha256(form).hexdigest().encode())
    for item in files:
        name = item.filename.encode("utf-8")
        whole.update(f"\n{item.sha256} {item.media_type} {len(name)}:".encode() + name)
    return whole.hexdigest()


def _bad_part(why: str) -> ApiError:
    return ApiError(400, "bad_part", why, details=[{"reason": why}])


def _submit_once(
    api: Api,
    principal: Principal,
    key: str,
    body: bytes,
    desk: str | None,
    *,
    files: tuple[Attachment, ...],
    digest: str,
) -> Outcome:
    owner = principal.name
    found = _stored(api, owner, key)
    if found is not None:
        return _again(found, digest)

    def record(tx: Transaction, submitted: Submitted) -> None:
        idempotency.store_in(
            tx,
            owner=owner,
            key=key,
            body_sha256=digest,
            message_id=submitted.ledger_id,
            answer=json.dumps(_answer(submitted), sort_keys=True),
            now=api.services.clock.now(),
        )

    try:
        submitted = api.services.submitter().submit(
            body, files, desk=desk, origin=f"api {owner}", also_in=record
        )
    except KeyTaken:
        # A concurrent request with this key committed first: its answer is this one's.
        found = _stored(api, owner, key)
        if found is None:  # its row was there a moment ago; rows are never deleted
            raise _unavailable() from None
        return _again(found, digest)
    except FormRefused as error:
        raise ApiError(
            422,
            "invalid_form",
            f"the form is not valid ({error.error_count} errors): nothing was queued",
            details=[
                {"line": item.line, "path": item.path or "/", "reason": item.reason}
                for item in error.errors
            ],
        ) from None
    except InvalidForm as error:
        raise ApiError(422, "invalid_form", f"{error.detail}: nothing was queued") from None
    except KeyUnusable as error:
        raise ApiError(422, "key_unusable", f"{error.detail}: nothing was queued") from None
    except SubmissionRefused as error:
        raise ApiError(422, "refused", f"{error.detail}: nothing was queued") from None
    except StoreUnavailable:
        raise _unavailable() from None
    except GatewayError as error:
        if error.transient:
            raise _unavailable() from None
        raise ApiError(422, "refused", f"{error.detail}: nothing was queued") from None
    return Outcome(201, _answer(submitted))


def _stored(api: Api, owner: str, key: str) -> StoredKey | None:
    with api.services.ledger.reading() as tx:
        return idempotency.stored(tx, owner, key)


def _again(found: StoredKey, digest: str) -> Outcome:
    """The first answer of a key given again with the same body; 422 with another body."""
    if found.body_sha256 != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"this {IDEMPOTENCY_HEADER} was used for another body: use a new key for a new form",
            details=[{"header": IDEMPOTENCY_HEADER, "message_id": found.message_id}],
        )
    answer: dict[str, Any] = json.loads(found.answer)
    return Outcome(200, answer)


def _answer(submitted: Submitted) -> dict[str, Any]:
    return {
        "id": submitted.ledger_id,
        "reference": submitted.reference,
        "partner": submitted.partner,
        "form": submitted.form,
        "message_id": submitted.message_id,
        "state": str(OutboundState.QUEUED),
    }


def _sending_desk(api: Api, principal: Principal, request: Request) -> str | None:
    """The desk that sends (and is told what becomes of the form): the ``desk`` parameter, or
    the key's one desk, or (a key of every desk) the configured route's."""
    unknown = sorted(set(request.query_params) - set(SEND_PARAMETERS))
    if unknown:
        raise ApiError(400, "bad_parameter", f"{unknown[0]}: unknown parameter; known: desk")
    allowed = principal.desks_for(Permission.SEND)
    if allowed is not None and not allowed:
        raise ApiError(403, "forbidden", "this key's role does not send forms")
    desk = request.query_params.get("desk")
    if desk is None:
        if allowed is None:
            return None
        if len(allowed) == 1:
            return next(iter(allowed))
        raise ApiError(400, "bad_parameter", "desk: this key has several desks: name one")
    if desk not in {item.name for item in api.services.config.desks}:
        raise ApiError(400, "bad_parameter", f"desk: no desk called {desk!r}")
    if allowed is not None and desk not in allowed:
        raise ApiError(403, "forbidden", f"this key does not send for desk {desk}")
    return desk


def _check_media_type(request: Request) -> bool:
    """Whether the request is multipart (the form and its files); 415 unless it is that or the
    form's XML."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in MEDIA_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the form's XML as the body with Content-Type: application/xml, or the form "
            f"and its files as multipart/form-data (parts {FORM_PART} and {uploads.FIELD})",
        )
    return media_type == MULTIPART


def _idempotency_key(request: Request) -> str:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or IDEMPOTENCY_KEY.fullmatch(key) is None:
        why = f"{IDEMPOTENCY_HEADER} is required: 1 to 64 of A-Z a-z 0-9 . _ : - (e.g. a UUID)"
        raise ApiError(
            400,
            "idempotency_key_required",
            why,
            details=[{"header": IDEMPOTENCY_HEADER, "reason": why}],
        )
    return key


def _unavailable() -> ApiError:
    return ApiError(
        503,
        "unavailable",
        "the ledger cannot take the form now; send it again with the same Idempotency-Key",
        headers={"Retry-After": RETRY_AFTER},
    )

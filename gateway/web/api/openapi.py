"""The API described as an OpenAPI 3.1 document, served at /api/v1/openapi.json. A test holds it
to the routes the app serves (every route documented, nothing documented that is not served)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.access.accesslog import Purpose
from gateway.forms.entities import KINDS
from gateway.search.matching import MAX_QUERY
from gateway.store.ledger import DIRECTIONS
from gateway.web.api.context import PREFIX
from gateway.web.api.messages import MAX_LIMIT, STATES
from gateway.web.api.send import IDEMPOTENCY_HEADER

DESCRIPTION = """\
The gateway's HTTP API, for systems that integrate with it (a national case-management system)
instead of the desks' outbox folders: list and read messages, send a form, follow its status
and the open deadlines, read a case, search what was exchanged.

Authentication: an API key made with `gateway users apikey create NAME --role R [--desk D]`,
given as `Authorization: Bearer <key>`. A missing, unknown or revoked key is answered 401 with
`WWW-Authenticate`; too many wrong keys from one address, 429 with `Retry-After`. The API reads
no cookie, so a browser cannot be made to call it with someone's credentials: there is no CSRF
token to give. A key has the roles and desks it was made with and the console's rules apply:
a message of another desk is answered 404 exactly as one that does not exist; operators' and
auditors' keys never get a form's content; every read of a form or of an attachment is recorded
in the access log with the purpose the caller gives in `X-Purpose`.

Errors are JSON of one shape: `{"error": {"code", "message", "details"}}`; `code` is stable,
`message` a sentence, `details` a list (the errors of an invalid form: line, path, reason).
Request bodies are limited to 64 KiB (413), but for a form sent with files (multipart/form-data),
whose files together may be half of the gateway's `smtp.listen.max_message_bytes`."""

ERROR = {"$ref": "#/components/schemas/Error"}
JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR}}}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


COMMON_ERRORS = {
    "401": _error("no key, or a key unknown or revoked (with WWW-Authenticate)"),
    "429": _error("too many wrong keys from this address (with Retry-After)"),
}
ID_PARAMETER = {
    "name": "ledger_id",
    "in": "path",
    "required": True,
    "description": "the message's ledger id",
    "schema": {"type": "integer", "minimum": 0},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


PURPOSE_PARAMETER = {
    "name": "X-Purpose",
    "in": "header",
    "required": True,
    "description": "why the form or file is read, written in the access log",
    "schema": {"type": "string", "enum": [p.value for p in Purpose]},
}
CODE = {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9-]{0,31}$"}
DESK = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"}
INSTANT = {"type": "string", "format": "date-time"}
NULLABLE_STRING = {"type": ["string", "null"]}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required if required is not None else list(properties),
    }


DEADLINE = _object(
    {
        "kind": {"type": "string", "enum": ["receipt", "reply"]},
        "owed_by": {"type": "string", "enum": ["desk", "partner"]},
        "due": INSTANT,
        "state": {"type": "string", "enum": ["open", "met", "missed", "closed"]},
        "seconds_left": {
            "type": ["integer", "null"],
            "description": "until due, negative when overdue; null unless open",
        },
    }
)
METADATA = {
    "id": {"type": "integer"},
    "direction": {"type": "string", "enum": list(DIRECTIONS)},
    "partner": {"type": "string"},
    "form": {"type": "string"},
    "reference": {"type": "string"},
    "priority": {"type": "string", "enum": ["normal", "urgent"]},
    "state": {"type": "string", "enum": list(STATES)},
    "desk": NULLABLE_STRING,
}
SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "array", "items": {"type": "object"}},
                }
            )
        }
    ),
    "MessageSummary": _object(
        {
            **METADATA,
            "created_at": INSTANT,
            "reply_deadline": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "due": INSTANT,
                            "state": {"type": "string"},
                            "seconds_left": {"type": ["integer", "null"]},
                        }
                    ),
                ]
            },
        }
    ),
    "MessageList": _object(
        {
            "messages": {"type": "array", "items": {"$ref": "#/components/schemas/MessageSummary"}},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "give it as cursor for the next page; null on the last page",
            },
        }
    ),
    "Deadline": DEADLINE,
    "Message": _object(
        {
            **METADATA,
            "channel": {"type": "string"},
            "in_reply_to": NULLABLE_STRING,
            "message_id": {"type": "string"},
            "created_at": INSTANT,
            "updated_at": INSTANT,
            "attachments": {
                "description": (
                    "a received message's attachments, for a key whose role reads content (the "
                    "listing, when not empty, is recorded in the access log with X-Purpose if "
                    "given); null for other keys, a message we sent, or a copy no longer kept"
                ),
                "oneOf": [
                    {"type": "null"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Attachment"}},
                ],
            },
            "deadlines": {"type": "array", "items": {"$ref": "#/components/schemas/Deadline"}},
            "timeline": {
                "type": "array",
                "items": _object(
                    {"at": INSTANT, "kind": {"type": "string"}, "detail": {"type": "string"}}
                ),
            },
        }
    ),
    "Attachment": _object(
        {
            "number": {
                "type": "integer",
                "minimum": 1,
                "description": "its number in /messages/{ledger_id}/attachments/{number}",
            },
            "filename": {"type": "string", "description": "as the partner named it (data)"},
            "media_type": {"type": "string", "description": "as the partner declared it"},
            "size": {"type": "integer", "minimum": 0, "description": "bytes"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        }
    ),
    "Status": _object(
        {
            "id": {"type": "integer"},
            "direction": {"type": "string", "enum": list(DIRECTIONS)},
            "reference": {"type": "string"},
            "state": {"type": "string", "enum": list(STATES)},
            "updated_at": INSTANT,
            "deadlines": {"type": "array", "items": {"$ref": "#/components/schemas/Deadline"}},
        }
    ),
    "Submitted": _object(
        {
            "id": {"type": "integer"},
            "reference": {"type": "string"},
            "partner": {"type": "string"},
            "form": {"type": "string"},
            "message_id": {"type": "string"},
            "state": {"type": "string", "enum": ["queued"]},
        }
    ),
    "OpenDeadline": _object(
        {
            "message_id": {"type": "integer"},
            "reference": {"type": "string"},
            "form": {"type": "string"},
            "partner": {"type": "string"},
            "direction": {"type": "string", "enum": list(DIRECTIONS)},
            "desk": NULLABLE_STRING,
            "kind": {"type": "string", "enum": ["receipt", "reply"]},
            "owed_by": {"type": "string", "enum": ["desk", "partner"]},
            "due": INSTANT,
            "seconds_left": {"type": "integer"},
            "reminders_sent": {"type": "integer"},
        }
    ),
    "SearchRequest": _object(
        {
            "kind": {"type": "string", "enum": list(KINDS), "default": "person"},
            "value": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY},
            "born": {"type": "string", "format": "date"},
            "born_within_days": {"type": "integer", "minimum": 0, "maximum": 366},
            "threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            "purpose": {"type": "string", "enum": [p.value for p in Purpose]},
            "case_reference": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9/._-]{1,63}$"},
            "reason": {"type": "string", "minLength": 3, "maxLength": 200},
        },
        required=["value", "purpose"],
    ),
    "SearchResults": _object(
        {
            "search_id": {"type": "integer"},
            "candidates": {"type": "integer"},
            "fuzzy_index": {"type": "boolean"},
            "results": {
                "type": "array",
                "items": _object(
                    {
                        "score": {"type": "number"},
                        "kind": {"type": "string"},
                        "role": {"type": "string"},
                        "value": {"type": "string"},
                        "born": NULLABLE_STRING,
                        "country": NULLABLE_STRING,
                        "message": {"type": "integer"},
                        "direction": {"type": "string", "enum": list(DIRECTIONS)},
                        "partner": {"type": "string"},
                        "form": {"type": "string"},
                        "desk": NULLABLE_STRING,
                        "indexed_at": INSTANT,
                        "why": {"type": "array", "items": {"type": "string"}},
                    }
                ),
            },
        }
    ),
    "Case": _object(
        {
            "id": {"type": "integer"},
            "number": {"type": "string"},
            "status": {"type": "string", "enum": ["open", "closed"]},
            "desk": NULLABLE_STRING,
            "title": {"type": "string"},
            "opened_at": INSTANT,
            "closed_at": {"type": ["string", "null"], "format": "date-time"},
            "closed_by": NULLABLE_STRING,
            "merged_into": {"type": ["integer", "null"]},
            "messages": {"type": "integer"},
            "members": {
                "type": "array",
                "items": _object(
                    {
                        "ledger_id": {"type": "integer"},
                        "direction": {"type": "string", "enum": list(DIRECTIONS)},
                        "partner": {"type": "string"},
                        "form": {"type": "string"},
                        "reference": {"type": "string"},
                        "at": INSTANT,
                        "how": {"type": "string"},
                        "by": {"type": "string"},
                        "joined_at": INSTANT,
                    }
                ),
            },
            "timeline": {
                "type": "array",
                "items": _object(
                    {
                        "at": INSTANT,
                        "kind": {"type": "string"},
                        "actor": {"type": "string"},
                        "reason": {"type": "string"},
                        "ledger_id": {"type": ["integer", "null"]},
                        "other_case": {"type": ["integer", "null"]},
                    }
                ),
            },
        }
    ),
    "DeadlineList": _object(
        {"deadlines": {"type": "array", "items": {"$ref": "#/components/schemas/OpenDeadline"}}}
    ),
}

PATHS: dict[str, Any] = {
    "/messages": {
        "get": {
            "operationId": "listMessages",
            "summary": "Messages of the key's desks, newest first, a page at a time (metadata)",
            "parameters": [
                _query(
                    "direction", "received or sent", {"type": "string", "enum": list(DIRECTIONS)}
                ),
                _query("desk", "one desk (of the key's)", DESK),
                _query("form", "a form's code; receipts (ACK) only when asked", CODE),
                _query("partner", "a partner's code", CODE),
                _query("state", "a message state", {"type": "string", "enum": list(STATES)}),
                _query(
                    "cursor",
                    "next_cursor of the page before",
                    {"type": "string", "pattern": "^[0-9]{1,18}$"},
                ),
                _query(
                    "limit",
                    "messages a page",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                ),
            ],
            "responses": {
                "200": _ok("a page", "MessageList"),
                "400": _error("a parameter that is unknown or wrong"),
                "403": _error("the key's role does not see messages (an auditor's)"),
                **COMMON_ERRORS,
            },
        },
        "post": {
            "operationId": "sendForm",
            "summary": "Send a form: validated, numbered, signed, encrypted and queued",
            "description": (
                "The body is the form's XML, as `gateway send` takes it (Created and Reference "
                "filled in where left out); or, to send files with it, multipart/form-data with "
                "the XML in the part `form` and each file in a part `attachment` (the files "
                "must be those the form's Attachment list names, by file name and SHA-256; "
                "together at most half of the gateway's smtp.listen.max_message_bytes). The "
                "Idempotency-Key makes a retry safe: the same key with the same request (the "
                "form and every file) answers the first answer again (200); with another, 422. "
                "The key is stored with the form in one transaction; a refused form stores no "
                "key."
            ),
            "parameters": [
                {
                    "name": IDEMPOTENCY_HEADER,
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                },
                _query("desk", "the sending desk (required for a key of several desks)", DESK),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/xml": {"schema": {"type": "string"}},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "form": {
                                    "type": "string",
                                    "contentMediaType": "application/xml",
                                    "description": "the form's XML, as a field or a file",
                                },
                                "attachment": {
                                    "type": "array",
                                    "maxItems": 20,
                                    "items": {
                                        "type": "string",
                                        "contentMediaType": "application/octet-stream",
                                    },
                                    "description": (
                                        "a file the form's Attachment list names (its file "
                                        "name and SHA-256), one part each, with its filename "
                                        "and Content-Type"
                                    ),
                                },
                            },
                            "required": ["form"],
                        },
                        "encoding": {"attachment": {"contentType": "*/*"}},
                    },
                },
            },
            "responses": {
                "201": {
                    **_ok("queued (Location: the message)", "Submitted"),
                    "headers": {"Location": {"schema": {"type": "string"}}},
                },
                "200": _ok("the first answer of this Idempotency-Key and body", "Submitted"),
                "400": _error(
                    "no or a malformed Idempotency-Key; a wrong parameter; a multipart body "
                    "without the part form, with an unknown part, or not well-formed"
                ),
                "403": _error("the key's role does not send, or not for that desk"),
                "413": _error(
                    "an XML body over 64 KiB; files over the limits (alone or together), or a "
                    "multipart body over its cap"
                ),
                "415": _error("the body is neither application/xml nor multipart/form-data"),
                "422": _error(
                    "invalid form (details: line, path, reason), refused (partner, channel, "
                    "reference, files not those of its Attachment list), a file name a form "
                    "cannot list, unusable key, or an Idempotency-Key used with another body"
                ),
                "503": _error("the ledger cannot take it now (Retry-After): send it again"),
                **COMMON_ERRORS,
            },
        },
    },
    "/messages/{ledger_id}": {
        "get": {
            "operationId": "getMessage",
            "summary": "A message's metadata, timeline and deadlines (and attachments' list)",
            "parameters": [
                ID_PARAMETER,
                {
                    **PURPOSE_PARAMETER,
                    "required": False,
                    "description": "why the attachments are listed (else the role's purpose)",
                },
            ],
            "responses": {
                "200": _ok("the message", "Message"),
                "403": _error("the key's role does not see messages"),
                "404": _error("no such message, or not of the key's desks"),
                **COMMON_ERRORS,
            },
        }
    },
    "/messages/{ledger_id}/status": {
        "get": {
            "operationId": "getStatus",
            "summary": "A message's state and deadlines",
            "parameters": [ID_PARAMETER],
            "responses": {
                "200": _ok("its status", "Status"),
                "403": _error("the key's role does not see messages"),
                "404": _error("no such message, or not of the key's desks"),
                **COMMON_ERRORS,
            },
        }
    },
    "/messages/{ledger_id}/form": {
        "get": {
            "operationId": "getForm",
            "summary": "A received message's form (XML), recorded in the access log",
            "parameters": [
                ID_PARAMETER,
                PURPOSE_PARAMETER,
            ],
            "responses": {
                "200": {
                    "description": "the form as received",
                    "content": {"application/xml": {"schema": {"type": "string"}}},
                },
                "400": _error("no or an unknown X-Purpose"),
                "403": _error("the key's role does not read content (operator, auditor)"),
                "404": _error("no such message, or not of the key's desks"),
                "409": _error("the stored copy cannot be read or no longer validates"),
                "410": _error("not kept: past its retention, or a form we sent"),
                **COMMON_ERRORS,
            },
        }
    },
    "/messages/{ledger_id}/attachments/{number}": {
        "get": {
            "operationId": "getAttachment",
            "summary": "A received message's attachment, recorded in the access log",
            "description": (
                "Always a download (Content-Disposition: attachment, RFC 6266 file name): a "
                "JPEG, PNG, GIF or WebP photo whose media type and first bytes agree keeps its "
                "type, any other file is application/octet-stream."
            ),
            "parameters": [
                ID_PARAMETER,
                {
                    "name": "number",
                    "in": "path",
                    "required": True,
                    "description": "the attachment's number in the message's list (from 1)",
                    "schema": {"type": "integer", "minimum": 0},
                },
                PURPOSE_PARAMETER,
            ],
            "responses": {
                "200": {
                    "description": "the file as received",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "400": _error("no or an unknown X-Purpose"),
                "403": _error("the key's role does not read content (operator, auditor)"),
                "404": _error("no such message or attachment, or not of the key's desks"),
                "409": _error("the stored copy cannot be read or no longer validates"),
                "410": _error("not kept: past its retention"),
                **COMMON_ERRORS,
            },
        }
    },
    "/deadlines": {
        "get": {
            "operationId": "listDeadlines",
            "summary": "Open deadlines of the key's desks, the least time left first",
            "parameters": [
                _query(
                    "overdue", "only those past due", {"type": "string", "enum": ["true", "false"]}
                ),
                _query(
                    "limit", "at most so many", {"type": "integer", "minimum": 1, "maximum": 1000}
                ),
            ],
            "responses": {
                "200": _ok("the deadlines", "DeadlineList"),
                "400": _error("a parameter that is unknown or wrong"),
                "403": _error("the key's role does not see messages"),
                **COMMON_ERRORS,
            },
        }
    },
    "/cases/{case_id}": {
        "get": {
            "operationId": "getCase",
            "summary": "A case: its messages (metadata), how each came in, and its timeline",
            "description": (
                "Messages are grouped into cases by reply chains, SIS alert, Interpol notice "
                "and national case references, or by hand. Each message shown is written to "
                "the access log."
            ),
            "parameters": [
                {
                    "name": "case_id",
                    "in": "path",
                    "required": True,
                    "description": "the case's id",
                    "schema": {"type": "integer", "minimum": 0},
                }
            ],
            "responses": {
                "200": _ok("the case", "Case"),
                "403": _error("the key's role sees no cases (operator)"),
                "404": _error("no such case, or not of the key's desks"),
                **COMMON_ERRORS,
            },
        }
    },
    "/search": {
        "post": {
            "operationId": "search",
            "summary": "Search persons, documents, vehicles, ... in what was exchanged",
            "description": (
                "The terms go in the body, never the URL. Candidates come from the search "
                "index (trigrams), a fuzzy score ranks them, each result says why it matched; "
                "only messages of the key's desks are searched. A search needs a purpose and a "
                "case reference or a short reason; it is recorded: its terms in their own "
                "table for auditors, an access-log line with that row's id and digest."
            ),
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/SearchRequest"}}},
            },
            "responses": {
                "200": _ok("the results, best first", "SearchResults"),
                "400": _error(
                    "no purpose, no case reference or reason, an empty, too long "
                    "or malformed search, an unknown field"
                ),
                "403": _error("the key's role does not search (operator, auditor)"),
                "413": _error("the body is over 4 KiB"),
                "415": _error("the body is not application/json"),
                **COMMON_ERRORS,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {
                    "description": "the OpenAPI document",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        }
    },
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "IPC Gateway API", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": PREFIX}],
        "security": [{"apiKey": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key from `gateway users apikey create`",
                }
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(document())

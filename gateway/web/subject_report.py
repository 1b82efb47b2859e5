"""The console's data-subject report (``/subject-report``): a form posted with its CSRF token
(the person's name, date of birth or document never in the URL) with the purpose and a case
reference or a reason; the report of gateway.service.subjects shown as HTML, with a button that
posts the same request for its PDF. Each report shown or downloaded is recorded in the access log
as `gateway subject-report` records it. For auditors (the data-protection officer) and
supervisors (Permission.SUBJECT_REPORT); others are refused. The PDF is made in a worker
process (gateway.web.pdfwork), never on the event loop nor in the console's threads, for at
most ``[web] subject_pdf_rows`` exchanges (a larger one is refused, and recorded with the
output ``pdf-refused``: the refusal tells how many exchanges there are) and
``subject_pdf_at_once`` at a time (another asked meanwhile gets 503 with Retry-After, nothing
recorded)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.roles import Permission
from gateway.core.errors import ReportTooLarge, SearchRefused
from gateway.reports import subject as subject_page
from gateway.service import searching, subjects
from gateway.web.console import SignedIn, check_csrf, console_of, require_user

log = logging.getLogger("gateway.web")

FIELDS = ("name", "born", "document", "purpose", "case_reference", "reason")
BUSY = (
    "Another report's PDF is being made: ask again in a minute, or make it with "
    "`gateway subject-report --format pdf`."
)
RETRY_AFTER = 30  # seconds: a PDF of some hundred exchanges takes about this long


async def subject_form(request: Request) -> Response:
    console = console_of(request)
    signed = await _allowed(request)
    return console.page(request, "subject_report.html", _context(signed, {}, None, ""))


async def _asked(
    request: Request, output: str, most: int | None = None, signed: SignedIn | None = None
) -> tuple[SignedIn, dict[str, str], subject_page.SubjectReport | Response]:
    """The signed-in user (``signed``, else checked here), the form sent (CSRF checked) and the
    report made for ``output`` (of at most ``most`` exchanges), or in the report's place the
    form again with what was wrong (400)."""
    console = console_of(request)
    signed = signed or await _allowed(request)
    submitted = await check_csrf(request, signed)
    made = await _made(request, signed, submitted, output, most)
    if isinstance(made, str):
        refused = console.page(
            request, "subject_report.html", _context(signed, submitted, None, made), status=400
        )
        return signed, submitted, refused
    return signed, submitted, made


async def subject_post(request: Request) -> Response:
    """The report as a page of the console."""
    console = console_of(request)
    signed, submitted, made_or_error = await _asked(request, "html")
    if isinstance(made_or_error, Response):
        return made_or_error
    body = Markup(subject_page.fragment(made_or_error))  # noqa: S704 (escaped by the module)
    return console.page(
        request, "subject_report.html", _context(signed, submitted, made_or_error, "", body)
    )


async def subject_pdf(request: Request) -> Response:
    """The report as a PDF file (a download), made by a worker while a slot is held; with every
    slot taken, 503 before the report is made (nothing recorded)."""
    console = console_of(request)
    signed = await _allowed(request)
    with console.pdfs.slots.held() as free:
        if not free:
            submitted = await check_csrf(request, signed)
            log.info("subject-report pdf refused: %d being made", console.pdfs.slots.busy)
            return console.page(
                request,
                "subject_report.html",
                _context(signed, submitted, None, BUSY),
                status=503,
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        _, _, made = await _asked(request, "pdf", console.settings.subject_pdf_rows, signed)
        if isinstance(made, Response):
            return made
        data = await console.pdfs.pdf(made)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="subject-report-{made.search_id}.pdf"'
        },
    )


async def _made(
    request: Request,
    signed: SignedIn,
    submitted: dict[str, str],
    output: str,
    most: int | None = None,
) -> subject_page.SubjectReport | str:
    """The report asked for, recorded; or why it is refused (nothing recorded then)."""
    console = console_of(request)
    try:
        why = searching.Why.of(
            submitted.get("purpose") or None,
            submitted.get("case_reference") or None,
            submitted.get("reason") or None,
        )
        subject = subjects.Subject.of(
            submitted.get("name") or None,
            _born(submitted.get("born", "").strip()),
            submitted.get("document") or None,
        )
    except SearchRefused as refused:
        return refused.detail

    def run() -> subject_page.SubjectReport:
        return subjects.report(
            console.services,
            console.access.access_log,
            signed.user.principal,
            subject,
            why,
            output=output,
            most=most,
        )

    try:
        return await run_in_threadpool(run)
    except ReportTooLarge as refused:
        return refused.detail
    except SearchRefused as refused:
        raise HTTPException(403, refused.detail) from None


def _born(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SearchRefused("the date of birth is a date, YYYY-MM-DD") from None


def _context(
    signed: SignedIn,
    submitted: dict[str, str],
    made: subject_page.SubjectReport | None,
    error: str,
    body: Markup | None = None,
) -> dict[str, Any]:
    return {
        "signed": signed,
        "values": {name: submitted.get(name, "") for name in FIELDS},
        "purposes": searching.PURPOSES,
        "made": made,
        "report": body,
        "error": error,
    }


async def _allowed(request: Request) -> SignedIn:
    signed = await require_user(request)
    if not signed.user.principal.may(Permission.SUBJECT_REPORT):
        raise HTTPException(403, "data-subject reports are for auditors and supervisors")
    return signed

"""Data-subject reports (`gateway subject-report`, the console's /subject-report): every exchange
that concerns a person, found through the search index at a strict threshold on every desk, with
its retention and the partners to inform of a rectification or an erasure; the request recorded
as a search is (its terms in search_requests, an access-log line with that row's id and digest)
in the transaction that reads it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from zoneinfo import ZoneInfo

from gateway.access.accesslog import AccessLog
from gateway.access.roles import Permission, Principal
from gateway.core.durations import format_duration
from gateway.core.errors import ReportTooLarge, SearchRefused
from gateway.forms.entities import DOCUMENT, PERSON
from gateway.reports import subject as subject_page
from gateway.reports.subject import Exchange, Informed, SubjectReport
from gateway.search import index, matching
from gateway.service.searching import Why
from gateway.service.services import Services
from gateway.store import case_rows, search_log, search_rows
from gateway.store.ledger import MessageRow
from gateway.store.unit import Transaction

STRICT = 90.0  # the score an entry needs: a name and an exact date of birth, or a document
LIMIT = 500  # entries per search: the most matching.Query allows
EXACT = 2000  # entries with the very key asked, read besides the search's (times EXACT_READ)
OUTPUTS = ("html", "pdf")


@dataclass(frozen=True)
class Subject:
    """Who the report is about: a name with a date of birth, a document number, or both."""

    name: str | None
    born: date | None
    document: str | None

    @classmethod
    def of(cls, name: str | None, born: date | None, document: str | None) -> Subject:
        """Checked; SearchRefused saying what is missing."""
        name = " ".join(name.split()) if name else None
        document = document.strip() if document else None
        if name and born is None:
            raise SearchRefused("a name goes with a date of birth (the report is strict)")
        if born is not None and not name:
            raise SearchRefused("a date of birth goes with a name")
        if not name and not document:
            raise SearchRefused("give a name and a date of birth, or a document number")
        made = cls(name, born, document)
        made.queries()
        return made

    def queries(self) -> list[matching.Query]:
        """The searches of the report (SearchRefused for a name or number that cannot be
        searched: empty once folded, too long)."""
        asked = []
        if self.name:
            asked.append(
                matching.Query(PERSON, self.name, born=self.born, threshold=STRICT, limit=LIMIT)
            )
        if self.document:
            asked.append(matching.Query(DOCUMENT, self.document, threshold=STRICT, limit=LIMIT))
        return asked

    def terms(self) -> dict[str, str]:
        """What search_requests keeps of the request."""
        return {
            "kind": "subject-report",
            "name": self.name or "",
            "born": self.born.isoformat() if self.born else "",
            "document": self.document or "",
            "threshold": str(STRICT),
        }

    def described(self) -> tuple[str, ...]:
        said = []
        if self.name and self.born:
            said.append(f"Name {self.name}, born {self.born.isoformat()}")
        if self.document:
            said.append(f"Document number {self.document}")
        return tuple(said)


@dataclass
class _Found:
    row: MessageRow
    score: float
    matched: list[str]
    why: list[str]
    # Its case, and the forms of that case's members by channel: its retention runs from the
    # case's closure, as long as the longest rule among them says.
    case: case_rows.Case | None = None
    fellows: list[tuple[str, str]] = field(default_factory=list)


def report(
    services: Services,
    access_log: AccessLog,
    principal: Principal,
    subject: Subject,
    why: Why,
    *,
    output: str,
    most: int | None = None,
) -> SubjectReport:
    """The report on ``subject`` over every desk, recorded (terms in search_requests, a line
    ``access.report`` in the audit chain) in the transaction that reads it. A principal whose
    roles do not make reports is refused (SearchRefused) and nothing is recorded. A report of
    more than ``most`` exchanges is refused (ReportTooLarge) after it is recorded with the output
    ``<output>-refused``: the refusal tells that the subject has that many exchanges."""
    role = principal.role_for(Permission.SUBJECT_REPORT)
    if role is None:
        raise SearchRefused(f"{principal.name} has no role that makes data-subject reports")
    if output not in OUTPUTS:
        raise SearchRefused(f"a report is one of {', '.join(OUTPUTS)}")
    now = services.clock.now()
    with services.ledger.transaction() as tx:
        fuzzy, complete = True, True
        found: dict[int, _Found] = {}
        for query in subject.queries():
            hits, fuzzy_index, whole = _hits(tx, query)
            fuzzy, complete = fuzzy and fuzzy_index, complete and whole
            for hit in hits:
                _add(tx, services, found, hit)
            if most is not None and len(found) > most:
                break
        too_many = most is not None and len(found) > most
        search_id, digest = search_log.add_in(
            tx,
            at=now,
            user_name=principal.name,
            role=str(role),
            purpose=str(why.purpose),
            case_reference=why.case_reference,
            reason=why.reason,
            terms=subject.terms(),
            hits=len(found),
        )
        access_log.record_report(
            tx,
            principal.name,
            role,
            len(found),
            why.purpose,
            search_id=search_id,
            digest=digest,
            output=f"{output}-refused" if too_many else output,
        )
    if too_many:
        raise ReportTooLarge(
            f"this report lists more than {most:,} exchanges, more than a PDF of the console "
            "takes: narrow it (a document number, or a name with its date of birth as a form "
            "wrote it), or make it with `gateway subject-report --format pdf`"
        )
    ordered = sorted(found.values(), key=lambda item: (item.row.created_at, item.row.id))
    return SubjectReport(
        made_at=now,
        made_by=principal.name,
        role=str(role),
        purpose=str(why.purpose),
        case_reference=why.case_reference,
        reason=why.reason,
        search_id=search_id,
        asked=subject.described(),
        method=_method(fuzzy, complete),
        exchanges=tuple(_exchange(services, item) for item in ordered),
        partners=_partners([item.row for item in ordered]),
        zone=ZoneInfo(services.config.web.time_zone),
    )


def _hits(tx: Transaction, query: matching.Query) -> tuple[list[matching.Hit], bool, bool]:
    """The entries that match ``query`` on every desk: the search's (its short list of the most
    alike), and every entry with the same key (the same name parts in any order and spelling,
    the same folded number) however many, scored alike; whether the index was fuzzy, and
    whether nothing was left unread."""
    result = matching.search(tx, query, desks=None)
    hits = list(result.hits)
    folded, key = index.fold(query.kind, query.value)
    same = search_rows.candidates(tx, query.kind, [key], fuzzy=False, desks=None, limit=EXACT)
    seen = {hit.candidate.id for hit in hits}
    for candidate in same:
        if candidate.id not in seen:
            hit = matching.score(query, folded, candidate)
            if hit is not None and hit.score >= query.least:
                hits.append(hit)
    short = matching.SHORT_LIST if query.kind == PERSON else matching.CANDIDATES
    whole = (
        len(result.hits) < query.limit
        and result.candidates < short
        and len(same) < EXACT * search_rows.EXACT_READ
    )
    return hits, result.fuzzy_index, whole


def _add(tx: Transaction, services: Services, found: dict[int, _Found], hit: matching.Hit) -> None:
    where, row = hit.candidate.where, hit.candidate.row
    matched = f"{row.kind} {row.role} {row.shown!r}" + (f" born {row.born}" if row.born else "")
    item = found.get(where.message_id)
    if item is None:
        item = found[where.message_id] = _Found(
            services.ledger.get_in(tx, where.message_id), hit.score, [], []
        )
        case_id = case_rows.case_of_message(tx, where.message_id)
        if case_id is not None:
            item.case = case_rows.get(tx, case_id)
            item.fellows = [
                (fellow.channel, fellow.form) for fellow in case_rows.members(tx, case_id)
            ]
    item.score = max(item.score, hit.score)
    item.matched.append(f"{matched}: score {hit.score:.1f}")
    item.why.extend(reason for reason in hit.why if reason not in item.why)


def _method(fuzzy: bool, complete: bool) -> tuple[str, ...]:
    said = [
        "Candidates come from the search index of every desk, which holds the persons, "
        "documents and other entities of every form received or sent while it is kept"
        + ("." if fuzzy else " (exact keys only: the database has no trigram index)."),
        "A name is scored part by part after transliteration and folding (case, diacritics, "
        "spelling variants, typos); the date of birth must be the same (or with day and "
        "month swapped). A document number is compared on its folded form. Every entry with "
        "the same name parts (in any order and spelling) or the same number is scored, however "
        "many there are.",
        f"An entry is listed when it scores at least {STRICT:.0f} of 100: the score and the "
        "reasons are given for each exchange; check those below 100 by hand.",
        "Messages past their retention are no longer indexed: their files are deleted and the "
        "ledger keeps only codes and references.",
    ]
    if not complete:
        said.insert(
            0,
            "More entries were alike than a search reads: this list may be incomplete. Ask "
            "again with the name as a form wrote it, or with a document number.",
        )
    return tuple(said)


def _exchange(services: Services, item: _Found) -> Exchange:
    row = item.row
    catalogue = services.validator.catalogue
    title = catalogue.get(row.form).title if row.form in catalogue else "form not in the catalogue"
    return Exchange(
        ledger_id=row.id,
        at=row.created_at,
        direction=row.direction,
        partner=row.partner,
        form=row.form,
        purpose=title,
        reference=row.reference,
        desk=row.desk,
        retention=_retention(services, item),
        score=item.score,
        matched=tuple(item.matched),
        why=tuple(item.why),
    )


def _retention(services: Services, item: _Found) -> str:
    """When the message's files are deleted: ``keep`` after its creation, or for a message in a
    case after the case's closure, ``keep`` being the longest rule among the case's messages (as
    the retention purge counts it). A purged message has lost its index entries with its files,
    so no report lists it."""
    zone = ZoneInfo(services.config.web.time_zone)
    row, config = item.row, services.config
    if item.case is None:
        keep = config.keep_for(row.channel, row.form)
        if keep is None:
            return "kept: no retention rule deletes it"
        until = (row.created_at + keep).astimezone(zone)
        return f"deleted from {until:%Y-%m-%d} (kept {format_duration(keep)})"
    keeps = [
        config.keep_for(channel, form)
        for channel, form in item.fellows or [(row.channel, row.form)]
    ]
    number = item.case.number
    if any(keep is None for keep in keeps):
        return f"kept: no retention rule deletes every message of case {number}"
    longest = max((keep for keep in keeps if keep is not None), default=timedelta(0))
    if item.case.closed_at is None:
        return f"kept while case {number} is open, then {format_duration(longest)} from its closure"
    until = (item.case.closed_at + longest).astimezone(zone)
    return f"deleted from {until:%Y-%m-%d} (case {number} closed; kept {format_duration(longest)})"


def _partners(rows: Sequence[MessageRow]) -> tuple[Informed, ...]:
    counts: dict[str, list[int]] = {}
    for row in rows:
        count = counts.setdefault(row.partner, [0, 0])
        count[0 if row.direction == "inbound" else 1] += 1
    return tuple(Informed(partner, *counts[partner]) for partner in sorted(counts))


def rendered(made: SubjectReport, output: str) -> bytes:
    """The report as the bytes of ``output`` (html: a self-contained page; pdf: its PDF)."""
    if output == "html":
        return subject_page.page(made).encode()
    return subject_page.pdf(made)

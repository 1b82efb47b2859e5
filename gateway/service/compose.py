"""Composing a form in the console: which forms, partners and desks a user may send with, a
reply's prefilled header, the form built from its fields and checked by the validator that
`gateway send` uses (errors placed beside their fields), drafts, and the send itself through
the Submitter."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo

from gateway.core.config import Partner
from gateway.crypto.pgpmime import Attachment
from gateway.forms.catalogue import FormSpec
from gateway.forms.formbuild import Built, Placed, build, count_key, join, step_key, values_of
from gateway.forms.formfields import FormDescription, Group
from gateway.forms.xmlforms import Validation
from gateway.service import received
from gateway.service.services import Services
from gateway.store import drafts, lookups
from gateway.store.drafts import DraftRow
from gateway.store.ledger import MessageRow

ATTACHMENT = "Attachment"  # the element a form lists its files with (xsd/common.xsd)


class NotFound(Exception):
    """What was asked for is not there for this user: a form, desk, message or draft."""


class Unsuitable(Exception):
    """The combination asked for cannot be composed (a partner of another channel...)."""


@dataclass(frozen=True)
class Target:
    """Where a form goes: the form, the partner, the desk that sends it, what it answers."""

    form: FormSpec
    partner: Partner
    desk: str
    reply_to: MessageRow | None = None


@dataclass(frozen=True)
class Checked:
    built: Built
    validation: Validation
    placed: Placed

    @property
    def valid(self) -> bool:
        return self.validation.valid


def sendable(services: Services) -> list[FormSpec]:
    """The forms a handler may send: those of a channel some partner is on (not the gateway's
    own ACK)."""
    channels = {partner.channel for partner in services.config.partners}
    return [form for form in services.validator.catalogue if form.channel in channels]


def partners_of(services: Services, channel: str | None = None) -> list[Partner]:
    return [p for p in services.config.partners if channel is None or p.channel == channel]


def sending_desks(services: Services, allowed: frozenset[str] | None) -> list[str]:
    """The configured desks among ``allowed`` (None: every desk)."""
    return [d.name for d in services.config.desks if allowed is None or d.name in allowed]


def target(
    services: Services,
    allowed: frozenset[str] | None,
    code: str,
    *,
    partner: str = "",
    desk: str = "",
    reply_to: int | None = None,
) -> Target:
    """The target of a new form or of a reply; NotFound for what is not there or not the user's
    (a desk without SEND, another desk's message), Unsuitable for a combination that cannot be
    sent (a partner of another channel, a form that does not answer the message)."""
    forms = {form.code: form for form in sendable(services)}
    form = forms.get(code)
    if form is None:
        raise NotFound(f"no form {code} to compose")
    try:
        services.descriptions.get(code)
    except ValueError as error:  # a configured schema this page cannot show (xs:any, recursion)
        raise Unsuitable(f"form {code} cannot be composed in the console: {error}") from None
    original = None
    if reply_to is not None:
        try:
            original = services.ledger.get(reply_to)
        except KeyError:
            raise NotFound("no such message") from None
        if original.direction != "inbound" or original.desk is None:
            raise NotFound("no such message")
        desk, partner = original.desk, original.partner
        answers = services.validator.catalogue.get(original.form).reply.answered_by
        if code not in answers:
            raise Unsuitable(
                f"form {code} does not answer form {original.form} "
                f"(answered by {', '.join(answers) or 'no form'})"
            )
    desks = sending_desks(services, allowed)
    if desk not in desks:
        raise NotFound(f"no desk {desk!r} of yours")
    found = services.config.partner_by_bureau(partner)
    if found is None:
        raise Unsuitable(f"choose a partner: {partner!r} is not one" if partner else "no partner")
    if found.channel != form.channel:
        raise Unsuitable(
            f"form {code} goes on the {form.channel} channel; {found.code} is a "
            f"{found.channel} partner"
        )
    return Target(form, found, desk, original)


def header_prefixes(description: FormDescription) -> list[str]:
    """Where the header's keys start: the root, or each variant of an abstract root."""
    variants = description.root.variants
    return [f"={variant.type_name}" for variant in variants] if variants else [""]


def fixed(services: Services, description: FormDescription, goal: Target) -> dict[str, str]:
    """The values the gateway sets, whatever the page sent: our bureau, the partner's, and for a
    reply the Reference it answers."""
    ours = services.config.identity.bureaux.get(goal.partner.channel, "")
    values: dict[str, str] = {}
    for prefix in header_prefixes(description):
        head = join(prefix, "Header")
        values[join(head, "Sender/Bureau")] = ours
        values[join(head, "Recipient/Bureau")] = goal.partner.code
        if goal.reply_to is not None:
            values[join(head, "InReplyTo")] = goal.reply_to.reference
    return values


def hidden(description: FormDescription, goal: Target) -> frozenset[str]:
    """Keys not shown as inputs: those the gateway sets, Created and Reference, which the send
    fills in, and the Attachment list (filled from the files attached: see attach)."""
    keys = set()
    for prefix in header_prefixes(description):
        keys.add(join(prefix, "Attachment"))
        head = join(prefix, "Header")
        keys |= {join(head, name) for name in ("Created", "Reference")}
        keys |= {join(head, "Sender/Bureau"), join(head, "Recipient/Bureau")}
        if goal.reply_to is not None:
            keys.add(join(head, "InReplyTo"))
    return frozenset(keys)


def attachment_list(description: FormDescription) -> Group | None:
    """The form's Attachment list (the element of the common Attachment type, or a restriction
    of it), where the files sent with it are named; None for a form that takes no files."""
    contents = [variant.content for variant in description.root.variants] or [
        description.root.content
    ]
    for content in contents:
        for node in content:
            if isinstance(node, Group) and node.name == ATTACHMENT:
                return node
    return None


def attach(
    description: FormDescription, values: Mapping[str, str], files: Sequence[Attachment]
) -> dict[str, str]:
    """The values with the form's Attachment list filled from ``files`` (name, media type,
    SHA-256), so that no one types a digest; whatever the page sent for that list is dropped."""
    found = without_attachments(description, values)
    group = attachment_list(description)
    if group is None:
        return found
    for prefix in header_prefixes(description):
        found[count_key(prefix, group)] = str(len(files))
        for index, item in enumerate(files, 1):
            key = step_key(prefix, group, index)
            found[join(key, "FileName")] = item.filename
            found[join(key, "MediaType")] = item.media_type
            found[join(key, "SHA256")] = item.sha256
    return found


def without_attachments(description: FormDescription, values: Mapping[str, str]) -> dict[str, str]:
    """The values without any of the Attachment list (a draft keeps no files, so no list)."""
    starts = tuple(join(prefix, ATTACHMENT) for prefix in header_prefixes(description))
    return {
        key: value
        for key, value in values.items()
        if not any(
            key == start or key.startswith((start + "[", start + "#", start + "/"))
            for start in starts
        )
    }


# What a reply takes over from the form it answers, by the key's end: the alert and the language.
CARRIED = ("Header/AlertRef", "Header/AlertRef/@article", "Header/Language")


def first_values(services: Services, description: FormDescription, goal: Target) -> dict[str, str]:
    """A new form's values: the fixed ones; for a reply, the answered form's alert reference and
    language too (read from its stored copy: the caller records that view)."""
    values = fixed(services, description, goal)
    if goal.reply_to is None:
        return values
    try:
        delivery = received.delivery_of(services, goal.reply_to)
    except received.NotReadable:
        return values
    answered = services.descriptions.get(goal.reply_to.form)
    theirs = values_of(answered, delivery.form_xml)
    for key, value in theirs.items():
        for end in CARRIED:
            if key == end or key.endswith("/" + end):
                for prefix in header_prefixes(description):
                    values[join(prefix, end)] = value
    return values


def check(
    services: Services,
    description: FormDescription,
    values: Mapping[str, str],
    zone: tzinfo | None,
) -> Checked:
    """The form built from the values and validated as `gateway send` validates it: Created and
    Reference filled in as the send fills them."""
    built = build(description, values, zone)
    now = services.clock.now()
    document = services.validator.complete_header(
        built.xml,
        created=now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        reference=f"{services.config.identity.country}-{now.year}-000000",
    )
    validation = services.validator.validate(document)
    return Checked(built, validation, built.place(list(validation.errors)))


ONCE = re.compile(r"[A-Za-z0-9_-]{22,64}")
# One send at a time in this process: the look for an earlier send of the same page and the
# queueing are one step, so a form sent twice (a double click, a reload) is queued once.
_SENDING = threading.Lock()


def new_once() -> str:
    """The token a compose page carries until its form is sent: what makes a send happen once."""
    return secrets.token_urlsafe(18)


def send(
    services: Services,
    checked: Checked,
    goal: Target,
    user: str,
    once: str,
    *,
    attachments: Sequence[Attachment] = (),
) -> int:
    """Queue the checked form with its files (the Submitter's own checks apply: partner's key,
    InReplyTo, the files against the form's Attachment list...) and return its ledger id; the
    page's ``once`` token sent before: the message it queued."""
    if ONCE.fullmatch(once) is None:
        raise ValueError("not a compose page's token")
    origin = f"console {user} once:{once}"
    with _SENDING:
        with services.ledger.reading() as tx:
            earlier = lookups.queued_from(tx, origin)
        if earlier is not None:
            rows = services.ledger.by_reference(earlier)
            return next(row.id for row in rows if row.direction == "outbound")
        submitted = services.submitter().submit(
            checked.built.xml, attachments, desk=goal.desk, origin=origin
        )
        return submitted.ledger_id


# ---------------------------------------------------------------------- drafts


def save_draft(
    services: Services,
    user: str,
    goal: Target,
    values: Mapping[str, str],
    draft_id: int | None,
) -> int:
    with services.ledger.transaction() as tx:
        return drafts.save(
            tx,
            draft_id=draft_id,
            user_name=user,
            desk=goal.desk,
            form=goal.form.code,
            partner=goal.partner.code,
            reply_to=goal.reply_to.id if goal.reply_to is not None else None,
            values=values,
            now=services.clock.now(),
        )


def drafts_of(services: Services, user: str, allowed: frozenset[str] | None) -> list[DraftRow]:
    with services.ledger.reading() as tx:
        return drafts.of_user(tx, user, allowed)


def draft(services: Services, user: str, draft_id: int, allowed: frozenset[str] | None) -> DraftRow:
    """The user's draft on a desk they may still send from; NotFound otherwise."""
    with services.ledger.reading() as tx:
        found = drafts.get(tx, draft_id, user)
    if found is None or (allowed is not None and found.desk not in allowed):
        raise NotFound("no such draft")
    return found


def discard_draft(services: Services, user: str, draft_id: int) -> bool:
    with services.ledger.transaction() as tx:
        return drafts.remove(tx, draft_id, user)

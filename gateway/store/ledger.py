"""The ledger: messages, their events, deadlines and the audit chain, in SQLite or PostgreSQL."""

from __future__ import annotations

import errno
import os
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gateway.core.clock import Clock
from gateway.core.errors import GatewayError
from gateway.store import search_ddl
from gateway.store.durable import private_folder
from gateway.store.states import (
    DEADLINE,
    INBOUND,
    OUTBOUND,
    DeadlineState,
    InboundState,
    MessageState,
    OutboundState,
    check_state,
    check_transition,
    machine_of,
)
from gateway.store.unit import Transaction, reading, writing

metadata = MetaData()

DIRECTIONS = ("inbound", "outbound")
INBOUND_STATES = tuple(InboundState)
OUTBOUND_STATES = tuple(OutboundState)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("direction", String(8), nullable=False),
    Column("partner", String(32), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("form", String(32), nullable=False),
    Column("reference", String(32), nullable=False),
    Column("in_reply_to", String(32)),
    Column("message_id", String(255), nullable=False),
    Column("priority", String(8), nullable=False),
    # SHA-256 of the signed content (what a receipt quotes) and of the raw message as it came.
    Column("content_sha256", String(64), nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("spool_key", String(64)),
    Column("desk", String(32)),
    Column("state", String(16), nullable=False),
    # The verdict on the signature, recorded at receipt: a later key expiry must not change it.
    Column("signer", String(64)),
    Column("signed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The SIS article of the alert a form names (SIRENE field 005; revision 0009), for the
    # statistics of hits by alert category: a code, never the alert's id.
    Column("alert_article", String(4)),
    # When retention shredded every copy of the message (revision 0011): the row stays as its
    # stub (ids, form, partner, dates, digests), its copies' digests in shredded_copies.
    Column("shredded_at", DateTime(timezone=True)),
    UniqueConstraint("direction", "partner", "reference", name="uq_message_reference"),
    CheckConstraint(f"direction IN {DIRECTIONS!r}", name="ck_message_direction"),
)
Index("ix_messages_state", messages.c.direction, messages.c.state)
Index("ix_messages_message_id", messages.c.message_id)
Index("ix_messages_reference", messages.c.reference)
Index("ix_messages_spool_key", messages.c.spool_key)  # the hand-off finds its row by it
Index("ix_messages_in_reply_to", messages.c.partner, messages.c.in_reply_to)
Index("ix_messages_created", messages.c.created_at)  # the reports' periods (revision 0009)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    # Codes, references, digests only: never a payload or personal data.
    Column("detail", String(500), nullable=False, default=""),
)
Index("ix_events_message", events.c.message_id, events.c.id)

# What retention shredded of a message (revision 0011): one row per file deleted (or copy
# expunged from a Dovecot mailbox), where it was (``place``: inbound-spool, outbound-spool, desk,
# dovecot, outbox; ``name``: the folder and file name, or the mailbox, a digest of the folder's
# name and the UID, which hold ids and references only), its SHA-256 and size, read before it
# was deleted.
shredded_copies = Table(
    "shredded_copies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("place", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("message_id", "place", "name", name="uq_shredded_copy"),
)
Index("ix_events_kind_at", events.c.kind, events.c.at)  # the reports' retries (revision 0009)

deadlines = Table(
    "deadlines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # receipt | reply
    Column("owed_by", String(16), nullable=False),  # partner | desk
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("due", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # open | paused | met | missed | closed
    Column("closed_at", DateTime(timezone=True)),
    Column("close_reason", String(200)),
    Column("reminders_sent", Integer, nullable=False, default=0),
    Column("escalations", Integer, nullable=False, default=0),
    # Receipt deadlines: how many times the message was sent again for want of a receipt.
    Column("resends", Integer, nullable=False, default=0),
    # The next instant a sweep has something to do for this deadline: the sweep's index.
    Column("next_action_at", DateTime(timezone=True)),
    # Reply deadlines: since when it waits for the answer to a request for clarification (while
    # ``paused``), and the time it has waited so far in all: its window starts that much later.
    Column("paused_at", DateTime(timezone=True)),
    # Only the database's default: a new deadline's INSERT does not name it.
    Column("paused_seconds", Integer, nullable=False, server_default="0"),
    UniqueConstraint("message_id", "kind", name="uq_deadline_kind"),
)
Index("ix_deadlines_next", deadlines.c.state, deadlines.c.next_action_at)
# The reports: deadlines that fell due, and those opened, in a period (revision 0009).
Index("ix_deadlines_due", deadlines.c.kind, deadlines.c.due)
Index("ix_deadlines_opened", deadlines.c.kind, deadlines.c.opened_at)

audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("partner", String(32), nullable=False, default=""),
    Column("form", String(32), nullable=False, default=""),
    Column("reference", String(64), nullable=False, default=""),
    Column("digest", String(64), nullable=False, default=""),
    Column("reason", String(300), nullable=False, default=""),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# One row per run of a scheduled job and per slot (e.g. the day of a daily job): whoever inserts
# it first runs the job, so with several gateways on one ledger each run happens once.
job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(32), primary_key=True),
    Column("slot", String(64), primary_key=True),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    Column("node", String(64), nullable=False, default=""),
    Column("outcome", String(200), nullable=False, default=""),
)

# The bytes of an accepted message when ``[store] bodies = "database"`` (revision 0015): the raw
# message and the verified entity after it (``raw_length`` bytes of raw), committed with the
# message's row, so that another node can hand it off. Outbound: a sealed message of ours.
message_bodies = Table(
    "message_bodies",
    metadata,
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True, autoincrement=False),
    Column("bytes", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("raw_length", Integer, nullable=False),
)

# The gateways on this ledger (revision 0015): each one's heartbeat, renewed every
# ``[cluster] heartbeat_seconds``; a node whose heartbeat is older than its leases is dead.
nodes = Table(
    "nodes",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("stopped_at", DateTime(timezone=True)),
)

# Work a node took (revision 0015): a kind (``handoff``: a received message; ``receipt``: a
# receipt of ours to send; ``outbound``: a form of ours to deliver) and the message's id; the
# holder's heartbeat moves ``expires_at`` on, and once it has passed any node may take it over.
leases = Table(
    "leases",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("item_id", Integer, primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
Index("ix_leases_holder", leases.c.holder)

sequences = Table(
    "sequences",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

# A partner's message refused before the 250, for the duty desk's notice. ``reply`` is the text
# we gave the partner (it may echo values of its form): it goes into the notice, never into a log
# line or the audit chain. ``notified``: when the duty desk's notice that tells it was posted.
REPLY_LIMIT = 500
refusals = Table(
    "refusals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("partner", String(32), nullable=False),
    Column("raw_sha256", String(64), nullable=False),
    Column("smtp_code", Integer, nullable=False),
    Column("enhanced", String(16), nullable=False),
    Column("kind", String(64), nullable=False),  # the error's class name
    Column("reply", String(REPLY_LIMIT), nullable=False),
    Column("notified", DateTime(timezone=True)),
)
Index("ix_refusals_pending", refusals.c.notified, refusals.c.partner, refusals.c.at)
Index("ix_refusals_at", refusals.c.at)

# One row per appearance of a spool item in quarantine that the duty desk was told of (the
# ``releases`` count of the item tells a second appearance from the first): told once each.
quarantine_notices = Table(
    "quarantine_notices",
    metadata,
    Column("direction", String(8), primary_key=True),
    Column("spool_key", String(64), primary_key=True),
    Column("releases", Integer, primary_key=True, autoincrement=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("notified", DateTime(timezone=True)),
)


# The console's and the API's users (revision 0002). ``roles`` and ``desks`` are comma-separated
# names that gateway.access checks; ``password_hash`` an argon2id hash; ``totp_secret`` the TOTP
# seed sealed with AES-GCM under a key kept outside the ledger (gateway.access.secretbox), and
# ``totp_last_step`` the time step of the last code accepted (a code is never accepted twice).
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("display_name", String(100), nullable=False, default=""),
    Column("roles", String(100), nullable=False),
    Column("desks", String(500), nullable=False, default=""),
    Column("password_hash", String(200), nullable=False),
    Column("totp_secret", String(200)),
    Column("totp_last_step", Integer),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", DateTime(timezone=True)),
    Column("last_login_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# API keys: only the SHA-256 of a key is kept (a key is 256 random bits, so a fast hash is as
# strong as a slow one); scoped to roles and desks like a user.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("key_sha256", String(64), nullable=False, unique=True),
    Column("roles", String(100), nullable=False),
    Column("desks", String(500), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# The console's sessions, server-side so that every console node on the ledger sees the same
# ones and a disabled user's end at once: the SHA-256 of the token the browser holds, never the
# token itself; ``expires_at`` is the absolute end, ``last_seen_at`` counts the idle time.
sessions = Table(
    "sessions",
    metadata,
    Column("token_sha256", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
Index("ix_sessions_user", sessions.c.user_id)
Index("ix_sessions_expires", sessions.c.expires_at)

# The desk's work on a received message (revision 0004): who holds it and since when (one holder at
# a time: a claim is a conditional write on this row), when it was first opened, and when it was
# closed and by whom. A row is made by the first claim or view; no row: nobody has touched it.
claims = Table(
    "claims",
    metadata,
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True, autoincrement=False),
    Column("holder", String(32)),
    Column("since", DateTime(timezone=True)),
    Column("seen_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("closed_by", String(32)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The API's idempotency keys (revision 0005): a client's Idempotency-Key, per API key, with the
# SHA-256 of the body it came with and the answer given, written in the transaction that queued
# the form (so a key is stored if and only if its form is). ``answer`` is the JSON of the first
# answer: codes, ids and references only, never the form's content.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(40), nullable=False),  # "key:" and the API key's name
    Column("idempotency_key", String(64), nullable=False),
    Column("body_sha256", String(64), nullable=False),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("answer", String(2000), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("owner", "idempotency_key", name="uq_idempotency_key"),
)

# Forms a user began in the console and kept for later, per user and desk (revision 0007). The
# values hold personal data: a draft is deleted when its form is sent.
drafts = Table(
    "drafts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", String(32), nullable=False),
    Column("desk", String(32), nullable=False),
    Column("form", String(32), nullable=False),
    Column("partner", String(32), nullable=False),
    Column("reply_to", Integer, ForeignKey("messages.id")),
    Column("field_values", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_drafts_user_desk", drafts.c.user_name, drafts.c.desk, drafts.c.id)

# The search index: one row per entity a message carries (gateway.search), written in the
# transaction that records the message. ``shown`` is the value as written, ``folded`` its folded
# parts, ``key`` what candidates are found by (a name's sorted skeletons, an identifier folded).
# The trigram indexes over ``key`` (an FTS5 table on SQLite, a pg_trgm GIN index on PostgreSQL)
# are not tables of this metadata: gateway.store.search_rows makes them.
search_entries = Table(
    "search_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("partner", String(32), nullable=False),
    Column("desk", String(32)),
    Column("form", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("role", String(32), nullable=False),
    Column("shown", String(255), nullable=False),
    Column("folded", String(255), nullable=False),
    Column("key", String(255), nullable=False),
    Column("born", String(10)),
    Column("country", String(32)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
# The search's exact look-ups use (kind, key); the cross-check at arrival reads the most recent
# entries of one key and date of birth from the end of (kind, key, born, message_id).
Index(
    "ix_search_entries_kind_key_born",
    search_entries.c.kind,
    search_entries.c.key,
    search_entries.c.born,
    search_entries.c.message_id,
)
Index("ix_search_entries_message", search_entries.c.message_id)
# The alert register's entries, newest first by walking this partial index (revisions 0012,
# 0021): an AlertRef's or a NoticeReference's entry adds to it. Its predicate is written as
# literals in the register's statements (gateway.store.alert_rows), so the planner can prove it
# applies. It names the role alone: SQLite weighs a partial index for every statement on the
# table, and a predicate on ``kind`` made it read the bound value of any ``kind = ?`` to decide,
# which prepares such a statement again at each execution. An Object whose free-text Type reads
# "sis-alert" adds an entry too; the statements' ``kind = 'reference'`` (the index's first
# column) leaves it out.
ALERT_ROLES = "role IN ('sis-alert', 'interpol-notice')"
ALERT_ENTRIES = f"kind = 'reference' AND {ALERT_ROLES}"
Index(
    "ix_search_entries_alerts",
    search_entries.c.kind,  # so that it is chosen over (kind, key): it also gives the order
    search_entries.c.id,
    sqlite_where=text(ALERT_ROLES),
    postgresql_where=text(ALERT_ROLES),
)
# The distinct name parts held (their skeletons), with their consonants (Mohamed, Muhamad), and
# which person entries hold each: a search finds alike parts first (few, even with many
# persons), then the entries holding them by the B-tree index on part_id.
search_parts = Table(
    "search_parts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("part", String(64), nullable=False),
    Column("sound", String(64), nullable=False),
)
Index("ix_search_parts_part", search_parts.c.part, unique=True)
Index("ix_search_parts_sound", search_parts.c.sound)
search_entry_parts = Table(
    "search_entry_parts",
    metadata,
    Column("part_id", Integer, ForeignKey("search_parts.id"), primary_key=True),
    Column("entry_id", Integer, ForeignKey("search_entries.id"), primary_key=True),
)
Index("ix_search_entry_parts_entry", search_entry_parts.c.entry_id)

# What each search asked, for auditors: the audit chain carries no personal data, only this
# row's id and digest. Purged with retention (the longest rule) like the messages it concerns.
search_requests = Table(
    "search_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user_name", String(40), nullable=False),
    Column("role", String(32), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("case_reference", String(64)),
    Column("reason", String(200)),
    Column("terms", Text, nullable=False),
    Column("hits", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
)
Index("ix_search_requests_at", search_requests.c.at)

# The alert register's own state (revision 0012): what the exchanged forms do not say in their
# structure. The register itself (the alerts, their exchanges) is read from search_entries (kind
# reference) and messages; a row here exists only for an alert a supervisor set the following
# desk of, or marked deleted as a message (``told_by``) said it was. ``alert`` is the index key.
alert_register = Table(
    "alert_register",
    metadata,
    Column("alert", String(64), primary_key=True),
    Column("register", String(32), nullable=False),  # sis-alert | interpol-notice
    Column("desk", String(32)),
    Column("status", String(8), nullable=False, server_default="active"),
    Column("told_by", Integer, ForeignKey("messages.id")),
    Column("changed_by", String(40), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)
# Cases (revision 0010): messages grouped by reply chains, alert and national references, or by
# hand. ``number`` is what users are shown; ``title`` is the form code and Reference of the
# message that opened it (never personal data); a merged case is closed with ``merged_into``.
cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(24), nullable=False, unique=True),
    Column("desk", String(32)),
    Column("status", String(8), nullable=False),  # open | closed
    Column("title", String(100), nullable=False, default=""),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("closed_by", String(40)),
    Column("merged_into", Integer, ForeignKey("cases.id")),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("status IN ('open', 'closed')", name="ck_case_status"),
)
Index("ix_cases_status_desk", cases.c.status, cases.c.desk)
Index("ix_cases_closed", cases.c.closed_at)
# A message is in one case at most; ``how`` it came there: reply-chain, alert-reference,
# national-reference or by-hand; ``by`` who put it there (``gateway`` for the grouping).
case_members = Table(
    "case_members",
    metadata,
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True, autoincrement=False),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("how", String(24), nullable=False),
    Column("by_user", String(40), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
Index("ix_case_members_case", case_members.c.case_id)
# The grouping's look-up (revision 0016): each grouping reference (SIS alert, Interpol notice,
# national case) of each message, with the state of the message's case: ``open``, ``closed`` or
# ``none`` (in no case; ``case_id`` null). ``partner`` is the message's for a national reference
# (unique per country only), '' otherwise. Kept by gateway.store.case_refs with the membership and
# the case's status, so that "the open case holding K" is one probe of the index below, and
# "the messages in no case holding K" one range of it, whatever the number of holders.
case_references = Table(
    "case_references",
    metadata,
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True, autoincrement=False),
    Column("role", String(32), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("partner", String(32), nullable=False),
    Column("state", String(8), nullable=False),
    Column("case_id", Integer, ForeignKey("cases.id")),
    CheckConstraint("state IN ('open', 'closed', 'none')", name="ck_case_reference_state"),
)
Index(
    "ix_case_references_lookup",
    case_references.c.role,
    case_references.c.key,
    case_references.c.partner,
    case_references.c.state,
    case_references.c.case_id,
    case_references.c.message_id,
)
Index("ix_case_references_case", case_references.c.case_id)
# A case's timeline: opened, linked, unlinked, merged, closed, reopened, desk, with who and why
# (a reason is one line of codes and references; no personal data).
case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("actor", String(40), nullable=False),
    Column("reason", String(200), nullable=False, default=""),
    Column("message_id", Integer),
    Column("other_case", Integer),
)
Index("ix_case_events_case", case_events.c.case_id, case_events.c.id)
# The cross-check at arrival (gateway.search.crosscheck; revisions 0014, 0017): what an
# arriving message had in common with earlier exchanges, one row per value and earlier message,
# or per value and earlier case and desk (``messages`` of them, ``earlier_first`` to the latest
# ``earlier_id``, in case ``earlier_case_id`` when found), written in the hand-off's transaction
# that delivers the message to its desk. ``shown`` is the latest entry's value as written and
# ``key`` the index key (personal data, read only through the access-logged message view);
# ``earlier_desk`` says who may see it described.
crosscheck_hits = Table(
    "crosscheck_hits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("earlier_id", Integer, ForeignKey("messages.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("role", String(32), nullable=False),
    Column("shown", String(255), nullable=False),
    Column("born", String(10)),
    Column("earlier_direction", String(8), nullable=False),
    Column("earlier_partner", String(32), nullable=False),
    Column("earlier_desk", String(32)),
    Column("earlier_form", String(32), nullable=False),
    Column("earlier_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("messages", Integer, nullable=False, server_default="1"),
    Column("earlier_first", Integer, nullable=False),
    Column("earlier_case_id", Integer),
    Column("key", String(255)),
)
Index("ix_crosscheck_hits_message", crosscheck_hits.c.message_id)
Index("ix_crosscheck_hits_earlier", crosscheck_hits.c.earlier_id)  # a purge deletes by either
# The earlier messages a hit gathered (revision 0019): each message of its case and desk that
# held the key when the hit was recorded, so that the purge of one of them counts down the hits
# that gathered it, whatever case it is in by then (a merge, a move). A hit of one message has
# none: its message is ``earlier_id``.
crosscheck_gathered = Table(
    "crosscheck_gathered",
    metadata,
    Column(
        "hit_id", Integer, ForeignKey("crosscheck_hits.id"), primary_key=True, autoincrement=False
    ),
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True, autoincrement=False),
)
Index("ix_crosscheck_gathered_message", crosscheck_gathered.c.message_id)

# Keys in one IN (...) at most: SQLite takes 32766 parameters in a statement.
KEYS_PER_QUERY = 500

# The statements of the hot paths (every message received and handed off), built once: building
# and coercing a statement costs several times what executing a built one does.
_FIND = select(messages).where(
    messages.c.direction == bindparam("direction"),
    messages.c.partner == bindparam("partner"),
    messages.c.reference == bindparam("reference"),
)
_GET = select(messages).where(messages.c.id == bindparam("id"))
_BY_SPOOL_KEY = select(messages).where(messages.c.spool_key == bindparam("spool_key"))
_INSERT_MESSAGE = insert(messages)
_INSERT_MESSAGE_RETURNING_ID = insert(messages).returning(
    messages.c.id, sort_by_parameter_order=True
)
_BY_SPOOL_KEYS = select(messages).where(messages.c.spool_key.in_(bindparam("keys", expanding=True)))
_INSERT_EVENT = insert(events)
_DEADLINE_OF = select(deadlines.c.id).where(
    deadlines.c.message_id == bindparam("message_id"), deadlines.c.kind == bindparam("kind")
)
_INSERT_DEADLINE = insert(deadlines)
_ADVANCE_SEQUENCE = (
    update(sequences)
    .where(sequences.c.name == bindparam("sequence_name"))
    .values(value=sequences.c.value + bindparam("advance"))
    .returning(sequences.c.value)
)


# SQLite: how much of the database file each connection reads through a memory map.
MMAP_BYTES = 1 << 30


def make_engine(url: str, **options: Any) -> Engine:
    """An engine for the ledger. SQLite: WAL journal, synchronous=FULL, foreign keys on, deleted
    content overwritten (secure_delete), reads through a memory map of the file."""
    if url.startswith("sqlite"):
        _prepare_sqlite_file(make_url(url).database)
        engine = create_engine(url, connect_args={"timeout": 30}, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Deleted rows are overwritten with zeros, not left in free space: a shredded
            # message's index entries and drafts must not stay readable in the file.
            cursor.execute("PRAGMA secure_delete=ON")
            # Pages read from the file's memory map rather than copied in by a read call each:
            # a search reads up to a thousand name parts scattered over the file, which SQLite's
            # default page cache (2 MiB a connection) cannot hold. Reads only (SQLite writes
            # with write calls); the map is of the file, not of this process's own memory.
            cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **options)


def _prepare_sqlite_file(database: str | None) -> None:
    """The SQLite file's folder (each missing one 0700) and the file itself (0600), made before
    SQLite makes them with the process umask: the ledger holds who sent what to whom. SQLite gives
    its -wal and -shm files the mode of the database file. OSError when they cannot be made."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    private_folder(path.parent)
    if path.is_dir():  # SQLite would say only "unable to open database file"
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def create_schema(engine: Engine) -> None:
    """The tables straight from ``metadata``, for throwaway ledgers (tests, benchmarks) only: the
    gateway's commands require the migrated schema (gateway.schema, `gateway db upgrade`)."""
    metadata.create_all(engine)
    with engine.begin() as connection:
        search_ddl.create(connection)


@dataclass(frozen=True)
class MessageRow:
    id: int
    direction: str
    partner: str
    channel: str
    form: str
    reference: str
    in_reply_to: str | None
    message_id: str
    priority: str
    content_sha256: str
    raw_sha256: str
    spool_key: str | None
    desk: str | None
    state: str
    signer: str | None
    signed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    alert_article: str | None = None
    shredded_at: datetime | None = None


class MessageHead(NamedTuple):
    """The fields of a message that delivery works with: a light MessageRow (no instants, no
    digests), read by the hundred on every pass."""

    id: int
    direction: str
    partner: str
    channel: str
    form: str
    reference: str
    in_reply_to: str | None
    desk: str | None
    state: str

    @classmethod
    def of(cls, row: MessageRow) -> MessageHead:
        return cls(*(getattr(row, name) for name in cls._fields))


_HEAD_COLUMNS = tuple(messages.c[name] for name in MessageHead._fields)


@dataclass(frozen=True)
class NewMessage:
    """What the ledger records when a message is received or queued."""

    direction: str
    partner: str
    channel: str
    form: str
    reference: str
    message_id: str
    priority: str
    content_sha256: str
    raw_sha256: str
    state: MessageState
    in_reply_to: str | None = None
    spool_key: str | None = None
    desk: str | None = None
    signer: str | None = None
    signed_at: datetime | None = None
    alert_article: str | None = None  # the SIS article of the alert the form names


class Ledger:
    """Reads and writes of the ledger, as named operations. Methods named ``*_in`` join the
    caller's Transaction (``transaction()`` or ``reading()``); the others make their own."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def transaction(self) -> AbstractContextManager[Transaction]:
        """The unit of work: what the ``*_in`` operations and ``AuditLog.append_in`` write with
        the Transaction it yields commits together when the block ends, or not at all."""
        return writing(self.engine)

    def reading(self) -> AbstractContextManager[Transaction]:
        """A Transaction for reads only (committed data; nothing it does is written)."""
        return reading(self.engine)

    def find(self, direction: str, partner: str, reference: str) -> MessageRow | None:
        with self.reading() as tx:
            row = tx.connection.execute(
                _FIND, {"direction": direction, "partner": partner, "reference": reference}
            ).first()
        return _message(row) if row else None

    def get(self, message_id: int) -> MessageRow:
        with self.reading() as tx:
            return self.get_in(tx, message_id)

    def get_in(self, tx: Transaction, message_id: int) -> MessageRow:
        """get inside the caller's transaction (it sees the caller's own writes)."""
        row = tx.connection.execute(_GET, {"id": message_id}).first()
        if row is None:
            raise KeyError(f"no message {message_id}")
        return _message(row)

    def by_reference(self, reference: str) -> list[MessageRow]:
        with self.reading() as tx:
            rows = tx.connection.execute(
                select(messages).where(messages.c.reference == reference).order_by(messages.c.id)
            ).all()
        return [_message(row) for row in rows]

    def in_state(self, direction: str, state: str) -> list[MessageRow]:
        with self.reading() as tx:
            rows = tx.connection.execute(
                select(messages)
                .where(messages.c.direction == direction, messages.c.state == state)
                .order_by(messages.c.id)
            ).all()
        return [_message(row) for row in rows]

    def record_in(self, tx: Transaction, new: NewMessage, event_detail: str = "") -> int:
        """Insert a message and its first event. A second message with the same (direction,
        partner, reference) raises IntegrityError: the caller decides duplicate or conflict.
        A state that is not one of its direction's raises IllegalTransition."""
        machine = INBOUND if new.direction == "inbound" else OUTBOUND
        check_state(machine, new.state)
        now = self.clock.now()
        values = _values_of(new, now)
        key = tx.connection.execute(_INSERT_MESSAGE, values).inserted_primary_key
        if key is None:
            raise RuntimeError("the database returned no id for the new message")
        message_id = int(key[0])
        self.event_in(tx, message_id, new.state, event_detail)
        return message_id

    def record_many_in(
        self, tx: Transaction, news: Sequence[tuple[NewMessage, str]]
    ) -> list[MessageRow]:
        """record_in for many messages, in order, in one INSERT ... RETURNING and one INSERT of
        their first events: each (message, event detail). Returns their rows as recorded. Any one
        of them refused by the unique key refuses them all (IntegrityError)."""
        if not news:
            return []
        if (
            len(news) == 1
            or not tx.connection.dialect.insert_executemany_returning_sort_by_parameter_order
        ):
            return [self.get_in(tx, self.record_in(tx, new, detail)) for new, detail in news]
        now = self.clock.now()
        values = []
        for new, _ in news:
            check_state(INBOUND if new.direction == "inbound" else OUTBOUND, new.state)
            values.append(_values_of(new, now))
        ids = [
            int(found)
            for found in tx.connection.execute(_INSERT_MESSAGE_RETURNING_ID, values).scalars()
        ]
        if len(ids) != len(values):
            raise RuntimeError("the database returned no id for a new message")
        self.events_in(
            tx,
            [(found, new.state, detail) for found, (new, detail) in zip(ids, news, strict=True)],
        )
        return [message_of({**row, "id": found}) for found, row in zip(ids, values, strict=True)]

    def event_in(self, tx: Transaction, message_id: int, kind: str, detail: str = "") -> None:
        at = self.clock.now()
        tx.connection.execute(
            _INSERT_EVENT,
            {"message_id": message_id, "at": at, "kind": kind, "detail": detail[:500]},
        )

    def set_state(
        self,
        message_id: int,
        state: MessageState,
        detail: str = "",
        *,
        expected: MessageState | None = None,
    ) -> bool:
        """Move a message to ``state`` and record the event; with ``expected``, only from there
        (so that two workers cannot both make the same move). Returns whether it moved."""
        with self.transaction() as tx:
            return self.set_state_in(
                tx,
                message_id,
                state,
                detail,
                expected=None if expected is None else (expected,),
            )

    def by_spool_key(self, spool_key: str) -> MessageRow | None:
        """The message whose spooled item has this key (an inbound original, an outbound form)."""
        with self.reading() as tx:
            row = tx.connection.execute(_BY_SPOOL_KEY, {"spool_key": spool_key}).first()
        return _message(row) if row else None

    def by_spool_keys_in(
        self, tx: Transaction, spool_keys: Collection[str]
    ) -> dict[str, MessageRow]:
        """by_spool_key for many keys in one query: {spool key: row} for those found (the first
        recorded, should two messages share a key)."""
        wanted = sorted(set(spool_keys))
        found: dict[str, MessageRow] = {}
        for start in range(0, len(wanted), KEYS_PER_QUERY):
            chunk = wanted[start : start + KEYS_PER_QUERY]
            for row in tx.connection.execute(_BY_SPOOL_KEYS, {"keys": chunk}).all():
                message = _message(row)
                if message.spool_key is not None:
                    found.setdefault(message.spool_key, message)
        return found

    def heads_by_spool_keys(self, spool_keys: Collection[str]) -> dict[str, MessageHead]:
        """The heads of the messages whose spooled items have these keys, in one query: {spool
        key: head} for those found (delivery reads one per message it sends)."""
        wanted = sorted(set(spool_keys))
        if not wanted:
            return {}
        with self.reading() as tx:
            rows = tx.connection.execute(
                select(messages.c.spool_key, *_HEAD_COLUMNS)
                .where(messages.c.spool_key.in_(wanted))
                .order_by(messages.c.id)
            ).all()
        found: dict[str, MessageHead] = {}
        for spool_key, *head in rows:
            found.setdefault(str(spool_key), MessageHead(*head))
        return found

    def move_many_in(
        self,
        tx: Transaction,
        moves: Sequence[tuple[int, str]],
        state: MessageState,
        *,
        expected: tuple[MessageState, ...],
    ) -> set[int]:
        """set_state_in for many messages in one UPDATE ... RETURNING and one INSERT of their
        events: each (message id, event detail) moves to ``state`` if it is in one of the
        ``expected`` states. Returns the ids that moved."""
        _check_moves(expected, state)
        if not moves:
            return set()
        if not tx.connection.dialect.update_returning:  # an SQLite older than 3.35
            return {
                message_id
                for message_id, detail in moves
                if self.set_state_in(tx, message_id, state, detail, expected=expected)
            }
        moved = {
            int(found)
            for found in tx.connection.execute(
                update(messages)
                .where(
                    messages.c.id.in_([message_id for message_id, _ in moves]),
                    messages.c.state.in_(expected),
                )
                .values(state=state, updated_at=self.clock.now())
                .returning(messages.c.id)
            ).scalars()
        }
        self.events_in(
            tx,
            [(message_id, state, detail) for message_id, detail in moves if message_id in moved],
        )
        return moved

    def events_in(self, tx: Transaction, entries: Sequence[tuple[int, str, str]]) -> None:
        """event_in for many events in one statement: (message id, kind, detail) each."""
        if not entries:
            return
        at = self.clock.now()
        tx.connection.execute(
            insert(events),
            [
                {"message_id": message_id, "at": at, "kind": kind, "detail": detail[:500]}
                for message_id, kind, detail in entries
            ],
        )

    def open_deadlines_in(
        self,
        tx: Transaction,
        opens: Sequence[tuple[int, datetime]],
        *,
        kind: str,
        owed_by: str,
    ) -> None:
        """open_deadline_in for many messages in two statements: each (message id, due) gets
        its ``kind`` deadline, once (one it already has is left as it is)."""
        if not opens:
            return
        existing = set(
            tx.connection.execute(
                select(deadlines.c.message_id).where(
                    deadlines.c.message_id.in_([message_id for message_id, _ in opens]),
                    deadlines.c.kind == kind,
                )
            ).scalars()
        )
        opened_at = self.clock.now()
        rows = []
        for message_id, due in opens:
            if message_id in existing:
                continue
            existing.add(message_id)
            rows.append(
                new_deadline_row(
                    message_id,
                    kind=kind,
                    owed_by=owed_by,
                    opened_at=opened_at,
                    due=due,
                    next_action_at=due,
                )
            )
        if rows:
            tx.connection.execute(insert(deadlines), rows)

    def set_state_in(
        self,
        tx: Transaction,
        message_id: int,
        state: MessageState,
        detail: str = "",
        *,
        expected: tuple[MessageState, ...] | None = None,
    ) -> bool:
        """set_state inside the caller's transaction; ``expected``: the states it may move from.
        Every move from them must be in the transition table (IllegalTransition otherwise, before
        anything is written). Without ``expected``, the move is from the state the row has now."""
        if expected is None:
            current = tx.connection.execute(
                select(messages.c.state).where(messages.c.id == message_id)
            ).scalar()
            if current is None:
                return False
            check_transition(machine_of(state), current, state)
            condition = (messages.c.id == message_id) & (messages.c.state == current)
        else:
            _check_moves(expected, state)
            condition = (messages.c.id == message_id) & messages.c.state.in_(expected)
        moved = tx.connection.execute(
            update(messages).where(condition).values(state=state, updated_at=self.clock.now())
        ).rowcount
        if moved:
            self.event_in(tx, message_id, state, detail)
        return bool(moved)

    def open_deadline_in(
        self,
        tx: Transaction,
        message_id: int,
        *,
        kind: str,
        owed_by: str,
        due: datetime,
        next_action_at: datetime | None = None,
    ) -> None:
        """Open the ``kind`` (receipt | reply) deadline of a message, once: a second call for the
        same message and kind leaves the first (the unique key holds it)."""
        exists = tx.connection.execute(
            _DEADLINE_OF, {"message_id": message_id, "kind": kind}
        ).first()
        if exists is not None:
            return
        tx.connection.execute(
            _INSERT_DEADLINE,
            new_deadline_row(
                message_id,
                kind=kind,
                owed_by=owed_by,
                opened_at=self.clock.now(),
                due=due,
                next_action_at=next_action_at or due,
            ),
        )

    def close_deadline_in(
        self,
        tx: Transaction,
        message_id: int,
        kind: str,
        state: DeadlineState,
        reason: str = "",
    ) -> bool:
        """Close an open deadline as ``met``, ``missed`` or ``closed`` (a paused one as ``met``
        or ``closed``: resume it first, deadline_rows.resume_in, for its due instant to count
        the wait); False when none was open."""
        check_transition(DEADLINE, DeadlineState.OPEN, state)
        sources = [DeadlineState.OPEN]
        if state in DEADLINE.allowed(DeadlineState.PAUSED):
            sources.append(DeadlineState.PAUSED)
        closed = tx.connection.execute(
            update(deadlines)
            .where(
                deadlines.c.message_id == message_id,
                deadlines.c.kind == kind,
                deadlines.c.state.in_(sources),
            )
            .values(
                state=state,
                closed_at=self.clock.now(),
                close_reason=reason[:200] or None,
                next_action_at=None,
                paused_at=None,
            )
        ).rowcount
        return bool(closed)

    def events_of(self, message_id: int) -> list[tuple[datetime, str, str]]:
        with self.reading() as tx:
            rows = tx.connection.execute(
                select(events.c.at, events.c.kind, events.c.detail)
                .where(events.c.message_id == message_id)
                .order_by(events.c.id)
            ).all()
        return [(as_utc(row.at), row.kind, row.detail) for row in rows]

    def record_refusal(self, partner: str, raw_sha256: str, error: GatewayError) -> int:
        """Record a partner's message refused before the 250, for the duty desk's notice: the
        error's codes and class, and the reply the partner got (at most REPLY_LIMIT characters).
        Returns the row's id."""
        with self.transaction() as tx:
            key = tx.connection.execute(
                insert(refusals).values(
                    at=self.clock.now(),
                    partner=partner,
                    raw_sha256=raw_sha256,
                    smtp_code=error.smtp_code,
                    enhanced=error.enhanced,
                    kind=type(error).__name__[:64],
                    reply=error.smtp_reply()[:REPLY_LIMIT],
                )
            ).inserted_primary_key
        if key is None:
            raise RuntimeError("the database returned no id for the refusal")
        return int(key[0])

    def next_reference_in(self, tx: Transaction, country: str, year: int) -> str:
        """The next Reference our country assigns, e.g. RO-2026-000124: gap-free, never reused."""
        return self.next_references_in(tx, country, year, 1)[0]

    def next_references_in(self, tx: Transaction, country: str, year: int, count: int) -> list[str]:
        """The next ``count`` References our country assigns, in order, in one statement."""
        if count < 1:
            return []
        name = f"{country}-{year}"
        last = tx.connection.execute(
            _ADVANCE_SEQUENCE, {"sequence_name": name, "advance": count}
        ).scalar()
        if last is None:
            # The year's first number. Concurrent first numbers must not collide on the row: an
            # insert that finds the row (on PostgreSQL, after waiting for the transaction that
            # made it) does nothing, and the advance then takes the next value.
            dialect = sqlite_dialect if tx.connection.dialect.name == "sqlite" else pg_dialect
            tx.connection.execute(
                dialect.insert(sequences).values(name=name, value=0).on_conflict_do_nothing()
            )
            last = tx.connection.execute(
                _ADVANCE_SEQUENCE, {"sequence_name": name, "advance": count}
            ).scalar_one()
        return [f"{name}-{int(value):06d}" for value in range(int(last) - count + 1, int(last) + 1)]


def new_deadline_row(
    message_id: int,
    *,
    kind: str,
    owed_by: str,
    opened_at: datetime,
    due: datetime,
    next_action_at: datetime,
) -> dict[str, Any]:
    """The row of a deadline just opened: no reminder, escalation or re-send yet."""
    return {
        "message_id": message_id,
        "kind": kind,
        "owed_by": owed_by,
        "opened_at": opened_at,
        "due": due,
        "state": DEADLINE.initial,
        "reminders_sent": 0,
        "escalations": 0,
        "resends": 0,
        "next_action_at": next_action_at,
    }


def _check_moves(sources: Collection[MessageState], target: MessageState) -> None:
    """Every move from ``sources`` to ``target`` is in the target's transition table."""
    machine = machine_of(target)
    for source in sources:
        check_transition(machine, source, target)


def _values_of(new: NewMessage, now: datetime) -> dict[str, Any]:
    """The INSERT's values of a new message. vars(), not asdict(): the fields are plain values,
    and asdict deep-copies each one. An alert article it lacks is not named, so that a ledger
    before revision 0009 (the tests of older revisions) takes the row all the same."""
    values = {**vars(new), "created_at": now, "updated_at": now}
    if values["alert_article"] is None:
        del values["alert_article"]
    return values


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _message(row: Row[Any]) -> MessageRow:
    return message_of(row._mapping)


def message_of(columns: Mapping[Any, Any]) -> MessageRow:
    """A MessageRow from a row's columns by name (datetimes in UTC)."""
    data = dict(columns)
    for key in ("signed_at", "created_at", "updated_at", "shredded_at"):
        if data.get(key) is not None:
            data[key] = as_utc(data[key])
    return MessageRow(**data)

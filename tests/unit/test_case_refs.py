"""The grouping's look-up table speaks the grouping's vocabulary: the roles that group, the
partner-bound ones and the receipt form written into its statements are the constants'."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import case_refs, grouping, schema
from gateway.store.ledger import case_references, cases, make_engine, messages
from gateway.store.unit import reading, writing

AT = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_the_statements_name_the_roles_that_group_and_leave_receipts_out() -> None:
    assert tuple(grouping.GROUPING_ROLES) == case_refs.GROUPING_ROLE_NAMES
    roles = "(" + ", ".join(f"'{role}'" for role in case_refs.GROUPING_ROLE_NAMES) + ")"
    [bound] = case_refs.PARTNER_BOUND
    for statement in (case_refs._PLACE, case_refs._REFILL):
        assert f"s.role IN {roles}" in statement.text
        assert f"CASE WHEN s.role = '{bound}' THEN s.partner" in statement.text
        assert f"s.form <> '{RECEIPT_FORM}'" in statement.text


def test_only_partner_bound_references_are_looked_up_with_their_partner() -> None:
    assert case_refs.partner_of("national-case", "NO-SIRENE") == "NO-SIRENE"
    assert case_refs.partner_of("sis-alert", "NO-SIRENE") == ""
    assert case_refs.partner_of("interpol-notice", "NO-SIRENE") == ""


def test_holders_read_on_sqlites_own_connection_are_sqlalchemys(tmp_path: Path) -> None:
    """The look-up said to the driver returns the rows SQLAlchemy's execution of the same
    statement returns: open cases first, then up to ``limit`` messages in no case, by id,
    for each of more references than one statement takes."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    schema.upgrade(engine)
    keys = [("sis-alert", f"SIS-{n}") for n in range(6)] + [("national-case", "NC-1")]
    with writing(engine) as tx:
        tx.connection.execute(
            insert(cases),
            [
                {"id": n, "number": f"C-{n}", "status": "open" if n < 3 else "closed"}
                | {"opened_at": AT, "updated_at": AT, "desk": "duty"}
                for n in range(1, 5)
            ],
        )
        tx.connection.execute(
            insert(messages),
            [
                {"id": n, "direction": "inbound", "partner": "NO-SIRENE", "channel": "sirene"}
                | {"form": "G", "reference": f"NO-2026-{n:06d}", "message_id": f"<{n}@x>"}
                | {"priority": "normal", "content_sha256": "a" * 64, "raw_sha256": "b" * 64}
                | {"state": "received", "created_at": AT, "updated_at": AT, "desk": "duty"}
                for n in range(1, 31)
            ],
        )
        rows = []
        for n in range(1, 31):
            role, key = keys[n % len(keys)]
            case_id = None if n % 3 == 0 else 1 + n % 4
            state = "none" if case_id is None else ("open" if case_id < 3 else "closed")
            partner = case_refs.partner_of(role, "NO-SIRENE")
            rows.append(
                {"message_id": n, "role": role, "key": key, "partner": partner}
                | {"state": state, "case_id": case_id}
            )
        tx.connection.execute(insert(case_references), rows)
    with reading(engine) as tx:
        for self_id in (3, 7, 99):
            found = case_refs.holders(tx, keys, "NO-SIRENE", self_id, limit=2)
            expected = []
            for start in range(0, len(keys), case_refs.SLOTS):
                chunk = keys[start : start + case_refs.SLOTS]
                values: dict[str, object] = {"self": self_id, "limit": 2}
                for slot, (role, key) in enumerate(chunk):
                    values |= {f"role{slot}": role, f"key{slot}": key}
                    values[f"partner{slot}"] = case_refs.partner_of(role, "NO-SIRENE")
                statement = case_refs._holders(len(chunk))
                expected += [
                    case_refs.Holder(
                        start + int(row.slot),
                        None if row.state == case_refs.NONE else int(row.case_id),
                        int(row.message_id),
                        row.desk,
                        row.form,
                        row.reference,
                    )
                    for row in tx.connection.execute(statement, values)
                ]
            assert found == expected
            assert any(holder.case_id is None for holder in found)
            assert any(holder.case_id is not None for holder in found)
    engine.dispose()

"""How a cross-check hit reads on a desk copy, and which a desk may read described."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.search.crosscheck import describe, seen_by
from gateway.store.crosscheck_walk import EarlierHit

AT = datetime(2026, 3, 2, 23, 59, tzinfo=UTC)


def hit(kind: str, role: str, shown: str, **changes: object) -> EarlierHit:
    fields: dict[str, object] = {
        "kind": kind,
        "role": role,
        "shown": shown,
        "born": None,
        "earlier_id": 17,
        "earlier_direction": "inbound",
        "earlier_partner": "NO-SIRENE",
        "earlier_desk": "sirene",
        "earlier_form": "G",
        "earlier_at": AT,
    }
    fields.update(changes)
    return EarlierHit(**fields)  # type: ignore[arg-type]


def test_an_identifier_reads_with_its_role_and_the_earlier_message() -> None:
    assert describe(hit("document", "passport", "X123")) == (
        "passport X123 in a G form from NO-SIRENE, 2026-03-02, ledger 17"
    )
    sent = hit("vehicle", "plate", "B 12 XYZ", earlier_direction="outbound", earlier_form="A")
    assert describe(sent) == "plate B 12 XYZ in a A form to NO-SIRENE, 2026-03-02, ledger 17"


def test_a_person_reads_with_the_date_of_birth() -> None:
    same = hit("person", "name", "Ivan IVANOV", born="1980-01-01")
    assert describe(same).startswith("person Ivan IVANOV, born 1980-01-01 in a G form")


def test_a_desk_reads_its_own_hits_and_counts_the_others() -> None:
    own = hit("document", "passport", "X123")
    other = hit("document", "passport", "X123", earlier_desk="duty", earlier_id=18)
    sent_by_nobody = hit("reference", "sis-alert", "R1", earlier_desk=None, earlier_id=19)
    assert seen_by([own, other, sent_by_nobody], "sirene") == ([own], 2)
    assert seen_by([own, other], "duty") == ([other], 1)
    assert seen_by([], "duty") == ([], 0)

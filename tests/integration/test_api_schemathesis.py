"""The API against its own OpenAPI document, with Schemathesis: requests generated from the
document (valid and invalid parameters, headers and bodies) sent to the real app over a real
ledger with real gpg, each answer checked against the document (status codes, content types,
headers, response schemas) and for server errors. A handler key and a few received messages, so
that reads find something; sends mostly meet the validator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from integration.apikit import API, ApiDesk, api_desk
from integration.inboundkit import World, gateway_config
from integration.submitkit import NOW
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Ok
from webkit import png, receive

from gateway.access.roles import Principal, Role
from gateway.crypto.pgpmime import Attachment
from gateway.service.cases import Cases

# Messages 2 and 3 carry attachments (a photo, a document), so that their reads find files.
ATTACHED = (
    Attachment("photo.png", "image/png", png()),
    Attachment("report.pdf", "application/pdf", b"%PDF-1.4\n"),
)


@pytest.fixture
def fuzzed(world: World, tmp_path: Path) -> Iterator[ApiDesk]:
    config = gateway_config(world, tmp_path, database_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    # Schemathesis tries every operation with wrong keys too: a limit it never reaches, so that
    # the answers after those are not all 429 (the limit has tests of its own).
    config.write_text(config.read_text() + "\n[web]\nlogin_attempts_per_minute = 1000\n")
    with api_desk(config, "sirene", "duty", start=NOW) as desk:
        for n in range(1, 4):
            receive(desk.services, f"NO-{NOW.year}-{n:06d}", attachments=ATTACHED[: n - 1])
        handler = Principal("ana", frozenset({Role.HANDLER}), frozenset({"sirene"}))
        Cases(desk.services.ledger, desk.services.audit).open_around(
            handler, desk.services.ledger.get(1), "a case for the reads to find"
        )
        yield desk


# A body the document allows (a string of XML) need not be a valid form: the XSDs decide, and
# the API answers 422 with the errors. Every other check of Schemathesis runs.
EXCLUDED = [positive_data_acceptance]


def test_every_answer_matches_the_document(fuzzed: ApiDesk) -> None:
    """Each operation of the document, 25 generated cases each (the same every run)."""
    headers = {"Authorization": f"Bearer {fuzzed.keys['cms-a']}"}
    schema = schemathesis.openapi.from_asgi(f"{API}/openapi.json", fuzzed.app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()  # every operation of the document loads
        operations.append(result.ok())
    assert len(operations) == 9  # every route but the document itself, which it skips

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

        check()

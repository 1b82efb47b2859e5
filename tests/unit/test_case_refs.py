"""The grouping's look-up table speaks the grouping's vocabulary: the roles that group, the
partner-bound ones and the receipt form written into its statements are the constants'."""

from __future__ import annotations

from gateway.core.vocabulary import RECEIPT_FORM
from gateway.store import case_refs, grouping


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

"""The words the packages share: channels, priorities, schema sets, the receipt's form code, the
console's roles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHANNELS = ("sirene", "europol", "interpol", "any")
PRIORITIES = ("normal", "urgent")
# The form code of the signed receipt every accepted form is answered with.
RECEIPT_FORM = "ACK"
# The roles of the console's users, as the configuration names them ([access] totp_required);
# gateway.access.roles.Role is the enum of the same words, with what each may do.
ROLES = ("handler", "supervisor", "duty_officer", "operator", "auditor")


@dataclass(frozen=True)
class SchemaSetSpec:
    """A folder of XSDs with an optional OASIS XML catalog, and the entry schemas to compile."""

    name: str
    path: Path
    catalog: Path | None = None
    schemas: tuple[str, ...] = ()
    # True when no type of the set contains itself, so a valid document is no deeper than the
    # schema allows: the depth limit then only needs checking on documents that fail validation.
    bounded_depth: bool = False

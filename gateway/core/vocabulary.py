"""The words the configuration and the form catalogue share: channels, priorities, schema sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHANNELS = ("sirene", "europol", "interpol", "any")
PRIORITIES = ("normal", "urgent")


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

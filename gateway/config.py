"""The gateway's configuration: one TOML file read into one frozen, validated Config."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUILTIN_XSD = PROJECT_ROOT / "xsd"
BUILTIN_FORMS = PROJECT_ROOT / "forms"

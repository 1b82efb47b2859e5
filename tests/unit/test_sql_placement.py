"""SQL is written in gateway/store/ only: no query builder, no statement run, no transaction
opened on an engine anywhere else in the package (the import contract keeps SQLAlchemy out)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gateway"
STORE = PACKAGE / "store"

# Called by bare name (as imported from sqlalchemy): statements being built.
BUILDERS = frozenset({"select", "insert", "update", "delete", "text", "exists", "func"})
# Called as a method: statements run, or a connection or transaction taken from an engine.
RUNNERS = frozenset({"execute", "exec_driver_sql", "scalars", "scalar"})
ENGINE_OPENERS = frozenset({"begin", "connect"})


def sql_calls(path: Path) -> list[str]:
    """Each call in ``path`` that builds or runs SQL, as "line: call"."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in BUILDERS:
            found.append(f"{node.lineno}: {function.id}(")
        elif isinstance(function, ast.Attribute):
            owner = function.value
            if function.attr in RUNNERS:
                found.append(f"{node.lineno}: .{function.attr}(")
            elif (
                function.attr in ENGINE_OPENERS
                and isinstance(owner, ast.Attribute | ast.Name)
                and (owner.attr if isinstance(owner, ast.Attribute) else owner.id) == "engine"
            ):
                found.append(f"{node.lineno}: engine.{function.attr}(")
    return found


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_the_scan_finds_the_stores_sql() -> None:
    """The scan sees what it looks for: the store's modules are full of it."""
    ledger = sql_calls(STORE / "ledger.py")
    assert any("select(" in call for call in ledger)
    assert any(".execute(" in call for call in ledger)
    assert any("engine.connect(" in call for call in sql_calls(STORE / "unit.py"))


@pytest.mark.parametrize(
    "module",
    [path for path in modules(PACKAGE) if STORE not in path.parents],
    ids=lambda path: str(path.relative_to(PACKAGE.parent)),
)
def test_no_sql_outside_the_store(module: Path) -> None:
    assert sql_calls(module) == [], (
        f"{module.relative_to(PACKAGE.parent)} builds or runs SQL: give the store a named "
        "operation and call that (gateway/store/, ARCHITECTURE.md)"
    )

"""The mutation score of each mutated module, from the results mutmut left in mutants/.

Run after `mutmut run` (`make mutation` does both); only the mutants that were run count.
``--survivors`` also lists those that no test killed, by name (`mutmut show NAME` prints one)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

MUTANTS = Path("mutants")


def module_results(meta: Path) -> dict[str, str]:
    """Each mutant of one module and its status (killed, survived, timeout, no tests, ...)."""
    codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def checked(results: dict[str, str]) -> dict[str, str]:
    """The mutants that were run: a run limited to some functions leaves the rest "not checked"."""
    return {name: status for name, status in results.items() if status != "not checked"}


def main(argv: list[str]) -> int:
    metas = sorted(MUTANTS.rglob("*.py.meta"))
    if not metas:
        print("no results in mutants/: run `mutmut run` first", file=sys.stderr)
        return 2
    print(f"{'module':<28} {'killed/total':>13} {'score':>6} {'survived':>8} {'timeout':>7} other")
    for meta in metas:
        results = checked(module_results(meta))
        counts = Counter(results.values())
        total = len(results)
        caught = counts["killed"] + counts["timeout"]
        other = ", ".join(
            f"{status} {count}"
            for status, count in sorted(counts.items())
            if status not in ("killed", "survived", "timeout")
        )
        module = str(meta.relative_to(MUTANTS)).removesuffix(".meta")
        score = f"{100 * caught / total:.1f}%" if total else "-"
        print(
            f"{module:<28} {counts['killed']:>6}/{total:<6} {score:>6} "
            f"{counts['survived']:>8} {counts['timeout']:>7} {other}"
        )
        if "--survivors" in argv:
            for name, status in sorted(results.items()):
                if status not in ("killed", "timeout"):
                    print(f"    {status:<10} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

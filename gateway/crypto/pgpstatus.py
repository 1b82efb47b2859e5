"""GnuPG's machine-readable status lines ([GNUPG:] KEYWORD ARGS), the ground truth of a gpg run."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

_PREFIX = "[GNUPG:] "


@dataclass(frozen=True)
class StatusLog:
    """The status lines of one gpg run, in order, as (keyword, arguments)."""

    lines: tuple[tuple[str, tuple[str, ...]], ...]
    # The arguments of each keyword's lines, in order: a message's checks ask a dozen questions
    # of the same 15 to 30 lines, each answered here without going through them again.
    _by_keyword: dict[str, list[tuple[str, ...]]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        by_keyword: dict[str, list[tuple[str, ...]]] = {}
        for keyword, args in self.lines:
            by_keyword.setdefault(keyword, []).append(args)
        object.__setattr__(self, "_by_keyword", by_keyword)

    @classmethod
    def parse(cls, stderr: str) -> StatusLog:
        lines = []
        for raw in stderr.splitlines():
            if raw.startswith(_PREFIX):
                keyword, *args = raw[len(_PREFIX) :].split(" ")
                lines.append((keyword, tuple(args)))
        return cls(tuple(lines))

    @classmethod
    def parse_feeding(
        cls, stderr: str, feed: Callable[[str, str], None], skip: Collection[str] = ()
    ) -> StatusLog:
        """``parse``, in the same pass handing each status line to ``feed`` as python-gnupg's
        reader does (the line's trailing white space dropped, then its keyword and the rest
        after the first run of white space), except the lines whose keyword is in ``skip``."""
        lines = []
        for raw in stderr.splitlines():
            if raw.startswith(_PREFIX):
                keyword, *args = raw[len(_PREFIX) :].split(" ")
                lines.append((keyword, tuple(args)))
                key, *value = raw.rstrip()[len(_PREFIX) :].split(None, 1)
                if key not in skip:
                    feed(key, value[0] if value else "")
        return cls(tuple(lines))

    def has(self, keyword: str) -> bool:
        return keyword in self._by_keyword

    def count(self, keyword: str) -> int:
        return len(self._by_keyword.get(keyword, ()))

    def fields(self, keyword: str) -> list[list[str]]:
        return [list(args) for args in self._by_keyword.get(keyword, ())]

    def reason(self, keyword: str) -> str:
        """gpg's reason code for INV_RECP / INV_SGNR, in words (see doc/DETAILS of GnuPG)."""
        codes = {
            "0": "no specific reason",
            "1": "not found",
            "2": "ambiguous",
            "3": "wrong key usage",
            "4": "key revoked",
            "5": "key expired",
            "6": "no CRL known",
            "7": "CRL too old",
            "8": "policy mismatch",
            "9": "not a secret key",
            "10": "key not trusted",
            "11": "missing certificate",
            "12": "missing issuer certificate",
            "13": "key disabled",
            "14": "syntax error in specification",
        }
        found = self.fields(keyword)
        if not found or not found[0]:
            return "no reason given"
        return codes.get(found[0][0], f"reason {found[0][0]}")

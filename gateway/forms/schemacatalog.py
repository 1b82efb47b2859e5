"""OASIS XML catalogs (the subset schema sets use): map system ids and URIs to local files."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"

# entry name -> (attribute holding what is matched, attribute holding the local target)
_EXACT = {"uri": ("name", "uri"), "system": ("systemId", "uri")}
_PREFIX = {
    "rewriteURI": ("uriStartString", "rewritePrefix"),
    "rewriteSystem": ("systemIdStartString", "rewritePrefix"),
}
SUPPORTED = frozenset({*_EXACT, *_PREFIX, "nextCatalog", "group", "catalog"})


@dataclass(frozen=True)
class CatalogEntry:
    """One element of a catalog file: its local name, attributes and effective base URL."""

    kind: str
    attributes: dict[str, str]
    base: str
    line: int | None = None


@dataclass
class XmlCatalog:
    """Exact mappings first, then the longest matching prefix rewrite, as OASIS orders them."""

    exact: dict[str, str] = field(default_factory=dict)
    prefixes: list[tuple[str, str]] = field(default_factory=list)
    next_catalogs: list[Path] = field(default_factory=list)

    @classmethod
    def from_entries(cls, entries: Iterable[CatalogEntry]) -> XmlCatalog:
        catalog = cls()
        for entry in entries:
            if entry.kind not in SUPPORTED:
                raise ValueError(
                    f"line {entry.line}: catalog entry <{entry.kind}> is not supported"
                )
            if entry.kind in _EXACT:
                match, target = _EXACT[entry.kind]
                catalog.exact.setdefault(
                    _need(entry, match), urljoin(entry.base, _need(entry, target))
                )
            elif entry.kind in _PREFIX:
                match, target = _PREFIX[entry.kind]
                catalog.prefixes.append(
                    (_need(entry, match), urljoin(entry.base, _need(entry, target)))
                )
            elif entry.kind == "nextCatalog":
                catalog.next_catalogs.append(
                    file_path(urljoin(entry.base, _need(entry, "catalog")))
                )
        catalog.prefixes.sort(key=lambda pair: len(pair[0]), reverse=True)
        return catalog

    def extend(self, other: XmlCatalog) -> None:
        """Consult ``other`` after this catalog (a nextCatalog)."""
        for key, value in other.exact.items():
            self.exact.setdefault(key, value)
        self.prefixes.extend(other.prefixes)
        self.prefixes.sort(key=lambda pair: len(pair[0]), reverse=True)

    def resolve(self, identifier: str) -> str | None:
        """The local URL for a system id, URI or namespace name, or None when unmapped."""
        if identifier in self.exact:
            return self.exact[identifier]
        for start, prefix in self.prefixes:
            if identifier.startswith(start):
                return prefix + identifier[len(start) :]
        return None


def _need(entry: CatalogEntry, attribute: str) -> str:
    value = entry.attributes.get(attribute)
    if not value:
        raise ValueError(f"line {entry.line}: <{entry.kind}> needs the attribute {attribute!r}")
    return value


def file_path(url: str) -> Path:
    """The local path of a file: URL or plain path."""
    parsed = urlparse(url)
    if parsed.scheme in {"", "file"}:
        return Path(unquote(parsed.path))
    raise ValueError(f"{url} is not a local file")

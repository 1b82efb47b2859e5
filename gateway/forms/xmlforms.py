"""Hardened parsing and XSD validation of forms; the only module that imports lxml and xmlschema."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree

from gateway.core.errors import InvalidForm, SchemaSetError
from gateway.core.limits import XmlLimits
from gateway.core.vocabulary import SchemaSetSpec
from gateway.forms.catalogue import FormCatalogue, FormSpec
from gateway.forms.entities import Entity, entities
from gateway.forms.formwording import Fault, plain, sentence
from gateway.forms.schemacatalog import CATALOG_NS, CatalogEntry, XmlCatalog

XSD_NS = "http://www.w3.org/2001/XMLSchema"
_DECLARED_ENCODING = re.compile(rb"""\A<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_UTF8_NAMES = {"utf-8", "utf8"}
_FOREIGN_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_NAMESPACE_IN_REASON = re.compile(r"\{[^{}\s]*\}")
_COUNT_CAP = 1000
_PYTHON_OBJECT = re.compile(r"\s*for <[\w.]+ object at 0x[0-9a-f]+>")
_ABSTRACT = re.compile(r"XsdComplexType\(name='(?:\w+:)?(\w+)'\) is abstract")
_UNIQUE = re.compile(r"duplicated value \((.*?),?\) for XsdUnique\(name='(?:\w+:)?(\w+)'\)")
_PREFIXED_TAG = re.compile(r"'[A-Za-z_][\w.-]*:([A-Za-z_][\w.-]*)'")
_PYTHON_CLASS = re.compile(r"<class '[\w.]*\.(\w+?)(?:10)?'>")
_LONG_CHOICE = re.compile(r"value must be one of \[([^\]]*)\]")


@dataclass(frozen=True)
class FormError:
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.line}: " if self.line is not None else ""
        return f"{where}{self.path or '/'}: {self.reason}"


@dataclass(frozen=True)
class FormHeader:
    """The common header of a validated form (SIRENE fields 001-005, 311, 345)."""

    created: datetime
    reference: str
    sender: str
    recipient: str
    priority: str
    in_reply_to: str | None
    language: str
    alert: str | None
    alert_article: str | None = None  # the SIS article the alert was issued under (a code)


class FormRefused(InvalidForm):
    """An invalid form with its errors as found (line, path, sentence), for callers that list
    them one by one (the API); ``detail`` holds them one per line, as `gateway send` prints."""

    def __init__(self, errors: Sequence[FormError], error_count: int) -> None:
        self.errors = tuple(errors)
        self.error_count = max(error_count, len(self.errors))
        lines = [str(error) for error in self.errors]
        more = self.error_count - len(self.errors)
        if more > 0:
            lines.append(f"(and {more} more)")
        super().__init__("\n".join(lines))


class Validation:
    """The verdict on one document: valid or not, which form, and every error found (capped)."""

    def __init__(
        self,
        *,
        root: str | None = None,
        form: FormSpec | None = None,
        errors: Sequence[FormError] = (),
        error_count: int = 0,
        tree: Any = None,
    ) -> None:
        self.root = root
        self.form = form
        self.errors = tuple(errors)
        self.error_count = max(error_count, len(self.errors))
        self._tree = tree

    @property
    def valid(self) -> bool:
        return self.error_count == 0

    def raise_for_errors(self, shown: int = 3) -> None:
        """Raise InvalidForm with the first errors when the document is not a valid form."""
        if self.valid:
            return
        first = "; ".join(str(error) for error in self.errors[:shown])
        more = self.error_count - min(shown, len(self.errors))
        raise InvalidForm(first + (f" (and {more} more)" if more > 0 else ""))

    def refusal(self, shown: int) -> FormRefused:
        """The refusal of an invalid form with its first ``shown`` errors and the count."""
        return FormRefused(self.errors[:shown], self.error_count)

    def header(self) -> FormHeader:
        """The header fields of a valid form."""
        if not self.valid or self._tree is None:
            raise ValueError("only a valid form has a header")
        head = self._tree.find("{*}Header")
        urgent = head.find("{*}Priority/{*}Urgent")
        alert = head.find("{*}AlertRef")
        return FormHeader(
            created=datetime.fromisoformat(_text(head, "Created")).astimezone(UTC),
            reference=_text(head, "Reference"),
            sender=_text(head, "Sender/{*}Bureau"),
            recipient=_text(head, "Recipient/{*}Bureau"),
            priority="urgent" if urgent is not None else "normal",
            in_reply_to=_text(head, "InReplyTo", None),
            language=_text(head, "Language"),
            alert=_text(head, "AlertRef", None),
            alert_article=None if alert is None else alert.get("article"),
        )

    def outline(self) -> list[tuple[int, str, str]]:
        """The form as (depth, element name, text) rows in document order, for a readable view.

        Attributes come as rows of their own named ``@name`` one level deeper; namespaces are
        dropped. Text is stripped; elements without text have "".
        """
        if self._tree is None:
            raise ValueError("only a parsed form has an outline")
        rows: list[tuple[int, str, str]] = []
        depth = -1
        # One walk of the elements (comments and processing instructions left out), the local
        # name cut from the tag: a recursive walk making a QName per name cost twice as much.
        for event, element in etree.iterwalk(
            self._tree.getroot(), events=("start", "end"), tag="{*}*"
        ):
            if event == "end":
                depth -= 1
                continue
            depth += 1
            rows.append((depth, element.tag.rpartition("}")[2], (element.text or "").strip()))
            for name, value in element.attrib.items():
                rows.append((depth + 1, "@" + name.rpartition("}")[2], value))
        return rows

    def entities(self) -> list[Entity]:
        """The searchable entities of a valid form (gateway.forms.entities), from its tree."""
        if not self.valid or self._tree is None:
            raise ValueError("only a valid form has entities")
        return entities(self._tree)

    def attachment_refs(self) -> list[tuple[str, str, str]]:
        """(FileName, MediaType, SHA256) of every Attachment the form lists."""
        if self._tree is None:
            raise ValueError("only a parsed form lists attachments")
        return [
            (_text(item, "FileName"), _text(item, "MediaType"), _text(item, "SHA256"))
            for item in self._tree.getroot().iterchildren("{*}Attachment")
        ]

    def values(self, paths: Iterable[str]) -> dict[str, str]:
        """The text of the elements at these paths (local names below the root), where present."""
        found = {}
        for path in paths:
            element = self._tree.find("/".join(f"{{*}}{step}" for step in path.split("/")))
            if element is not None and element.text is not None:
                found[path] = element.text.strip()
        return found


def _text(parent: Any, path: str, default: Any = ...) -> Any:
    element = parent.find("{*}" + path)
    if element is None or element.text is None:
        if default is ...:
            raise ValueError(f"header has no {path}")
        return default
    return element.text.strip()


class _SetResolver(etree.Resolver):  # type: ignore[misc]
    """Loads what a schema imports or includes: catalog-mapped or local files, never the network."""

    def __init__(self, catalog: XmlCatalog | None, roots: Sequence[Path]) -> None:
        super().__init__()
        self.catalog = catalog
        self.roots = [root.resolve() for root in roots]
        self.refused: list[str] = []

    def local_path(self, url: str) -> Path | None:
        target = (self.catalog.resolve(url) if self.catalog else None) or url
        if target.startswith("file://"):
            target = target[len("file://") :]
        if "://" in target:
            return None
        path = Path(target).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            return None
        return path

    def resolve(self, url: str, pubid: str | None, context: Any) -> Any:
        path = self.local_path(url)
        if path is None:
            self.refused.append(url)
            return self.resolve_empty(context)
        return self.resolve_filename(str(path), context)


def _hardened_parser(resolver: etree.Resolver | None = None) -> etree.XMLParser:
    # collect_ids stays at its default (True): with collect_ids=False, lxml 6 sets a flag in
    # libxml2's loadsubset, which then loads the external DTD a DOCTYPE names despite
    # load_dtd=False (a local file read, or a read that never ends on a FIFO).
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )
    if resolver is not None:
        parser.resolvers.add(resolver)
    return parser


class _EntrySchema:
    """One compiled entry schema: lxml for the fast check, xmlschema (built on demand) explains."""

    def __init__(self, schema_set: SchemaSetSpec, file: Path, resolver: _SetResolver) -> None:
        self.schema_set = schema_set
        self.file = file
        self._resolver = resolver
        parser = _hardened_parser(resolver)
        try:
            document = etree.parse(str(file), parser)
        except (OSError, etree.XMLSyntaxError) as exc:
            raise SchemaSetError(str(file), "", f"cannot read the schema: {exc}") from None
        resolver.refused.clear()
        try:
            self.lxml = etree.XMLSchema(document)
        except etree.XMLSchemaParseError as exc:
            raise _schema_error(file, exc.error_log, resolver.refused) from None
        self.globals = [
            element.get("name")
            for element in document.getroot().iterchildren(f"{{{XSD_NS}}}element")
        ]
        self.namespace = document.getroot().get("targetNamespace") or ""
        self._explainer: Any = None
        self._lock = threading.Lock()

    def explainer(self) -> Any:
        """The xmlschema twin of this schema, which reports every error with its path."""
        with self._lock:
            if self._explainer is None:
                self._explainer = xmlschema.XMLSchema(
                    str(self.file),
                    uri_mapper=self._map_uri,
                    allow="local",
                    defuse="always",
                )
            return self._explainer

    def _map_uri(self, url: str) -> str:
        path = self._resolver.local_path(url)
        return str(path) if path is not None else url


def _schema_error(file: Path, log: Any, refused: Sequence[str]) -> SchemaSetError:
    entries = list(log)
    # libxml2 logs a failed load first, without a place; the schema line that asked for it follows
    placed = [e for e in entries if e.line > 0 and e.filename and e.filename != "<string>"]
    entry = placed[0] if placed else (entries[0] if entries else None)
    where = f"{entry.filename}:{entry.line}" if entry is not None and entry.line > 0 else str(file)
    reason = entry.message if entry is not None else "the schema does not compile"
    if refused:
        reason += (
            f" ({', '.join(dict.fromkeys(refused))} is not mapped by the catalog to a local file "
            "of the schema set, and schemas are never fetched from the network)"
        )
    return SchemaSetError(where, "", reason)


class FormValidator:
    """Every loaded schema set, indexed by the qualified names of the root elements they declare."""

    def __init__(
        self, entries: Iterable[_EntrySchema], catalogue: FormCatalogue, limits: XmlLimits
    ) -> None:
        self.catalogue = catalogue
        self.limits = limits
        self._by_root: dict[str, _EntrySchema] = {}
        for entry in entries:
            for name in entry.globals:
                root = f"{{{entry.namespace}}}{name}"
                other = self._by_root.get(root)
                if other is not None and other.file != entry.file:
                    raise SchemaSetError(
                        str(entry.file), "", f"element {root} is also declared by {other.file}"
                    )
                self._by_root[root] = entry
        for form in catalogue:
            if form.root not in self._by_root:
                raise SchemaSetError(
                    str(form.source), "root", f"{form.root} is not declared by {form.schema}"
                )
        self._local = threading.local()

    @classmethod
    def load(
        cls,
        schema_sets: Sequence[SchemaSetSpec],
        catalogue: FormCatalogue,
        limits: XmlLimits | None = None,
    ) -> FormValidator:
        """Compile every entry schema of every set once; a set that fails is a SchemaSetError."""
        names = [schema_set.name for schema_set in schema_sets]
        for form in catalogue:
            if form.schema_set not in names:
                raise SchemaSetError(
                    str(form.source), "schema_set", f"unknown schema set {form.schema_set!r}"
                )
        entries = []
        for schema_set in schema_sets:
            if not schema_set.path.is_dir():
                raise SchemaSetError(str(schema_set.path), "", "schema set folder not found")
            catalog = read_catalog(schema_set.catalog) if schema_set.catalog else None
            resolver = _SetResolver(catalog, [schema_set.path])
            files = dict.fromkeys(
                [
                    *schema_set.schemas,
                    *(form.schema for form in catalogue if form.schema_set == schema_set.name),
                ]
            )
            if not files:
                raise SchemaSetError(str(schema_set.path), "", "the set names no entry schema")
            for name in files:
                file = (schema_set.path / name).resolve()
                if not file.is_file():
                    raise SchemaSetError(str(file), "", "entry schema not found")
                entries.append(_EntrySchema(schema_set, file, resolver))
        return cls(entries, catalogue, limits or XmlLimits())

    def with_limits(self, limits: XmlLimits) -> FormValidator:
        """The same compiled schemas under other limits."""
        return FormValidator(dict.fromkeys(self._by_root.values()), self.catalogue, limits)

    def schema_of(self, form: FormSpec) -> Any:
        """The xmlschema twin of a form's schema, to read the form's fields from."""
        return self._by_root[form.root].explainer()

    @property
    def roots(self) -> list[str]:
        return sorted(self._by_root)

    def _parser(self) -> etree.XMLParser:
        parser: etree.XMLParser | None = getattr(self._local, "parser", None)
        if parser is None:
            parser = self._local.parser = _hardened_parser()
        return parser

    def validate(self, data: bytes) -> Validation:
        """Check a document from outside against its form's schema; never raises for bad input."""
        failure = self._check_raw(data)
        if failure is not None:
            return Validation(errors=[failure])
        try:
            root = etree.fromstring(data, self._parser())
        except etree.XMLSyntaxError as exc:
            return Validation(errors=[_syntax_error(data, exc)])
        tree = root.getroottree()
        if tree.docinfo.doctype:
            return Validation(errors=[FormError(1, "", _DOCTYPE_REFUSED)])
        tag = root.tag
        entry = self._by_root.get(tag)
        if entry is None:
            return Validation(root=tag, errors=[self._unknown_root(root)])
        form = self.catalogue.by_root(tag)
        bounded = entry.schema_set.bounded_depth
        limit_error = self._check_limits(tree, len(data), depth=not bounded)
        if limit_error is None and entry.lxml.validate(tree):
            return Validation(root=tag, form=form, tree=tree)
        if limit_error is None and bounded:
            limit_error = self._check_limits(tree, 0, depth=True)
        if limit_error is not None:
            return Validation(root=tag, form=form, errors=[limit_error])
        errors, count = self._explain(entry, tree)
        return Validation(root=tag, form=form, errors=errors, error_count=count)

    def complete_header(self, data: bytes, *, created: str, reference: str) -> bytes:
        """The form with Created and Reference filled in where the handler left them out (absent
        or empty), the rest untouched; the document as it was when it cannot be read (validate
        then says why)."""
        if self._check_raw(data) is not None:
            return data
        try:
            root = etree.fromstring(data, self._parser())
        except etree.XMLSyntaxError:
            return data
        head = root.find("{*}Header")
        if head is None or not isinstance(head.tag, str):
            return data
        namespace = etree.QName(head).namespace
        changed = False
        previous = None
        for name, value in (("Created", created), ("Reference", reference)):
            tag = f"{{{namespace}}}{name}" if namespace else name
            element = head.find(tag)
            if element is None:
                # On the line of what follows it: every element the handler wrote keeps its
                # line, so that validation errors name the lines of the handler's file.
                element = etree.Element(tag)
                if previous is None:
                    head.insert(0, element)
                else:
                    previous.addnext(element)
            previous = element
            if (element.text or "").strip():
                continue
            element.text = value
            changed = True
        if not changed:
            return data
        declared = data.removeprefix(b"\xef\xbb\xbf").startswith(b"<?xml")
        body: bytes = etree.tostring(root.getroottree(), xml_declaration=declared, encoding="UTF-8")
        return body + b"\n"

    def left_out(self, data: bytes) -> tuple[str, ...]:
        """Which of Created and Reference the form leaves to `gateway send` (absent or empty)."""
        if self._check_raw(data) is not None:
            return ()
        try:
            root = etree.fromstring(data, self._parser())
        except etree.XMLSyntaxError:
            return ()
        head = root.find("{*}Header")
        if head is None or not isinstance(head.tag, str):
            return ()
        return tuple(
            name
            for name in ("Created", "Reference")
            if not ((found := head.find("{*}" + name)) is not None and (found.text or "").strip())
        )

    def _check_raw(self, data: bytes) -> FormError | None:
        """What can be refused from the bytes alone: size, encoding, any DTD."""
        if not data or data.isspace():
            return FormError(None, "", "empty document")
        if len(data) > self.limits.max_bytes:
            return FormError(
                None,
                "",
                f"document is {len(data)} bytes, over the limit of {self.limits.max_bytes}",
            )
        if data.startswith(_FOREIGN_BOMS):
            return FormError(
                1, "", "forms must be encoded in UTF-8 (found a UTF-16/32 byte order mark)"
            )
        declared = _DECLARED_ENCODING.match(data.removeprefix(b"\xef\xbb\xbf"))
        if declared and declared.group(1).decode("ascii").lower() not in _UTF8_NAMES:
            name = declared.group(1).decode("ascii")
            return FormError(
                1, "", f"the XML declaration says encoding {name!r}; forms must be UTF-8"
            )
        doctype = data.find(b"<!DOCTYPE")
        if doctype >= 0 or b"<!ENTITY" in data:
            at = doctype if doctype >= 0 else data.find(b"<!ENTITY")
            return FormError(data.count(b"\n", 0, at) + 1, "", _DOCTYPE_REFUSED)
        return None

    def _check_limits(self, tree: Any, size: int, *, depth: bool) -> FormError | None:
        """Text-size limit (only a document larger than it can break it) and, if asked, depth."""
        limits = self.limits
        if size > limits.max_text_bytes:
            for element in tree.iter():
                for text in (element.text, element.tail, *element.attrib.values()):
                    if text is not None and len(text.encode("utf-8")) > limits.max_text_bytes:
                        return FormError(
                            element.sourceline,
                            _path(element),
                            f"text over the limit of {limits.max_text_bytes} bytes",
                        )
        if depth:
            deep = _depth_probe(limits.max_depth)(tree)
            if deep:
                element = deep[0]
                return FormError(
                    element.sourceline,
                    _path(element),
                    f"elements nested deeper than the limit of {limits.max_depth}",
                )
        return None

    def _unknown_root(self, root: Any) -> FormError:
        name = etree.QName(root)
        alike = [known for known in self._by_root if known.endswith("}" + name.localname)]
        reason = f"unknown root element {root.tag}: not a form of any loaded schema set"
        if alike:
            reason += f"; did you mean {alike[0]} (another namespace)?"
        return FormError(root.sourceline, "/" + name.localname, reason)

    def _explain(self, entry: _EntrySchema, tree: Any) -> tuple[list[FormError], int]:
        """Every error, from xmlschema (complete, with paths); lxml's log should it find none."""
        errors: list[FormError] = []
        count = 0
        namespace = etree.QName(tree.getroot()).namespace or ""
        previous: FormError | None = None
        try:
            for error in entry.explainer().iter_errors(tree, use_location_hints=False):
                found = _from_xmlschema(error, namespace)
                if previous is not None and _says_again(previous, found):
                    continue
                previous = found
                count += 1
                if len(errors) < self.limits.max_errors:
                    errors.append(found)
                if count >= _COUNT_CAP:
                    break
        except (xmlschema.XMLSchemaException, LookupError, ValueError, TypeError):
            # xmlschema gives up on some documents (an xsi:type naming no type raises a
            # KeyError): libxml2, which refused the document already, explains it then.
            pass
        if count:
            return errors, count
        # The two engines disagree: report what libxml2 saw rather than pass the document.
        with entry._lock:
            entry.lxml.validate(tree)
            log = [
                FormError(
                    item.line,
                    _lxml_path(tree, item.path),
                    plain(_NAMESPACE_IN_REASON.sub("", item.message)),
                )
                for item in entry.lxml.error_log
            ]
        return log[: self.limits.max_errors], max(len(log), 1)


def read_catalog(path: Path, _seen: frozenset[Path] = frozenset()) -> XmlCatalog:
    """Read an OASIS XML catalog file (and the catalogs it chains to) with the hardened parser."""
    path = path.resolve()
    try:
        document = etree.parse(str(path), _hardened_parser())
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchemaSetError(str(path), "", f"cannot read the catalog: {exc}") from None
    entries = []
    for element in document.getroot().iter(f"{{{CATALOG_NS}}}*"):
        entries.append(
            CatalogEntry(
                kind=etree.QName(element).localname,
                attributes={key: value for key, value in element.attrib.items() if "}" not in key},
                base=element.base or path.as_uri(),
                line=element.sourceline,
            )
        )
    try:
        catalog = XmlCatalog.from_entries(entries)
    except ValueError as exc:
        raise SchemaSetError(str(path), "", str(exc)) from None
    for chained in catalog.next_catalogs:
        if chained not in _seen:
            catalog.extend(read_catalog(chained, _seen | {path}))
    return catalog


_DOCTYPE_REFUSED = "DOCTYPE and ENTITY declarations are not allowed in forms (no DTDs, no entities)"


def _syntax_error(data: bytes, exc: Any) -> FormError:
    """Why a document did not parse; bytes that are not UTF-8 are named as such."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = data.count(b"\n", 0, bad.start) + 1
        return FormError(line, "", f"not valid UTF-8 at byte {bad.start}; forms must be UTF-8")
    return FormError(exc.lineno or None, "", f"not well-formed XML: {exc.msg}")


def _depth_probe(depth: int) -> Any:
    return _DEPTH_PROBES.setdefault(depth, etree.XPath("/*" + "/*" * depth))


_DEPTH_PROBES: dict[int, Any] = {}


def _from_xmlschema(error: Any, namespace: str) -> FormError:
    element = error.elem
    reason = sentence(_fault(error, namespace))
    if element is None or not hasattr(element, "sourceline"):
        return FormError(None, error.path or "", reason)
    line = element.sourceline
    index = getattr(error, "index", None)
    if isinstance(index, int) and 0 <= index < len(element):
        line = element[index].sourceline or line
    return FormError(line, _path(element), reason)


def _lxml_path(tree: Any, path: str | None) -> str:
    """libxml2's path of an error (``/*/*[2]``) as the readable path of local names."""
    try:
        found = tree.xpath(path) if path else []
    except etree.XPathError:
        found = []
    return _path(found[0]) if found and isinstance(found[0], etree._Element) else ""


def _says_again(previous: FormError, found: FormError) -> bool:
    """Two facets of one type refusing the same empty text ("not empty", "not blank") are one
    error for the handler."""
    return (
        (previous.line, previous.path) == (found.line, found.path)
        and previous.reason.startswith("must not be empty")
        and found.reason.startswith("must not be empty")
    )


def _fault(error: Any, namespace: str) -> Fault:
    """What xmlschema found, as plain data for the wording (formwording.py)."""
    validator = error.validator
    obj = error.obj
    value = obj if isinstance(obj, str) else str(obj) if isinstance(obj, int) else None
    named = getattr(getattr(validator, "parent", None), "name", None) or ""
    type_name = _local(named)
    attribute = _ATTRIBUTE.match(str(error.reason or ""))
    common: dict[str, Any] = {
        "value": value,
        "attribute": attribute.group(1) if attribute else None,
        "type_name": type_name,
    }
    if isinstance(error, xmlschema.XMLSchemaChildrenValidationError):
        expected = tuple(
            _local(str(getattr(item, "name", "") or "")) for item in (error.expected or ())
        )
        expected = tuple(name for name in expected if name)
        element = _local(str(obj.tag)) if hasattr(obj, "tag") else ""
        if error.invalid_tag is None:
            return Fault("incomplete", element=element, expected=expected)
        return Fault(
            "unexpected", element=element, tag=_local(str(error.invalid_tag)), expected=expected
        )
    kind = type(validator).__name__
    if kind == "XsdPatternFacets":
        return Fault("pattern", patterns=tuple(getattr(validator, "regexps", ())), **common)
    if kind == "XsdEnumerationFacets":
        choices = tuple(str(item) for item in getattr(validator, "enumeration", ()))
        return Fault("enumeration", choices=choices, **common)
    if kind in _LENGTH_FACETS:
        return Fault(_LENGTH_FACETS[kind], limit=int(validator.value), **common)
    if kind == "XsdAtomicBuiltin":
        common["type_name"] = _local(str(getattr(validator, "name", "") or ""))
        return Fault("builtin", **common)
    common["attribute"] = None  # the reason below says it already
    return Fault("other", text=_plain_reason(error, namespace), **common)


_ATTRIBUTE = re.compile(r"attribute ([\w.:-]+)=")
_LENGTH_FACETS = {
    "XsdMinLengthFacet": "min_length",
    "XsdMaxLengthFacet": "max_length",
    "XsdLengthFacet": "length",
}


def _local(name: str) -> str:
    return name.rpartition("}")[2].rpartition(":")[2] if name else ""


def _plain_reason(error: Any, namespace: str) -> str:
    """xmlschema's reason with namespaces, Python objects and class names taken out."""
    reason = _NAMESPACE_IN_REASON.sub(
        lambda match: "" if match.group(0) == f"{{{namespace}}}" else match.group(0),
        str(error.reason or error.message),
    )
    reason = _LONG_CHOICE.sub(_shorten_choices, _PYTHON_OBJECT.sub("", reason))
    reason = _ABSTRACT.sub(
        r"\1 does not say which kind it is: name the kind with an xsi:type attribute", reason
    )
    reason = _UNIQUE.sub(r"\1 appears twice, where each may appear once (rule \2)", reason)
    reason = _PREFIXED_TAG.sub(r"'\1'", reason)
    return _PYTHON_CLASS.sub(
        lambda match: "xs:" + match.group(1)[0].lower() + match.group(1)[1:], reason
    )


def _shorten_choices(match: re.Match[str]) -> str:
    choices = match.group(1).split(", ")
    if len(choices) <= 12:
        return match.group(0)
    return f"value must be one of the {len(choices)} codes {', '.join(choices[:3])}, ..."


def element_path(element: Any) -> str:
    """The path an error about ``element`` carries (``/FormM/Subject[2]/Person``)."""
    return _path(element)


def _path(element: Any) -> str:
    """A readable path of local names, with a position where siblings share a name."""
    steps = []
    while element is not None:
        name = etree.QName(element).localname
        parent = element.getparent()
        if parent is not None:
            same = list(parent.iterchildren(element.tag))
            if len(same) > 1:
                name += f"[{same.index(element) + 1}]"
        steps.append(name)
        element = parent
    return "/" + "/".join(reversed(steps))

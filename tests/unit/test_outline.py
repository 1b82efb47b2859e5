"""Validation.outline, read in one walk of the tree, gives the rows of the recursive walk it
replaced, on every sample form and on documents with comments, processing instructions,
attributes in and out of namespaces, mixed content and random shapes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.forms.xmlforms import Validation

SAMPLES = sorted(Path(__file__).resolve().parents[2].glob("forms/samples/*/*.xml"))


def recursive_outline(tree: Any) -> list[tuple[int, str, str]]:
    """The outline as it was first written: a recursive walk, QName for every name."""
    rows: list[tuple[int, str, str]] = []

    def walk(element: Any, depth: int) -> None:
        rows.append((depth, etree.QName(element).localname, (element.text or "").strip()))
        for name, value in element.attrib.items():
            rows.append((depth + 1, "@" + etree.QName(name).localname, value))
        for child in element.iterchildren("{*}*"):
            walk(child, depth + 1)

    walk(tree.getroot(), 0)
    return rows


def outline(tree: Any) -> list[tuple[int, str, str]]:
    return Validation(tree=tree).outline()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_sample_forms(sample: Path) -> None:
    try:
        tree = etree.parse(str(sample))
    except etree.XMLSyntaxError:
        pytest.skip("not well-formed: never validated, never outlined")
    assert outline(tree) == recursive_outline(tree)


ODD = [
    "<a/>",
    "<a>  text  <!-- c --> tail <b>x</b><?pi data?></a>",
    '<f:a xmlns:f="urn:f" xmlns:g="urn:g" g:x="1" y="2"><g:b g:z="3"><c>t</c></g:b></f:a>',
    "<a><!-- only a comment --></a>",
    "<a><?pi?><b/><?pi?><c><d><e>deep</e></d></c></a>",
    '<a xmlns="urn:default"><b x="1"><c/></b><b/></a>',
    "<a>\n  <b>\n    one\n  </b>\n  <b>two</b>\n</a>",
]


@pytest.mark.parametrize("document", ODD)
def test_odd_documents(document: str) -> None:
    tree = etree.ElementTree(etree.fromstring(document))
    assert outline(tree) == recursive_outline(tree)


def test_random_trees() -> None:
    rng = random.Random(18)  # noqa: S311 - reproducible cases, not secrets
    namespaces = [None, "urn:one", "urn:two"]
    for _ in range(300):
        root = etree.Element("Root")
        nodes = [root]
        for _ in range(rng.randrange(1, 40)):
            parent = rng.choice(nodes)
            kind = rng.random()
            if kind < 0.1:
                parent.append(etree.Comment("c"))
            elif kind < 0.15:
                parent.append(etree.ProcessingInstruction("pi", "x"))
            else:
                namespace = rng.choice(namespaces)
                name = rng.choice(["Name", "DateOfBirth", "Place", "ID"])
                child = etree.SubElement(parent, f"{{{namespace}}}{name}" if namespace else name)
                if rng.random() < 0.5:
                    child.text = rng.choice(["", " x ", "value", "\n  "])
                if rng.random() < 0.3:
                    attribute = rng.choice(["code", "{urn:one}code", "{urn:two}kind"])
                    child.set(attribute, rng.choice(["", "1", "a b"]))
                if rng.random() < 0.2:
                    child.tail = "tail"
                nodes.append(child)
        tree = etree.ElementTree(root)
        assert outline(tree) == recursive_outline(tree)

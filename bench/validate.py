"""Benchmark: form validation through gateway.xmlforms against a bare lxml XMLSchema, in one run.

Both sides parse and validate the same bytes against the same XSDs: the baseline is
``schema.validate(etree.fromstring(data))`` with the schema compiled directly by lxml; the gateway
adds its hardening (size, encoding, DTD, limits) and the choice of schema by root element.

    .venv/bin/python bench/validate.py [--rounds 7] [--repeat 100] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import write_results
from lxml import etree

from gateway.core import config as configuration
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator

ROOT = Path(__file__).resolve().parent.parent
PERSON = """    <Subject>
      <Person>
        <FamilyName>EXAMPLE{n}</FamilyName>
        <GivenName>Test</GivenName>
        <Alias><FamilyName>SAMPLE{n}</FamilyName><GivenName>Alias</GivenName></Alias>
        <Sex>M</Sex>
        <DateOfBirth>1980-01-{day:02d}</DateOfBirth>
        <PlaceOfBirth><Locality>Cluj-Napoca</Locality><Country>RO</Country></PlaceOfBirth>
        <Nationality>RO</Nationality>
        <IdentityDocument>
          <Type>passport</Type><Number>X{n:07d}</Number><IssuingCountry>RO</IssuingCountry>
          <DateOfIssue>2020-01-01</DateOfIssue><DateOfExpiry>2030-01-01</DateOfExpiry>
        </IdentityDocument>
      </Person>
    </Subject>
"""
HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<FormM xmlns="urn:ipc-gateway:sirene:1">
  <Header>
    <Created>2026-11-25T10:00:00+01:00</Created>
    <Reference>RO-2026-{n:06d}</Reference>
    <Sender><Bureau>RO-SIRENE</Bureau><Officer>Officer {n}</Officer></Sender>
    <Recipient><Bureau>NO-SIRENE</Bureau></Recipient>
    <Priority><Normal/></Priority>
    <InReplyTo>NO-2026-000123</InReplyTo>
    <Language>en</Language>
  </Header>
"""
TAIL = """  <Information>{text}</Information>
  <EndOfMessage/>
</FormM>
"""


def generated_form(n: int, size: int = 5 * 1024) -> bytes:
    """A valid form M of about ``size`` bytes: persons concerned and a free-text part."""
    body = HEAD.format(n=n)
    people = 0
    while len(body) < size * 0.7:
        body += PERSON.format(n=n * 10 + people, day=people % 28 + 1)
        people += 1
    filler = "Further to your form G, the person was released on bail. " * 40
    text = filler[: max(64, size - len(body) - len(TAIL))]
    return (body + TAIL.format(text=text.strip())).encode()


def documents() -> list[tuple[str, bytes]]:
    samples = sorted((ROOT / "forms" / "samples").glob("*/valid-*.xml"))
    docs = [(f"sample:{path.parent.name}/{path.name}", path.read_bytes()) for path in samples]
    docs += [(f"generated-5k:{n}", generated_form(n)) for n in range(20)]
    return docs


def bare_schemas(validator: FormValidator) -> dict[str, etree.XMLSchema]:
    """The same XSDs compiled by lxml directly, indexed by root element."""
    schemas: dict[str, etree.XMLSchema] = {}
    for form in validator.catalogue:
        schemas[form.root] = etree.XMLSchema(
            etree.parse(str(configuration.BUILTIN_XSD / form.schema))
        )
    return schemas


def rate(run: Callable[[], None], count: int, rounds: int) -> tuple[float, list[float]]:
    """Documents per second: the median of ``rounds`` timed passes, after one warm-up pass."""
    run()
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), rates


def measure(
    docs: list[tuple[str, bytes]], validator: FormValidator, repeat: int, rounds: int
) -> dict[str, float]:
    schemas = bare_schemas(validator)
    pairs = [(data, schemas[etree.fromstring(data).tag]) for _, data in docs]

    def bare() -> None:
        for _ in range(repeat):
            for data, schema in pairs:
                if not schema.validate(etree.fromstring(data)):
                    raise AssertionError("baseline rejected a valid document")

    def gateway() -> None:
        for _ in range(repeat):
            for data, _schema in pairs:
                if not validator.validate(data).valid:
                    raise AssertionError("gateway rejected a valid document")

    count = repeat * len(pairs)
    # Alternate the two so that both see the same machine state.
    bare_rates, gateway_rates = [], []
    for _ in range(rounds):
        bare_rates.append(rate(bare, count, 1)[0])
        gateway_rates.append(rate(gateway, count, 1)[0])
    bare_rate = statistics.median(bare_rates)
    gateway_rate = statistics.median(gateway_rates)
    return {
        "documents": len(pairs),
        "mean_bytes": sum(len(data) for data, _ in pairs) / len(pairs),
        "validations_per_side": count * rounds,
        "bare_lxml_per_second": round(bare_rate),
        "gateway_per_second": round(gateway_rate),
        "ratio": round(gateway_rate / bare_rate, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "validate.json")
    args = parser.parse_args()

    validator = load_validator(None)
    docs = documents()
    groups = {
        "samples": [doc for doc in docs if doc[0].startswith("sample:")],
        "generated_5k": [doc for doc in docs if doc[0].startswith("generated-5k:")],
    }
    results: dict[str, object] = {
        "benchmark": "validate",
        "python": platform.python_version(),
        "lxml": ".".join(map(str, etree.LXML_VERSION)),
        "libxml2": ".".join(map(str, etree.LIBXML_VERSION)),
        "target_ratio": 0.8,
    }
    for name, group in groups.items():
        figures = measure(group, validator, args.repeat, args.rounds)
        results[name] = figures
        print(
            f"{name:>13}: {figures['documents']} docs of {figures['mean_bytes']:.0f} B on average; "
            f"bare lxml {figures['bare_lxml_per_second']:,}/s, "
            f"gateway.xmlforms {figures['gateway_per_second']:,}/s, "
            f"ratio {figures['ratio']:.2f}"
        )
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

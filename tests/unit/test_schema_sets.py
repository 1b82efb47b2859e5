"""External schema sets: multi-file, multi-namespace, resolved through an XML catalog, offline."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.core import config as configuration
from gateway.core.errors import SchemaSetError
from gateway.core.vocabulary import SchemaSetSpec
from gateway.forms.catalogue import FormCatalogue
from gateway.forms.setup import load_validator
from gateway.forms.xmlforms import FormValidator

ACME = Path(__file__).resolve().parent.parent / "data" / "acme"


@pytest.fixture
def acme(tmp_path: Path) -> Path:
    """A private copy of the ACME set, free to break."""
    copy = tmp_path / "acme"
    shutil.copytree(ACME, copy)
    return copy


@pytest.fixture
def acme_validator() -> FormValidator:
    return load_validator(configuration.load(ACME / "gateway.toml"))


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_the_set_has_five_schemas_three_namespaces_imports_and_an_include() -> None:
    schemas = sorted(ACME.glob("schemas/**/*.xsd"))
    assert len(schemas) >= 5
    text = "".join(path.read_text() for path in schemas)
    assert "xs:include" in text and "xs:import" in text
    assert {"urn:acme:exchange:2", "urn:acme:core:2", "urn:acme:codes:1"} <= {
        part.split('"')[1] for part in text.split("targetNamespace=")[1:]
    }


def test_instances_validate_through_the_configuration(acme_validator: FormValidator) -> None:
    report = acme_validator.validate((ACME / "instances" / "report.xml").read_bytes())
    assert report.valid
    assert report.form is not None and report.form.code == "ACME-REPORT"
    notice = acme_validator.validate((ACME / "instances" / "notice.xml").read_bytes())
    assert notice.valid and notice.form is None and notice.root == "{urn:acme:exchange:2}Notice"


def test_errors_from_every_namespace(acme_validator: FormValidator) -> None:
    result = acme_validator.validate((ACME / "instances" / "report-invalid.xml").read_bytes())
    assert [(error.line, error.path) for error in result.errors] == [
        (3, "/Report/Envelope/To"),
        (4, "/Report/Person/Nationality"),
        (5, "/Report/Offence"),
    ]


def test_builtin_forms_still_validate_beside_the_set(acme_validator: FormValidator) -> None:
    sample = configuration.BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml"
    assert acme_validator.validate(sample.read_bytes()).valid


def test_depth_limit_applies_to_valid_documents_of_a_recursive_set(
    acme_validator: FormValidator,
) -> None:
    parts = b"<Part>" * 40 + b"</Part>" * 40
    data = (ACME / "instances" / "notice.xml").read_bytes()
    data = data.replace(b"<Part><Part><Part/></Part></Part>", parts)
    result = acme_validator.validate(data)
    assert not result.valid
    assert "nested deeper than the limit of 32" in result.errors[0].reason


def test_cli_validates_with_the_set(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "-c",
            str(ACME / "gateway.toml"),
            "validate",
            str(ACME / "instances" / "report.xml"),
            str(ACME / "instances" / "notice.xml"),
        ]
    )
    assert code == 0
    assert "valid ACME-REPORT" in capsys.readouterr().out


def test_missing_import_fails_at_start_with_file_and_line(acme: Path) -> None:
    (acme / "schemas" / "core" / "person.xsd").unlink()
    with pytest.raises(SchemaSetError) as caught:
        load_validator(configuration.load(acme / "gateway.toml"))
    message = str(caught.value)
    assert f"{acme / 'schemas' / 'core' / 'core.xsd'}:6:" in message
    assert "person.xsd" in message


def test_unmapped_remote_import_is_never_fetched(
    acme: Path, recorder: tuple[str, list[str]]
) -> None:
    url, hits = recorder
    for schema in (acme / "schemas").glob("**/*.xsd"):
        schema.write_text(
            schema.read_text().replace(
                "https://registry.acme-police.example/codes/codes-1.3.xsd", f"{url}/codes.xsd"
            )
        )
    with pytest.raises(SchemaSetError) as caught:
        load_validator(configuration.load(acme / "gateway.toml"))
    message = str(caught.value)
    assert f"{acme / 'schemas'}/" in message
    assert f"{url}/codes.xsd is not mapped by the catalog" in message
    assert hits == []


def test_import_outside_the_set_folder_is_refused(acme: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.xsd"
    shutil.copy(acme / "schemas" / "codes" / "codes.xsd", outside)
    catalog = acme / "schemas" / "catalog.xml"
    catalog.write_text(catalog.read_text().replace('uri="codes/codes.xsd"', f'uri="{outside}"'))
    with pytest.raises(SchemaSetError, match="is not mapped by the catalog to a local file"):
        load_validator(configuration.load(acme / "gateway.toml"))


def test_schema_that_does_not_compile(acme: Path) -> None:
    codes = acme / "schemas" / "codes" / "codes.xsd"
    codes.write_text(codes.read_text().replace('base="xs:string"', 'base="xs:nosuchtype"'))
    with pytest.raises(SchemaSetError, match=r"codes\.xsd:\d+: .*nosuchtype"):
        load_validator(configuration.load(acme / "gateway.toml"))


def test_unsupported_catalog_entry(acme: Path) -> None:
    catalog = acme / "schemas" / "catalog.xml"
    catalog.write_text(
        catalog.read_text().replace(
            "<group>", '<delegateSystem systemIdStartString="x" catalog="y"/><group>'
        )
    )
    with pytest.raises(SchemaSetError, match="delegateSystem> is not supported"):
        load_validator(configuration.load(acme / "gateway.toml"))


def test_form_naming_an_unknown_set() -> None:
    forms = FormCatalogue.load([(ACME / "forms", "nowhere")])
    with pytest.raises(SchemaSetError, match="unknown schema set 'nowhere'"):
        FormValidator.load([SchemaSetSpec("builtin", configuration.BUILTIN_XSD)], forms)


def test_two_sets_declaring_the_same_root(acme: Path) -> None:
    twin = SchemaSetSpec(
        "twin", acme / "schemas", acme / "schemas" / "catalog.xml", ("exchange.xsd",)
    )
    first = SchemaSetSpec(
        "acme", ACME / "schemas", ACME / "schemas" / "catalog.xml", ("exchange.xsd",)
    )
    with pytest.raises(SchemaSetError, match=r"\{urn:acme:exchange:2\}Report is also declared"):
        FormValidator.load([first, twin], FormCatalogue([]))

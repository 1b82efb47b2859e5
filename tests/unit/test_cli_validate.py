"""`gateway validate`: one result per file, text or JSON, exit 0 / 1 / 2, stdin, progress bar."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.cli.progress import Progress
from gateway.core.config import BUILTIN_FORMS, PROJECT_ROOT
from gateway.forms.setup import load_validator

SAMPLES = BUILTIN_FORMS / "samples"
VALID = sorted(SAMPLES.glob("*/valid-*.xml"))
INVALID = sorted(SAMPLES.glob("*/invalid-*.xml"))


@pytest.fixture(autouse=True)
def no_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run with the built-in catalogue only, whatever the developer's environment holds."""
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_all_valid_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, VALID)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(VALID)
    assert all(": valid " in line for line in out)


def test_any_invalid_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    invalid = SAMPLES / "G" / "invalid-no-alert-bad-reference.xml"
    assert main(["validate", str(VALID[0]), str(invalid)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{invalid}:5: /FormG/Header/Reference: 'NO-2026-123' is not a Reference: the country "
        "code, the year and six digits, e.g. NO-2026-000123"
    ) in out
    assert f"{invalid}:8: /FormG/Header: Priority is not allowed here: Alert ref is expected" in out
    assert f"{invalid}: invalid G: 2 errors" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    invalid = SAMPLES / "G" / "invalid-urgent-without-reason.xml"
    assert main(["validate", "--json", str(VALID[0]), str(invalid)]) == 1
    results = json.loads(capsys.readouterr().out)
    assert results[0] == {
        "file": str(VALID[0]),
        "valid": True,
        "form": VALID[0].parent.name,
        "filled_by_send": [],
        "error_count": 0,
        "errors": [],
    }
    assert results[1]["valid"] is False and results[1]["form"] == "G"
    assert results[1]["errors"] == [
        {
            "line": 9,
            "path": "/FormG/Header/Priority/Urgent",
            "reason": "Urgent is incomplete: Urgency reason is missing",
        }
    ]


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(VALID[0].read_bytes())))
    assert main(["validate", "-"]) == 0
    assert capsys.readouterr().out.startswith("<stdin>: valid ")


def test_unreadable_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(VALID[0]), "does-not-exist.xml"]) == 2
    captured = capsys.readouterr()
    assert "does-not-exist.xml: cannot read: No such file or directory" in captured.err
    assert ": valid " in captured.out


def test_no_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["validate"])
    assert caught.value.code == 2


def test_huge_file_is_not_read_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of zeros
    assert main(["validate", str(huge)]) == 1
    assert "over the limit of 1048576" in capsys.readouterr().out


def test_hostile_file_reported_not_crashed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "xxe.xml"
    hostile.write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    assert main(["validate", str(hostile)]) == 1
    assert "DOCTYPE and ENTITY declarations are not allowed" in capsys.readouterr().out


def test_progress_bar_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(20, stream)
        for index in range(20):
            progress.step(f"file{index}.xml")
        progress.done()
    assert "20/20" in terminal.getvalue() and "[####" in terminal.getvalue()
    assert pipe.getvalue() == ""
    few = Terminal()
    Progress(3, few).step("a")
    assert few.getvalue() == ""


def test_console_script_and_module_entry_point() -> None:
    env = {**os.environ, "GATEWAY_CONFIG": ""}
    for command in (
        [str(Path(sys.executable).parent / "gateway")],
        [sys.executable, "-m", "gateway"],
    ):
        done = subprocess.run(
            [*command, "validate", str(VALID[0])],
            capture_output=True,
            text=True,
            env=env,
            cwd=PROJECT_ROOT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert ": valid " in done.stdout


def without(data: bytes, *names: str) -> bytes:
    """The form with these header elements left out (or, with "=", left empty)."""
    for given in names:
        name, empty = given.lstrip("="), given.startswith("=")
        pattern = rf"<{name}>[^<]*</{name}>".encode()
        data, count = re.subn(pattern, f"<{name}> </{name}>".encode() if empty else b"", data)
        assert count == 1
    return data


def test_a_form_left_for_send_to_number_is_valid_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `gateway send` accepts, `gateway validate` accepts: send fills in Created and
    Reference where the handler left them out (or empty)."""
    seized = (SAMPLES / "G" / "valid-vehicle-seized.xml").read_bytes()
    both, reference, empty = tmp_path / "both.xml", tmp_path / "ref.xml", tmp_path / "empty.xml"
    both.write_bytes(without(seized, "Created", "Reference"))
    reference.write_bytes(without(seized, "Reference"))
    empty.write_bytes(without(seized, "=Created"))
    assert main(["validate", str(both), str(reference), str(empty), str(VALID[0])]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{both}: valid G (Created and Reference will be filled in by send)",
        f"{reference}: valid G (Reference will be filled in by send)",
        f"{empty}: valid G (Created will be filled in by send)",
        f"{VALID[0]}: valid {VALID[0].parent.name}",
    ]
    assert main(["validate", "--json", str(both)]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert (result["valid"], result["filled_by_send"]) == (True, ["Created", "Reference"])


def test_a_form_left_for_send_with_other_errors_is_invalid_on_its_own_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.xml"
    seized = (SAMPLES / "G" / "valid-vehicle-seized.xml").read_bytes()
    bad.write_bytes(without(seized, "Created", "Reference").replace(b">NL<", b">nl<", 1))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1] == f"{bad}: invalid G: 1 error"
    line = next(
        number for number, text in enumerate(bad.read_bytes().splitlines(), 1) if b">nl<" in text
    )
    assert out[0].startswith(f"{bad}:{line}: ")  # the line of the handler's file
    assert "Created" not in out[0] and "Reference" not in out[0]


# Phrasings that are not a handler's: regexes, library and Python internals.
LEAKS = re.compile(
    r"pattern|\\[sSdw]|\[\'|Tag '|Xsd|xs:|<class|0x[0-9a-f]|invalid \?|\{urn:|lesser than|"
    r"Unexpected child|not complete|datetime string|facet"
)


@pytest.mark.parametrize("sample", INVALID, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_reason_reads_as_a_sentence(sample: Path) -> None:
    result = load_validator(None).validate(sample.read_bytes())
    assert result.errors
    for error in result.errors:
        assert not LEAKS.search(error.reason), error.reason

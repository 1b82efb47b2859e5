"""docs/PROTOCOL.md tells a foreign bureau how to send with gpg alone: run its script and check
that the gateway accepts what it makes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import gpgkit

from gateway.core.config import BUILTIN_FORMS, PROJECT_ROOT
from gateway.crypto.openpgp import GnuPG
from gateway.crypto.sealing import open_message

PROTOCOL = PROJECT_ROOT / "docs" / "PROTOCOL.md"
FORM = BUILTIN_FORMS / "samples" / "G" / "valid-person-arrested.xml"


def _script() -> str:
    text = PROTOCOL.read_text()
    block = re.search(
        r"<!-- send-with-gpg: begin -->\s*```bash\n(.*?)```\s*<!-- send-with-gpg: end -->",
        text,
        re.S,
    )
    assert block, "docs/PROTOCOL.md lost its send-with-gpg script"
    return block.group(1)


def test_the_documented_gpg_script_makes_an_acceptable_message(tmp_path: Path) -> None:
    ours = GnuPG(gpgkit.new_home())
    sender = gpgkit.new_home()
    try:
        gateway_fpr = ours.generate("RO-SIRENE", "sirene@ro.example")
        sender_fpr = gpgkit.make_key(sender, "NO-SIRENE <sirene@no.example>")
        gpgkit.import_key(sender, ours.export_public().encode())
        ours.import_partner_key(gpgkit.export(sender, sender_fpr))
        env = {
            **os.environ,
            "GNUPGHOME": str(sender),
            "MY_FPR": sender_fpr,
            "GATEWAY_FPR": gateway_fpr,
            "FORM": str(FORM),
            "FROM": "sirene@no.example",
            "TO": "sirene@ro.example",
            "SUBJECT": "SIRENE G NO-2026-000123",
        }
        done = subprocess.run(
            ["bash", "-c", _script()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        opened = open_message(ours, (tmp_path / "message.eml").read_bytes(), sender_fpr)
    finally:
        ours.close()
        gpgkit.kill_agent(sender)
    assert opened.payload.form == FORM.read_bytes()
    assert opened.envelope.subject == "SIRENE G NO-2026-000123"
    assert opened.verified.signer == sender_fpr

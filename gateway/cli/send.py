"""`gateway send`: a handler's form into the outbound queue; `gateway serve` delivers it."""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from gateway.core import config as configuration
from gateway.core.clock import SystemClock
from gateway.core.errors import GatewayError, InvalidForm
from gateway.crypto.pgpmime import Attachment
from gateway.crypto.setup import open_gnupg
from gateway.forms.setup import load_validator
from gateway.outbound.submit import Submitter
from gateway.store.audit import AuditLog
from gateway.store.durable import private_folder
from gateway.store.ledger import Ledger, make_engine
from gateway.store.schema import require_current
from gateway.store.spool import Spool
from gateway.store.states import OutboundState

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(commands: Any) -> None:
    send = commands.add_parser(
        "send",
        help="queue a form for its partner (signed, encrypted, delivered by `gateway serve`)",
        description="Validate a form, number it (Reference and Created, where left out), sign "
        "and encrypt it to the pinned key of the partner its header names, and put it in the "
        "outbound queue. Prints the Reference. Exit 0 queued, 1 refused (nothing queued), "
        "2 usage or configuration error.",
    )
    send.add_argument("file", metavar="FILE", help="the form (XML)")
    send.add_argument(
        "--attach",
        metavar="FILE",
        action="append",
        default=[],
        help="a file the form's Attachment list names (repeat for several)",
    )
    send.add_argument("--desk", help="the desk that sends it (default: the route's desk)")
    send.add_argument("--json", action="store_true", help="print the result as JSON")
    send.set_defaults(run=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    config = configuration.load_required(args.config)
    if args.desk is not None and args.desk not in {desk.name for desk in config.desks}:
        print(f"gateway: unknown desk {args.desk!r}", file=sys.stderr)
        return EXIT_USAGE
    try:
        form = Path(args.file).read_bytes()
        attachments = [_attachment(Path(name)) for name in args.attach]
    except OSError as error:
        print(f"gateway: {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_USAGE
    clock = SystemClock()
    private_folder(config.paths.spool)  # the default ledger lives there
    engine = make_engine(config.database_url)
    require_current(engine)
    gpg = open_gnupg(config)
    try:
        submitter = Submitter(
            config=config,
            gpg=gpg,
            validator=load_validator(config),
            ledger=Ledger(engine, clock),
            outbound=Spool(config.paths.spool / "outbound"),
            audit=AuditLog(engine, clock),
            clock=clock,
        )
        submitted = submitter.submit(form, attachments, desk=args.desk)
    except InvalidForm as error:
        print(f"{args.file}: invalid, nothing queued:", file=sys.stderr)
        for line in error.detail.splitlines():
            print(f"  {line}", file=sys.stderr)
        return EXIT_REJECTED
    except GatewayError as error:
        print(f"gateway: {args.file}: not sent: {error.detail}", file=sys.stderr)
        return EXIT_REJECTED
    finally:
        gpg.close()
        engine.dispose()
    if args.json:
        print(
            json.dumps(
                {
                    "reference": submitted.reference,
                    "partner": submitted.partner,
                    "form": submitted.form,
                    "message_id": submitted.message_id,
                    "state": OutboundState.QUEUED,
                }
            )
        )
    else:
        print(submitted.reference)
    return EXIT_OK


def _attachment(path: Path) -> Attachment:
    return Attachment(
        filename=path.name,
        media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        data=path.read_bytes(),
    )

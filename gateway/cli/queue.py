"""`gateway queue`: list and show the spools' items (metadata only), retry, release, drop them."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from gateway.cli.deadlines import actor
from gateway.core import config as configuration
from gateway.service.queues import REASON_LIMIT, QueueItem, QueueRefusal, Queues, checked_reason
from gateway.service.services import open_services
from gateway.tracking.deadline_notices import iso_text, span_text

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
WHY_WIDTH = 60


def register(commands: Any) -> None:
    queue = commands.add_parser(
        "queue",
        help="the inbound and outbound queues: list, show, retry, release, drop",
        description="Items waiting in the spools or set aside in quarantine: metadata only, "
        "never content. Every action is audited with the OS user and the reason.",
    )
    actions = queue.add_subparsers(title="queue commands", metavar="COMMAND")
    listing = actions.add_parser("list", help="waiting and quarantined items, oldest first")
    _direction(listing)
    listing.add_argument("--quarantined", action="store_true", help="only quarantined items")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_list)
    show = actions.add_parser("show", help="one item's metadata and its message's events")
    show.add_argument("key", metavar="ID")
    _direction(show)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_show)
    retry = actions.add_parser(
        "retry",
        help="send a deferred outbound item now",
        description="An outbound item waiting for a later attempt goes now: the running "
        "gateway's courier takes it at its next pass (within a second).",
    )
    retry.add_argument("key", metavar="ID")
    _reason(retry, required=False)
    retry.set_defaults(run=cmd_retry)
    release = actions.add_parser(
        "release",
        help="put a quarantined item back into its queue",
        description="A quarantined item goes back to its queue to be tried again, its attempts "
        "counted from zero; a rejected or failed outbound form is queued again.",
    )
    release.add_argument("key", metavar="ID")
    _direction(release)
    _reason(release, required=False)
    release.set_defaults(run=cmd_release)
    drop = actions.add_parser(
        "drop",
        help="remove a waiting or quarantined item for good",
        description="Remove an item for good: its message's ledger row records it (an outbound "
        "form still queued becomes failed) and its desk is told.",
    )
    drop.add_argument("key", metavar="ID")
    _direction(drop)
    _reason(drop, required=True)
    drop.set_defaults(run=cmd_drop)


def _direction(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--inbound", dest="direction", action="store_const", const="inbound", default=None
    )
    group.add_argument("--outbound", dest="direction", action="store_const", const="outbound")


def _reason(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--reason",
        required=required,
        default="",
        help="one line, codes and references only: no personal data",
    )


@contextlib.contextmanager
def _queues(args: argparse.Namespace) -> Iterator[Queues]:
    config = configuration.load_required(args.config)
    with open_services(config) as services:
        yield Queues(services, actor=actor())


def _checked_reason(text: str, *, required: bool) -> str | None:
    try:
        return checked_reason(text, required=required)
    except ValueError:
        print(
            f"gateway: --reason must be one printable line of 1 to {REASON_LIMIT} characters",
            file=sys.stderr,
        )
        return None


def cmd_list(args: argparse.Namespace) -> int:
    with _queues(args) as queues:
        items = queues.items(args.direction, quarantined=args.quarantined)
        now = queues.clock.now()
    if args.json:
        print(json.dumps([item.as_json(now) for item in items], indent=2))
        return EXIT_OK
    if not items:
        print("(no item quarantined)" if args.quarantined else "(the queues are empty)")
        return EXIT_OK
    print(
        f"{'QUEUE':<8} {'KEY':<40} {'FOLDER':<11} {'KIND':<8} {'PARTNER':<12} {'FORM':<9} "
        f"{'REFERENCE':<18} {'STATE':<9} {'TRIES':>5} {'NEXT ATTEMPT':<17} {'AGE':<10} WHY"
    )
    for item in items:
        print(_line(item, now))
    return EXIT_OK


def _line(item: QueueItem, now: Any) -> str:
    following = f"{item.next_attempt:%Y-%m-%d %H:%M}" if item.next_attempt else "-"
    why = item.why if len(item.why) <= WHY_WIDTH else item.why[: WHY_WIDTH - 3] + "..."
    return (
        f"{item.direction:<8} {item.key:<40} {item.folder:<11} {item.kind:<8} "
        f"{item.partner or '-':<12} {item.form or '-':<9} {item.reference or '-':<18} "
        f"{item.state or '-':<9} {item.attempts:>5} {following:<17} "
        f"{span_text(now - item.since):<10} {why or '-'}"
    )


def cmd_show(args: argparse.Namespace) -> int:
    with _queues(args) as queues:
        try:
            item = queues.get(args.key, args.direction)
            events = queues.events(item)
        except QueueRefusal as refusal:
            print(f"gateway: {refusal}", file=sys.stderr)
            return EXIT_REFUSED
        now = queues.clock.now()
    shown = item.as_json(now)
    if args.json:
        shown["events"] = [
            {"at": iso_text(at), "kind": kind, "detail": detail} for at, kind, detail in events
        ]
        print(json.dumps(shown, indent=2))
        return EXIT_OK
    for name, value in shown.items():
        print(f"{name + ':':<14}{'-' if value is None or value == '' else value}")
    if events:
        print("events:")
        for at, kind, detail in events:
            print(f"  {iso_text(at)}  {kind:<16} {detail}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    reason = _checked_reason(args.reason, required=False)
    if reason is None:
        return EXIT_USAGE
    return _act(args, lambda queues: queues.retry(args.key, reason), "goes at the next pass")


def cmd_release(args: argparse.Namespace) -> int:
    reason = _checked_reason(args.reason, required=False)
    if reason is None:
        return EXIT_USAGE
    return _act(
        args,
        lambda queues: queues.release(args.key, reason, args.direction),
        "is back in its queue",
    )


def cmd_drop(args: argparse.Namespace) -> int:
    reason = _checked_reason(args.reason, required=True)
    if reason is None:
        return EXIT_USAGE
    return _act(args, lambda queues: queues.drop(args.key, reason, args.direction), "was dropped")


def _act(args: argparse.Namespace, action: Any, outcome: str) -> int:
    with _queues(args) as queues:
        try:
            item = action(queues)
        except QueueRefusal as refusal:
            print(f"gateway: {refusal}", file=sys.stderr)
            return EXIT_REFUSED
    print(f"{item.direction} {item.key} {outcome}")
    return EXIT_OK

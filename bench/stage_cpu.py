"""Benchmark: the thread CPU of a received message's intake and hand-off, one thread, no SMTP.

The same PGP/MIME messages as bench/inbound.py (its ``build_world``: the form signed and
encrypted by the partner with the gpg command line, the gateway's key unprotected, a SQLite
ledger), taken in by ``Pipeline.accept`` one after the other in this thread, then handed off by
``Handoff.run`` in this thread (desk copy, receipt sealed and spooled; nothing delivered). Each
is timed with ``time.thread_time`` (this thread's CPU, user and system: the spool's and the
ledger's syncs count, the gpg children do not), so the load of a shared machine inflates these
figures far less than a wall-clock rate. With no other session there is no group commit to
share: each message is a group of one. The stages are also read from the gateway's own
counters (``Gateway.cpu``). The baseline, in the same run and thread: the same messages' gpg
run alone (``parse_outer`` and ``GnuPG.decrypt_verify``, what the intake cannot do without),
whose Python is the floor under the intake's.

``--profile FILE`` writes cProfile's statistics of the timed messages (intake and hand-off
apart: FILE.intake, FILE.handoff) to read with ``python -m pstats``; the figures under the
profiler are not the benchmark's.

    .venv/bin/python bench/stage_cpu.py [--count 200] [--repeat 3] [--out FILE.json]
        [--workdir DIR] [--settle SECONDS]

To compare two checkouts, run each one's ``.venv/bin/python`` on this file alternately.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import benchkit
from benchkit import write_results

from gateway.core.stagecpu import STAGES
from gateway.crypto import pgpmime
from gateway.crypto.openpgp import KeyProtection
from gateway.service.server import Gateway
from gateway.service.services import open_services

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
import inbound  # noqa: E402
from loadgen import PARTNER_ADDRESS, Message  # noqa: E402

WARMUP = 10


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """cProfile over the block when ``path`` is given, its statistics dumped there."""
    if path is None:
        yield
        return
    profile = cProfile.Profile(time.thread_time)  # CPU, not the wall clock
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(str(path))


def timed(work: Callable[[], object]) -> float:
    """This thread's CPU seconds for ``work``."""
    start = time.thread_time()
    work()
    return time.thread_time() - start


def one_run(
    world: inbound.World, messages: Sequence[Message], profile: Path | None
) -> dict[str, float]:
    """A fresh ledger and spool; the warm-up, then ``messages`` taken in, then handed off.

    The last run's spool, desks and ledger are moved aside, not removed: on a disk without a
    journal, the files removed would make this run's files dearer (see benchkit.file_cost)."""
    aside = world.base / f"used-{time.time_ns()}"
    aside.mkdir()
    ledger = Path(world.config.database_url.removeprefix("sqlite:///"))
    used = [world.base / "spool", world.base / "desks"]
    used += [ledger, Path(f"{ledger}-wal"), Path(f"{ledger}-shm")]
    for number, leftover in enumerate(used):
        if leftover.exists():
            leftover.rename(aside / f"{number}-{leftover.name}")
    inbound.upgrade_ledger(world.config.database_url)
    with open_services(world.config) as services:
        gateway = Gateway(services)
        pipeline, handoff = gateway.pipeline, gateway.handoff
        for message in world.messages[:WARMUP]:
            pipeline.accept(PARTNER_ADDRESS, message.raw)
        handoff.run()
        before = gateway.cpu.snapshot()

        def take_in() -> None:
            for message in messages:
                pipeline.accept(PARTNER_ADDRESS, message.raw)

        def hand_off() -> None:
            if handoff.run().done != len(messages):
                raise AssertionError("not every message was handed off")

        pinned = world.config.partners[0].fingerprint

        def decrypt_only() -> None:
            for message in messages:
                gateway.gpg.decrypt_verify(pgpmime.parse_outer(message.raw)[1], pinned)

        baseline = timed(decrypt_only)
        with profiled(None if profile is None else profile.with_suffix(".intake")):
            intake = timed(take_in)
        with profiled(None if profile is None else profile.with_suffix(".handoff")):
            handed = timed(hand_off)
        after = gateway.cpu.snapshot()
    count = len(messages)
    stages = {
        stage: 1000 * (after[stage][0] - before[stage][0]) / count
        for stage in STAGES
        if after[stage][1] > before[stage][1]
    }
    return {
        "intake_ms": 1000 * intake / count,
        "handoff_ms": 1000 * handed / count,
        "baseline_decrypt_ms": 1000 * baseline / count,
        **{f"stage_{stage}_ms": value for stage, value in stages.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="messages timed per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh ledger")
    parser.add_argument("--profile", type=Path, help="cProfile statistics of the last run")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "stage_cpu.json")
    benchkit.add_disk_options(parser)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gws-", dir=args.workdir))
    homes: list[Path] = []
    runs: list[dict[str, float]] = []
    try:
        world = inbound.build_world(base, homes, KeyProtection(None), WARMUP + args.count)
        timed_messages = world.messages[WARMUP:]
        with benchkit.watched_disk(base, args.settle) as disk:
            load_start = [round(load, 2) for load in os.getloadavg()]
            for number in range(1, args.repeat + 1):
                profile = args.profile if number == args.repeat else None
                run = one_run(world, timed_messages, profile)
                runs.append(run)
                print(f"run {number}: " + ", ".join(f"{k} {v:.3f}" for k, v in run.items()))
    finally:
        inbound.shut_down(homes, base)
    results: dict[str, Any] = {
        "count": args.count,
        "runs": runs,
        "median": {key: statistics.median(run[key] for run in runs) for key in runs[0]},
        "disk_file_cpu_us": disk,
        "load_average_at_start": load_start,
        "load_average_at_end": [round(load, 2) for load in os.getloadavg()],
    }
    print("median: " + ", ".join(f"{k} {v:.3f}" for k, v in results["median"].items()))
    print(f"load average {results['load_average_at_start']} -> {results['load_average_at_end']}")
    benchkit.say_file_cost(disk, args.workdir)
    write_results(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

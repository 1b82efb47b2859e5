"""One gpg process, its pipes pumped by one loop, each output counted as it arrives and capped."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# How much is written to gpg's stdin in one go: a pipe holds 64 KiB on Linux.
_WRITE_CHUNK = 64 * 1024
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Finished:
    """What a gpg run gave: its output, its status and diagnostics (stderr), its exit code."""

    stdout: bytes
    stderr: bytes
    returncode: int


class OutputLimitExceeded(Exception):
    """gpg wrote more than allowed on ``stream``; it was killed the moment it did."""

    def __init__(self, stream: str, limit: int) -> None:
        super().__init__(f"gpg wrote more than {limit} bytes on {stream}")
        self.stream = stream
        self.limit = limit


class RunTimedOut(Exception):
    """gpg did not finish in the time allowed; it was killed."""


def run_bounded(
    command: Sequence[str],
    stdin: Sequence[bytes],
    *,
    env: Mapping[str, str] | None,
    max_stdout: int,
    max_stderr: int,
    timeout: float,
) -> Finished:
    """Run ``command``, feed it the ``stdin`` pieces in order, collect stdout and stderr.

    Neither output is ever held beyond its cap: the count is checked on every chunk read, and
    the process is killed as soon as one passes its cap (OutputLimitExceeded). The pieces of
    stdin are written as they are, never joined into one more copy.
    """
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    try:
        return _pump(process, stdin, max_stdout, max_stderr, time.monotonic() + timeout)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def _pump(
    process: subprocess.Popen[bytes],
    pieces: Sequence[bytes],
    max_stdout: int,
    max_stderr: int,
    deadline: float,
) -> Finished:
    assert process.stdin and process.stdout and process.stderr  # noqa: S101 (pipes asked for)
    stdin_fd, stdout_fd, stderr_fd = (
        process.stdin.fileno(),
        process.stdout.fileno(),
        process.stderr.fileno(),
    )
    outputs = {stdout_fd: bytearray(), stderr_fd: bytearray()}
    limits = {stdout_fd: (max_stdout, "stdout"), stderr_fd: (max_stderr, "stderr")}
    queue = [memoryview(piece) for piece in pieces if piece]
    with selectors.DefaultSelector() as selector:
        if queue:
            os.set_blocking(stdin_fd, False)
            selector.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        selector.register(stdout_fd, selectors.EVENT_READ)
        selector.register(stderr_fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunTimedOut()
            for key, _ in selector.select(remaining):
                fd = int(key.fd)
                if fd == stdin_fd:
                    if _write_some(stdin_fd, queue):
                        continue
                    selector.unregister(stdin_fd)
                    process.stdin.close()
                    continue
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(fd)
                    continue
                output = outputs[fd]
                output += chunk
                limit, name = limits[fd]
                if len(output) > limit:
                    outputs.clear()  # the memory goes now, not when the caller is done
                    raise OutputLimitExceeded(name, limit)
    stdout, stderr = bytes(outputs.pop(stdout_fd)), bytes(outputs.pop(stderr_fd))
    return Finished(stdout, stderr, process.wait())


def _write_some(fd: int, queue: list[memoryview]) -> bool:
    """Write what the pipe takes; False once everything is written or gpg stopped reading."""
    try:
        written = os.write(fd, queue[0][:_WRITE_CHUNK])
    except BlockingIOError:
        return True
    except (BrokenPipeError, ConnectionResetError):
        queue.clear()  # gpg stopped reading (it failed early): its verdict is in stderr
        return False
    queue[0] = queue[0][written:]
    if not queue[0]:
        queue.pop(0)
    return bool(queue)

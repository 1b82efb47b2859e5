"""One gpg process: stdin and stdout pumped by one loop, stderr in a sealed memory file; capped."""

from __future__ import annotations

import fcntl
import math
import os
import select
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# How much is written to gpg's stdin in one go: a pipe holds 64 KiB on Linux.
_WRITE_CHUNK = 64 * 1024
_WRITE_PIECES = 4  # pieces of stdin handed to one writev (the passphrase line and the message)
_READ_CHUNK = 64 * 1024
# How far stderr's file reaches past its cap. A write that would cross the end of the file fails
# whole, so the file must take any one write that starts under the cap for the cap to be seen
# passed: gpg writes a line at a time, and none of its lines comes near (OpenPGP's subpacket
# areas hold at most 64 KiB, its user ids 2 KiB, and status lines carry notations in pieces).
_STDERR_MARGIN = 1 << 20


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

    stdout is never held beyond its cap: the count is checked on every chunk read, and the
    process is killed as soon as it passes the cap (OutputLimitExceeded). stderr goes to a
    file in memory that cannot grow beyond ``_STDERR_MARGIN`` past its cap (a write beyond
    fails), read once the process is done; more than ``max_stderr`` bytes written there means
    OutputLimitExceeded. The pieces of stdin are written as they are, never joined into one
    more copy.
    """
    errors = _bounded_memory_file(max_stderr + _STDERR_MARGIN)
    try:
        # No preexec_fn, start_new_session, user or group change: CPython then starts the child
        # with vfork(), which copies no page tables (at ~110 MB RSS a fork() took 0.84 ms here,
        # this Popen 0.13 ms). close_fds stays: the child gets only its pipes and that file.
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=dict(env) if env is not None else None,
        )
        try:
            output, returncode = _pump(process, stdin, max_stdout, time.monotonic() + timeout)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        written = os.lseek(errors, 0, os.SEEK_CUR)  # the child's offset: it shares the file
        if written > max_stderr:
            raise OutputLimitExceeded("stderr", max_stderr)
        return Finished(output, os.pread(errors, written, 0), returncode)
    finally:
        os.close(errors)


def _bounded_memory_file(size: int) -> int:
    """An anonymous file in memory, ``size`` bytes long and sealed against growing: gpg writes
    its status and diagnostics there without waking this thread for each line (25 to 30 lines
    a run, each a write of its own, were as many turns of the poll loop), and a write past the
    end fails. Pages are taken only as they are written."""
    fd = os.memfd_create("gpg-stderr", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pump(
    process: subprocess.Popen[bytes],
    pieces: Sequence[bytes],
    max_stdout: int,
    deadline: float,
) -> tuple[bytes, int]:
    """One poll(2) loop over stdin and stdout, on their descriptors directly (no selector
    objects, no epoll descriptor made and registered per run): stdout and the exit code."""
    assert process.stdin and process.stdout  # noqa: S101 (pipes asked for)
    stdin_fd, stdout_fd = process.stdin.fileno(), process.stdout.fileno()
    stdout = bytearray()
    queue = [memoryview(piece) for piece in pieces if piece]
    poller = select.poll()
    if queue:
        os.set_blocking(stdin_fd, False)
    if queue and _write_some(stdin_fd, queue):  # the pipe is empty: no need to ask first
        poller.register(stdin_fd, select.POLLOUT)
    else:
        process.stdin.close()
    poller.register(stdout_fd, select.POLLIN)
    left = 2 if queue else 1  # the pipes still open
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunTimedOut()
        for fd, _ in poller.poll(math.ceil(remaining * 1000)):
            if fd == stdin_fd:
                if _write_some(stdin_fd, queue):
                    continue
                poller.unregister(stdin_fd)
                left -= 1
                process.stdin.close()
                continue
            chunk = os.read(fd, _READ_CHUNK)
            if not chunk:
                poller.unregister(fd)
                left -= 1
            else:
                stdout += chunk
                if len(stdout) > max_stdout:
                    del stdout[:]  # the memory goes now, not when the caller is done
                    raise OutputLimitExceeded("stdout", max_stdout)
    # stdout closed: gpg is exiting (or has closed it early); its stderr needs no reading now.
    returncode = process.poll()
    if returncode is None:
        returncode = _wait_exit(process, deadline)
    return bytes(stdout), returncode


def _wait_exit(process: subprocess.Popen[bytes], deadline: float) -> int:
    """The exit code of a child that is exiting, waited for until ``deadline`` on a pidfd (one
    poll(2) that returns when it exits). Popen.wait with a timeout instead polls waitpid with
    sleeps that double from 0.5 ms: most runs slept once or twice after gpg closed stdout."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RunTimedOut()
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # no pidfd here (an old kernel, a sandbox): Popen's own wait
        try:
            return process.wait(remaining)
        except subprocess.TimeoutExpired:
            raise RunTimedOut() from None
    try:
        exited = select.poll()
        exited.register(pidfd, select.POLLIN)
        if not exited.poll(math.ceil(remaining * 1000)):
            raise RunTimedOut()
    finally:
        os.close(pidfd)
    return process.wait()


def _write_some(fd: int, queue: list[memoryview]) -> bool:
    """Write what the pipe takes, the first pieces in one call; False once everything is
    written or gpg stopped reading."""
    try:
        written = os.writev(fd, [piece[:_WRITE_CHUNK] for piece in queue[:_WRITE_PIECES]])
    except BlockingIOError:
        return True
    except (BrokenPipeError, ConnectionResetError):
        queue.clear()  # gpg stopped reading (it failed early): its verdict is in stderr
        return False
    while written:
        taken = min(written, len(queue[0]))
        written -= taken
        queue[0] = queue[0][taken:]
        if not queue[0]:
            queue.pop(0)
    return bool(queue)

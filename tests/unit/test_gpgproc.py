"""gpgproc.run_bounded against real processes: outputs at their caps and one byte over, stdin
written in order and abandoned when the process stops reading, the timeout, and nothing left
behind (no process, no pipe, no thread)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import gpgkit
import pytest

from gateway.crypto.gpgproc import Finished, OutputLimitExceeded, RunTimedOut, run_bounded

MiB = 1 << 20


@pytest.fixture
def clean() -> Iterator[None]:
    """The test leaves no file descriptor open and no thread running behind it."""
    fds, threads = len(list(Path("/proc/self/fd").iterdir())), threading.active_count()
    yield
    assert len(list(Path("/proc/self/fd").iterdir())) == fds, "a pipe was left open"
    assert threading.active_count() == threads, "a thread was left behind"


def run(
    command: list[str],
    stdin: tuple[bytes, ...] = (),
    *,
    max_stdout: int = MiB,
    max_stderr: int = MiB,
    timeout: float = 60.0,
) -> Finished:
    return run_bounded(
        command,
        stdin,
        env=None,
        max_stdout=max_stdout,
        max_stderr=max_stderr,
        timeout=timeout,
    )


def traced(pid_file: Path, command: str) -> list[str]:
    """``command`` run by a shell that first writes its pid (which exec hands on)."""
    return ["sh", "-c", f'echo $$ > "{pid_file}"; exec {command}']


def assert_gone(pid_file: Path) -> None:
    """The process is dead and reaped: no zombie in the process table."""
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists(), f"process {pid} is still in the process table"


# ---------------------------------------------------------------------- caps


@pytest.mark.usefixtures("clean")
def test_output_at_the_cap_passes() -> None:
    data = os.urandom(300_000)
    done = run(["cat"], (data,), max_stdout=len(data))
    assert done == Finished(data, b"", 0)
    assert run(["head", "-c", "70000", "/dev/zero"], max_stdout=70000).stdout == bytes(70000)


@pytest.mark.usefixtures("clean")
def test_one_byte_over_the_cap_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(OutputLimitExceeded) as raised:
        run(traced(pid_file, "head -c 70001 /dev/zero"), max_stdout=70000)
    assert (raised.value.stream, raised.value.limit) == ("stdout", 70000)
    assert_gone(pid_file)


@pytest.mark.usefixtures("clean")
def test_endless_output_is_cut_at_the_cap(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(OutputLimitExceeded, match="more than 1048576 bytes on stdout"):
        run(traced(pid_file, "yes"), max_stdout=MiB)
    assert_gone(pid_file)


@pytest.mark.usefixtures("clean")
def test_stderr_has_its_own_cap(tmp_path: Path) -> None:
    done = run(["sh", "-c", "head -c 5000 /dev/zero >&2; echo out"], max_stderr=5000)
    assert done == Finished(b"out\n", bytes(5000), 0)
    pid_file = tmp_path / "pid"
    with pytest.raises(OutputLimitExceeded) as raised:
        run(traced(pid_file, "sh -c 'yes >&2'"), max_stdout=10, max_stderr=5000)
    assert (raised.value.stream, raised.value.limit) == ("stderr", 5000)
    assert_gone(pid_file)


# ---------------------------------------------------------------------- stdin


@pytest.mark.usefixtures("clean")
def test_stdin_pieces_are_written_in_order() -> None:
    pieces = (b"first\n", b"", os.urandom(200_000), b"", b"last\n")
    assert run(["cat"], pieces).stdout == b"".join(pieces)
    assert run(["cat"], ()).stdout == b""
    assert run(["cat"], (b"",)).stdout == b""


@pytest.mark.usefixtures("clean")
def test_large_stdin_through_a_pipe_both_ways() -> None:
    """8 MiB in while 8 MiB come out: neither pipe fills up and blocks the other."""
    data = os.urandom(8 * MiB)
    assert run(["cat"], (data[: 3 * MiB], data[3 * MiB :]), max_stdout=8 * MiB).stdout == data


@pytest.mark.usefixtures("clean")
def test_a_process_that_stops_reading_gives_its_verdict() -> None:
    """The process reads a little, complains and exits while MiBs are still to be written:
    the broken pipe ends the writing, and its stderr and exit code come back."""
    script = "head -c 10 >/dev/null; echo 'gpg: no valid OpenPGP data found' >&2; exit 2"
    done = run(["sh", "-c", script], (os.urandom(4 * MiB), os.urandom(4 * MiB)))
    assert done == Finished(b"", b"gpg: no valid OpenPGP data found\n", 2)


@pytest.mark.usefixtures("clean")
def test_a_process_that_never_reads_stdin_is_not_waited_for() -> None:
    done = run(["sh", "-c", "exec 0<&-; echo done"], (os.urandom(4 * MiB),))
    assert done == Finished(b"done\n", b"", 0)


# ---------------------------------------------------------------------- time and failures


@pytest.mark.usefixtures("clean")
def test_timeout_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(RunTimedOut):
        run(traced(pid_file, "sleep 60"), timeout=0.2)
    assert_gone(pid_file)


@pytest.mark.usefixtures("clean")
def test_timeout_with_stdin_not_taken(tmp_path: Path) -> None:
    """A process that neither reads nor exits: the pipe is full, the deadline still holds."""
    pid_file = tmp_path / "pid"
    with pytest.raises(RunTimedOut):
        run(traced(pid_file, "sleep 60"), (os.urandom(MiB),), timeout=0.2)
    assert_gone(pid_file)


@pytest.mark.usefixtures("clean")
def test_timeout_after_stdout_closed(tmp_path: Path) -> None:
    """A process that closes stdout and goes on running: its exit is waited for until the
    deadline, then it is killed."""
    pid_file = tmp_path / "pid"
    with pytest.raises(RunTimedOut):
        run(traced(pid_file, "sh -c 'exec 1>&-; sleep 60'"), timeout=0.3)
    assert_gone(pid_file)


@pytest.mark.usefixtures("clean")
def test_exit_code_of_a_process_that_lingers_after_closing_stdout() -> None:
    """stdout closed well before the exit: the run waits for the exit and reports its code."""
    done = run(["sh", "-c", "echo out; exec 1>&-; sleep 0.2; exit 5"], timeout=10)
    assert done == Finished(b"out\n", b"", 5)


@pytest.mark.usefixtures("clean")
def test_exit_code_and_environment() -> None:
    done = run_bounded(
        ["sh", "-c", 'echo "$PROBE"; exit 7'],
        (),
        env={"PROBE": "set", "PATH": os.environ["PATH"]},
        max_stdout=100,
        max_stderr=100,
        timeout=10,
    )
    assert done == Finished(b"set\n", b"", 7)


@pytest.mark.usefixtures("clean")
def test_a_command_that_cannot_start_raises_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        run(["/nonexistent/gpg"])


# ---------------------------------------------------------------------- gpg itself


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """16 MiB of zeros in an OpenPGP compressed literal packet: about 16 KB."""
    home = gpgkit.new_home()
    armored = gpgkit.gpg(
        home, "--store", "--compress-algo", "zlib", "--armor", data=bytes(16 * MiB)
    ).stdout
    assert len(armored) < 100_000
    return armored


def gpg_command(home: Path) -> list[str]:
    return ["gpg", "--homedir", str(home), "--batch", "--status-fd", "2", "--decrypt"]


@pytest.mark.usefixtures("clean")
def test_gpg_unpacking_a_compression_bomb_is_stopped_at_the_cap(bomb: bytes) -> None:
    home = gpgkit.new_home()
    with pytest.raises(OutputLimitExceeded) as raised:
        run(gpg_command(home), (bomb,), max_stdout=MiB)
    assert raised.value.stream == "stdout"
    done = run(gpg_command(home), (bomb,), max_stdout=16 * MiB)
    assert (len(done.stdout), done.returncode) == (16 * MiB, 0)
    assert b"[GNUPG:] PLAINTEXT" in done.stderr


@pytest.mark.usefixtures("clean")
def test_gpg_refusing_garbage_reports_on_stderr() -> None:
    home = gpgkit.new_home()
    done = run(gpg_command(home), (b"not OpenPGP\n" * 400_000,))
    assert done.stdout == b""
    assert done.returncode == 2
    assert b"no valid OpenPGP data found" in done.stderr


@pytest.mark.usefixtures("clean")
def test_stderr_far_past_its_cap_while_stdout_stays_open() -> None:
    """MiBs on stderr with stdout still open: nothing blocks on an unread pipe, the file stops
    growing past its margin, and the cap is reported once the process is done."""
    script = "head -c 5000000 /dev/zero >&2; echo out"
    with pytest.raises(OutputLimitExceeded) as raised:
        run(["sh", "-c", script], max_stderr=5000)
    assert (raised.value.stream, raised.value.limit) == ("stderr", 5000)
    done = run(["sh", "-c", "head -c 5001 /dev/zero >&2; exec 1>&-; sleep 0.1"], max_stderr=5001)
    assert done == Finished(b"", bytes(5001), 0)

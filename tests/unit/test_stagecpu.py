"""StageCpu counts the CPU of the thread inside the block, not time spent waiting for others."""

from __future__ import annotations

import hashlib
import threading
import time

from gateway.core.stagecpu import DESK, INTAKE, STAGES, StageCpu


def burn(seconds: float) -> None:
    """Use this thread's CPU for at least ``seconds``."""
    start = time.thread_time()
    digest = b""
    while time.thread_time() - start < seconds:
        digest = hashlib.sha256(digest).digest()


def test_a_stage_counts_the_cpu_of_its_block() -> None:
    cpu = StageCpu()
    with cpu.timing(INTAKE):
        burn(0.05)
    seconds, count = cpu.snapshot()[INTAKE]
    assert seconds >= 0.05
    assert count == 1
    assert cpu.snapshot()[DESK] == (0.0, 0)


def test_waiting_for_another_thread_is_not_counted() -> None:
    cpu = StageCpu()
    other = threading.Thread(target=burn, args=(0.2,))
    with cpu.timing(DESK, count=3):
        other.start()
        other.join()
    seconds, count = cpu.snapshot()[DESK]
    assert seconds < 0.1
    assert count == 3


def test_stages_added_from_many_threads_sum_up() -> None:
    cpu = StageCpu()

    def work() -> None:
        for _ in range(100):
            cpu.add(INTAKE, 0.001)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, count = cpu.snapshot()[INTAKE]
    assert count == 800
    assert abs(seconds - 0.8) < 1e-9
    assert set(cpu.snapshot()) == set(STAGES)


def test_a_failing_block_is_counted_too() -> None:
    cpu = StageCpu()
    try:
        with cpu.timing(INTAKE):
            burn(0.01)
            raise ValueError("refused")
    except ValueError:
        pass
    assert cpu.snapshot()[INTAKE][1] == 1

"""The durable spool on a real filesystem: round trips, claims, retries, crashes and a full disk."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import StorageFull, StoreUnavailable
from gateway.store import spool as spool_module
from gateway.store.spool import FOLDERS, Recovery, Spool, SpoolItem


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_folders_are_created_private(tmp_path: Path) -> None:
    root = tmp_path / "a" / "spool"
    Spool(root)
    for folder in (root, *(root / name for name in FOLDERS)):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    Spool(root)  # opening an existing spool is fine


def test_round_trip(spool: Spool) -> None:
    payload = b"From: a@b\r\n\r\nbody\nwith \x00 binary \xff and no final newline"
    item = spool.put("ref-1.eml", payload, {"partner": "DE", "size": len(payload)})
    assert item == SpoolItem("ref-1.eml", spool.new / "ref-1.eml.msg", item.meta)
    assert item.meta == {"partner": "DE", "size": len(payload)}
    assert item.payload() == payload
    assert names(spool.new) == ["ref-1.eml.msg"]
    assert names(spool.tmp) == []
    assert stat.S_IMODE(item.path.stat().st_mode) == 0o600
    got = spool.get("ref-1.eml")
    assert (got.key, got.path, got.meta, got.payload()) == (item.key, item.path, item.meta, payload)


def test_empty_payload(spool: Spool) -> None:
    assert spool.put("empty", b"", {}).payload() == b""
    assert spool.get("empty").meta == {}


def test_file_format_is_one_compact_json_line_then_payload(spool: Spool) -> None:
    meta = {
        "partner": "Zürich, Ελλάδα, 東京 ✉",
        "note": "two\nlines",
        "nested": {"list": [1, 2.5, None]},
    }
    item = spool.put("k", b"\n\npayload", meta)
    raw = item.path.read_bytes()
    line, rest = raw.split(b"\n", 1)
    assert line == json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
    assert "Zürich, Ελλάδα, 東京 ✉".encode() in line  # UTF-8, not \u escapes
    assert rest == b"\n\npayload"
    assert spool.get("k").meta == meta


@pytest.mark.parametrize("key", ["../x", "", "x" * 65, "a/b", ".", "..", "a b", "é", "k\n", "/abs"])
def test_bad_keys_are_refused(spool: Spool, key: str) -> None:
    with pytest.raises(ValueError, match="bad spool key"):
        spool.put(key, b"x", {})
    with pytest.raises(ValueError, match="bad spool key"):
        spool.get(key)
    assert names(spool.new) == names(spool.tmp) == []
    assert sorted(p.name for p in spool.root.parent.iterdir()) == ["spool"]


def test_longest_key_is_accepted(spool: Spool) -> None:
    key = "A-z_0.9" + "x" * 57
    assert len(key) == 64
    assert spool.put(key, b"x", {}).key == key


@pytest.mark.parametrize("meta", [{1: "int key"}, {"x": object()}, {"x": float("nan")}])
def test_metadata_must_be_json_with_str_keys(spool: Spool, meta: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        spool.put("k", b"x", meta)
    assert names(spool.tmp) == names(spool.new) == []


def test_duplicate_key_is_refused_in_new_cur_and_done(spool: Spool) -> None:
    spool.put("dup", b"one", {})
    with pytest.raises(FileExistsError):
        spool.put("dup", b"two", {})
    item = spool.claim()
    assert item is not None
    with pytest.raises(FileExistsError):
        spool.put("dup", b"two", {})
    spool.finish(item)
    with pytest.raises(FileExistsError):
        spool.put("dup", b"two", {})
    assert spool.get("dup").payload() == b"one"
    assert names(spool.tmp) == []


def test_claim_takes_the_oldest_by_mtime_then_name(spool: Spool) -> None:
    for key, mtime in [("c", 100), ("b", 300), ("a", 300), ("d", 200)]:
        put = spool.put(key, key.encode(), {})
        os.utime(put.path, ns=(mtime * 10**9, mtime * 10**9))
    order = []
    while (item := spool.claim()) is not None:
        assert item.path == spool.cur / f"{item.key}.msg"
        assert item.payload() == item.key.encode()
        order.append(item.key)
    assert order == ["c", "d", "a", "b"]
    assert spool.claim() is None
    assert names(spool.cur) == ["a.msg", "b.msg", "c.msg", "d.msg"]


def test_two_claimers_never_get_the_same_item(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spools = [Spool(root), Spool(root)]
    keys = {f"item-{i:03d}" for i in range(200)}
    for key in sorted(keys):
        spools[0].put(key, key.encode(), {"key": key})
    start = threading.Barrier(4)

    def worker(spool: Spool) -> list[str]:
        start.wait()
        got = []
        while (item := spool.claim()) is not None:
            assert item.payload() == item.key.encode()
            spool.finish(item)  # fails if another worker moved the same file
            got.append(item.key)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = [f.result() for f in [pool.submit(worker, spools[i % 2]) for i in range(4)]]
    claimed = [key for got in results for key in got]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == keys
    assert names(spools[0].new) == names(spools[0].cur) == []
    assert len(names(spools[0].done)) == 200


def test_finish_keeps_the_item_in_done_until_purged(spool: Spool) -> None:
    spool.put("k", b"proof", {"a": 1})
    item = spool.claim()
    assert item is not None
    done = spool.finish(item)
    assert done.path == spool.done / "k.msg"
    assert done.payload() == b"proof"
    assert spool.get("k").path == done.path
    assert spool.claim() is None
    assert spool.purge("k") is True
    assert spool.purge("k") is False
    with pytest.raises(KeyError):
        spool.get("k")


def test_purge_only_touches_done(spool: Spool) -> None:
    spool.put("waiting", b"x", {})
    assert spool.purge("waiting") is False
    assert spool.get("waiting").payload() == b"x"


def test_finish_and_defer_want_a_claimed_item(spool: Spool) -> None:
    item = spool.put("k", b"x", {})
    with pytest.raises(ValueError, match="not a claimed item"):
        spool.finish(item)
    with pytest.raises(ValueError, match="not a claimed item"):
        spool.defer(item, "nope")


def test_defer_then_quarantine_after_max_attempts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_attempts=3)
    spool.put("k", b"payload", {"partner": "FR"})
    for attempt in (1, 2):
        item = spool.claim()
        assert item is not None
        inode = item.path.stat().st_ino
        assert spool.defer(item, f"421 try later #{attempt}") is True
        again = spool.get("k")
        assert again.path == spool.new / "k.msg"
        assert again.path.stat().st_ino != inode  # rewritten as a new file, never in place
        assert again.meta == {
            "partner": "FR",
            "attempts": attempt,
            "last_error": f"421 try later #{attempt}",
        }
        assert again.payload() == b"payload"
        assert names(spool.cur) == names(spool.tmp) == []
    item = spool.claim()
    assert item is not None
    assert spool.defer(item, "421 still down") is False
    assert names(spool.new) == names(spool.cur) == names(spool.tmp) == []
    assert names(spool.quarantine) == ["k.msg"]
    raw = (spool.quarantine / "k.msg").read_bytes()
    meta = json.loads(raw.split(b"\n", 1)[0])
    assert meta["attempts"] == 3
    assert meta["last_error"] == "421 still down"
    assert raw.endswith(b"\npayload")
    assert spool.claim() is None
    with pytest.raises(KeyError):
        spool.get("k")


def test_deferred_item_goes_behind_the_others(spool: Spool) -> None:
    for key in ("a", "b"):
        item = spool.put(key, b"", {})
        os.utime(item.path, ns=(10**9, 10**9))
    first = spool.claim()
    assert first is not None
    assert first.key == "a"
    spool.defer(first, "later")
    second = spool.claim()
    assert second is not None
    assert second.key == "b"


def test_recover_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    before = Spool(root, max_attempts=2)
    for key in ("a", "b", "c"):
        before.put(key, key.encode(), {})
    claimed = [before.claim() for _ in range(3)]
    assert [item.key for item in claimed if item] == ["a", "b", "c"]
    b = claimed[1]
    assert b is not None
    assert before.defer(b, "first try failed") is True
    b = before.claim()
    assert b is not None
    assert b.meta["attempts"] == 1  # b is claimed again, its next failure is its last
    (root / "tmp" / "half.msg.123.abcd").write_bytes(b'{"x":1}\nhalf a messa')
    (root / "cur" / "garbage.msg").write_bytes(b"not json")
    # the process dies here; a new one starts
    after = Spool(root, max_attempts=2)
    report = after.recover()
    assert (report.requeued, report.quarantined, report.stale_tmp) == (2, 2, 1)
    assert names(after.tmp) == names(after.cur) == []
    assert names(after.quarantine) == ["b.msg", "garbage.msg"]
    assert names(after.new) == ["a.msg", "c.msg"]
    recovered = after.get("a")
    assert recovered.meta["attempts"] == 1
    assert recovered.payload() == b"a"
    assert after.recover() == Recovery(0, 0, 0)


def test_claim_quarantines_an_unreadable_item(spool: Spool) -> None:
    (spool.new / "bad.msg").write_bytes(b"[1, 2]\npayload")
    os.utime(spool.new / "bad.msg", ns=(0, 0))
    (spool.new / "ignored.tmp").write_bytes(b"not an item")
    spool.put("good", b"ok", {})
    item = spool.claim()
    assert item is not None
    assert item.key == "good"
    assert names(spool.quarantine) == ["bad.msg"]
    assert spool.claim() is None


# Failures injected into the system calls the spool makes.


def failing(
    call: Callable[..., Any], code: int, *, on_dir: bool | None = None
) -> Callable[..., Any]:
    """Wrap an fd-taking os call so it raises OSError(code) (only for dirs or files if on_dir)."""

    def fail(fd: int, *args: Any) -> Any:
        if on_dir is None or stat.S_ISDIR(os.fstat(fd).st_mode) == on_dir:
            raise OSError(code, os.strerror(code))
        return call(fd, *args)

    return fail


def assert_nothing_stored(spool: Spool) -> None:
    assert names(spool.tmp) == names(spool.new) == names(spool.cur) == []


@pytest.mark.parametrize(
    "case",
    [
        ("write", errno.ENOSPC, None, StorageFull),
        ("write", errno.EDQUOT, None, StorageFull),
        ("fsync", errno.ENOSPC, False, StorageFull),
        ("fsync", errno.EIO, False, StoreUnavailable),
        ("fsync", errno.EIO, True, StoreUnavailable),  # the new/ directory: item already renamed
        ("write", errno.EIO, None, StoreUnavailable),
    ],
)
def test_a_failed_put_leaves_nothing(
    spool: Spool,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, int, bool | None, type[StoreUnavailable]],
) -> None:
    call, code, on_dir, error = case
    monkeypatch.setattr(os, call, failing(getattr(os, call), code, on_dir=on_dir))
    with pytest.raises(error) as raised:
        spool.put("k", b"x" * 100_000, {"a": 1})
    assert type(raised.value) is error
    assert isinstance(raised.value.__cause__, OSError)
    assert raised.value.__cause__.errno == code
    monkeypatch.undo()
    assert_nothing_stored(spool)
    assert spool.put("k", b"again", {}).payload() == b"again"  # a new file, a new chance


def test_a_failed_rename_is_mapped_too(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    def rename(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(StorageFull):
        spool.put("k", b"x", {})
    monkeypatch.undo()
    assert_nothing_stored(spool)


def test_a_failed_fsync_is_never_retried(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fsync(fd: int) -> None:
        calls.append(os.fstat(fd).st_ino)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(StoreUnavailable):
        spool.put("k", b"x", {})
    assert len(calls) == 1
    monkeypatch.undo()
    assert_nothing_stored(spool)


def test_partial_writes_are_completed(spool: Spool, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data)[:7])

    monkeypatch.setattr(os, "write", short_write)
    payload = bytes(range(256)) * 10
    item = spool.put("k", payload, {"n": 1})
    monkeypatch.undo()
    assert item.payload() == payload


# A real full disk: a 256 KiB tmpfs.


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_gives_storage_full_and_no_half_item(tiny_disk: Path) -> None:
    spool = Spool(tiny_disk / "spool")
    sizes = {}
    with pytest.raises(StorageFull):
        for i in range(1000):
            size = 7_000 + 1_234 * (i % 5)  # never a whole number of pages
            key = f"m{i:04d}"
            spool.put(key, bytes([i % 256]) * size, {"size": size})
            sizes[key] = size
    assert 5 < len(sizes) < 100
    assert names(spool.tmp) == []
    stored = names(spool.new)
    assert stored == sorted(f"{key}.msg" for key in sizes)
    for name in stored:
        found = spool.get(name.removesuffix(".msg"))
        assert len(found.payload()) == found.meta["size"] == sizes[found.key]
    # Free space: hand some items off and purge them, as the retention purge would.
    for _ in range(3):
        item = spool.claim()
        assert item is not None
        spool.finish(item)
        assert spool.purge(item.key)
    after = spool.put("after", b"y" * 7_000, {"size": 7_000})
    assert after.payload() == b"y" * 7_000
    assert names(spool.tmp) == []


# waiting, claim_key and reschedule: for a consumer (outbound delivery) that keeps its own schedule.


def test_waiting_lists_new_oldest_first_without_moving(spool: Spool) -> None:
    for key, mtime in [("c", 100), ("b", 300), ("a", 300), ("d", 200)]:
        put = spool.put(key, key.encode() * 1000, {"key": key})
        os.utime(put.path, ns=(mtime * 10**9, mtime * 10**9))
    claimed = spool.claim_key("d")
    assert claimed is not None
    (spool.new / "bad.msg").write_bytes(b"no metadata line")
    (spool.new / "other.tmp").write_bytes(b"not an item")
    waiting = spool.waiting()
    assert [(item.key, item.meta) for item in waiting] == [
        ("c", {"key": "c"}),
        ("a", {"key": "a"}),
        ("b", {"key": "b"}),
    ]
    assert [item.path for item in waiting] == [spool.new / f"{k}.msg" for k in "cab"]
    assert names(spool.new) == ["a.msg", "b.msg", "bad.msg", "c.msg", "other.tmp"]
    assert names(spool.cur) == ["d.msg"]


def test_waiting_reads_only_the_metadata_line(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.put("big", b"x" * (4 << 20), {"n": 1})
    real_open = Path.open
    reads: list[int] = []

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        file = real_open(self, *args, **kwargs)
        real_read = file.read

        def read(size: int = -1) -> Any:
            reads.append(size)
            return real_read(size)

        file.read = read
        return file

    monkeypatch.setattr(Path, "open", counting_open)
    assert [item.meta for item in spool.waiting()] == [{"n": 1}]
    assert reads == []  # readline() only, never the 4 MiB payload


def test_claim_key_takes_that_item_once(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    first, second = Spool(root), Spool(root)
    first.put("a", b"A", {"to": "x"})
    first.put("b", b"B", {})
    item = first.claim_key("a")
    assert item is not None
    assert (item.key, item.path, item.meta, item.payload()) == (
        "a",
        first.cur / "a.msg",
        {"to": "x"},
        b"A",
    )
    assert second.claim_key("a") is None  # claimed: not in new/
    assert second.claim_key("missing") is None
    assert names(first.new) == ["b.msg"]
    first.finish(item)
    assert first.claim_key("a") is None  # done: not in new/ either
    with pytest.raises(ValueError, match="bad spool key"):
        first.claim_key("../b")


def test_claim_key_races_have_one_winner(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spools = [Spool(root) for _ in range(4)]
    keys = [f"item-{i:03d}" for i in range(100)]
    for key in keys:
        spools[0].put(key, key.encode(), {})
    start = threading.Barrier(4)

    def worker(spool: Spool) -> list[str]:
        start.wait()
        got = []
        for key in keys:
            item = spool.claim_key(key)
            if item is not None:
                spool.finish(item)  # fails if another worker moved the same file
                got.append(key)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, spools))
    claimed = [key for got in results for key in got]
    assert sorted(claimed) == keys


def test_claim_key_quarantines_an_unreadable_item(spool: Spool) -> None:
    (spool.new / "bad.msg").write_bytes(b"[1]\npayload")
    assert spool.claim_key("bad") is None
    assert names(spool.quarantine) == ["bad.msg"]
    assert names(spool.new) == names(spool.cur) == []


def test_reschedule_rewrites_the_metadata_without_counting(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_attempts=1)
    spool.put("k", b"payload\r\n", {"to": "a@b", "attempts": 7})
    for round_ in range(3):
        item = spool.claim_key("k")
        assert item is not None
        inode = item.path.stat().st_ino
        spool.reschedule(item, {**item.meta, "not_before": f"2026-01-0{round_ + 1}T00:00:00Z"})
        again = spool.get("k")
        assert again.path == spool.new / "k.msg"
        assert again.path.stat().st_ino != inode  # a new file, never edited in place
        assert again.meta == {
            "to": "a@b",
            "attempts": 7,  # reschedule counts nothing: max_attempts=1 does not quarantine
            "not_before": f"2026-01-0{round_ + 1}T00:00:00Z",
        }
        assert again.payload() == b"payload\r\n"
        assert names(spool.cur) == names(spool.tmp) == names(spool.quarantine) == []


def test_reschedule_wants_a_claimed_item_and_json(spool: Spool) -> None:
    item = spool.put("k", b"x", {})
    with pytest.raises(ValueError, match="not a claimed item"):
        spool.reschedule(item, {})
    claimed = spool.claim_key("k")
    assert claimed is not None
    with pytest.raises(TypeError):
        spool.reschedule(claimed, {"bad": float("nan")})
    assert names(spool.cur) == ["k.msg"]  # still claimed, untouched
    assert claimed.payload() == b"x"
    assert names(spool.tmp) == []


def test_a_failed_reschedule_leaves_the_claimed_item(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.put("k", b"payload", {"a": 1})
    item = spool.claim_key("k")
    assert item is not None
    monkeypatch.setattr(os, "fsync", failing(os.fsync, errno.ENOSPC, on_dir=False))
    with pytest.raises(StorageFull):
        spool.reschedule(item, {"a": 2})
    monkeypatch.undo()
    assert names(spool.tmp) == names(spool.new) == []
    assert spool.get("k").meta == {"a": 1}  # the old version, still in cur/
    assert spool.get("k").payload() == b"payload"
    spool.release(item)
    assert names(spool.new) == ["k.msg"]


def test_peek_reads_an_unchanged_item_once_and_a_new_version_again(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool.put("a", b"payload", {"n": 1})
    spool.put("b", b"payload", {"n": 2})
    reads: list[str] = []
    original = spool_module._first_line

    def counting(path: str) -> bytes:
        reads.append(Path(path).name)
        return original(path)

    monkeypatch.setattr(spool_module, "_first_line", counting)
    assert [item.meta["n"] for item in spool.peek()] == [1, 2]
    assert [item.meta["n"] for item in spool.peek()] == [1, 2]
    assert sorted(reads) == ["a.msg", "b.msg"]  # the second look read nothing
    item = spool.claim_key("a")
    assert item is not None
    spool.reschedule(item, {"n": 3})
    assert sorted(item.meta["n"] for item in spool.peek()) == [2, 3]
    assert sorted(reads) == ["a.msg", "a.msg", "b.msg"]  # only the new version was read
    spool.peek()[0].meta["n"] = 99  # what a caller does to its copy stays with it
    assert sorted(item.meta["n"] for item in spool.peek()) == [2, 3]

"""The durable spool on a real filesystem: round trips, claims, requeues, set-asides, crashes and a
full disk."""

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
from gateway.store import durable
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


def claim_one(spool: Spool, key: str) -> SpoolItem:
    [item] = spool.claim([key])
    return item


def test_duplicate_key_is_refused_in_new_cur_and_done(spool: Spool) -> None:
    spool.put("dup", b"one", {})
    with pytest.raises(FileExistsError):
        spool.put("dup", b"two", {})
    item = claim_one(spool, "dup")
    with pytest.raises(FileExistsError):
        spool.put("dup", b"two", {})
    assert spool.finish([item]) == []
    with pytest.raises(FileExistsError):
        spool.put("dup", b"two", {})
    assert spool.get("dup").payload() == b"one"
    assert names(spool.tmp) == []


def test_claim_moves_the_keys_asked_and_reads_each_once(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in "abc":
        spool.put(key, key.encode() * 3, {"key": key})
    claimed = spool.claim(["c", "missing", "a"])
    assert [(item.key, item.path, item.meta) for item in claimed] == [
        ("c", spool.cur / "c.msg", {"key": "c"}),
        ("a", spool.cur / "a.msg", {"key": "a"}),
    ]
    monkeypatch.setattr(Path, "open", None)  # payload() must not open the file again
    assert [item.payload() for item in claimed] == [b"ccc", b"aaa"]
    monkeypatch.undo()
    assert spool.claim(["a"]) == []  # claimed: no longer in new/
    assert names(spool.new) == ["b.msg"]
    assert names(spool.cur) == ["a.msg", "c.msg"]
    with pytest.raises(ValueError, match="bad spool key"):
        spool.claim(["../b"])


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
        while waiting := spool.queued():
            for item in spool.claim(key for key, _ in waiting[:3]):
                assert item.payload() == item.key.encode()
                assert spool.finish([item]) == []  # stuck if another worker moved the same file
                got.append(item.key)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = [f.result() for f in [pool.submit(worker, spools[i % 2]) for i in range(4)]]
    claimed = [key for got in results for key in got]
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == keys
    assert names(spools[0].new) == names(spools[0].cur) == []
    assert len(names(spools[0].done)) == 200


def test_finish_keeps_the_item_in_done_until_deleted(spool: Spool) -> None:
    spool.put("k", b"proof", {"a": 1})
    item = claim_one(spool, "k")
    assert spool.finish([item]) == []
    done = spool.get("k")
    assert done.path == spool.done / "k.msg"
    assert (done.meta, done.payload()) == ({"a": 1}, b"proof")
    assert spool.claim(["k"]) == []
    assert spool.exists("k")
    assert spool.delete("k", "done") is True
    assert spool.delete("k", "done") is False
    with pytest.raises(KeyError):
        spool.get("k")
    assert not spool.exists("k")


def test_discard_removes_claimed_items_and_keeps_nothing_in_done(spool: Spool) -> None:
    spool.put("a", b"x", {})
    spool.put("b", b"y", {})
    waiting = spool.put("w", b"z", {})
    claimed = spool.claim(["a", "b"])
    assert spool.discard(claimed) == []
    assert spool.discard([waiting]) == [waiting]  # not claimed: left where it is
    assert names(spool.new) == ["w.msg"]
    for folder in (spool.cur, spool.done, spool.quarantine):
        assert names(folder) == []
    assert not spool.exists("a")
    assert spool.discard(claimed) == claimed  # gone already: reported, nothing else touched


def test_delete_only_touches_the_folders_named(spool: Spool) -> None:
    spool.put("waiting", b"x", {})
    spool.put("claimed", b"x", {})
    spool.put("aside", b"x", {})
    claim_one(spool, "claimed")
    spool.set_aside(claim_one(spool, "aside"), "a test")
    assert spool.delete("waiting", "done") is False
    assert spool.delete("waiting", "quarantine") is False
    assert spool.delete("aside", "queued") is False
    assert spool.delete("aside", "done") is False
    assert names(spool.new) == ["waiting.msg"]
    assert spool.delete("waiting", "queued") is True  # from new/
    assert spool.delete("claimed", "queued") is True  # from cur/: a worker held it
    assert spool.delete("aside", "quarantine") is True
    for folder in (spool.new, spool.cur, spool.done, spool.quarantine):
        assert names(folder) == []


def test_finish_requeue_and_set_aside_want_a_claimed_item(spool: Spool) -> None:
    item = spool.put("k", b"x", {})
    assert spool.finish([item]) == [item]  # not claimed: stuck, and nothing moved
    with pytest.raises(ValueError, match="not a claimed item"):
        spool.requeue(item)
    with pytest.raises(ValueError, match="not a claimed item"):
        spool.requeue(item, {"a": 1})
    with pytest.raises(ValueError, match="not a claimed item"):
        spool.set_aside(item, "nope")
    assert names(spool.new) == ["k.msg"]
    assert names(spool.cur) == names(spool.done) == names(spool.quarantine) == []


def test_the_spool_counts_nothing(spool: Spool) -> None:
    """However often an item is put back, it stays in the queue: retry policies are its owner's."""
    spool.put("k", b"payload", {"attempts": 7})
    for _ in range(20):
        item = claim_one(spool, "k")
        spool.requeue(item)
        item = claim_one(spool, "k")
        spool.requeue(item, item.meta)
    assert spool.get("k").meta == {"attempts": 7}
    assert names(spool.new) == ["k.msg"]
    assert names(spool.quarantine) == []


def test_requeue_untouched_keeps_the_file_and_its_place(spool: Spool) -> None:
    for key in ("a", "b"):
        item = spool.put(key, b"", {"key": key})
        os.utime(item.path, ns=(10**9 * (1 + (key == "b")), 10**9 * (1 + (key == "b"))))
    first = claim_one(spool, "a")
    inode = first.path.stat().st_ino
    back = spool.requeue(first)
    assert back == SpoolItem("a", spool.new / "a.msg", {"key": "a"})
    assert back.path.stat().st_ino == inode  # a rename, no new file
    assert [key for key, _ in spool.queued()] == ["a", "b"]


def test_requeue_with_metadata_goes_behind_the_others(spool: Spool) -> None:
    for key in ("a", "b"):
        item = spool.put(key, b"", {})
        os.utime(item.path, ns=(10**9, 10**9))
    spool.requeue(claim_one(spool, "a"), {"later": True})
    assert [key for key, _ in spool.queued()] == ["b", "a"]


def test_set_aside_moves_to_quarantine_with_the_metadata_given(spool: Spool) -> None:
    spool.put("k", b"payload", {"partner": "FR"})
    spool.put("plain", b"x", {"n": 1})
    item = claim_one(spool, "k")
    inode = item.path.stat().st_ino
    spool.set_aside(item, "421 still down", {**item.meta, "last_error": "421 still down"})
    spool.set_aside(claim_one(spool, "plain"), "no metadata change")
    assert names(spool.new) == names(spool.cur) == names(spool.tmp) == []
    assert names(spool.quarantine) == ["k.msg", "plain.msg"]
    aside = spool.get("k")
    assert aside.path == spool.quarantine / "k.msg"
    assert aside.path.stat().st_ino != inode  # rewritten as a new file, never in place
    assert aside.meta == {"partner": "FR", "last_error": "421 still down"}
    assert aside.payload() == b"payload"
    assert spool.get("plain").meta == {"n": 1}
    assert sorted(item.key for item in spool.quarantined()) == ["k", "plain"]
    assert not spool.exists("k")  # set aside: not held for the queue


def test_unquarantine_puts_an_item_back_with_new_metadata(spool: Spool) -> None:
    spool.put("k", b"payload", {"attempts": 5})
    spool.set_aside(claim_one(spool, "k"), "out of attempts")
    back = spool.unquarantine("k", {"releases": 1})
    assert back == SpoolItem("k", spool.new / "k.msg", {"releases": 1})
    assert spool.get("k").payload() == b"payload"
    assert names(spool.quarantine) == names(spool.cur) == names(spool.tmp) == []
    with pytest.raises(KeyError):
        spool.unquarantine("k", {})  # not quarantined (any more)


def test_get_looks_in_every_folder_and_names_it(spool: Spool) -> None:
    for key in ("new", "cur", "done", "aside"):
        spool.put(key, key.encode(), {"key": key})
    claim_one(spool, "cur")
    spool.finish([claim_one(spool, "done")])
    spool.set_aside(claim_one(spool, "aside"), "a test")
    (spool.quarantine / "bad.msg").write_bytes(b"no metadata line")
    for key, folder in [
        ("new", spool.new),
        ("cur", spool.cur),
        ("done", spool.done),
        ("aside", spool.quarantine),
    ]:
        found = spool.get(key)
        assert (found.path, found.meta, found.payload()) == (
            folder / f"{key}.msg",
            {"key": key},
            key.encode(),
        )
    assert spool.get("bad") == SpoolItem("bad", spool.quarantine / "bad.msg", {})
    with pytest.raises(KeyError):
        spool.get("missing")


def test_recover_after_a_crash_hands_back_what_was_claimed(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    before = Spool(root)
    for key in ("a", "b", "c"):
        before.put(key, key.encode(), {"n": key})
    claimed = before.claim(["a", "b"])
    before.requeue(claimed[1], {"n": "b", "attempts": 4})
    claim_one(before, "b")
    (root / "tmp" / "half.msg.123.abcd").write_bytes(b'{"x":1}\nhalf a messa')
    (root / "cur" / "garbage.msg").write_bytes(b"not json")
    # the process dies here; a new one starts
    after = Spool(root)
    report = after.recover()
    assert (report.unreadable, report.stale_tmp) == (1, 1)
    assert [(item.key, item.path, item.meta) for item in report.interrupted] == [
        ("a", after.cur / "a.msg", {"n": "a"}),
        ("b", after.cur / "b.msg", {"n": "b", "attempts": 4}),  # as they were: nothing counted
    ]
    assert names(after.tmp) == []
    assert names(after.cur) == ["a.msg", "b.msg"]  # still claimed: their owner decides
    assert names(after.quarantine) == ["garbage.msg"]
    assert names(after.new) == ["c.msg"]
    for item in report.interrupted:
        after.requeue(item)
    assert names(after.new) == ["a.msg", "b.msg", "c.msg"]
    assert after.recover() == Recovery((), 0, 0)


def test_claim_quarantines_an_unreadable_item(spool: Spool) -> None:
    (spool.new / "bad.msg").write_bytes(b"[1, 2]\npayload")
    (spool.new / "short.msg").write_bytes(b"no metadata line")
    spool.put("good", b"ok", {})
    assert [item.key for item in spool.claim(["bad", "good", "short"])] == ["good"]
    assert names(spool.quarantine) == ["bad.msg", "short.msg"]
    assert names(spool.new) == []


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
        ("writev", errno.ENOSPC, None, StorageFull),
        ("writev", errno.EDQUOT, None, StorageFull),
        ("fsync", errno.ENOSPC, False, StorageFull),
        ("fsync", errno.EIO, False, StoreUnavailable),
        ("fsync", errno.EIO, True, StoreUnavailable),  # the new/ directory: item already renamed
        ("writev", errno.EIO, None, StoreUnavailable),
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


@pytest.mark.parametrize("taken", [1, 7, 64])
def test_partial_writes_are_completed(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, taken: int
) -> None:
    """The kernel may take less than it is given, within a part or across the header's end."""
    real_write = os.write

    def short_writev(fd: int, buffers: Any) -> int:
        return real_write(fd, b"".join(bytes(buffer) for buffer in buffers)[:taken])

    monkeypatch.setattr(os, "writev", short_writev)
    payload = bytes(range(256)) * 10
    item = spool.put("k", payload, {"n": 1})
    monkeypatch.undo()
    assert item.payload() == payload
    assert spool.get("k").meta == {"n": 1}


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
    for key, _ in spool.queued()[:3]:
        item = claim_one(spool, key)
        assert spool.finish([item]) == []
        assert spool.delete(item.key, "done")
    after = spool.put("after", b"y" * 7_000, {"size": 7_000})
    assert after.payload() == b"y" * 7_000
    assert names(spool.tmp) == []


# waiting: the queue looked at without moving anything.


def test_waiting_lists_new_oldest_first_without_moving(spool: Spool) -> None:
    for key, mtime in [("c", 100), ("b", 300), ("a", 300), ("d", 200)]:
        put = spool.put(key, key.encode() * 1000, {"key": key})
        os.utime(put.path, ns=(mtime * 10**9, mtime * 10**9))
    claim_one(spool, "d")
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
    real_read = os.read
    read: list[int] = []

    def counting_read(fd: int, size: int) -> bytes:
        data = real_read(fd, size)
        read.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    assert [item.meta for item in spool.waiting()] == [{"n": 1}]
    assert 0 < sum(read) <= 4096  # the first block, never the 4 MiB payload


def test_claim_races_have_one_winner(tmp_path: Path) -> None:
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
            for item in spool.claim([key]):
                assert spool.finish([item]) == []  # stuck if another worker moved the same file
                got.append(key)
        return got

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, spools))
    claimed = [key for got in results for key in got]
    assert sorted(claimed) == keys


def test_requeue_rewrites_the_metadata_as_a_new_file(spool: Spool) -> None:
    spool.put("k", b"payload\r\n", {"to": "a@b", "attempts": 7})
    for round_ in range(3):
        item = claim_one(spool, "k")
        inode = item.path.stat().st_ino
        meta = {**item.meta, "not_before": f"2026-01-0{round_ + 1}T00:00:00Z"}
        assert spool.requeue(item, meta) == SpoolItem("k", spool.new / "k.msg", meta)
        again = spool.get("k")
        assert again.path == spool.new / "k.msg"
        assert again.path.stat().st_ino != inode  # a new file, never edited in place
        assert again.meta == meta
        assert again.payload() == b"payload\r\n"
        assert names(spool.cur) == names(spool.tmp) == names(spool.quarantine) == []


def test_requeue_wants_json(spool: Spool) -> None:
    spool.put("k", b"x", {})
    claimed = claim_one(spool, "k")
    with pytest.raises(TypeError):
        spool.requeue(claimed, {"bad": float("nan")})
    assert names(spool.cur) == ["k.msg"]  # still claimed, untouched
    assert claimed.payload() == b"x"
    assert names(spool.tmp) == []


@pytest.mark.parametrize("action", ["requeue", "set_aside"])
def test_a_failed_rewrite_leaves_the_claimed_item(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    spool.put("k", b"payload", {"a": 1})
    item = claim_one(spool, "k")
    monkeypatch.setattr(os, "fsync", failing(os.fsync, errno.ENOSPC, on_dir=False))
    with pytest.raises(StorageFull):
        if action == "requeue":
            spool.requeue(item, {"a": 2})
        else:
            spool.set_aside(item, "a test", {"a": 2})
    monkeypatch.undo()
    assert names(spool.tmp) == names(spool.new) == names(spool.quarantine) == []
    assert spool.get("k").meta == {"a": 1}  # the old version, still in cur/
    assert spool.get("k").payload() == b"payload"
    spool.requeue(item)  # a rename: what a full disk still allows
    assert names(spool.new) == ["k.msg"]


def test_waiting_reads_an_unchanged_item_once_and_a_new_version_again(
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
    assert [item.meta["n"] for item in spool.waiting()] == [1, 2]
    assert [item.meta["n"] for item in spool.waiting()] == [1, 2]
    assert sorted(reads) == ["a.msg", "b.msg"]  # the second look read nothing
    item = claim_one(spool, "a")
    spool.requeue(item, {"n": 3})
    assert sorted(item.meta["n"] for item in spool.waiting()) == [2, 3]
    assert sorted(reads) == ["a.msg", "a.msg", "b.msg"]  # only the new version was read
    spool.waiting()[0].meta["n"] = 99  # what a caller does to its copy stays with it
    assert sorted(item.meta["n"] for item in spool.waiting()) == [2, 3]


@pytest.mark.parametrize(("sync_cur", "synced"), [(True, ["done", "cur"]), (False, ["done"])])
def test_finish_syncs_done_once_and_cur_unless_told(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, sync_cur: bool, synced: list[str]
) -> None:
    for key in ("a", "b", "c"):
        spool.put(key, b"x", {})
    items = spool.claim(["a", "b", "c"])
    calls: list[str] = []
    real = durable.fsync_dir

    def recording(path: Path) -> None:
        calls.append(Path(path).name)
        real(path)

    monkeypatch.setattr(spool_module, "fsync_dir", recording)
    assert spool.finish(items, sync_cur=sync_cur) == []
    assert calls == synced
    assert names(spool.done) == ["a.msg", "b.msg", "c.msg"]


def test_put_returns_the_metadata_as_a_later_read_gives_it(spool: Spool) -> None:
    item = spool.put("k", b"x", {"n": 1, "list": (1, "a"), "nested": {"b": None}})
    assert item.meta == {"n": 1, "list": [1, "a"], "nested": {"b": None}}
    assert item.meta == spool.get("k").meta
    plain = {"s": "é", "f": 1.5, "t": True}
    again = spool.put("plain", b"x", plain)
    assert again.meta == spool.get("plain").meta == plain
    assert again.meta is not plain


def test_put_many_writes_each_and_syncs_new_once(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = durable.fsync_dir

    def recording(path: Path) -> None:
        calls.append(Path(path).name)
        real(path)

    monkeypatch.setattr(spool_module, "fsync_dir", recording)
    items = spool.put_many([("a", b"1", {"n": 1}), ("b", b"22", {"n": (2,)}), ("c", b"", {})])
    assert calls == ["new"]
    assert [item.key for item in items] == ["a", "b", "c"]
    assert [item.payload() for item in items] == [b"1", b"22", b""]
    assert [item.meta for item in items] == [spool.get(key).meta for key in "abc"]
    assert items[1].meta == {"n": [2]}
    assert names(spool.new) == ["a.msg", "b.msg", "c.msg"]
    assert spool.put_many([]) == []


@pytest.mark.parametrize("group", [64, 2])
def test_put_many_writes_a_group_before_syncing_and_syncs_each_before_its_rename(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, group: int
) -> None:
    """The files of a group are all written, then all synced, then all renamed into new/ (their
    syncs then share the file system's commits); each is synced before its rename, new/ last."""
    calls: list[str] = []
    real = {call: getattr(os, call) for call in ("writev", "fsync", "rename")}
    for call in ("writev", "fsync", "rename"):

        def recording(*args: Any, _call: str = call) -> Any:
            if _call == "fsync" and stat.S_ISDIR(os.fstat(args[0]).st_mode):
                calls.append("sync new/")
            else:
                calls.append(_call)
            return real[_call](*args)

        monkeypatch.setattr(os, call, recording)
    monkeypatch.setattr(spool_module, "SYNC_GROUP", group)
    spool.put_many([(key, b"x", {}) for key in "abcd"])
    monkeypatch.undo()
    if group == 64:
        assert calls == ["writev"] * 4 + ["fsync"] * 4 + ["rename"] * 4 + ["sync new/"]
    else:
        assert calls == (["writev"] * 2 + ["fsync"] * 2 + ["rename"] * 2) * 2 + ["sync new/"]
    assert names(spool.new) == ["a.msg", "b.msg", "c.msg", "d.msg"]
    assert names(spool.tmp) == []


@pytest.mark.parametrize(("call", "on_dir"), [("writev", None), ("fsync", False), ("fsync", True)])
def test_put_many_failing_midway_stores_none(
    spool: Spool, monkeypatch: pytest.MonkeyPatch, call: str, on_dir: bool | None
) -> None:
    real = getattr(os, call)
    seen: list[int] = []

    def third_fails(fd: int, *args: Any) -> Any:
        if on_dir is None or stat.S_ISDIR(os.fstat(fd).st_mode) == on_dir:
            seen.append(fd)
            if on_dir or len(seen) == 3:  # the third file, or the one sync of new/
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    monkeypatch.setattr(os, call, third_fails)
    with pytest.raises(StorageFull):
        spool.put_many([(key, b"x" * 1000, {"k": key}) for key in "abcd"])
    monkeypatch.undo()
    assert_nothing_stored(spool)
    assert len(spool.put_many([(key, b"y", {}) for key in "abcd"])) == 4  # new files, new chance


def test_put_many_refuses_a_key_held_or_given_twice_before_writing(spool: Spool) -> None:
    spool.put("b", b"first", {})
    with pytest.raises(FileExistsError, match="already spooled in new/"):
        spool.put_many([("a", b"x", {}), ("b", b"x", {})])
    with pytest.raises(ValueError, match="given twice"):
        spool.put_many([("c", b"x", {}), ("c", b"y", {})])
    with pytest.raises(ValueError, match="bad spool key"):
        spool.put_many([("d", b"x", {}), ("../e", b"y", {})])
    assert names(spool.new) == ["b.msg"]
    assert names(spool.tmp) == []
    assert spool.get("b").payload() == b"first"

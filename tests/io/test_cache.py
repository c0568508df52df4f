"""The converted-weight cache: listing, least-recently-used eviction under the size cap (never the entry just
written), clearing by age, and concurrent writers/readers that never see a half file.
(Round trip and damaged entries: tests/io/test_gguf.py.)"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from lmforge.errors import ConfigError
from lmforge.io import cache

DAY = 86400.0


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.delenv(cache.MAX_GB_ENV, raising=False)
    return tmp_path / "c"


def _maker(seed: int, n: int = 4096, source: str = "src.gguf"):
    calls = []

    def make():
        calls.append(1)
        g = torch.Generator().manual_seed(seed)
        return {"w": torch.randn(n, generator=g)}, {"source": source}

    return make, calls


def _age(key: str, days: float) -> None:
    """Pretend the entry was last used ``days`` days ago."""
    path = cache.entry_path(key)
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp))


def _keys() -> list[str]:
    return [e.key for e in cache.list_entries()]


def test_list_entries_sizes_sources_and_order(root):
    for i, key in enumerate(["a", "b", "c"]):
        cache.cached(key, _maker(i, source=f"/models/{key}.gguf")[0])
    _age("a", 1), _age("b", 3), _age("c", 2)
    entries = cache.list_entries()
    assert [e.key for e in entries] == ["b", "c", "a"]  # least recently used first
    for e in entries:
        assert e.size == e.path.stat().st_size > 4096 * 4
        assert e.source == f"/models/{e.key}.gguf" and e.kind == "gguf"
    (root / "gguf" / ".a.safetensors.xyz.tmp").write_bytes(b"half")  # a write in progress is not an entry
    assert _keys() == ["b", "c", "a"]


def test_hit_marks_the_entry_used(root):
    make, calls = _maker(0)
    cache.cached("k", make)
    _age("k", 5)
    cache.cached("k", make)
    assert len(calls) == 1
    assert time.time() - cache.list_entries()[0].last_used < DAY


def test_write_evicts_least_recently_used_down_to_the_cap(root, monkeypatch):
    for i, key in enumerate(["a", "b", "c"]):
        cache.cached(key, _maker(i)[0])
    size = cache.list_entries()[0].size
    _age("a", 3), _age("b", 2), _age("c", 1)
    cache.cached("a", _maker(0)[0])  # a hit: "a" is now the most recently used
    monkeypatch.setenv(cache.MAX_GB_ENV, str(2.5 * size / 1e9))  # room for two entries
    cache.cached("d", _maker(3)[0])
    assert _keys() == ["a", "d"]  # b and c were the least recently used


def test_entry_just_written_is_kept_even_over_the_cap(root, monkeypatch):
    cache.cached("old", _maker(0)[0])
    monkeypatch.setenv(cache.MAX_GB_ENV, "0")
    tensors, _ = cache.cached("big", _maker(1, n=20000)[0])
    assert _keys() == ["big"]
    assert torch.equal(cache.read_entry(cache.entry_path("big"))[0]["w"], tensors["w"])


def test_no_cap(root, monkeypatch):
    monkeypatch.setenv(cache.MAX_GB_ENV, "none")
    assert cache.max_cache_bytes() is None
    for i in range(3):
        cache.cached(f"k{i}", _maker(i)[0])
    assert len(_keys()) == 3


@pytest.mark.parametrize(("value", "expected"), [("", int(cache.DEFAULT_MAX_GB * 1e9)), ("1.5", 1_500_000_000),
                                                 ("0", 0), ("OFF", None)])
def test_cap_from_env(value, expected, monkeypatch):
    monkeypatch.setenv(cache.MAX_GB_ENV, value)
    assert cache.max_cache_bytes() == expected


@pytest.mark.parametrize("value", ["lots", "-1", "nan", "inf"])
def test_bad_cap_names_the_variable(value, monkeypatch):
    monkeypatch.setenv(cache.MAX_GB_ENV, value)
    with pytest.raises(ConfigError, match=cache.MAX_GB_ENV):
        cache.max_cache_bytes()


def test_clear_older_than_and_all(root):
    for i, key in enumerate(["new", "week", "month"]):
        cache.cached(key, _maker(i)[0])
    _age("week", 7), _age("month", 31)
    stale_temp = root / "gguf" / ".x.safetensors.abc.tmp"
    fresh_temp = root / "gguf" / ".y.safetensors.def.tmp"
    stale_temp.write_bytes(b"interrupted"), fresh_temp.write_bytes(b"in progress")
    stamp = time.time() - 40 * DAY
    os.utime(stale_temp, (stamp, stamp))
    assert [e.key for e in cache.clear(older_than_days=30)] == ["month"]
    assert sorted(_keys()) == ["new", "week"] and not stale_temp.exists() and fresh_temp.exists()
    assert sorted(e.key for e in cache.clear(older_than_days=2.5)) == ["week"]
    assert [e.key for e in cache.clear()] == ["new"]
    assert _keys() == [] and fresh_temp.exists()  # a write in progress is left alone
    with pytest.raises(ConfigError, match="days"):
        cache.clear(older_than_days=-1)


def test_entry_evicted_under_a_reader_is_a_plain_miss(root, recwarn):
    make, calls = _maker(0)
    cache.cached("k", make)
    cache.entry_path("k").unlink()  # another process evicted it
    cache.cached("k", make)
    assert len(calls) == 2 and not [w for w in recwarn if "cache" in str(w.message)]


def test_concurrent_writers_and_readers_never_see_a_half_file(root, monkeypatch):
    """Four threads make the same entry while two others read it in a loop: every read is a miss or the whole
    entry, no read ever warns about a damaged file, and no temp file is left behind."""
    warned = []
    monkeypatch.setattr(cache.warnings, "warn", lambda message, *a, **k: warned.append(str(message)))
    make, _ = _maker(7, n=200_000)
    expected = make()[0]["w"]
    path = cache.entry_path("shared")
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            entry = cache.read_entry(path)
            seen.append(entry is None or torch.equal(entry[0]["w"], expected))

    def writer():
        for _ in range(3):
            cache.write_entry(path, *make())

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer) for _ in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert seen and all(seen) and warned == []
    assert [p.name for p in path.parent.iterdir()] == ["shared.safetensors"]


WRITER = """
import sys, torch
from lmforge.io import cache
g = torch.Generator().manual_seed(7)
tensors = {"w": torch.randn(300_000, generator=g)}
for _ in range(5):
    cache.write_entry(cache.entry_path("shared"), tensors, {"source": "x.gguf"})
    assert torch.equal(cache.read_entry(cache.entry_path("shared"))[0]["w"], tensors["w"])
"""


def test_two_processes_writing_one_entry_leave_it_whole(root):
    import subprocess
    import sys

    env = {**os.environ, cache.CACHE_ENV: str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    entry = cache.read_entry(cache.entry_path("shared"))
    assert torch.equal(entry[0]["w"], torch.randn(300_000, generator=torch.Generator().manual_seed(7)))
    assert [p.name for p in cache.entry_path("shared").parent.iterdir()] == ["shared.safetensors"]

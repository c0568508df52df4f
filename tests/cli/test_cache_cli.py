"""``lmforge cache list`` / ``lmforge cache clear``: what is listed matches the files on disk, clearing by age
deletes exactly the old entries, and a missing choice is a usage error."""

from __future__ import annotations

import os
import time

import pytest
import torch

from lmforge.cli import main
from lmforge.io import cache

DAY = 86400.0


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setenv(cache.MAX_GB_ENV, "1.5")
    for i, (key, days) in enumerate([("aaaa", 0), ("bbbb", 10), ("cccc", 40)]):
        cache.cached(key, lambda i=i, key=key: ({"w": torch.full((1000,), float(i))}, {"source": f"/m/{key}.gguf"}))
        stamp = time.time() - days * DAY
        os.utime(cache.entry_path(key), (stamp, stamp))
    return tmp_path / "c"


def test_list_shows_every_entry_with_size_and_source(root, capsys):
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    total = sum(e.size for e in cache.list_entries())
    assert out[0].startswith(f"{root}: 3 entries, {total / 1e3:.1f} kB (cap 1.5 GB)")
    rows = out[2:]
    assert [row.split()[-1] for row in rows] == ["/m/cccc.gguf", "/m/bbbb.gguf", "/m/aaaa.gguf"]  # LRU first
    for row, entry in zip(rows, cache.list_entries(), strict=True):
        assert time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.last_used)) in row
        assert f"{entry.size / 1e3:.1f} kB" in row and entry.key in row


def test_clear_older_than_then_all(root, capsys):
    assert main(["cache", "clear", "--older-than", "30"]) == 0
    assert "deleted 1 entry" in capsys.readouterr().out
    assert sorted(e.key for e in cache.list_entries()) == ["aaaa", "bbbb"]
    assert main(["cache", "clear", "--older-than", "5"]) == 0
    assert [e.key for e in cache.list_entries()] == ["aaaa"]
    assert main(["cache", "clear", "--all"]) == 0
    assert "deleted 1 entry" in capsys.readouterr().out.splitlines()[-1]
    assert cache.list_entries() == []
    assert main(["cache", "list"]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_clear_needs_a_choice_and_bad_input_is_one_line(root, capsys, monkeypatch):
    with pytest.raises(SystemExit) as e:
        main(["cache", "clear"])
    assert e.value.code == 2 and "--all" in capsys.readouterr().err
    assert main(["cache", "clear", "--older-than", "-3"]) == 1
    assert "days" in capsys.readouterr().err
    monkeypatch.setenv(cache.MAX_GB_ENV, "much")
    assert main(["cache", "list"]) == 1
    assert cache.MAX_GB_ENV in capsys.readouterr().err
    assert len(cache.list_entries()) == 3  # nothing was deleted by the failed commands

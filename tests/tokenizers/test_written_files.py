"""Files written are byte-identical to what the code before the tokenizer refactor (commit 4fbe978) wrote for the
same tokenizers: every format of every tokenizer in ``written_files.build_tokenizers``, compared by SHA-256 with
``data/written_files.json`` (generated from that commit; see ``written_files.py``)."""

from __future__ import annotations

import json

import pytest

from tests.tokenizers.written_files import DATA, written_digests


@pytest.mark.slow
def test_every_format_writes_the_bytes_the_base_commit_wrote(tmp_path):
    expected = json.loads((DATA / "written_files.json").read_text())
    got = written_digests(tmp_path)
    assert sorted(got) == sorted(expected)
    changed = [k for k in expected if got[k] != expected[k]]
    assert not changed, f"files written differently from the base commit: {changed}"

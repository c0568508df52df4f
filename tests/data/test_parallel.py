"""Parallel text: TSV / aligned files / folders, the deterministic split, the Ding parser on real lines, the
synthetic grammar, and bad input named by file and line."""

# ruff: noqa: E501  (real dictionary lines, verbatim)
from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.data.parallel import (
    DING_PATH,
    Pair,
    ding_pairs,
    read_aligned,
    read_parallel,
    split_pairs,
    synthetic_pairs,
    synthetic_sentence,
)
from lmforge.errors import InputError

# Real lines of the Ding dictionary (Debian trans-de-en), copied verbatim.
DING_LINES = """\
# Version :: devel 2023-01-30
Ankerloch {n} | Ankerlöcher {pl} | Ankerlöcher sind auf der Baustelle zu bohren. :: anchor hole | anchor holes | Anchor holes must be drilled at the building site.
Nervensäge {f}; Quälgeist {m}; Plagegeist {m} [geh.]; Landplage {f} [geh.] | Nervensägen {pl}; Quälgeister {pl}; Plagegeister {pl}; Landplagen {pl} | Mein kleiner Sohn ist manchmal eine Nervensäge. | Er geht mir auf die Nerven. | Du gehst mir auf den Geist/Senkel [Dt.]/Sack [slang]! :: nuisance; pest; pain in the neck | nuisances; pests; pain in the necks | Sometimes my little son is a pain in the neck. | He’s a pain in my neck. | You’re a pain in the neck.; You’re a pain in the arse.
das A und O [ugs.] :: the nuts and bolts [coll.]
"""


def test_ding_parser_on_real_lines(tmp_path):
    path = tmp_path / "de-en"
    path.write_text(DING_LINES, encoding="utf-8")
    pairs = [(p.source, p.target) for p in ding_pairs(path)]
    assert pairs == [
        ("Ankerlöcher sind auf der Baustelle zu bohren.", "Anchor holes must be drilled at the building site."),
        ("Mein kleiner Sohn ist manchmal eine Nervensäge.", "Sometimes my little son is a pain in the neck."),
        ("Er geht mir auf die Nerven.", "He’s a pain in my neck."),
    ]  # the "Geist/Senkel/Sack" column has slashes (alternatives inside a word): not a clean sentence


@pytest.mark.slow
def test_ding_builtin_has_about_19000_sentence_pairs():
    assert DING_PATH.exists(), "Debian's trans-de-en is not installed: run scripts/install_test_deps.sh"
    pairs = ding_pairs()
    assert 18_000 < len(pairs) < 20_000
    assert sum(len(p.source.split()) >= 20 for p in pairs) < 200  # mostly short sentences
    for p in pairs[::500]:
        assert p.source[-1] in ".!?" and p.target[-1] in ".!?" and "{" not in p.source and "[" not in p.target


def test_tsv_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("ein Haus\ta house\nkein Tab hier\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.tsv:2: expected 'source<TAB>target'"):
        read_parallel(bad)
    bad.write_text("ein Haus\ta house\n\t  a cat\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.tsv:2: empty source side"):
        read_parallel(bad)
    bad.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.tsv:1: .* 2 tab"):
        read_parallel(bad)


def test_aligned_files(tmp_path):
    src, tgt = tmp_path / "a.src", tmp_path / "a.tgt"
    src.write_text("eins\nzwei\n\n", encoding="utf-8")
    tgt.write_text("one\ntwo\n\n", encoding="utf-8")
    assert [(p.source, p.target, p.where) for p in read_aligned(src, tgt)] == [
        ("eins", "one", f"{src}:1"), ("zwei", "two", f"{src}:2")]
    assert read_parallel([str(src), str(tgt)]) == read_aligned(src, tgt)
    (tmp_path / "more.tsv").write_text("drei\tthree\n", encoding="utf-8")
    assert [p.target for p in read_parallel(tmp_path)] == ["three", "one", "two"]  # a folder: TSVs, then pairs
    tgt.write_text("one\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.src has 3 lines but .*a\.tgt has 1"):
        read_aligned(src, tgt)
    tgt.write_text("one\n\nthree\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"a\.tgt:2: empty line"):
        read_aligned(src, tgt)


def test_split_is_deterministic_disjoint_and_order_free():
    pairs = synthetic_pairs(3000, seed=1)
    a = split_pairs(pairs)
    b = split_pairs(list(reversed(pairs)))
    assert {k: sorted(v, key=str) for k, v in a.items()} == {k: sorted(v, key=str) for k, v in b.items()}
    train_sources = {p.source for p in a["train"]}
    assert not train_sources & {p.source for p in a["test"]}  # duplicates never straddle the split
    assert 0.03 < len(a["test"]) / len(pairs) < 0.07 and 0.03 < len(a["valid"]) / len(pairs) < 0.07


def test_synthetic_grammar_reorders_and_inflects():
    import random

    pairs = synthetic_pairs(2000)
    lengths = [len(p.source.split()) for p in pairs]
    assert min(lengths) == 3 and max(lengths) == 40
    assert synthetic_pairs(5) == synthetic_pairs(5)  # fixed seed
    src, tgt = synthetic_sentence(random.Random(3), max_words=6)
    # object before verb, adjectives after their noun, case endings: alignment is not monotone
    words = dict(zip(["the", "a"], ["na", ""], strict=True))
    assert src.split()[-1] != tgt.split()[-1] and len(words) == 2
    assert all(isinstance(p, Pair) for p in pairs[:3])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_parallel(tmp_path / "nope.tsv")
    assert Path(tmp_path).exists()

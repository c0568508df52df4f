"""Parallel text: sentence pairs (source, target) for translation.

Inputs: a TSV file (``source<TAB>target`` per line), two aligned files (line ``i`` of one translates line ``i`` of
the other), or a folder (every ``*.tsv`` in it, and every ``NAME.src`` + ``NAME.tgt`` pair). Every pair remembers
where it came from (``file:line``), so a bad line is reported by its place, never dropped silently.

Two built-in data sets need no data of the user's:

- ``"ding"``: German→English sentence pairs from the Ding dictionary that Debian's ``trans-de-en`` package installs;
- ``"synthetic"``: a generated language pair whose target re-orders and inflects the words (see
  :func:`synthetic_pairs`), lengths 3–40 words — the task that shows why attention won.

:func:`split_pairs` makes a deterministic train/valid/test split by hashing the source sentence (duplicates always
land in the same split, and adding pairs never moves the others).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import FormatError, InputError

DING_PATH = Path("/usr/share/trans/de-en")
BUILTIN = ("ding", "synthetic")


@dataclass(frozen=True)
class Pair:
    """One sentence pair and where it came from (``"file:line"`` or a built-in's name)."""

    source: str
    target: str
    where: str


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text ({e})") from None


def read_tsv(path: str | os.PathLike) -> list[Pair]:
    """``source<TAB>target`` lines → pairs. Blank lines are skipped; a line without exactly one tab, or with an
    empty side, is an :class:`InputError` naming ``file:line``."""
    path = Path(path)
    pairs = []
    for n, line in enumerate(_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise InputError(f"{path}:{n}: expected 'source<TAB>target', found {len(parts) - 1} tab(s)")
        src, tgt = parts[0].strip(), parts[1].strip()
        if not src or not tgt:
            raise InputError(f"{path}:{n}: empty {'source' if not src else 'target'} side")
        pairs.append(Pair(src, tgt, f"{path}:{n}"))
    return pairs


def read_aligned(source_path: str | os.PathLike, target_path: str | os.PathLike) -> list[Pair]:
    """Line ``i`` of ``source_path`` with line ``i`` of ``target_path``. Different line counts, or an empty line on
    one side only, are an :class:`InputError` naming the file (and line)."""
    source_path, target_path = Path(source_path), Path(target_path)
    src, tgt = _lines(source_path), _lines(target_path)
    if len(src) != len(tgt):
        raise InputError(f"{source_path} has {len(src)} lines but {target_path} has {len(tgt)}: aligned files must "
                         "have one line per sentence on both sides")
    pairs = []
    for n, (s, t) in enumerate(zip(src, tgt, strict=True), 1):
        s, t = s.strip(), t.strip()
        if not s and not t:
            continue
        if not s or not t:
            raise InputError(f"{source_path if not s else target_path}:{n}: empty line where the other file has a "
                             "sentence")
        pairs.append(Pair(s, t, f"{source_path}:{n}"))
    return pairs


def read_parallel(spec: str | os.PathLike | list) -> list[Pair]:
    """Pairs from ``"ding"``, ``"synthetic"``, a TSV file, a folder, or a list of two aligned files."""
    if isinstance(spec, (list, tuple)):
        if len(spec) == 1:
            return read_parallel(spec[0])
        if len(spec) != 2:
            raise InputError(f"parallel data: expected one TSV file / folder or two aligned files, got {len(spec)}")
        return read_aligned(*spec)
    if str(spec) == "ding":
        return ding_pairs()
    if str(spec) == "synthetic":
        return synthetic_pairs()
    path = Path(spec)
    if path.is_dir():
        pairs: list[Pair] = []
        for tsv in sorted(path.glob("*.tsv")):
            pairs += read_tsv(tsv)
        for src in sorted(path.glob("*.src")):
            tgt = src.with_suffix(".tgt")
            if not tgt.exists():
                raise InputError(f"{src}: no aligned {tgt.name} beside it")
            pairs += read_aligned(src, tgt)
        if not pairs:
            raise InputError(f"{path}: no sentence pairs (expected *.tsv files or NAME.src + NAME.tgt pairs)")
        return pairs
    if not path.exists():
        raise InputError(f"{path}: no such file or folder (expected a TSV file, a folder, 'ding' or 'synthetic')")
    return read_tsv(path)


def split_of(source: str, valid_fraction: float, test_fraction: float) -> str:
    """``"train"``, ``"valid"`` or ``"test"`` for a source sentence, from a hash of its text (stable across runs,
    machines and orderings).

    >>> split_of("Ich habe keine Zeit.", 0.05, 0.05)
    'train'
    """
    u = int.from_bytes(hashlib.sha1(source.encode("utf-8")).digest()[:8], "big") / 2**64
    return "test" if u < test_fraction else "valid" if u < test_fraction + valid_fraction else "train"


def split_pairs(pairs: list[Pair], valid_fraction: float = 0.05, test_fraction: float = 0.05
                ) -> dict[str, list[Pair]]:
    """``{"train": [...], "valid": [...], "test": [...]}`` by :func:`split_of`, keeping the input order."""
    out: dict[str, list[Pair]] = {"train": [], "valid": [], "test": []}
    for p in pairs:
        out[split_of(p.source, valid_fraction, test_fraction)].append(p)
    return out


# ---------------------------------------------------------------- Ding (Debian trans-de-en)

_ANNOTATION = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<[^>]*>")
_SENTENCE_END = (".", "!", "?")
# A cheap first look at a whole line: some column or alternative ends in . ! ? (annotations may follow). Most of
# the dictionary's ~200,000 lines are single words and fail it, so only few lines get the full parse.
_CANDIDATE = re.compile(r"[.!?](?:\s*[\[{<][^\]}>]*[\]}>])*\s*(?:;|\||::|$)")
_ENDS_SENTENCE = re.compile(r"[.!?](?:\s*[\[{<][^\]}>]*[\]}>])*\s*$")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.!?,;:])")


def _clean(text: str) -> str:
    """Drop ``{f}``, ``[Br.]``, ``<...>`` annotations and collapse spaces.

    >>> _clean("Das ist gut [ugs.]  {adj}.")
    'Das ist gut.'
    """
    text = _SPACES.sub(" ", _ANNOTATION.sub("", text)).strip()
    return _SPACE_BEFORE_PUNCT.sub(r"\1", text)


def _is_sentence(text: str) -> bool:
    return len(text.split()) >= 3 and text.endswith(_SENTENCE_END) and "/" not in text and "…" not in text


def ding_pairs(path: str | os.PathLike | None = None) -> list[Pair]:
    """German→English sentence pairs from the Ding dictionary (``de :: en`` lines). Inflection columns (``|``) are
    matched column by column, alternatives (``;``) by position when both sides have as many, else each with each;
    annotations are dropped; pairs of 3+ words on both sides that end in ``.``, ``!`` or ``?`` are kept, once."""
    path = Path(path) if path is not None else DING_PATH
    if not path.exists():
        raise InputError(f"{path}: the Ding dictionary is not installed (apt-get install trans-de-en)")
    seen: set[tuple[str, str]] = set()
    pairs = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.startswith("#") or " :: " not in line or not _CANDIDATE.search(line):
                continue
            de, en = line.rstrip("\n").split(" :: ", 1)
            de_cols, en_cols = de.split(" | "), en.split(" | ")
            if len(de_cols) != len(en_cols):
                continue
            for dc, ec in zip(de_cols, en_cols, strict=True):
                d_alts = [a for a in (_clean(x) for x in dc.split("; ") if _ENDS_SENTENCE.search(x)) if _is_sentence(a)]
                if not d_alts:
                    continue
                e_alts = [a for a in (_clean(x) for x in ec.split("; ") if _ENDS_SENTENCE.search(x)) if _is_sentence(a)]
                if not d_alts or not e_alts:
                    continue
                if len(d_alts) == len(e_alts):
                    combos = list(zip(d_alts, e_alts, strict=True))
                else:
                    combos = [(d, e) for d in d_alts for e in e_alts]
                for d, e in combos:
                    if (d, e) not in seen:
                        seen.add((d, e))
                        pairs.append(Pair(d, e, f"{path}:{n}"))
    return pairs


# ---------------------------------------------------------------- synthetic language pair

_NOUNS = {"dog": "kano", "cat": "miru", "bird": "tavi", "man": "olen", "woman": "sela", "child": "pibu",
          "king": "rodo", "horse": "hesta", "fish": "luma", "farmer": "gavo", "teacher": "nemi", "friend": "ruka"}
_ADJECTIVES = {"big": "tol", "small": "pik", "red": "rud", "old": "vek", "young": "jun", "happy": "fel",
               "black": "nig", "clever": "sag"}
_VERBS = {"sees": "vid", "likes": "am", "follows": "sek", "helps": "jut", "finds": "trov", "calls": "vok",
          "knows": "kon", "feeds": "nut", "watches": "spek", "meets": "ren"}


def _noun_phrase(rng: random.Random, case: str) -> tuple[list[str], list[str]]:
    """Source ``[det] adj* noun`` → target ``noun-CASE adj-CASE* [na]``: the adjectives follow the noun and agree
    in case (subject ``-ka``, object ``-ro``), and the definite article becomes a particle after the phrase."""
    noun = rng.choice(list(_NOUNS))
    adjectives = rng.sample(list(_ADJECTIVES), rng.choice([0, 0, 1, 1, 2]))
    det = rng.choice(["the", "a", ""])
    src = ([det] if det else []) + adjectives + [noun]
    suffix = "ka" if case == "subject" else "ro"
    tgt = [_NOUNS[noun] + suffix] + [_ADJECTIVES[a] + suffix for a in adjectives] + (["na"] if det == "the" else [])
    return src, tgt


def synthetic_sentence(rng: random.Random, min_words: int = 3, max_words: int = 40) -> tuple[str, str]:
    """One source sentence (English words, subject–verb–object clauses joined by ``and``) and its target
    (subject–object–verb, inflected: ``the big dog sees a cat`` → ``kanoka tolka na miruro vidu``)."""
    clauses = rng.choice([1, 1, 2, 2, 3, 4, 5, 6])
    src: list[str] = []
    tgt: list[str] = []
    for i in range(clauses):
        s_src, s_tgt = _noun_phrase(rng, "subject")
        o_src, o_tgt = _noun_phrase(rng, "object")
        verb = rng.choice(list(_VERBS))
        c_src = s_src + [verb] + o_src
        c_tgt = s_tgt + o_tgt + [_VERBS[verb] + ("u" if i % 2 == 0 else "e")]  # verb last; mood alternates
        if src and len(src) + 1 + len(c_src) > max_words:
            break
        if src:
            src.append("and")
            tgt.append("ve")
        src += c_src
        tgt += c_tgt
    if len(src) < min_words:
        return synthetic_sentence(rng, min_words, max_words)
    return " ".join(src), " ".join(tgt)


def synthetic_pairs(n: int = 20000, seed: int = 0, max_words: int = 40) -> list[Pair]:
    """``n`` generated pairs (fixed ``seed``), lengths 3–``max_words`` source words."""
    rng = random.Random(seed)
    return [Pair(*synthetic_sentence(rng, max_words=max_words), f"synthetic:{i + 1}") for i in range(n)]

"""Tokenizer files: lmforge's JSON, Hugging Face ``tokenizer.json`` (+ ``tokenizer_config.json``), GPT-2
``vocab.json`` + ``merges.txt``, BERT ``vocab.txt``, and tiktoken ``.tiktoken`` rank files.

Only files: readers return a ``Tokenizer``'s keyword arguments (``lmforge.tokenizers.load_tokenizer`` builds it),
writers read a tokenizer through its public API; the ``tokenizer.json`` object itself is ``hf_json``'s.

Every reader turns a bad file into a ``FormatError`` naming the file and the field; every writer is atomic.
"""

from __future__ import annotations

import base64
import json
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

from lmforge.errors import ConfigError, FormatError, InputError
from lmforge.fileio import atomic_write_text, read_json
from lmforge.tokenizers.alphabet import bytes_to_token_string
from lmforge.tokenizers.bpe import GPT2_PATTERN, BPEModel
from lmforge.tokenizers.decoders import decoder_from_hf
from lmforge.tokenizers.hf_json import (
    LMFORGE_FORMAT,
    byte_level_bpe_stages,
    merge_roles,
    stages_from_hf,
    stages_from_lmforge_json,
    tokenizer_to_hf_json,
    tokenizer_to_lmforge_json,
)
from lmforge.tokenizers.pipeline import (
    AddedToken,
    BertNormalizer,
    BertPreTokenizer,
    ByteLevel,
    find_component,
    post_processor_from_hf,
    special_tokens_by_role,
)
from lmforge.tokenizers.wordpiece import WordPieceModel

LMFORGE_FILE = "tokenizer.lmforge.json"
FORMATS = ("lmforge", "hf", "gpt2", "bert")
ROLE_KEYS = {f"{r}_token": r for r in ("bos", "eos", "pad", "unk", "cls", "sep", "mask")}


# ------------------------------------------------------------------------------------------------- loading
def read_tokenizer(path: str | os.PathLike, *, pattern: str | None = None,
                   special_tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """Read a tokenizer file or folder, format detected: the ``Tokenizer``'s keyword arguments.

    In a folder the precedence is lmforge JSON (``tokenizer.lmforge.json``), ``tokenizer.json``,
    ``vocab.json`` + ``merges.txt``, ``vocab.txt``. A ``.tiktoken`` file gets the GPT-2 pattern and
    ``<|endoftext|>`` = number of ranks unless ``pattern`` / ``special_tokens`` say otherwise.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such tokenizer file or folder")
    if p.is_dir():
        for name in (LMFORGE_FILE, "tokenizer.json"):
            if (p / name).is_file():
                return _load_json_file(p / name, pattern)
        if (p / "vocab.json").is_file() and (p / "merges.txt").is_file():
            return load_gpt2(p / "vocab.json", p / "merges.txt", pattern=pattern, special_tokens=special_tokens)
        if (p / "vocab.txt").is_file():
            return load_bert_vocab(p / "vocab.txt")
        tiktoken_files = sorted(p.glob("*.tiktoken"))
        if len(tiktoken_files) == 1:
            return load_tiktoken(tiktoken_files[0], pattern=pattern, special_tokens=special_tokens)
        raise FormatError(f"{p}: no tokenizer found (expected {LMFORGE_FILE}, tokenizer.json, vocab.json + "
                          "merges.txt, vocab.txt or one .tiktoken file)")
    name = p.name
    if name.endswith(".tiktoken"):
        return load_tiktoken(p, pattern=pattern, special_tokens=special_tokens)
    if name.endswith(".json"):
        if name == "vocab.json" and (p.parent / "merges.txt").is_file():
            return load_gpt2(p, p.parent / "merges.txt", pattern=pattern, special_tokens=special_tokens)
        return _load_json_file(p, pattern)
    if name.endswith(".txt"):
        if name == "merges.txt" and (p.parent / "vocab.json").is_file():
            return load_gpt2(p.parent / "vocab.json", p, pattern=pattern, special_tokens=special_tokens)
        return load_bert_vocab(p)
    raise FormatError(f"{p}: unknown tokenizer format (expected .json, vocab.txt, merges.txt or .tiktoken)")


_JSON_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?")
_U64_MAX = 2**64 - 1


def hf_json_float(text: str) -> float:
    """A JSON number read the way HF ``tokenizers`` reads it (Rust's serde_json without ``float_roundtrip``):
    up to 19-20 digits as an integer, converted to float, then multiplied or divided by one power of ten. That
    is not always the nearest double (off by one ulp for ~10% of Unigram scores), and Unigram's Viterbi has
    exact ties (``a + b`` vs ``b + a`` paths), so reading scores any other way changes some segmentations.

    >>> hf_json_float("-1.5"), float("-1.4154975679993917") == hf_json_float("-1.4154975679993917")
    (-1.5, False)
    """
    m = _JSON_NUMBER.fullmatch(text)
    if m is None:
        return float(text)
    negative, int_digits, frac_digits, exp_digits = m.groups()
    significand, exponent, full = 0, 0, False
    for k, d in enumerate(int_digits + (frac_digits or "")):
        in_fraction = k >= len(int_digits)
        if not full and significand * 10 + int(d) <= _U64_MAX:
            significand = significand * 10 + int(d)
            exponent -= in_fraction
        else:  # digits past u64 are dropped: integer ones still scale the number
            full = True
            exponent += not in_fraction
    exponent += int(exp_digits or 0)
    value = float(significand)
    while abs(exponent) > 308 and value != 0.0:  # serde steps by 1e308 outside its table
        if exponent > 0:
            return float("-inf") if negative else float("inf")
        value /= 1e308
        exponent += 308
    if abs(exponent) <= 308:
        power = float(f"1e{abs(exponent)}")
        value = value * power if exponent >= 0 else value / power
    return -value if negative else value


def hf_json_float_text(value: float) -> str:
    """A JSON spelling of ``value`` that HF ``tokenizers`` reads back as exactly ``value`` (see
    :func:`hf_json_float`): the shortest spelling when that works, else a nearby 17-20 digit one.

    >>> hf_json_float_text(-1.5), hf_json_float(hf_json_float_text(-1.4154975679993917)) == -1.4154975679993917
    ('-1.5', True)
    """
    text = repr(float(value))
    if not _JSON_NUMBER.fullmatch(text) or hf_json_float(text) == value:
        return text  # inf/nan (not JSON anyway) or already exact
    exact = Fraction(abs(value))
    for scale in range(-20, 360):  # value = significand / 10**scale with a 17-20 digit significand (< 2**64)
        nearest = round(exact * 10**scale)
        if nearest < 10**16:
            continue
        if nearest >= _U64_MAX:
            break
        for delta in range(64):  # serde's result is within an ulp or two of the true value
            for candidate in {nearest + delta, nearest - delta}:
                spelled = f"{'-' if value < 0 else ''}{candidate}e{-scale}"
                if hf_json_float(spelled) == value:
                    return spelled
    return text


def _load_json_file(path: Path, pattern: str | None) -> dict[str, Any]:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: expected a JSON object")
    if isinstance(obj.get("model"), dict) and obj["model"].get("type") == "Unigram" \
            and obj.get("format") != LMFORGE_FORMAT:
        obj = read_json(path, parse_float=hf_json_float)  # scores exactly as HF reads them
    if obj.get("format") == LMFORGE_FORMAT:
        stages = stages_from_lmforge_json(obj, str(path))
    elif "model" in obj:
        stages = stages_from_hf(obj, where=str(path))
        _read_hf_configs(stages, path.parent)
    else:
        raise FormatError(f"{path}: not a tokenizer file (expected format {LMFORGE_FORMAT!r} or a HF tokenizer.json "
                          "with a 'model' field)")
    if pattern is not None:
        _override_pattern(stages, pattern, str(path))
    return stages


def _override_pattern(stages: dict[str, Any], pattern: str, where: str) -> None:
    bl = find_component(stages.get("pre_tokenizer"), ByteLevel)
    if bl is None or stages["pre_tokenizer"] is not bl:
        raise ConfigError(f"{where}: pattern can only be overridden on a plain byte-level pre-tokenizer")
    stages["pre_tokenizer"] = ByteLevel(bl.add_prefix_space, bl.trim_offsets, True, pattern)


def _read_hf_configs(stages: dict[str, Any], folder: Path) -> None:
    """Roles and chat template from ``tokenizer_config.json`` / ``special_tokens_map.json`` /
    ``chat_template.jinja`` beside the file, into ``stages``."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = folder / name
        if not f.is_file():
            continue
        cfg = read_json(f)
        if not isinstance(cfg, dict):
            raise FormatError(f"{f}: expected a JSON object")
        roles = {role: special_tokens_by_role({key: cfg.get(key)}).get(key) for key, role in ROLE_KEYS.items()}
        stages["roles"] = merge_roles(stages, roles)
        if isinstance(cfg.get("split_special_tokens"), bool):
            stages["split_special_tokens"] = cfg["split_special_tokens"]
        template = cfg.get("chat_template")
        if isinstance(template, str):
            stages["chat_template"] = template
        elif isinstance(template, list):  # named templates: keep the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            stages["chat_template"] = named.get("default") or next(iter(named.values()), None)
    jinja = folder / "chat_template.jinja"  # where transformers >= 4.50 saves it; it wins over the config's
    if jinja.is_file():
        try:
            stages["chat_template"] = jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FormatError(f"{jinja}: cannot read as UTF-8 text ({e})") from None


def load_gpt2(vocab_path: Path, merges_path: Path, *, pattern: str | None = None,
              special_tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """GPT-2's ``vocab.json`` (token string → id) + ``merges.txt`` (one ``a b`` pair per line, ranked)."""
    vocab = read_json(vocab_path)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise FormatError(f"{vocab_path}: expected a JSON object mapping token strings to integer ids")
    merges = []
    try:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{merges_path}: cannot read as UTF-8 text ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab:
            raise FormatError(f"{merges_path}: line {n}: expected two vocabulary tokens separated by a space, "
                              f"got {line!r}")
        merges.append((pair[0], pair[1]))
    specials = dict(special_tokens or {})
    cfg_path = vocab_path.parent / "tokenizer_config.json"
    if not specials and cfg_path.is_file():  # HF's record of added tokens: {"50256": {"content": ...}}
        decoder = read_json(cfg_path).get("added_tokens_decoder") or {}
        try:
            specials = {t["content"]: int(i) for i, t in decoder.items() if t.get("special", True)}
        except (AttributeError, KeyError, TypeError, ValueError):
            raise FormatError(f"{cfg_path}: field 'added_tokens_decoder' should map ids to token objects") from None
    if not specials and "<|endoftext|>" in vocab:
        specials = {"<|endoftext|>": vocab["<|endoftext|>"]}
    eot = "<|endoftext|>" if "<|endoftext|>" in specials else None
    stages = byte_level_bpe_stages(vocab, merges, pattern=pattern or GPT2_PATTERN, special_tokens=specials,
                                   bos_token=eot, eos_token=eot)
    _read_hf_configs(stages, vocab_path.parent)
    return stages


def load_bert_vocab(path: Path) -> dict[str, Any]:
    """A bare BERT ``vocab.txt`` (one token per line, id = line number), with BertTokenizerFast's defaults
    (lower-case, strip accents, split CJK) unless a ``tokenizer_config.json`` beside it says otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot read as UTF-8 text ({e})") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.rstrip("\r") for t in tokens]
    if not tokens:
        raise FormatError(f"{path}: empty vocabulary (expected one token per line)")
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    cfg: dict = {}
    cfg_path = path.parent / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = read_json(cfg_path)
        if not isinstance(cfg, dict):
            raise FormatError(f"{cfg_path}: expected a JSON object")
    lower = bool(cfg.get("do_lower_case", True))
    norm = BertNormalizer(clean_text=True, handle_chinese_chars=bool(cfg.get("tokenize_chinese_chars", True)),
                          strip_accents=cfg.get("strip_accents"), lowercase=lower)
    names = special_tokens_by_role({k: cfg.get(k) for k in ROLE_KEYS})
    unk = names.get("unk_token", "[UNK]")
    cls_tok, sep_tok = names.get("cls_token", "[CLS]"), names.get("sep_token", "[SEP]")
    post = None
    if cls_tok in vocab and sep_tok in vocab:
        post = post_processor_from_hf({"type": "TemplateProcessing",
                                       "single": [{"SpecialToken": {"id": cls_tok, "type_id": 0}},
                                                  {"Sequence": {"id": "A", "type_id": 0}},
                                                  {"SpecialToken": {"id": sep_tok, "type_id": 0}}],
                                       "pair": [{"SpecialToken": {"id": cls_tok, "type_id": 0}},
                                                {"Sequence": {"id": "A", "type_id": 0}},
                                                {"SpecialToken": {"id": sep_tok, "type_id": 0}},
                                                {"Sequence": {"id": "B", "type_id": 1}},
                                                {"SpecialToken": {"id": sep_tok, "type_id": 1}}],
                                       "special_tokens": {cls_tok: {"id": cls_tok, "ids": [vocab[cls_tok]],
                                                                    "tokens": [cls_tok]},
                                                          sep_tok: {"id": sep_tok, "ids": [vocab[sep_tok]],
                                                                    "tokens": [sep_tok]}}}, str(path))
        post.raw = None
    role_tokens = {"unk": unk, "cls": cls_tok, "sep": sep_tok, "pad": names.get("pad_token", "[PAD]"),
                   "mask": names.get("mask_token", "[MASK]")}
    added = [AddedToken(t, vocab[t]) for t in dict.fromkeys(role_tokens.values()) if t in vocab]
    wp = WordPieceModel(vocab, unk_token=unk)
    id_to_token = [None] * len(tokens)
    for t, i in vocab.items():
        id_to_token[i] = t
    return dict(model=wp, id_to_token=id_to_token, pre_tokenizer=BertPreTokenizer(norm), post_processor=post,
                decoder=decoder_from_hf({"type": "WordPiece", "prefix": "##", "cleanup": True}, str(path)),
                added_tokens=added, roles=role_tokens,
                chat_template=cfg["chat_template"] if isinstance(cfg.get("chat_template"), str) else None)


def load_tiktoken(path: Path, *, pattern: str | None = None,
                  special_tokens: dict[str, int] | None = None) -> dict[str, Any]:
    """tiktoken's rank file: one ``base64(token bytes) rank`` per line. Merging follows tiktoken's rule (two
    tokens merge when their concatenation is a token, lowest rank first), and special tokens written in the text
    stay text (``split_special_tokens``), so ids equal ``encode_ordinary``."""
    token_bytes: dict[int, bytes] = {}
    try:
        lines = path.read_bytes().splitlines()
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            b64, rank = line.split()
            token_bytes[int(rank)] = base64.b64decode(b64, validate=True)
        except (ValueError, base64.binascii.Error):
            raise FormatError(f"{path}: line {n}: expected 'base64-token rank', got {line[:60]!r}") from None
    if not token_bytes:
        raise FormatError(f"{path}: no token ranks found")
    n = max(token_bytes) + 1
    if len(token_bytes) != n:
        raise FormatError(f"{path}: ranks should be 0..{n - 1} without gaps")
    ordered = [token_bytes[i] for i in range(n)]
    if len({b for b in ordered if len(b) == 1}) < 256:
        raise FormatError(f"{path}: the 256 single-byte tokens are not all present")
    specials = {"<|endoftext|>": n} if special_tokens is None else dict(special_tokens)
    model = BPEModel(ordered + [None] * (max([*specials.values(), n - 1]) + 1 - n), [], pair_table={})
    model.use_ranks()
    id_to_token: list[str | None] = [bytes_to_token_string(b) for b in ordered]
    added = [AddedToken(t, i) for t, i in sorted(specials.items(), key=lambda kv: kv[1])]
    eot = "<|endoftext|>" if "<|endoftext|>" in specials else None
    return dict(model=model, id_to_token=id_to_token,
                pre_tokenizer=ByteLevel(add_prefix_space=False, pattern=pattern or GPT2_PATTERN),
                decoder=decoder_from_hf({"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                         "use_regex": True}, str(path)),
                added_tokens=added, roles={"bos": eot, "eos": eot}, split_special_tokens=True)


def _hf_config(tok: Any) -> dict:
    cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}
    for role, t in tok.roles().items():
        cfg[f"{role}_token"] = t
    if tok.kind == "wordpiece" and isinstance(tok.pre_tokenizer, BertPreTokenizer) and tok.pre_tokenizer.normalizer:
        n = tok.pre_tokenizer.normalizer
        cfg.update(tokenizer_class="BertTokenizer", do_lower_case=n.lowercase, strip_accents=n.strip_accents,
                   tokenize_chinese_chars=n.handle_chinese_chars)
    if tok.chat_template is not None:
        cfg["chat_template"] = tok.chat_template
    if tok.split_special_tokens:
        cfg["split_special_tokens"] = True
    cfg["added_tokens_decoder"] = {str(t.id): {k: v for k, v in t.to_hf().items() if k != "id"}
                                   for t in tok.added_tokens}
    return cfg


# ----------------------------------------------------------------------------------------------- saving
def save_tokenizer(tok: Any, path: str | os.PathLike, format: str = "lmforge") -> None:
    """Write ``tok`` atomically in ``format`` (see ``Tokenizer.save``)."""
    if format not in FORMATS:
        raise ConfigError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
    p = Path(path)
    if format == "lmforge":
        target = p if p.suffix == ".json" else p / LMFORGE_FILE
        atomic_write_text(target, _dumps(tokenizer_to_lmforge_json(tok)))
    elif format == "hf":
        if p.suffix == ".json":
            atomic_write_text(p, _hf_dumps(tok))
            return
        atomic_write_text(p / "tokenizer.json", _hf_dumps(tok))
        atomic_write_text(p / "tokenizer_config.json", _dumps(_hf_config(tok)))
        specials = {f"{r}_token": t for r, t in tok.roles().items()}
        atomic_write_text(p / "special_tokens_map.json", _dumps(specials))
    elif format == "gpt2":
        if not isinstance(tok.model, BPEModel):
            raise ConfigError("format 'gpt2' (vocab.json + merges.txt) needs a byte-level BPE tokenizer")
        strings = tok.id_to_token_list()
        vocab = {t: i for i, t in enumerate(strings) if t is not None}
        merges = "\n".join(f"{strings[a]} {strings[b]}" for a, b in tok.model.ordered_merges())
        atomic_write_text(p / "vocab.json", _dumps(vocab))
        atomic_write_text(p / "merges.txt", "#version: 0.2\n" + merges + "\n")
        atomic_write_text(p / "tokenizer_config.json", _dumps(_hf_config(tok)))
    else:  # bert
        if tok.kind != "wordpiece":
            raise ConfigError("format 'bert' (vocab.txt) needs a WordPiece tokenizer")
        strings = tok.id_to_token_list()
        if any(t is None for t in strings):
            raise ConfigError("format 'bert': ids must be contiguous to write vocab.txt")
        atomic_write_text(p / "vocab.txt", "".join(t + "\n" for t in strings))
        atomic_write_text(p / "tokenizer_config.json", _dumps(_hf_config(tok)))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def _hf_dumps(tok: Any) -> str:
    """``tokenizer.json`` text; Unigram scores spelled so that HF reads back exactly the floats lmforge holds
    (its JSON float reading is not exact, and Viterbi ties make the last bit matter)."""
    obj = tokenizer_to_hf_json(tok)
    if tok.kind != "unigram":
        return _dumps(obj)
    spelled = [hf_json_float_text(score) for _, score in obj["model"]["vocab"]]
    obj["model"]["vocab"] = [[piece, f"\x00{k}\x00"] for k, (piece, _) in enumerate(obj["model"]["vocab"])]
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: spelled[int(m.group(1))], _dumps(obj))

"""Tokenizer files: lmforge's JSON, Hugging Face ``tokenizer.json`` (+ ``tokenizer_config.json``), GPT-2
``vocab.json`` + ``merges.txt``, BERT ``vocab.txt``, and tiktoken ``.tiktoken`` rank files.

In ``tokenizer.json`` a BPE model is byte-level when its pre-tokenizer has a ``ByteLevel`` step (GPT-2, Llama 3)
and character-level otherwise (SentencePiece-BPE: Llama 2, Mistral, with ``byte_fallback``); ``Unigram`` models
(T5, ALBERT) are read too.

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
from lmforge.fileio import atomic_write_text
from lmforge.tokenizers.bpe import (
    GPT2_PATTERN,
    BPEModel,
    CharBPEModel,
    bytes_to_token_string,
    merges_from_ranks,
    pair_table_from_ranks,
)
from lmforge.tokenizers.pipeline import (
    SENTENCEPIECE_DECODERS,
    AddedToken,
    BertNormalizer,
    BertPreTokenizer,
    ByteLevel,
    decoder_from_hf,
    find_component,
    normalizer_from_hf,
    post_processor_from_hf,
    pre_tokenizer_from_hf,
    special_tokens_by_role,
)
from lmforge.tokenizers.tokenizer import Tokenizer, _decoder_steps, _token_bytes_of
from lmforge.tokenizers.unigram import UnigramModel

LMFORGE_FILE = "tokenizer.lmforge.json"
LMFORGE_FORMAT = "lmforge-tokenizer"
FORMATS = ("lmforge", "hf", "gpt2", "bert")
ROLE_KEYS = {f"{r}_token": r for r in ("bos", "eos", "pad", "unk", "cls", "sep", "mask")}


# ------------------------------------------------------------------------------------------------- loading
def load_tokenizer(path: str | os.PathLike, *, pattern: str | None = None,
                   special_tokens: dict[str, int] | None = None) -> Tokenizer:
    """Load a tokenizer file or folder, format detected.

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


def _read_json(path: Path, parse_float=None) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: cannot read as UTF-8 text ({e})") from None
    try:
        return json.loads(text, parse_float=parse_float)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None


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


def _load_json_file(path: Path, pattern: str | None) -> Tokenizer:
    obj = _read_json(path)
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: expected a JSON object")
    if isinstance(obj.get("model"), dict) and obj["model"].get("type") == "Unigram" \
            and obj.get("format") != LMFORGE_FORMAT:
        obj = _read_json(path, parse_float=hf_json_float)  # scores exactly as HF reads them
    if obj.get("format") == LMFORGE_FORMAT:
        tok = _from_lmforge_json(obj, str(path))
    elif "model" in obj:
        tok = tokenizer_from_hf_json(obj, where=str(path))
        _read_hf_configs(tok, path.parent)
    else:
        raise FormatError(f"{path}: not a tokenizer file (expected format {LMFORGE_FORMAT!r} or a HF tokenizer.json "
                          "with a 'model' field)")
    if pattern is not None:
        _override_pattern(tok, pattern, str(path))
    return tok


def _override_pattern(tok: Tokenizer, pattern: str, where: str) -> None:
    bl = find_component(tok.pre_tokenizer, ByteLevel)
    if bl is None or tok.pre_tokenizer is not bl:
        raise ConfigError(f"{where}: pattern can only be overridden on a plain byte-level pre-tokenizer")
    tok.pre_tokenizer = ByteLevel(bl.add_prefix_space, bl.trim_offsets, True, pattern)
    tok._cache.clear()


def _read_hf_configs(tok: Tokenizer, folder: Path) -> None:
    """Roles and chat template from ``tokenizer_config.json`` / ``special_tokens_map.json`` /
    ``chat_template.jinja`` beside the file."""
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = folder / name
        if not f.is_file():
            continue
        cfg = _read_json(f)
        if not isinstance(cfg, dict):
            raise FormatError(f"{f}: expected a JSON object")
        for key, role in ROLE_KEYS.items():
            value = special_tokens_by_role({key: cfg.get(key)}).get(key)
            if value is not None and tok.token_to_id(value) is not None:
                tok._set_role(role, value, by_id=False)
        if isinstance(cfg.get("split_special_tokens"), bool):
            tok.split_special_tokens = cfg["split_special_tokens"]
        template = cfg.get("chat_template")
        if isinstance(template, str):
            tok.chat_template = template
        elif isinstance(template, list):  # named templates: keep the default one
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            tok.chat_template = named.get("default") or next(iter(named.values()), None)
    jinja = folder / "chat_template.jinja"  # where transformers >= 4.50 saves it; it wins over the config's
    if jinja.is_file():
        try:
            tok.chat_template = jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FormatError(f"{jinja}: cannot read as UTF-8 text ({e})") from None


def _require(obj: dict, key: str, where: str, kind: type | tuple = object):
    if key not in obj:
        raise FormatError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise FormatError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def tokenizer_from_hf_json(obj: dict, *, where: str = "tokenizer.json") -> Tokenizer:
    """Build a Tokenizer from a HF ``tokenizer.json`` object; unsupported components raise FormatError."""
    if not isinstance(obj, dict):
        raise FormatError(f"{where}: expected a JSON object")
    model = _require(obj, "model", where, dict)
    mtype = model.get("type")
    if mtype is None:  # old files omit the type: infer it
        mtype = "BPE" if "merges" in model else "WordPiece" if "continuing_subword_prefix" in model else None
    normalizer = normalizer_from_hf(obj.get("normalizer"), where)
    pre = pre_tokenizer_from_hf(obj.get("pre_tokenizer"), where)
    post = post_processor_from_hf(obj.get("post_processor"), where)
    decoder = decoder_from_hf(obj.get("decoder"), where)
    added = []
    for k, t in enumerate(obj.get("added_tokens") or []):
        if not isinstance(t, dict) or "id" not in t or "content" not in t:
            raise FormatError(f"{where}: added_tokens[{k}] needs 'id' and 'content'")
        added.append(AddedToken(t["content"], int(t["id"]), bool(t.get("special", False)), bool(t.get("lstrip")),
                                bool(t.get("rstrip")), bool(t.get("single_word")), bool(t.get("normalized"))))
    extra = {k: obj[k] for k in ("truncation", "padding") if obj.get(k) is not None}
    if mtype == "Unigram":
        return _unigram_from_hf(model, where, normalizer=normalizer, pre_tokenizer=pre, post_processor=post,
                                decoder=decoder, added_tokens=added, hf_extra=extra)
    vocab = _require(model, "vocab", f"{where}: model", dict)
    size = max([*vocab.values(), *(t.id for t in added)], default=-1) + 1
    id_to_token: list[str | None] = [None] * size
    for tok, i in vocab.items():
        if not isinstance(i, int) or i < 0:
            raise FormatError(f"{where}: model.vocab[{tok!r}] should be a non-negative int, got {i!r}")
        id_to_token[i] = tok
    roles: dict[str, str] = {}
    if mtype == "BPE" and find_component(pre, ByteLevel) is None:
        return _char_bpe_from_hf(model, vocab, id_to_token, where, normalizer=normalizer, pre_tokenizer=pre,
                                 post_processor=post, decoder=decoder, added_tokens=added, hf_extra=extra)
    if mtype == "BPE":
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                raise FormatError(f"{where}: model.{key}={model[key]!r} is not supported (byte-level BPE only)")
        if model.get("dropout"):
            raise FormatError(f"{where}: model.dropout is not supported (BPE-dropout is a training-time trick)")
        if model.get("byte_fallback"):
            raise FormatError(f"{where}: model.byte_fallback with a ByteLevel pre-tokenizer is not supported "
                              "(byte-level BPE needs no byte fallback)")
        merges = _require(model, "merges", f"{where}: model", list)
        merge_ids = []
        for k, m in enumerate(merges):
            pair = m.split(" ") if isinstance(m, str) else m
            if len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab:
                raise FormatError(f"{where}: model.merges[{k}] = {m!r} is not a pair of vocabulary tokens")
            merge_ids.append((vocab[pair[0]], vocab[pair[1]]))
        token_bytes = _token_bytes_of(id_to_token, set())  # added tokens outside the vocab are None already
        unk = model.get("unk_token")
        bpe = BPEModel(token_bytes, merge_ids, ignore_merges=bool(model.get("ignore_merges")),
                       unk_id=vocab.get(unk) if unk else None)
        if "<|endoftext|>" in vocab:
            roles = {"bos": "<|endoftext|>", "eos": "<|endoftext|>"}
        if unk:
            roles["unk"] = unk
        return Tokenizer(kind="bpe", model=bpe, id_to_token=id_to_token, normalizer=normalizer, pre_tokenizer=pre,
                         post_processor=post, decoder=decoder, added_tokens=added, roles=roles, hf_extra=extra)
    if mtype == "WordPiece":
        from lmforge.tokenizers.wordpiece import WordPiece

        if isinstance(normalizer, BertNormalizer):
            if not isinstance(pre, BertPreTokenizer):
                raise FormatError(f"{where}: BertNormalizer is only supported with the BertPreTokenizer")
            pre = BertPreTokenizer(normalizer)  # run fused: BERT's basic tokenizer
            normalizer = None
        if pre is None:
            raise FormatError(f"{where}: a WordPiece model needs a pre_tokenizer")
        wp = WordPiece(vocab, unk_token=model.get("unk_token", "[UNK]"),
                       continuing_subword_prefix=model.get("continuing_subword_prefix", "##"),
                       max_input_chars_per_word=model.get("max_input_chars_per_word", 100))
        roles = {r: t for r, t in (("unk", "[UNK]"), ("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "[PAD]"),
                                   ("mask", "[MASK]")) if t in vocab}
        return Tokenizer(kind="wordpiece", model=wp, id_to_token=id_to_token, normalizer=normalizer,
                         pre_tokenizer=pre, post_processor=post, decoder=decoder, added_tokens=added, roles=roles,
                         hf_extra=extra)
    raise FormatError(f"{where}: model type {mtype!r} is not supported (supported: BPE, WordPiece, Unigram)")


def _sentencepiece_roles(token_to_id: dict[str, int], unk: str | None) -> dict[str, str]:
    """SentencePiece's conventional role tokens, where the vocabulary has them (a config file may override)."""
    roles = {r: t for r, t in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>")) if t in token_to_id}
    if unk is not None:
        roles["unk"] = unk
    return roles


def _check_sentencepiece_decoder(decoder: dict | None, where: str) -> None:
    for step in _decoder_steps(decoder):
        if step.get("type") not in SENTENCEPIECE_DECODERS:
            raise FormatError(f"{where}: decoder {step.get('type')!r} does not go with a character-level model "
                              f"(expected {', '.join(SENTENCEPIECE_DECODERS)} or a Sequence of them)")


def _char_bpe_from_hf(model: dict, vocab: dict[str, int], id_to_token: list[str | None], where: str,
                      **stages: Any) -> Tokenizer:
    """A character-level BPE model (no ByteLevel pre-tokenizer): SentencePiece-BPE with byte fallback."""
    if model.get("dropout"):
        raise FormatError(f"{where}: model.dropout={model['dropout']!r} is not supported (BPE-dropout is a "
                          "training-time trick; set it to null)")
    merges = _require(model, "merges", f"{where}: model", list)
    pairs = []
    for k, m in enumerate(merges):
        pair = m.split(" ") if isinstance(m, str) else m
        if not isinstance(pair, list | tuple) or len(pair) != 2 or pair[0] not in vocab or pair[1] not in vocab:
            raise FormatError(f"{where}: model.merges[{k}] = {m!r} is not a pair of vocabulary tokens")
        pairs.append((pair[0], pair[1]))
    unk = model.get("unk_token")
    if unk is not None and unk not in vocab:
        raise FormatError(f"{where}: model.unk_token={unk!r} is not in model.vocab")
    _check_sentencepiece_decoder(stages["decoder"], where)
    try:
        bpe = CharBPEModel(vocab, pairs, unk_id=vocab.get(unk) if unk else None,
                           byte_fallback=bool(model.get("byte_fallback")), fuse_unk=bool(model.get("fuse_unk")),
                           ignore_merges=bool(model.get("ignore_merges")),
                           continuing_subword_prefix=model.get("continuing_subword_prefix"),
                           end_of_word_suffix=model.get("end_of_word_suffix"))
    except KeyError as e:
        raise FormatError(f"{where}: model.{e.args[0]}") from None
    token_to_id = {**vocab, **{t.content: t.id for t in stages["added_tokens"]}}
    return Tokenizer(kind="bpe", model=bpe, id_to_token=id_to_token, roles=_sentencepiece_roles(token_to_id, unk),
                     **stages)


def _unigram_from_hf(model: dict, where: str, **stages: Any) -> Tokenizer:
    """A Unigram model: ``vocab`` is a list of ``[piece, log-prob]``, the index is the id."""
    vocab = _require(model, "vocab", f"{where}: model", list)
    pieces = []
    for k, item in enumerate(vocab):
        if (not isinstance(item, list | tuple) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], int | float) or isinstance(item[1], bool)):
            raise FormatError(f"{where}: model.vocab[{k}] = {item!r} should be a [piece, score] pair")
        pieces.append((item[0], float(item[1])))
    unk_id = model.get("unk_id")
    if unk_id is not None and (not isinstance(unk_id, int) or not 0 <= unk_id < len(pieces)):
        raise FormatError(f"{where}: model.unk_id={unk_id!r} should be an index into model.vocab "
                          f"(0..{len(pieces) - 1}) or null")
    _check_sentencepiece_decoder(stages["decoder"], where)
    added = stages["added_tokens"]
    size = max([len(pieces) - 1, *(t.id for t in added)], default=-1) + 1
    id_to_token: list[str | None] = [p for p, _ in pieces] + [None] * (size - len(pieces))
    unigram = UnigramModel(pieces, unk_id=unk_id, byte_fallback=bool(model.get("byte_fallback")))
    token_to_id = {**unigram.piece_to_id, **{t.content: t.id for t in added}}
    unk = pieces[unk_id][0] if unk_id is not None else None
    return Tokenizer(kind="unigram", model=unigram, id_to_token=id_to_token,
                     roles=_sentencepiece_roles(token_to_id, unk), **stages)


def load_gpt2(vocab_path: Path, merges_path: Path, *, pattern: str | None = None,
              special_tokens: dict[str, int] | None = None) -> Tokenizer:
    """GPT-2's ``vocab.json`` (token string → id) + ``merges.txt`` (one ``a b`` pair per line, ranked)."""
    vocab = _read_json(vocab_path)
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
        decoder = _read_json(cfg_path).get("added_tokens_decoder") or {}
        try:
            specials = {t["content"]: int(i) for i, t in decoder.items() if t.get("special", True)}
        except (AttributeError, KeyError, TypeError, ValueError):
            raise FormatError(f"{cfg_path}: field 'added_tokens_decoder' should map ids to token objects") from None
    if not specials and "<|endoftext|>" in vocab:
        specials = {"<|endoftext|>": vocab["<|endoftext|>"]}
    eot = "<|endoftext|>" if "<|endoftext|>" in specials else None
    tok = Tokenizer.from_byte_level_bpe(vocab, merges, pattern=pattern or GPT2_PATTERN, special_tokens=specials,
                                        bos_token=eot, eos_token=eot)
    _read_hf_configs(tok, vocab_path.parent)
    return tok


def load_bert_vocab(path: Path) -> Tokenizer:
    """A bare BERT ``vocab.txt`` (one token per line, id = line number), with BertTokenizerFast's defaults
    (lower-case, strip accents, split CJK) unless a ``tokenizer_config.json`` beside it says otherwise."""
    from lmforge.tokenizers.wordpiece import WordPiece

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
        cfg = _read_json(cfg_path)
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
    wp = WordPiece(vocab, unk_token=unk)
    id_to_token = [None] * len(tokens)
    for t, i in vocab.items():
        id_to_token[i] = t
    tok = Tokenizer(kind="wordpiece", model=wp, id_to_token=id_to_token, pre_tokenizer=BertPreTokenizer(norm),
                    post_processor=post, decoder={"type": "WordPiece", "prefix": "##", "cleanup": True},
                    added_tokens=added, roles=role_tokens)
    if isinstance(cfg.get("chat_template"), str):
        tok.chat_template = cfg["chat_template"]
    return tok


def load_tiktoken(path: Path, *, pattern: str | None = None,
                  special_tokens: dict[str, int] | None = None) -> Tokenizer:
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
    model = BPEModel(ordered + [None] * (max([*specials.values(), n - 1]) + 1 - n), [],
                     pair_table=pair_table_from_ranks(ordered))
    model.rank_based = True
    id_to_token: list[str | None] = [bytes_to_token_string(b) for b in ordered]
    added = [AddedToken(t, i) for t, i in sorted(specials.items(), key=lambda kv: kv[1])]
    eot = "<|endoftext|>" if "<|endoftext|>" in specials else None
    return Tokenizer(kind="bpe", model=model, id_to_token=id_to_token,
                     pre_tokenizer=ByteLevel(add_prefix_space=False, pattern=pattern or GPT2_PATTERN),
                     decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                              "use_regex": True},
                     added_tokens=added, roles={"bos": eot, "eos": eot}, split_special_tokens=True)


def _model_merges(tok: Tokenizer) -> list[tuple[int, int]]:
    model = tok.model
    if model.rank_based and not model.merges:
        model.merges = merges_from_ranks(model.token_bytes)
    return model.merges


# --------------------------------------------------------------------------------------------- lmforge JSON
def tokenizer_to_lmforge_json(tok: Tokenizer) -> dict:
    """lmforge's own file: the HF pipeline spelling, plus roles and the chat template, tokens as a list."""
    hf = tokenizer_to_hf_json(tok)
    model: dict[str, Any] = {"type": hf["model"]["type"], "tokens": list(tok._id_to_token)}
    if tok._char_level:  # SentencePiece style: the HF model's fields (a Unigram's vocabulary is tokens + scores)
        model.update({k: v for k, v in hf["model"].items() if k != "type"})
        if tok.kind == "unigram":
            model["scores"] = [score for _, score in model.pop("vocab")]
    elif tok.kind == "bpe":
        model["merges"] = [list(m) for m in _model_merges(tok)]
        model["rank_based"] = tok.model.rank_based
        model["ignore_merges"] = tok.model.ignore_merges
        model["unk_token"] = hf["model"].get("unk_token")
    else:
        for key in ("unk_token", "continuing_subword_prefix", "max_input_chars_per_word"):
            model[key] = hf["model"][key]
    return {"format": LMFORGE_FORMAT, "version": 1, "kind": tok.kind, "model": model,
            "normalizer": hf["normalizer"], "pre_tokenizer": hf["pre_tokenizer"],
            "post_processor": hf["post_processor"], "decoder": hf["decoder"], "added_tokens": hf["added_tokens"],
            "roles": tok.roles(), "chat_template": tok.chat_template, "hf_extra": tok.hf_extra,
            "split_special_tokens": tok.split_special_tokens}


def _from_lmforge_json(obj: dict, where: str) -> Tokenizer:
    if obj.get("version") != 1:
        raise FormatError(f"{where}: unsupported lmforge tokenizer version {obj.get('version')!r} (expected 1)")
    model = _require(obj, "model", where, dict)
    tokens = _require(model, "tokens", f"{where}: model", list)
    vocab = {t: i for i, t in enumerate(tokens) if t is not None}
    hf_model: dict[str, Any]
    if model.get("type") == "Unigram":
        scores = _require(model, "scores", f"{where}: model", list)
        hf_model = {**model, "vocab": [[t, sc] for t, sc in zip(tokens, scores, strict=False)]}
    elif model.get("type") == "BPE" and "byte_fallback" in model:  # character-level BPE: the HF model as is
        hf_model = dict(model)
    elif obj.get("kind") == "bpe":
        merges = _require(model, "merges", f"{where}: model", list)
        try:
            merge_strings = [[tokens[a], tokens[b]] for a, b in merges]
        except (TypeError, ValueError, IndexError):
            raise FormatError(f"{where}: model.merges should be pairs of token ids") from None
        hf_model = {"type": "BPE", "vocab": vocab, "merges": merge_strings, "unk_token": model.get("unk_token"),
                    "ignore_merges": model.get("ignore_merges", False)}
    elif obj.get("kind") == "wordpiece":
        hf_model = {"type": "WordPiece", "vocab": vocab, "unk_token": model.get("unk_token", "[UNK]"),
                    "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
                    "max_input_chars_per_word": model.get("max_input_chars_per_word", 100)}
    else:
        raise FormatError(f"{where}: field 'kind' should be 'bpe' or 'wordpiece', got {obj.get('kind')!r}")
    hf = {"model": hf_model, **{k: obj.get(k) for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder",
                                                          "added_tokens")}}
    tok = tokenizer_from_hf_json(hf, where=where)
    if obj.get("kind") == "bpe" and model.get("rank_based"):
        tok.model.pair_table = pair_table_from_ranks(tok.model.token_bytes)
        tok.model.rank_based = True
    for role, t in (obj.get("roles") or {}).items():
        if t is not None and tok.token_to_id(t) is not None:
            tok._set_role(role, t, by_id=False)
    tok.chat_template = obj.get("chat_template")
    tok.hf_extra = dict(obj.get("hf_extra") or {})
    if obj.get("split_special_tokens"):
        tok.split_special_tokens = True
    return tok


# ------------------------------------------------------------------------------------------------- HF JSON
def tokenizer_to_hf_json(tok: Tokenizer) -> dict:
    vocab = {t: i for i, t in enumerate(tok._id_to_token) if t is not None}
    if tok.kind == "bpe" and tok._char_level:
        m = tok.model
        model = {"type": "BPE", "dropout": None, "unk_token": tok._id_to_token[m.unk_id] if m.unk_id is not None
                 else None, "continuing_subword_prefix": m.prefix or None, "end_of_word_suffix": m.suffix or None,
                 "fuse_unk": m.fuse_unk, "byte_fallback": m.byte_fallback, "ignore_merges": m.ignore_merges,
                 "vocab": m.vocab, "merges": [list(pair) for pair in m.merges]}
    elif tok.kind == "unigram":
        m = tok.model
        model = {"type": "Unigram", "unk_id": m.unk_id, "vocab": [list(p) for p in m.pieces],
                 "byte_fallback": m.byte_fallback}
    elif tok.kind == "bpe":
        strings = tok._id_to_token
        model = {"type": "BPE", "dropout": None, "unk_token": tok.unk_token if tok.model.unk_id is not None else None,
                 "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
                 "byte_fallback": False, "ignore_merges": tok.model.ignore_merges, "vocab": vocab,
                 "merges": [[strings[a], strings[b]] for a, b in _model_merges(tok)]}
    else:
        model = {"type": "WordPiece", "unk_token": tok.model.unk_token,
                 "continuing_subword_prefix": tok.model.continuing_subword_prefix,
                 "max_input_chars_per_word": tok.model.max_input_chars_per_word, "vocab": vocab}
    pre = tok.pre_tokenizer
    normalizer = tok.normalizer.to_hf() if tok.normalizer is not None else None
    if isinstance(pre, BertPreTokenizer) and pre.normalizer is not None:
        normalizer = pre.normalizer.to_hf()
    post = tok.post_processor.to_hf() if tok.post_processor is not None else None
    if post is None and tok._byte_level:
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return {"version": "1.0", "truncation": tok.hf_extra.get("truncation"), "padding": tok.hf_extra.get("padding"),
            "added_tokens": [t.to_hf() for t in tok.added_tokens], "normalizer": normalizer,
            "pre_tokenizer": pre.to_hf() if pre is not None else None, "post_processor": post,
            "decoder": tok.decoder, "model": model}


def _hf_config(tok: Tokenizer) -> dict:
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
def save_tokenizer(tok: Tokenizer, path: str | os.PathLike, format: str = "lmforge") -> None:
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
        if not tok._byte_level:
            raise ConfigError("format 'gpt2' (vocab.json + merges.txt) needs a byte-level BPE tokenizer")
        vocab = {t: i for i, t in enumerate(tok._id_to_token) if t is not None}
        strings = tok._id_to_token
        merges = "\n".join(f"{strings[a]} {strings[b]}" for a, b in _model_merges(tok))
        atomic_write_text(p / "vocab.json", _dumps(vocab))
        atomic_write_text(p / "merges.txt", "#version: 0.2\n" + merges + "\n")
        atomic_write_text(p / "tokenizer_config.json", _dumps(_hf_config(tok)))
    else:  # bert
        if tok.kind != "wordpiece":
            raise ConfigError("format 'bert' (vocab.txt) needs a WordPiece tokenizer")
        if any(t is None for t in tok._id_to_token):
            raise ConfigError("format 'bert': ids must be contiguous to write vocab.txt")
        atomic_write_text(p / "vocab.txt", "".join(t + "\n" for t in tok._id_to_token))
        atomic_write_text(p / "tokenizer_config.json", _dumps(_hf_config(tok)))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def _hf_dumps(tok: Tokenizer) -> str:
    """``tokenizer.json`` text; Unigram scores spelled so that HF reads back exactly the floats lmforge holds
    (its JSON float reading is not exact, and Viterbi ties make the last bit matter)."""
    obj = tokenizer_to_hf_json(tok)
    if tok.kind != "unigram":
        return _dumps(obj)
    spelled = [hf_json_float_text(score) for _, score in obj["model"]["vocab"]]
    obj["model"]["vocab"] = [[piece, f"\x00{k}\x00"] for k, (piece, _) in enumerate(obj["model"]["vocab"])]
    return re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: spelled[int(m.group(1))], _dumps(obj))

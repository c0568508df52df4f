"""The Hugging Face ``tokenizer.json`` object (and lmforge's own file, its close cousin) ↔ a tokenizer's model
and stages. No files here (``formats`` reads and writes them) and no ``Tokenizer`` import: readers return the
``Tokenizer``'s keyword arguments, writers read a tokenizer through its public attributes.

In ``tokenizer.json`` a BPE model is byte-level when its pre-tokenizer has a ``ByteLevel`` step (GPT-2, Llama 3)
and character-level otherwise (SentencePiece-BPE: Llama 2, Mistral, with ``byte_fallback``); ``Unigram`` models
(T5, ALBERT) are read too.
"""

from __future__ import annotations

from typing import Any

from lmforge.errors import ConfigError, FormatError, InputError
from lmforge.tokenizers.alphabet import token_string_to_bytes
from lmforge.tokenizers.bpe import GPT2_PATTERN, BPEModel, CharBPEModel
from lmforge.tokenizers.decoders import SENTENCEPIECE_DECODERS, Decoder, decoder_from_hf, decoder_types
from lmforge.tokenizers.pipeline import (
    AddedToken,
    BertNormalizer,
    BertPreTokenizer,
    ByteLevel,
    Digits,
    PreTokenizer,
    PreTokenizerSequence,
    Template,
    find_component,
    normalizer_from_hf,
    post_processor_from_hf,
    pre_tokenizer_from_hf,
)
from lmforge.tokenizers.unigram import UnigramModel
from lmforge.tokenizers.wordpiece import WordPieceModel

LMFORGE_FORMAT = "lmforge-tokenizer"


def _require(obj: dict, key: str, where: str, kind: type | tuple = object):
    if key not in obj:
        raise FormatError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise FormatError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def stages_from_hf(obj: dict, where: str = "tokenizer.json") -> dict[str, Any]:
    """``Tokenizer``'s keyword arguments (model and stages) from a HF ``tokenizer.json`` object; unsupported
    components raise FormatError naming ``where``."""
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
        token_bytes = token_bytes_of(id_to_token, set())  # added tokens outside the vocab are None already
        unk = model.get("unk_token")
        bpe = BPEModel(token_bytes, merge_ids, ignore_merges=bool(model.get("ignore_merges")),
                       unk_id=vocab.get(unk) if unk else None)
        if "<|endoftext|>" in vocab:
            roles = {"bos": "<|endoftext|>", "eos": "<|endoftext|>"}
        if unk:
            roles["unk"] = unk
        return dict(model=bpe, id_to_token=id_to_token, normalizer=normalizer, pre_tokenizer=pre,
                    post_processor=post, decoder=decoder, added_tokens=added, roles=roles, hf_extra=extra)
    if mtype == "WordPiece":
        if isinstance(normalizer, BertNormalizer):
            if not isinstance(pre, BertPreTokenizer):
                raise FormatError(f"{where}: BertNormalizer is only supported with the BertPreTokenizer")
            pre = BertPreTokenizer(normalizer)  # run fused: BERT's basic tokenizer
            normalizer = None
        if pre is None:
            raise FormatError(f"{where}: a WordPiece model needs a pre_tokenizer")
        wp = WordPieceModel(vocab, unk_token=model.get("unk_token", "[UNK]"),
                       continuing_subword_prefix=model.get("continuing_subword_prefix", "##"),
                       max_input_chars_per_word=model.get("max_input_chars_per_word", 100))
        roles = {r: t for r, t in (("unk", "[UNK]"), ("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "[PAD]"),
                                   ("mask", "[MASK]")) if t in vocab}
        return dict(model=wp, id_to_token=id_to_token, normalizer=normalizer, pre_tokenizer=pre,
                    post_processor=post, decoder=decoder, added_tokens=added, roles=roles, hf_extra=extra)
    raise FormatError(f"{where}: model type {mtype!r} is not supported (supported: BPE, WordPiece, Unigram)")


def _sentencepiece_roles(token_to_id: dict[str, int], unk: str | None) -> dict[str, str]:
    """SentencePiece's conventional role tokens, where the vocabulary has them (a config file may override)."""
    roles = {r: t for r, t in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>")) if t in token_to_id}
    if unk is not None:
        roles["unk"] = unk
    return roles


def _check_sentencepiece_decoder(decoder: Decoder | None, where: str) -> None:
    for kind in decoder_types(decoder):
        if kind not in SENTENCEPIECE_DECODERS:
            raise FormatError(f"{where}: decoder {kind!r} does not go with a character-level model "
                              f"(expected {', '.join(SENTENCEPIECE_DECODERS)} or a Sequence of them)")


def _char_bpe_from_hf(model: dict, vocab: dict[str, int], id_to_token: list[str | None], where: str,
                      **stages: Any) -> dict[str, Any]:
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
    return dict(model=bpe, id_to_token=id_to_token, roles=_sentencepiece_roles(token_to_id, unk), **stages)


def _unigram_from_hf(model: dict, where: str, **stages: Any) -> dict[str, Any]:
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
    return dict(model=unigram, id_to_token=id_to_token, roles=_sentencepiece_roles(token_to_id, unk), **stages)


def token_bytes_of(id_to_token: list[str | None], skip_ids: set[int]) -> list[bytes | None]:
    """GPT-2-alphabet token strings → byte strings (None for tokens outside that alphabet or ids in ``skip_ids``).

    >>> token_bytes_of(["Ġa", "<s>", "中"], {1})
    [b' a', None, None]
    """
    out: list[bytes | None] = []
    for i, tok in enumerate(id_to_token):
        if tok is None or i in skip_ids:
            out.append(None)
            continue
        try:
            out.append(token_string_to_bytes(tok))
        except KeyError:
            out.append(None)
    return out


def tokenizer_to_hf_json(tok: Any) -> dict:
    """The content of a HF ``tokenizer.json`` for a ``Tokenizer`` (read through its public attributes)."""
    vocab = {t: i for i, t in enumerate(tok.id_to_token_list()) if t is not None}
    model = tok.model.to_hf(vocab, tok.unk_token)
    pre = tok.pre_tokenizer
    normalizer = tok.normalizer.to_hf() if tok.normalizer is not None else None
    if isinstance(pre, BertPreTokenizer) and pre.normalizer is not None:
        normalizer = pre.normalizer.to_hf()
    post = tok.post_processor.to_hf() if tok.post_processor is not None else None
    if post is None and isinstance(tok.model, BPEModel):  # byte-level BPE files carry HF's ByteLevel post-step
        post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    return {"version": "1.0", "truncation": tok.hf_extra.get("truncation"), "padding": tok.hf_extra.get("padding"),
            "added_tokens": [t.to_hf() for t in tok.added_tokens], "normalizer": normalizer,
            "pre_tokenizer": pre.to_hf() if pre is not None else None, "post_processor": post,
            "decoder": tok.decoder.to_hf() if tok.decoder is not None else None, "model": model}



# --------------------------------------------------------------------------------------------- lmforge JSON
def tokenizer_to_lmforge_json(tok: Any) -> dict:
    """lmforge's own file: the HF pipeline spelling, plus roles and the chat template, tokens as a list."""
    hf = tokenizer_to_hf_json(tok)
    model: dict[str, Any] = {"type": hf["model"]["type"], "tokens": tok.id_to_token_list(),
                             **tok.model.lmforge_fields(hf["model"])}
    return {"format": LMFORGE_FORMAT, "version": 1, "kind": tok.kind, "model": model,
            "normalizer": hf["normalizer"], "pre_tokenizer": hf["pre_tokenizer"],
            "post_processor": hf["post_processor"], "decoder": hf["decoder"], "added_tokens": hf["added_tokens"],
            "roles": tok.roles(), "chat_template": tok.chat_template, "hf_extra": tok.hf_extra,
            "split_special_tokens": tok.split_special_tokens}


def stages_from_lmforge_json(obj: dict, where: str) -> dict[str, Any]:
    """``Tokenizer``'s keyword arguments from lmforge's own file (the content of ``tokenizer.lmforge.json``)."""
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
    stages = stages_from_hf(hf, where=where)
    if obj.get("kind") == "bpe" and model.get("rank_based"):
        stages["model"].use_ranks()
    stages["roles"] = merge_roles(stages, obj.get("roles") or {})
    stages["chat_template"] = obj.get("chat_template")
    stages["hf_extra"] = dict(obj.get("hf_extra") or {})
    stages["split_special_tokens"] = bool(obj.get("split_special_tokens"))
    return stages


def merge_roles(stages: dict[str, Any], roles: dict[str, str | None]) -> dict[str, str]:
    """The stages' roles, overridden by ``roles`` where those name a token of the vocabulary (others are ignored,
    as a file's role naming an unknown token is)."""
    known = {t for t in stages["id_to_token"] if t is not None} | {t.content for t in stages["added_tokens"]}
    return {**stages["roles"], **{r: t for r, t in roles.items() if t is not None and t in known}}




# ------------------------------------------------------------------------------------- byte-level BPE pieces
def byte_level_bpe_stages(
    vocab: dict[str, int],
    merges: list[tuple[str, str]],
    *,
    pattern: str = GPT2_PATTERN,
    special_tokens: dict[str, int] | None = None,
    bos_token: str | None = None,
    eos_token: str | None = None,
    pad_token: str | None = None,
    add_bos: bool = False,
    add_eos: bool = False,
    individual_digits: bool = False,
) -> dict[str, Any]:
    """``Tokenizer``'s keyword arguments for ``Tokenizer.from_byte_level_bpe`` (which documents the arguments)."""
    special_tokens = dict(special_tokens or {})
    size = max([*vocab.values(), *special_tokens.values()], default=-1) + 1
    id_to_token: list[str | None] = [None] * size
    for tok, i in vocab.items():
        id_to_token[i] = tok
    token_bytes = token_bytes_of(id_to_token, set(special_tokens.values()))
    merge_ids = []
    for k, (a, b) in enumerate(merges):
        if a not in vocab or b not in vocab:
            raise InputError(f"merges[{k}]: ({a!r}, {b!r}) names a token that is not in the vocabulary")
        merge_ids.append((vocab[a], vocab[b]))
    model = BPEModel(token_bytes, merge_ids)
    pre: PreTokenizer = ByteLevel(add_prefix_space=False, pattern=pattern)
    if individual_digits:
        pre = PreTokenizerSequence([Digits(True), pre])
    added = [AddedToken(t, i) for t, i in sorted(special_tokens.items(), key=lambda kv: kv[1])]
    post = None
    if add_bos or add_eos:
        ends = [t for t, flag in ((bos_token, add_bos), (eos_token, add_eos)) if flag]
        if None in ends:
            raise ConfigError("add_bos/add_eos need bos_token/eos_token")
        ids = {}
        for t in ends:
            if t not in vocab and t not in special_tokens:
                raise InputError(f"special token {t!r} is not in the vocabulary")
            ids[t] = [special_tokens.get(t, vocab.get(t))]
        single = ([(bos_token, 0)] if add_bos else []) + [("A", 0)] + ([(eos_token, 0)] if add_eos else [])
        pair = single + [(("B" if x == "A" else x), 1) for x, _ in single]
        post = Template(single, pair, ids, trim_offsets=True)
    roles = {"bos": bos_token, "eos": eos_token, "pad": pad_token}
    return dict(model=model, id_to_token=id_to_token, pre_tokenizer=pre, post_processor=post,
                decoder=decoder_from_hf(BYTE_LEVEL_DECODER, "byte-level BPE"), added_tokens=added, roles=roles)


BYTE_LEVEL_DECODER = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}

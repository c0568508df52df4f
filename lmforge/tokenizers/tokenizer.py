"""``Tokenizer``: one interface over byte-level BPE, WordPiece, and SentencePiece-style models (character-level
BPE with byte fallback, Unigram).

text ─▶ added tokens cut out (raw text) ─▶ normalizer ─▶ pre-tokenizer ─▶ model (BPE / WordPiece / Unigram) per
     piece ─▶ post-processor (``[CLS] A [SEP]``, BOS/EOS) ─▶ ids.
ids ─▶ token strings ─▶ decoder (GPT-2's byte alphabet → bytes, ``##`` joins, ``▁`` → space, ``<0xNN>`` → bytes)
     ─▶ text.

The stages are the same for every model: the model is asked through its contract (``model.Model``: ``encode``,
``tokenize``, ``explain``, ...), never by kind.

Each distinct pre-token is encoded once and cached: natural text repeats its words, so bulk encoding is
mostly a regex split plus dictionary look-ups.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Sequence
from typing import Any

from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers import formats, hf_json
from lmforge.tokenizers.bpe import GPT2_PATTERN
from lmforge.tokenizers.decoders import Decoder, NoDecoder, decoder_from_hf
from lmforge.tokenizers.model import Model
from lmforge.tokenizers.pipeline import (
    AddedToken,
    AddedTokenMatcher,
    ByteLevel,
    Normalizer,
    PreTokenizer,
    Template,
)

ROLES = ("bos", "eos", "pad", "unk", "cls", "sep", "mask")
_CACHE_LIMIT = 1_000_000  # distinct pre-tokens kept before the cache is reset (bounds memory on huge corpora)
# SentencePiece files without word splitting (Llama 2, Mistral) make a whole text one piece: such long pieces rarely
# repeat, so they are encoded without being cached (HF does the same above 256 chars)
_CACHE_MAX_PIECE = 256


class _PieceCache(dict):
    """piece (str) → list of ids; a miss runs the subword model once."""

    def __init__(self, encode_piece):
        super().__init__()
        self.encode_piece = encode_piece

    def __missing__(self, piece: str) -> list[int]:
        ids = self.encode_piece(piece)
        if len(piece) > _CACHE_MAX_PIECE:
            return ids
        if len(self) >= _CACHE_LIMIT:
            self.clear()
        self[piece] = ids
        return ids


class Tokenizer:
    """Text ↔ ids. Build one with ``train_tokenizer``, ``load_tokenizer``, ``Tokenizer.from_hf_json`` or
    ``Tokenizer.from_byte_level_bpe``.

    Roles (``bos``, ``eos``, ``pad``, ``unk``, ``cls``, ``sep``, ``mask``) are set by token string or by id:
    ``tok.pad_token = "<|endoftext|>"`` or ``tok.pad_token_id = 50256``.
    """

    def __init__(
        self,
        *,
        model: Model,
        id_to_token: list[str | None],
        pre_tokenizer: PreTokenizer | None,
        normalizer: Normalizer | None = None,
        post_processor: Template | None = None,
        decoder: Decoder | dict | None = None,
        added_tokens: Sequence[AddedToken] = (),
        roles: dict[str, str] | None = None,
        chat_template: str | None = None,
        hf_extra: dict | None = None,
        split_special_tokens: bool = False,
        kind: str | None = None,
    ):
        if kind is not None and kind not in ("bpe", "wordpiece", "unigram"):
            raise ConfigError(f"kind: expected 'bpe', 'wordpiece' or 'unigram', got {kind!r}")
        if kind is not None and kind != model.kind:
            raise ConfigError(f"kind: {kind!r} does not match the model ({type(model).__name__} is {model.kind!r})")
        if isinstance(decoder, dict):
            decoder = decoder_from_hf(decoder, "decoder")
        self.model = model
        self.normalizer = normalizer
        self.pre_tokenizer = pre_tokenizer
        self.post_processor = post_processor
        self.decoder = decoder
        self.chat_template = chat_template
        self.hf_extra = dict(hf_extra or {})  # e.g. tokenizer.json's truncation/padding: kept, never applied
        self._id_to_token: list[str | None] = list(id_to_token)
        self._split_special_tokens = split_special_tokens
        self._set_added_tokens(added_tokens)
        self._roles: dict[str, int] = {}
        for role, tok in (roles or {}).items():
            if tok is not None and tok in self._token_to_id:
                self._roles[role] = self._token_to_id[tok]
        unk = model.id_to_token(model.unk_id) if model.unk_id is not None else None
        if "unk" not in self._roles and unk in self._token_to_id:  # the model's unk plays the role by default
            self._roles["unk"] = self._token_to_id[unk]
        self._model_decoder = model.default_decoder() or NoDecoder()  # when the file names no decoder
        self._cache = _PieceCache(model.encode)  # piece → ids
        self._spans: dict[str, tuple[tuple[int, int, int], ...]] = {}  # piece → (id, start, end)s (offsets)

    @property
    def kind(self) -> str:
        """``"bpe"`` (byte- or character-level), ``"wordpiece"`` or ``"unigram"``: the model's kind."""
        return self.model.kind

    def clear_cache(self) -> None:
        """Forget every memo of encoded words (the tokenizer's and the model's): a cold start, e.g. to time."""
        self._cache.clear()
        self._spans.clear()
        self.model.clear_cache()

    def _set_added_tokens(self, added_tokens: Iterable[AddedToken]) -> None:
        """Install the added tokens: their ids in the vocabulary and the matchers that find them in text."""
        self.added_tokens = sorted(added_tokens, key=lambda t: t.id)
        top = max([len(self._id_to_token) - 1, *(t.id for t in self.added_tokens)], default=-1)
        self._id_to_token.extend([None] * (top + 1 - len(self._id_to_token)))
        for t in self.added_tokens:
            self._id_to_token[t.id] = t.content
        self._token_to_id = {tok: i for i, tok in enumerate(self._id_to_token) if tok is not None}
        for t in self.added_tokens:
            self._token_to_id[t.content] = t.id
        self._added_by_id = {t.id: t for t in self.added_tokens}
        # with split_special_tokens, special tokens written in the text are ordinary text (tiktoken's
        # encode_ordinary, transformers' split_special_tokens); they still exist as ids
        matched = [t for t in self.added_tokens if not (self._split_special_tokens and t.special)]
        self._raw_matcher = AddedTokenMatcher([t for t in matched if not t.normalized])
        norm_added = [t for t in matched if t.normalized]
        # "normalized" tokens are looked for second, in what the raw ones left, after normalization (as HF);
        # HF normalizes their contents too
        self._norm_matcher = None
        if norm_added:
            norm = self.normalizer
            self._norm_matcher = AddedTokenMatcher([
                dataclasses.replace(t, content=norm(t.content, None)[0]) if norm is not None else t
                for t in norm_added])

    @property
    def split_special_tokens(self) -> bool:
        """False (default, as HF): special tokens written in the text, e.g. ``<|endoftext|>``, become their id.
        True: they are tokenized as ordinary text (tiktoken's ``encode_ordinary``; the default for ``.tiktoken``)."""
        return self._split_special_tokens

    @split_special_tokens.setter
    def split_special_tokens(self, value: bool) -> None:
        self._split_special_tokens = bool(value)
        self._set_added_tokens(self.added_tokens)
        self.clear_cache()

    # --------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_byte_level_bpe(
        cls,
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
    ) -> Tokenizer:
        """A byte-level BPE tokenizer from GPT-2-alphabet token strings and merge pairs (e.g. GGUF metadata).

        ``special_tokens`` (content → id) are matched whole in raw text; they may already be in ``vocab``.
        ``individual_digits`` splits every digit apart first (SmolLM2, Llama-style ``Digits`` pre-step).

        >>> from lmforge.tokenizers.bpe import bytes_to_token_string
        >>> tok = Tokenizer.from_byte_level_bpe({**{bytes_to_token_string(bytes([b])): b for b in range(256)},
        ...                                      "hi": 256}, [("h", "i")])
        >>> tok.encode("hi!")
        [256, 33]
        """
        return cls(**hf_json.byte_level_bpe_stages(
            vocab, merges, pattern=pattern, special_tokens=special_tokens, bos_token=bos_token, eos_token=eos_token,
            pad_token=pad_token, add_bos=add_bos, add_eos=add_eos, individual_digits=individual_digits))

    @classmethod
    def from_hf_json(cls, obj: dict, *, where: str = "tokenizer.json") -> Tokenizer:
        """Build from the content of a Hugging Face ``tokenizer.json`` (a dict)."""
        if not isinstance(obj, dict):
            from lmforge.errors import FormatError

            raise FormatError(f"{where}: expected a JSON object")
        return cls(**hf_json.stages_from_hf(obj, where=where))

    def to_hf_json(self) -> dict:
        """The content of a Hugging Face ``tokenizer.json`` for this tokenizer."""
        return hf_json.tokenizer_to_hf_json(self)

    def save(self, path, format: str = "lmforge") -> None:
        """Write atomically. ``lmforge``: one JSON file (a folder gets ``tokenizer.lmforge.json``); ``hf``: a folder
        with ``tokenizer.json`` + ``tokenizer_config.json`` (or just the file if ``path`` ends in ``.json``);
        ``gpt2``: ``vocab.json`` + ``merges.txt``; ``bert``: ``vocab.txt`` (+ ``tokenizer_config.json``)."""
        formats.save_tokenizer(self, path, format)

    # ----------------------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return len(self._id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

    def id_to_token_list(self) -> list[str | None]:
        """Every id's token string, in id order (None for an id assigned to nothing)."""
        return list(self._id_to_token)

    def token_to_id(self, token: str) -> int | None:
        return self._token_to_id.get(token)

    def id_to_token(self, id: int) -> str:
        tok = self._id_to_token[self._check_id(id)]
        if tok is None:
            raise InputError(f"id {id} is not assigned to any token")
        return tok

    def token_bytes(self, id: int) -> bytes:
        """The raw bytes a token stands for: ``token_bytes(tok.encode(" the")[0]) == b" the"`` (GPT-2).
        Streaming decoders use it to hold back incomplete UTF-8."""
        self._check_id(id)
        added = self._added_by_id.get(id)
        if added is not None:
            return added.content.encode("utf-8")
        return self._decoding().token_bytes(self.id_to_token(id))

    def _decoding(self) -> Decoder:
        """The decoder in use: the file's, else the model's own (HF with none joins tokens with spaces)."""
        return self.decoder if self.decoder is not None else self._model_decoder

    def _check_id(self, id: int) -> int:
        if not isinstance(id, int) or isinstance(id, bool):
            try:
                id = int(id)  # numpy integers
            except (TypeError, ValueError):
                raise InputError(f"token id must be an int, got {type(id).__name__}") from None
        if not 0 <= id < len(self._id_to_token):
            raise InputError(f"token id {id} is out of range (vocab_size {len(self._id_to_token)})")
        return id

    @property
    def special_tokens(self) -> dict[str, int]:
        """Every special added token: content → id."""
        return {t.content: t.id for t in self.added_tokens if t.special}

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Register special tokens (matched whole, never split); new ones get the next free ids. Returns the ids.

        >>> from lmforge.tokenizers.bpe import bytes_to_token_string
        >>> tok = Tokenizer.from_byte_level_bpe({bytes_to_token_string(bytes([b])): b for b in range(256)}, [])
        >>> tok.add_special_tokens(["<eos>"]), tok.encode("a<eos>")
        ([256], [97, 256])
        """
        added = list(self.added_tokens)
        ids = []
        for t in tokens:
            i = self._token_to_id.get(t)
            if i is None:
                i = len(self._id_to_token)
                self._id_to_token.append(t)
                self._token_to_id[t] = i
            if i not in self._added_by_id:
                added.append(AddedToken(t, i))
                self._added_by_id[i] = added[-1]
            ids.append(i)
        self._set_added_tokens(added)
        self.clear_cache()
        return ids

    def _role_id(self, role: str) -> int | None:
        return self._roles.get(role)

    def _set_role(self, role: str, value: str | int | None, by_id: bool) -> None:
        if value is None:
            self._roles.pop(role, None)
        elif by_id:
            self._roles[role] = self._check_id(value)
        else:
            if value not in self._token_to_id:
                raise InputError(f"{role}_token: {value!r} is not in the vocabulary")
            self._roles[role] = self._token_to_id[value]

    def roles(self) -> dict[str, str]:
        """role → token string, e.g. ``{"eos": "<|endoftext|>"}``."""
        return {r: self._id_to_token[i] for r, i in self._roles.items()}

    # ------------------------------------------------------------------------------------------- encoding
    def _encode_ids(self, text: str) -> list[int]:
        """Ids of one text (no post-processing): the readable reference path, no offsets."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        get = self._cache.__getitem__
        pre = self.pre_tokenizer
        plain = self.normalizer is None and self._norm_matcher is None and pre is not None
        for s, e, added in self._raw_matcher.split(text):
            if added is not None:
                ids.append(added)
            elif plain:
                ids.extend(itertools.chain.from_iterable(map(get, pre.split_strings(text[s:e], s == 0))))
            else:
                self._encode_normalized(text[s:e], s, ids, None)
        return ids

    def _pre_split(self, text: str, at_start: bool) -> list[tuple[str, int, int, list[int] | None]]:
        """The pre-tokenizer's pieces (with char positions where it also normalises); without one (Llama 2's
        files) the whole text is one piece."""
        if self.pre_tokenizer is None:
            return [(text, 0, len(text), None)] if text else []
        return self.pre_tokenizer.split_aligned(text, at_start)

    def _encode_normalized(self, seg: str, base: int, ids: list[int], offsets: list | None) -> None:
        """Normalize ``seg`` (at ``base`` in the text), cut out normalized added tokens, pre-tokenize, encode;
        with ``offsets`` also the char span of every token in the original text."""
        norm, align = self.normalizer(seg, None) if self.normalizer is not None else (seg, None)
        parts = self._norm_matcher.split(norm) if self._norm_matcher else [(0, len(norm), None)]
        for s, e, added in parts:
            if added is not None:
                ids.append(added)
                if offsets is not None:
                    offsets.append(_span(align, s, e, base, len(seg)))
                continue
            for piece, ps, pe, positions in self._pre_split(norm[s:e], at_start=base == 0 and s == 0):
                if offsets is None:
                    ids.extend(self._cache[piece])
                    continue
                tokens = self._tokens(piece)
                inserted = len(piece) - (pe - ps)
                if positions is None and inserted <= 0 and align is None:  # the common case: spans just shift
                    shift = base + s + ps
                    for tid, ts, te in tokens:
                        ids.append(tid)
                        offsets.append((shift + ts, shift + te))
                    continue
                for tid, ts, te in tokens:
                    ids.append(tid)
                    if positions is not None:  # the pre-tokenizer normalised too: each char's place in norm[s:e]
                        a = positions[ts] if ts < len(positions) else pe
                        ts, te = s + a, s + (positions[te - 1] + 1 if te > ts else a)
                    else:
                        ts, te = _shift(ts, te, inserted)
                        ts, te = s + ps + ts, s + ps + te
                    offsets.append(_span(align, ts, te, base, len(seg)))

    def _tokens(self, piece: str) -> tuple[tuple[int, int, int], ...]:
        """The model's tokens of one piece as plain ``(id, start, end)`` tuples, memoised like the ids. Plain
        tuples of ints, not the model's ``Token`` list: the garbage collector stops tracking those, where every
        memoised list and ``Token`` stays tracked and makes each full collection walk them all (that cost the
        offsets path ~20% in a process that holds other large objects)."""
        tokens = self._spans.get(piece)
        if tokens is None:
            ids = self._cache.get(piece)  # .get: a miss does not encode
            tokens = tuple(map(tuple, self.model.tokenize(piece) if ids is None else
                               self.model.tokenize_ids(piece, ids)))
            if len(piece) <= _CACHE_MAX_PIECE:
                if len(self._spans) >= _CACHE_LIMIT:
                    self._spans.clear()
                self._spans[piece] = tokens
        return tokens

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for s, e, added in self._raw_matcher.split(text):
            if added is not None:
                ids.append(added)
                offsets.append((s, e))
                continue
            self._encode_normalized(text[s:e], s, ids, offsets)
        post = self.post_processor
        if post is not None and post.trim_offsets:
            prefix_space = bool((post.raw or {}).get("add_prefix_space", False))
            offsets = [_trim(self._id_to_token[i] or "", s, e, k == 0 or s == 0, prefix_space)
                       for k, (i, (s, e)) in enumerate(zip(ids, offsets, strict=True))]
        return ids, offsets

    def encode(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text`` (and ``pair``), with the post-processor's special tokens when asked.

        Special tokens written in the text (e.g. ``<|endoftext|>``) are matched whole, as HF does, unless
        ``split_special_tokens`` is set. Long texts (≥ 100k chars) take ``encode_many``'s compiled path; short
        ones the readable reference (``_encode_ids``), which gives the same ids.
        """
        a = self._encode_long(text)
        b = self._encode_long(pair) if pair is not None else None
        if add_special_tokens and self.post_processor is not None:
            return self.post_processor.apply(a, b, lambda tok, i: i)[0]
        return a + (b or [])

    def _encode_long(self, text: str) -> list[int]:
        if isinstance(text, str) and len(text) >= 100_000:
            return self._encode_document(text)
        return self._encode_ids(text)

    def _encode_document(self, text: str) -> list[int]:
        """``_encode_ids(text)`` through the fast path where it applies: the model's compiled split + encode
        (GPT-2 / cl100k patterns), or the split here with every new piece encoded in one batch."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        pre = self.pre_tokenizer
        if self.normalizer is not None or self._norm_matcher is not None or pre is None:
            return self._encode_ids(text)
        segments = self._raw_matcher.split(text)
        mode = _compiled_split_mode(pre)
        if mode is not None:
            ids: list[int] = []
            for s, e, added in segments:
                if added is not None:
                    ids.append(added)
                    continue
                seg = text[s:e]
                if pre.add_prefix_space and not seg.startswith(" "):
                    seg = " " + seg
                part = self.model.encode_text(seg, mode)
                if part is None:  # no compiled path for this model / text: the reference
                    return self._encode_ids(text)
                ids.extend(part)
            return ids
        pieces = [pre.split_strings(text[s:e], s == 0) if added is None else added for s, e, added in segments]
        cache = self._cache
        missing = list({p for seg in pieces if not isinstance(seg, int) for p in seg
                        if len(p) <= _CACHE_MAX_PIECE}.difference(cache.keys()))
        if missing:
            if len(cache) + len(missing) > _CACHE_LIMIT:
                cache.clear()
            cache.update(zip(missing, self.model.encode_many_words(missing), strict=True))
        get = cache.__getitem__
        ids = []
        for seg in pieces:
            if isinstance(seg, int):
                ids.append(seg)
            else:
                ids.extend(itertools.chain.from_iterable(map(get, seg)))
        return ids

    def encode_many(self, texts: Iterable[str], *, add_special_tokens: bool = False,
                    num_workers: int | None = None) -> list[list[int]]:
        """Encode many documents: ids identical to ``encode``, computed by the fast path (numba where it
        applies, and ``num_workers`` processes for large inputs; default: all cores when that pays off)."""
        from lmforge.tokenizers import fast

        texts = list(texts)
        workers = fast.default_workers(texts) if num_workers is None else num_workers
        if workers > 1 and len(texts) > 1:
            rows = fast.encode_in_processes(self._encode_document, texts, workers)
        else:
            rows = [self._encode_document(t) for t in texts]
        if add_special_tokens and self.post_processor is not None:
            rows = [self.post_processor.apply(r, None, lambda t, i: i)[0] for r in rows]
        return rows

    def encode_batch(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        padding_side: str = "right",
        return_offsets: bool = False,
        return_tensors: str | None = None,
    ) -> dict[str, Any]:
        """Encode a batch: ``input_ids``, ``attention_mask``, ``token_type_ids`` (and ``offsets``).

        ``truncation`` cuts the longer sequence of a pair first, before special tokens are added, so the result
        fits ``max_length``. ``padding``: ``True``/``"longest"`` pads to the longest, ``"max_length"`` to
        ``max_length``, on ``padding_side``, with ``pad_token_id`` (attention mask 0, offsets (0, 0)).
        """
        if isinstance(texts, str):
            raise InputError("texts: expected a list of strings, got one str (use encode for a single text)")
        texts = list(texts)
        if pairs is not None:
            pairs = list(pairs)
            if len(pairs) != len(texts):
                raise InputError(f"pairs: expected {len(texts)} items (one per text), got {len(pairs)}")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ConfigError(f"padding: expected False, True, 'longest' or 'max_length', got {padding!r}")
        if padding_side not in ("right", "left"):
            raise ConfigError(f"padding_side: expected 'right' or 'left', got {padding_side!r}")
        if return_tensors not in (None, "np"):
            raise ConfigError(f"return_tensors: expected None or 'np', got {return_tensors!r}")
        if (truncation or padding == "max_length") and max_length is None:
            raise ConfigError("max_length: needed for truncation=True or padding='max_length'")
        post = self.post_processor if add_special_tokens else None
        rows = []
        for k, text in enumerate(texts):
            pair = pairs[k] if pairs is not None else None
            a_ids, a_off = self._encode_with_offsets(text) if return_offsets else (self._encode_ids(text), None)
            b_ids = b_off = None
            if pair is not None:
                b_ids, b_off = self._encode_with_offsets(pair) if return_offsets else (self._encode_ids(pair), None)
            if truncation:
                budget = max_length - (post.num_added(pair is not None) if post else 0)
                if budget < 0:
                    raise ConfigError(f"max_length: {max_length} leaves no room for the special tokens")
                na, nb = _longest_first(len(a_ids), len(b_ids) if b_ids is not None else None, budget)
                a_ids, b_ids = a_ids[:na], (b_ids[:nb] if b_ids is not None else None)
                if return_offsets:
                    a_off, b_off = a_off[:na], (b_off[:nb] if b_off is not None else None)
            if post is not None:
                ids, types = post.apply(a_ids, b_ids, lambda tok, i: i)
                offs = post.apply(a_off, b_off, lambda tok, i: (0, 0))[0] if return_offsets else None
            else:
                ids = a_ids + (b_ids or [])
                types = [0] * len(a_ids) + [1] * len(b_ids or [])
                offs = (a_off + (b_off or [])) if return_offsets else None
            rows.append((ids, types, offs))
        out: dict[str, Any] = {"input_ids": [r[0] for r in rows], "attention_mask": [[1] * len(r[0]) for r in rows],
                               "token_type_ids": [r[1] for r in rows]}
        if return_offsets:
            out["offsets"] = [r[2] for r in rows]
        if padding and padding != "do_not_pad":
            target = max_length if padding == "max_length" else max((len(r[0]) for r in rows), default=0)
            pad_id = self.pad_token_id
            if pad_id is None:
                raise ConfigError("padding needs a pad token: set tok.pad_token = '...' (e.g. the eos token)")
            for key, fill in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0), ("offsets", (0, 0))):
                if key not in out:
                    continue
                padded = []
                for row in out[key]:
                    extra = [fill] * max(0, target - len(row))
                    padded.append(row + extra if padding_side == "right" else extra + row)
                out[key] = padded
        if return_tensors == "np":
            import numpy as np

            lengths = {len(r) for r in out["input_ids"]}
            if len(lengths) > 1:
                raise InputError("return_tensors='np' needs rows of equal length: pass padding=True")
            for key in ("input_ids", "attention_mask", "token_type_ids"):
                out[key] = np.asarray(out[key], dtype=np.int64).reshape(len(texts), -1)
            if return_offsets:
                out["offsets"] = np.asarray(out["offsets"], dtype=np.int64).reshape(len(texts), -1, 2)
        return out

    # ------------------------------------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``. Byte-level BPE joins the tokens' bytes (invalid UTF-8 → U+FFFD); WordPiece joins
        ``##`` continuations and cleans spaces before punctuation."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [self._check_id(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if not (i in self._added_by_id and self._added_by_id[i].special)]
        strings = self._id_to_token
        tokens = [strings[i] for i in ids]
        if None in tokens:
            self.id_to_token(ids[tokens.index(None)])  # raises: the id is assigned to no token
        return self._decoding().decode(tokens)

    # ------------------------------------------------------------------------------------------- explain
    def explain(self, text: str) -> list[dict[str, Any]]:
        """How each word of ``text`` was split: one record per pre-token, with its pieces, ids, and (BPE) the
        merges applied in order, (WordPiece) the longest-match steps, or (Unigram) the Viterbi pieces with their
        log-probabilities under ``"scores"``.

        >>> from lmforge.tokenizers.bpe import bytes_to_token_string
        >>> tok = Tokenizer.from_byte_level_bpe({**{bytes_to_token_string(bytes([b])): b for b in range(256)},
        ...                                      "hi": 256}, [("h", "i")])
        >>> tok.explain("hi")[0]["merges"]
        [('h', 'i', 'hi')]
        """
        records = []
        for s, e, added in self._raw_matcher.split(text):
            if added is not None:
                records.append({"word": text[s:e], "start": s, "end": e, "pieces": [self._id_to_token[added]],
                                "ids": [added], "special": True, "merges": []})
                continue
            seg = text[s:e]
            norm, align = self.normalizer(seg, None) if self.normalizer is not None else (seg, None)
            for piece, ps, pe, _ in self._pre_split(norm, at_start=s == 0):
                piece_ids = self._cache[piece]
                start, end = _span(align, ps, pe, s, len(seg))
                records.append({"word": piece, "start": start, "end": end,
                                "pieces": [self._id_to_token[i] for i in piece_ids], "ids": list(piece_ids),
                                "special": False, **self.model.explain(piece)})
        return records

    def __repr__(self) -> str:
        return f"Tokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, special_tokens={self.special_tokens})"


def _role_property(role: str):
    def get_id(self) -> int | None:
        return self._role_id(role)

    def set_id(self, value) -> None:
        self._set_role(role, value, by_id=True)

    def get_tok(self) -> str | None:
        i = self._role_id(role)
        return None if i is None else self._id_to_token[i]

    def set_tok(self, value) -> None:
        self._set_role(role, value, by_id=False)

    doc = f"The {role} token's id (settable; None if unset)."
    return property(get_id, set_id, doc=doc), property(get_tok, set_tok, doc=f"The {role} token string.")


for _role in ROLES:
    _id_prop, _tok_prop = _role_property(_role)
    setattr(Tokenizer, f"{_role}_token_id", _id_prop)
    setattr(Tokenizer, f"{_role}_token", _tok_prop)


# ------------------------------------------------------------------------------------------------- helpers
def load_tokenizer(path: str | os.PathLike, *, pattern: str | None = None,
                   special_tokens: dict[str, int] | None = None) -> Tokenizer:
    """Load a tokenizer file or folder, format detected.

    In a folder the precedence is lmforge JSON (``tokenizer.lmforge.json``), ``tokenizer.json``,
    ``vocab.json`` + ``merges.txt``, ``vocab.txt``. A ``.tiktoken`` file gets the GPT-2 pattern and
    ``<|endoftext|>`` = number of ranks unless ``pattern`` / ``special_tokens`` say otherwise.
    """
    return Tokenizer(**formats.read_tokenizer(path, pattern=pattern, special_tokens=special_tokens))


def _compiled_split_mode(pre: PreTokenizer) -> int | None:
    """The compiled splitter for a plain GPT-2 / cl100k ``ByteLevel`` pre-tokenizer (0 / 1), else None."""
    if type(pre) is not ByteLevel or not pre.use_regex:
        return None
    from lmforge.tokenizers.fast import compiled_split_mode

    return compiled_split_mode(pre.pattern)


def _shift(s: int, e: int, inserted: int) -> tuple[int, int]:
    """A token span in a piece the pre-tokenizer grew by ``inserted`` leading chars (a prefix space or ``▁``)
    as a span of the text: the inserted chars share the span of the first real char, as in HF.

    >>> _shift(0, 3, 1), _shift(0, 1, 1), _shift(2, 4, 0)
    ((0, 2), (0, 1), (2, 4))
    """
    if inserted > 0 and e > s:
        return max(0, s - inserted), max(0, e - 1 - inserted) + 1
    return s, e


def _span(align: list[int] | None, s: int, e: int, base: int, seg_len: int) -> tuple[int, int]:
    """Map a span of normalized text back to the original text (``align``: normalized index → original)."""
    if align is None:
        return base + s, base + e
    if s >= len(align):
        return base + seg_len, base + seg_len
    start = align[s]
    end = align[e - 1] + 1 if e > s else start
    return base + start, base + max(start, end)


def _trim(token: str, s: int, e: int, is_first: bool, prefix_space: bool) -> tuple[int, int]:
    """ByteLevel ``trim_offsets``, as HF: drop the spaces (``Ġ``) a token starts or ends with from its span.

    >>> _trim("Ġthe", 3, 7, False, False), _trim("Ġ", 0, 1, True, False)
    ((4, 7), (1, 1))
    """
    lead = len(token) - len(token.lstrip("Ġ \t\n\r\x0b\x0c"))
    trail = len(token) - len(token.rstrip("Ġ \t\n\r\x0b\x0c"))
    if lead and is_first and prefix_space and lead == 1:
        lead = 0  # the space the pre-tokenizer added is not in the text
    if lead:
        s = min(s + lead, e)
    if trail and e >= trail:
        e = max(e - trail, s)
    return s, e


def _longest_first(na: int, nb: int | None, budget: int) -> tuple[int, int | None]:
    """Lengths after longest-first truncation to ``budget`` tokens in total, as HF: the shorter sequence (the
    first on ties) keeps up to half the budget, the longer gets the rest.

    >>> _longest_first(10, 3, 8), _longest_first(5, 5, 9)
    ((5, 3), (4, 5))
    """
    if nb is None:
        return min(na, budget), None
    if na + nb <= budget:
        return na, nb
    if na <= nb:
        na = min(na, budget // 2)
        return na, min(nb, budget - na)
    nb = min(nb, budget // 2)
    return min(na, budget - nb), nb

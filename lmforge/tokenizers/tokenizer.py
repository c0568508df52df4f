"""``Tokenizer``: one interface over byte-level BPE, WordPiece, and SentencePiece-style models (character-level
BPE with byte fallback, Unigram).

text ─▶ added tokens cut out (raw text) ─▶ normalizer ─▶ pre-tokenizer ─▶ model (BPE / WordPiece / Unigram) per
     piece ─▶ post-processor (``[CLS] A [SEP]``, BOS/EOS) ─▶ ids.
ids ─▶ bytes (byte-level BPE) / word pieces (WordPiece) / the decoder chain (``▁`` → space, ``<0xNN>`` → bytes) ─▶ text.

Each distinct pre-token is encoded once and cached: natural text repeats its words, so bulk encoding is
mostly a regex split plus dictionary look-ups.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers.bpe import GPT2_PATTERN, BPEModel, token_string_to_bytes
from lmforge.tokenizers.pipeline import (
    AddedToken,
    AddedTokenMatcher,
    ByteLevel,
    Digits,
    Normalizer,
    PreTokenizer,
    PreTokenizerSequence,
    Template,
    byte_of_token,
    decode_chain,
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
        kind: str,
        model: Any,
        id_to_token: list[str | None],
        pre_tokenizer: PreTokenizer | None,
        normalizer: Normalizer | None = None,
        post_processor: Template | None = None,
        decoder: dict | None = None,
        added_tokens: Sequence[AddedToken] = (),
        roles: dict[str, str] | None = None,
        chat_template: str | None = None,
        hf_extra: dict | None = None,
        split_special_tokens: bool = False,
    ):
        if kind not in ("bpe", "wordpiece", "unigram"):
            raise ConfigError(f"kind: expected 'bpe', 'wordpiece' or 'unigram', got {kind!r}")
        self.kind = kind
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
        if kind == "wordpiece" and "unk" not in self._roles and getattr(model, "unk_token", None) in self._token_to_id:
            self._roles["unk"] = self._token_to_id[model.unk_token]
        self._byte_level = isinstance(model, BPEModel)
        # SentencePiece style: pieces are unicode strings (CharBPEModel, UnigramModel), decoded by the decoder chain
        self._char_level = kind in ("bpe", "unigram") and not self._byte_level
        self._space_marker = _space_marker(decoder) if self._char_level else None
        self._cache = _PieceCache(self._encode_piece)
        self._trim_offsets = bool(post_processor and post_processor.trim_offsets)

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
        self._cache.clear()

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
        special_tokens = dict(special_tokens or {})
        size = max([*vocab.values(), *special_tokens.values()], default=-1) + 1
        id_to_token: list[str | None] = [None] * size
        for tok, i in vocab.items():
            id_to_token[i] = tok
        token_bytes = _token_bytes_of(id_to_token, set(special_tokens.values()))
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
        return cls(kind="bpe", model=model, id_to_token=id_to_token, pre_tokenizer=pre, post_processor=post,
                   decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
                   added_tokens=added, roles=roles)

    @classmethod
    def from_hf_json(cls, obj: dict, *, where: str = "tokenizer.json") -> Tokenizer:
        """Build from the content of a Hugging Face ``tokenizer.json`` (a dict)."""
        from lmforge.tokenizers.formats import tokenizer_from_hf_json

        return tokenizer_from_hf_json(obj, where=where)

    def to_hf_json(self) -> dict:
        """The content of a Hugging Face ``tokenizer.json`` for this tokenizer."""
        from lmforge.tokenizers.formats import tokenizer_to_hf_json

        return tokenizer_to_hf_json(self)

    def save(self, path, format: str = "lmforge") -> None:
        """Write atomically. ``lmforge``: one JSON file (a folder gets ``tokenizer.lmforge.json``); ``hf``: a folder
        with ``tokenizer.json`` + ``tokenizer_config.json`` (or just the file if ``path`` ends in ``.json``);
        ``gpt2``: ``vocab.json`` + ``merges.txt``; ``bert``: ``vocab.txt`` (+ ``tokenizer_config.json``)."""
        from lmforge.tokenizers.formats import save_tokenizer

        save_tokenizer(self, path, format)

    # ----------------------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return len(self._id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        return dict(self._token_to_id)

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
        if self._byte_level:
            b = self.model.token_bytes[id] if id < len(self.model.token_bytes) else None
            if b is None:
                raise InputError(f"id {id} is not assigned to any token")
            return b
        tok = self.id_to_token(id)
        if self._char_level:
            b = byte_of_token(tok)
            if b is not None:
                return bytes([b])
            return (tok.replace(self._space_marker, " ") if self._space_marker else tok).encode("utf-8")
        prefix = self.model.continuing_subword_prefix
        if prefix and tok.startswith(prefix):
            return tok[len(prefix):].encode("utf-8")
        return tok.encode("utf-8")

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
        self._cache.clear()
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
    def _encode_piece(self, piece: str) -> list[int]:
        if self._byte_level:
            try:
                data = piece.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(
                    f"text holds {piece[e.start]!r} (U+{ord(piece[e.start]):04X}), a lone surrogate that cannot be "
                    "UTF-8 encoded; expected valid Unicode text") from None
            return self.model.encode_word(data)
        if self._char_level:
            _check_encodable(piece)
            return self.model.encode_word(piece)
        vocab = self._token_to_id
        return [vocab[p] for p, _, _ in self.model.tokenize_word(piece)]

    def _segments(self, text: str) -> list[tuple[int, int, int | None]]:
        return self._raw_matcher.split(text)

    def _encode_ids(self, text: str) -> list[int]:
        """Ids of one text (no post-processing): the fast path, no offsets."""
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        get = self._cache.__getitem__
        for s, e, added in self._segments(text):
            if added is not None:
                ids.append(added)
                continue
            seg = text[s:e]
            if self.normalizer is None and self._norm_matcher is None and not self._char_level:
                ids.extend(itertools.chain.from_iterable(map(get, self.pre_tokenizer.split_strings(seg))))
            else:
                self._encode_normalized(seg, s, ids, None)
        return ids

    def _pre_split(self, text: str, at_start: bool) -> list[tuple[str, int, int]]:
        """The pre-tokenizer's pieces; without one (Llama 2's files) the whole text is one piece."""
        if self.pre_tokenizer is None:
            return [(text, 0, len(text))] if text else []
        return self.pre_tokenizer.split_at(text, at_start)

    def _encode_normalized(self, seg: str, base: int, ids: list[int], offsets: list | None) -> None:
        norm, align = self.normalizer(seg, None) if self.normalizer is not None else (seg, None)
        parts = self._norm_matcher.split(norm) if self._norm_matcher else [(0, len(norm), None)]
        for s, e, added in parts:
            if added is not None:
                ids.append(added)
                if offsets is not None:
                    offsets.append(_span(align, s, e, base, len(seg)))
                continue
            if offsets is not None and not self._byte_level and hasattr(self.pre_tokenizer, "split_aligned"):
                # BERT's basic tokenizer: map each piece through the original index of every char of its word
                for word, positions in self.pre_tokenizer.split_aligned(norm[s:e]):
                    ids.extend(self._cache[word])
                    for _, ls, le in self.model.tokenize_word(word):
                        a, b = s + positions[ls], s + positions[le - 1] + 1
                        offsets.append(_span(align, a, b, base, len(seg)))
                continue
            for piece, ps, pe in self._pre_split(norm[s:e], at_start=base == 0 and s == 0):
                self._append_piece(piece, s + ps, s + pe, align, base, len(seg), ids, offsets)

    def _append_piece(self, piece, ps, pe, align, base, seg_len, ids, offsets) -> None:
        if self._char_level and len(piece) > _CACHE_MAX_PIECE:
            piece_ids = self._encode_piece(piece)
        else:
            piece_ids = self._cache[piece]
        ids.extend(piece_ids)
        if offsets is None:
            return
        if self._byte_level or self._char_level:
            if self._byte_level:
                local = _byte_token_offsets(piece, [len(self.model.token_bytes[i] or b"") if i < len(
                    self.model.token_bytes) else 1 for i in piece_ids])
            elif self.kind == "bpe":
                local = _byte_token_offsets(piece, self.model.encode_with_lengths(piece)[1])
            else:
                local = [(s, e) for _, s, e in self.model.tokenize(piece)]
            inserted = len(piece) - (pe - ps)  # a prefix space / ▁ the pre-tokenizer added: it shares the span
            if inserted > 0:                  # of the first real char, as in HF
                local = [(max(0, s - inserted), max(0, e - 1 - inserted) + 1) if e > s else (s, e)
                         for s, e in local]
        else:
            local = [(s, e) for _, s, e in self.model.tokenize_word(piece)]
            if pe - ps != len(piece):  # normalization changed the word's length: clamp into the span
                local = [(min(s, pe - ps), min(e, pe - ps)) for s, e in local]
        for s, e in local:
            offsets.append(_span(align, ps + s, ps + e, base, seg_len))

    def _encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        for s, e, added in self._segments(text):
            if added is not None:
                ids.append(added)
                offsets.append((s, e))
                continue
            self._encode_normalized(text[s:e], s, ids, offsets)
        if self._trim_offsets and self._byte_level:
            prefix_space = bool((self.post_processor.raw or {}).get("add_prefix_space", False))
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
        if isinstance(text, str) and len(text) >= 100_000 and self._byte_level:
            from lmforge.tokenizers.fast import encode_document

            return encode_document(self, text)
        return self._encode_ids(text)

    def encode_many(self, texts: Iterable[str], *, add_special_tokens: bool = False,
                    num_workers: int | None = None) -> list[list[int]]:
        """Encode many documents: ids identical to ``encode``, computed by the fast path (numba where it
        applies, and ``num_workers`` processes for large inputs; default: all cores when that pays off)."""
        if self._char_level:  # SentencePiece-style models have no compiled path: one by one
            return [self.encode(t, add_special_tokens=add_special_tokens) for t in texts]
        from lmforge.tokenizers.fast import encode_many

        return encode_many(self, list(texts), add_special_tokens=add_special_tokens, num_workers=num_workers)

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
        if self._byte_level:
            return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")
        if self._char_level:
            return "".join(decode_chain(self.decoder, [self.id_to_token(i) for i in ids]))
        from lmforge.tokenizers.wordpiece import decode_wordpiece

        cleanup = True
        for d in _decoder_steps(self.decoder):
            if d.get("type") == "WordPiece":
                cleanup = d.get("cleanup", True)
        return decode_wordpiece([self.id_to_token(i) for i in ids], self.model.continuing_subword_prefix, cleanup)

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
        for s, e, added in self._segments(text):
            if added is not None:
                records.append({"word": text[s:e], "start": s, "end": e, "pieces": [self._id_to_token[added]],
                                "ids": [added], "special": True, "merges": []})
                continue
            seg = text[s:e]
            if self.normalizer is not None:
                norm, align = self.normalizer(seg, None)
            else:
                norm, align = seg, None
            for piece, ps, pe in self._pre_split(norm, at_start=s == 0):
                piece_ids = self._cache[piece]
                start, end = _span(align, ps, pe, s, len(seg))
                record = {"word": piece, "start": start, "end": end,
                          "pieces": [self._id_to_token[i] for i in piece_ids], "ids": list(piece_ids),
                          "special": False}
                if self._byte_level:
                    steps = self.model.explain_word(piece.encode("utf-8", errors="surrogatepass"))
                    record["merges"] = [(self._id_to_token[a], self._id_to_token[b], self._id_to_token[n])
                                        for _, a, b, n in steps]
                elif self.kind == "bpe":  # character-level BPE
                    record["merges"] = [(self._id_to_token[a], self._id_to_token[b], self._id_to_token[n])
                                        for _, a, b, n in self.model.explain_word(piece)]
                elif self.kind == "unigram":
                    record["merges"] = []
                    record["scores"] = self.model.explain_word(piece)
                else:
                    record["merges"] = []
                    record["steps"] = self.model.explain_word(piece)
                records.append(record)
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
def _check_encodable(piece: str) -> None:
    """Lone surrogates cannot be UTF-8 (nor reach HF): refuse them clearly."""
    try:
        piece.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"text holds {piece[e.start]!r} (U+{ord(piece[e.start]):04X}), a lone surrogate that cannot "
                         "be UTF-8 encoded; expected valid Unicode text") from None


def _space_marker(decoder: dict | None) -> str | None:
    """The character a SentencePiece-style decoder turns into a space (``▁``), or None.

    >>> _space_marker({"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"},
    ...                                                  "content": " "}]})
    '▁'
    """
    for d in _decoder_steps(decoder):
        if d.get("type") == "Metaspace":
            return d.get("replacement", d.get("str_rep", "▁"))
        if d.get("type") == "Replace" and d.get("content") == " " and "String" in d.get("pattern", {}):
            return d["pattern"]["String"]
    return None


def _token_bytes_of(id_to_token: list[str | None], skip_ids: set[int]) -> list[bytes | None]:
    """GPT-2-alphabet token strings → byte strings (None for tokens outside that alphabet or ids in ``skip_ids``).

    >>> _token_bytes_of(["Ġa", "<s>", "中"], {1})
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


def _byte_token_offsets(piece: str, byte_lengths: list[int]) -> list[tuple[int, int]]:
    """Char spans of consecutive tokens of ``piece`` given their byte lengths; a token that ends inside a
    multi-byte character covers that whole character (as HF does).

    >>> _byte_token_offsets("héllo", [1, 2, 3])
    [(0, 1), (1, 2), (2, 5)]
    """
    if len(piece) == sum(byte_lengths):  # ASCII: bytes are chars
        out, pos = [], 0
        for n in byte_lengths:
            out.append((pos, pos + n))
            pos += n
        return out
    char_of_byte = []
    for ci, c in enumerate(piece):
        char_of_byte.extend([ci] * len(c.encode("utf-8", errors="surrogatepass")))
    out, pos = [], 0
    for n in byte_lengths:
        if n == 0 or pos >= len(char_of_byte):
            out.append((len(piece), len(piece)))
            continue
        out.append((char_of_byte[pos], char_of_byte[min(pos + n, len(char_of_byte)) - 1] + 1))
        pos += n
    return out


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


def _decoder_steps(decoder: dict | None) -> list[dict]:
    if decoder is None:
        return []
    if decoder.get("type") == "Sequence":
        return [s for d in decoder.get("decoders", []) for s in _decoder_steps(d)]
    return [decoder]

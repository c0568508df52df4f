"""Run a few steps of GPT pre-training on the built-in corpus's UTF-8 bytes (vocab 256, no tokenizer needed).

Used by test_distributed.py both as ``python ddp_worker.py OUT`` and under ``torchrun --nproc_per_node 2``.
Prints nothing; the losses are in OUT/metrics.jsonl (written by rank 0).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lmforge.data.corpus import builtin_text
from lmforge.data.tokens import TokenData
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.train.lm import NextTokenTask
from lmforge.train.loop import TrainConfig, train


def byte_tokens() -> TokenData:
    data = np.frombuffer(builtin_text().encode("utf-8"), dtype=np.uint8).astype(np.uint16)
    n_val = len(data) // 10
    return TokenData(folder=None, train=data[:-n_val], val=data[-n_val:], manifest={"vocab_size": 256})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fsdp", action="store_true")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=64)
    model = GPT(config)
    task = NextTokenTask(byte_tokens(), config.block_size, seed=0, max_eval_windows=16)
    train_config = TrainConfig(steps=args.steps, batch_size=8, grad_accum=args.grad_accum, lr=3e-3, warmup_steps=2,
                               eval_every=3, eval_batches=2, checkpoint_every=3, fsdp=args.fsdp)
    train(model, task, train_config, args.out, model_config=config.to_dict(), progress=False)


if __name__ == "__main__":
    main()

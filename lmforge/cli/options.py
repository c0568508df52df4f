"""Option tables shared by the training commands (``lmforge train gpt|bert|seq2seq``)."""

from __future__ import annotations

import argparse

TRAIN_OPTIONS: list[tuple[str, type, str]] = [
    ("steps", int, "optimizer steps"),
    ("batch_size", int, "global batch in sequences per step (the same for any number of processes)"),
    ("grad_accum", int, "micro-batches accumulated per step and process"),
    ("lr", float, "peak learning rate"),
    ("min_lr", float, "learning rate at the end of the cosine (default lr/10)"),
    ("warmup_steps", int, "linear warm-up steps"),
    ("weight_decay", float, "AdamW decoupled weight decay (not on norms, biases, embeddings)"),
    ("grad_clip", float, "clip the gradient norm to this (0: off)"),
    ("eval_every", int, "validation loss every N steps (0: only at the end)"),
    ("eval_batches", int, "validation batches per evaluation"),
    ("checkpoint_every", int, "checkpoint every N steps (0: only at the end)"),
    ("keep_checkpoints", int, "how many checkpoints to keep"),
    ("log_every", int, "plain log line every N steps when not on a terminal"),
    ("bf16", bool, "bfloat16 autocast"),
    ("compile", bool, "torch.compile the model"),
    ("fsdp", bool, "under torchrun: shard with FSDP2 instead of DDP"),
    ("seed", int, "random seed (weights, batches)"),
]


def add_options(group: argparse._ArgumentGroup, table: list[tuple[str, type, str]]) -> None:
    """One ``--field-name`` option per row ``(field, type, help)``; default None means 'not given' (booleans get
    ``--x`` / ``--no-x``)."""
    for name, kind, help_text in table:
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, type=kind, default=None, metavar=kind.__name__.upper(),
                               help=help_text)

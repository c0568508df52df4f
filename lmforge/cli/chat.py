"""``lmforge chat``: a multi-turn terminal chat with an instruct model, through its own chat template."""

from __future__ import annotations

import argparse
import sys

from lmforge.cli.generate import add_sampling_arguments, sampling_options

HELP = "chat with an instruct model in the terminal (its chat template, streamed answers)"
DESCRIPTION = """\
Multi-turn chat with an instruct model (a .gguf file, a Hugging Face folder or an lmforge folder whose tokenizer
has a chat template). Type a message and press Enter; the answer streams as it is generated. The whole
conversation is re-sent through the model's chat template each turn.

Commands: /reset forgets the conversation (keeps --system), /exit (or end of input, Ctrl-D) quits.
Reads plain lines from standard input, so a conversation can be scripted:
  printf 'Hi\\n/exit\\n' | lmforge chat --model model.gguf --max-new-tokens 32
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, metavar="PATH", help="model: .gguf file, HF folder or lmforge folder")
    p.add_argument("--system", metavar="TEXT", help="system prompt (default: the template's own, if any)")
    add_sampling_arguments(p, max_new_tokens=256, temperature=0.7)
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    p.set_defaults(func=run_chat)


def _decoding_options(args: argparse.Namespace) -> dict:
    from lmforge.errors import ConfigError

    if args.max_new_tokens <= 0:
        raise ConfigError(f"--max-new-tokens: expected a positive integer, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise ConfigError(f"--temperature: expected a value >= 0, got {args.temperature}")
    return sampling_options(args)


def run_chat(args: argparse.Namespace) -> int:
    import torch

    import lmforge
    from lmforge.errors import ConfigError

    if args.threads:
        torch.set_num_threads(args.threads)
    options = _decoding_options(args)
    lm = lmforge.load(args.model)
    if lm.tokenizer is None or not getattr(lm.tokenizer, "chat_template", None):
        raise ConfigError(f"{args.model}: the model has no chat template; use 'lmforge generate' for plain text")
    interactive = sys.stdin.isatty()
    start = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(start)
    if interactive:
        print("lmforge chat: /reset to start over, /exit to quit.", file=sys.stderr)
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = list(start)
            print("(conversation reset)", flush=True)
            continue
        messages.append({"role": "user", "content": text})
        if interactive:
            print("assistant> ", end="", flush=True)
        pieces = []
        for piece in lm.chat(messages, stream=True, **options):
            pieces.append(piece)
            print(piece, end="", flush=True)
        print(flush=True)
        messages.append({"role": "assistant", "content": "".join(pieces).strip()})
    return 0

"""``lmforge generate``: continue a prompt with a language model, streaming the text to the terminal."""

from __future__ import annotations

import argparse
import sys

HELP = "continue a prompt with a language model (greedy, sampling or beam search), streamed"
DESCRIPTION = """\
Continue PROMPT with a model (an lmforge folder, a Hugging Face GPT-2/Llama/Mistral/Mixtral folder or a .gguf
file) and print the new text as it is produced. No chat template is applied (see 'lmforge chat').

Default decoding is greedy (--temperature 0). --show-probs N prints, for every generated token, its probability
and the N most likely alternatives.

Examples:
  lmforge generate --model runs/tiny --prompt "The meaning of" --max-new-tokens 40
  lmforge generate --model model.gguf --prompt "Paris is" --temperature 0.8 --top-p 0.95 --seed 1
  lmforge generate --model model.gguf --prompt "Paris is" --show-probs 5 --max-new-tokens 8
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, metavar="PATH", help="model: lmforge folder, HF folder or .gguf file")
    p.add_argument("--prompt", required=True, help="text to continue ('-' reads it from standard input)")
    add_sampling_arguments(p, max_new_tokens=64, temperature=0.0)
    p.add_argument("--num-beams", type=int, default=1, metavar="N", help="beam search with N beams (1 = off)")
    p.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                   help="beam search: finished beams are scored log-prob / length**A (1.0)")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT",
                   help="stop before this text (repeatable)")
    p.add_argument("--show-probs", type=int, nargs="?", const=5, default=0, metavar="N",
                   help="print each token's probability and its N likeliest alternatives (N=5)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    p.set_defaults(func=run_generate)


def add_sampling_arguments(p: argparse.ArgumentParser, *, max_new_tokens: int, temperature: float) -> None:
    """The decoding options shared by commands that generate text (``generate``, ``chat``), with their defaults."""
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens, metavar="N",
                   help=f"most tokens to generate ({max_new_tokens})")
    p.add_argument("--temperature", type=float, default=temperature, metavar="T",
                   help=f"sampling temperature; 0 = greedy ({temperature:g})")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample only among the K likeliest tokens")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="nucleus sampling: smallest set of tokens with probability mass >= P")
    p.add_argument("--min-p", type=float, default=None, metavar="P",
                   help="drop tokens less likely than P times the likeliest one")
    p.add_argument("--repetition-penalty", type=float, default=None, metavar="R",
                   help="divide the scores of already-seen tokens by R (> 1 discourages repeats)")
    p.add_argument("--seed", type=int, default=None, help="random seed, for reproducible sampling")


def sampling_options(args: argparse.Namespace) -> dict:
    """The ``lm.generate`` keyword arguments set by :func:`add_sampling_arguments`."""
    return {
        "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
        "top_p": args.top_p, "min_p": args.min_p, "repetition_penalty": args.repetition_penalty, "seed": args.seed,
    }


def _options(args: argparse.Namespace) -> dict:
    return {**sampling_options(args), "num_beams": args.num_beams, "length_penalty": args.length_penalty,
            "stop": args.stop}


def run_generate(args: argparse.Namespace) -> int:
    import torch

    import lmforge
    from lmforge.errors import ConfigError

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads: expected a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    lm = lmforge.load(args.model)
    options = _options(args)
    if args.show_probs:
        _show_probs(lm, prompt, options, args.show_probs)
        return 0
    for piece in lm.stream(prompt, **options):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _show_probs(lm, prompt: str, options: dict, top_n: int) -> None:
    """One line per generated token: the token, its probability, then the likeliest alternatives."""
    from lmforge.errors import ConfigError
    from lmforge.generate import encode_prompts, iter_tokens, text_options

    options.pop("length_penalty", None)
    if options.pop("num_beams") > 1 or options.get("stop"):
        raise ConfigError("--show-probs works with greedy or sampled decoding, without --num-beams or --stop")
    id_options, _ = text_options(lm, options)
    eos = set(id_options["eos_token_ids"])
    tok = lm.tokenizer
    print(f"{'token':>16}  {'prob':>6}  alternatives")
    ids: list[int] = []
    for out in iter_tokens(lm.model, encode_prompts(lm, [prompt]), top_n=top_n, **id_options):
        _, token, info = out[0]
        alternatives = "  ".join(f"{_show(tok, i)} {p:.3f}" for i, p in info.alternatives)
        print(f"{_show(tok, token):>16}  {info.prob:6.3f}  {alternatives}")
        if token in eos:
            break
        ids.append(token)
    print("\n" + prompt + tok.decode(ids))


def _show(tokenizer, token_id: int) -> str:
    """A token as a quoted string, whitespace visible: ``' the'``."""
    return repr(tokenizer.decode([token_id], skip_special_tokens=False))

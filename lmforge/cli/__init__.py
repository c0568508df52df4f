"""The ``lmforge`` command: a thin shell over the library calls a Python user makes.

Each command group lives in its own module under ``lmforge/cli/`` and exposes ``register(subparsers)``,
which adds its sub-command(s) and sets ``func`` (a callable taking the parsed args and returning an exit code).
Heavy imports (torch, numba) happen inside the handlers, so ``lmforge --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lmforge import __version__
from lmforge.errors import LmforgeError

# Command-group modules, in the order their commands are listed in --help.
COMMAND_MODULES: list[str] = [
    "lmforge.cli.demo",
    "lmforge.cli.tokenizer",
    "lmforge.cli.data",
    "lmforge.cli.train",
    "lmforge.cli.generate",
    "lmforge.cli.chat",
    "lmforge.cli.eval",
    "lmforge.cli.represent",
    "lmforge.cli.bert",
    "lmforge.cli.cache",
    "lmforge.cli.compare",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge",
        description="lmforge: tokenizers, word2vec, BERT and GPT, implemented for real — train, run and look inside.",
        epilog="Run 'lmforge COMMAND --help' for a command's options. Errors print one message; add --debug for "
        "the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv or argv == ["--debug"] else 2
    try:
        return int(args.func(args) or 0)
    except LmforgeError as e:
        if args.debug:
            raise
        print(f"lmforge: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("lmforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""``lmforge cache list`` and ``lmforge cache clear``: look at and prune the cache of converted weights
(GGUF files dequantized to safetensors, see :mod:`lmforge.io.cache`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    cache = subparsers.add_parser(
        "cache", help="list or clear the cache of converted weights (dequantized GGUF files)",
        description="lmforge caches the float32 weights it makes from a GGUF file loaded with quantized=False "
        "(a safetensors file keyed by the GGUF file's SHA-256) so a second load is fast; the default load keeps the "
        "weights quantized and needs no cache. The folder is $LMFORGE_CACHE (default ~/.cache/lmforge). "
        "After each write, least-recently-used entries are deleted until the cache fits in $LMFORGE_CACHE_MAX_GB "
        "(default 20; 'none': no cap); the entry just written is always kept.",
    )
    actions = cache.add_subparsers(dest="cache_action", metavar="ACTION")
    show = actions.add_parser("list", help="entries with size, last use and source file",
                              description="List the cache entries, least recently used first: size, last use, "
                              "kind, the source file they were made from, and the total against the cap.")
    show.set_defaults(func=run_list)
    clear = actions.add_parser(
        "clear", help="delete entries (all, or those unused for DAYS days)",
        description="Delete cache entries: every one (--all) or those last used more than DAYS days ago "
        "(--older-than). Temp files of interrupted writes older than a day go too. An entry deleted while another "
        "process reads it is safe: that process keeps its copy, and the next load makes the entry again.",
        epilog="examples: lmforge cache clear --older-than 30\n          lmforge cache clear --all",
    )
    which = clear.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="delete every entry")
    which.add_argument("--older-than", type=float, metavar="DAYS",
                       help="delete entries last used more than DAYS days ago (fractions allowed)")
    clear.set_defaults(func=run_clear)
    cache.set_defaults(func=lambda args: (cache.print_help(), 0)[1])


def _size(n: int) -> str:
    """Bytes for people: ``_size(1_500_000)`` → ``'1.5 MB'`` (powers of 1000, as the cap is given in GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def run_list(args: argparse.Namespace) -> int:
    import time

    from lmforge.io.cache import cache_dir, list_entries, max_cache_bytes

    entries = list_entries()
    cap = max_cache_bytes()
    total = sum(e.size for e in entries)
    print(f"{cache_dir()}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {_size(total)} "
          f"(cap {'none' if cap is None else _size(cap)})")
    if entries:
        print(f"{'LAST USED':<16}  {'SIZE':>9}  {'KIND':<5}  {'KEY':<16}  SOURCE")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        print(f"{used:<16}  {_size(e.size):>9}  {e.kind:<5}  {e.key[:16]:<16}  {e.source or '?'}")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from lmforge.io.cache import cache_dir, clear

    removed = clear(older_than_days=None if args.all else args.older_than)
    print(f"{cache_dir()}: deleted {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}, "
          f"{_size(sum(e.size for e in removed))} freed")
    return 0

"""``--baseline PATH`` for the tokenizer benches: the same measurements run against an older lmforge (a ``git
worktree`` of an earlier commit) and this tree, each round in fresh subprocesses with their own ``PYTHONPATH``,
alternating which goes first, then medians and ratios printed side by side.

    git worktree add /tmp/tok-base 4fbe978
    python3 bench/wordpiece.py --baseline /tmp/tok-base --rounds 5

The child is this tree's bench script run with ``--child``; it uses only the public API both versions share and
prints one JSON line ``{"measure": seconds}``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NEW_ROOT = HERE.parent


def run(script: str, baseline: str, child_args: list[str], rounds: int) -> dict[str, tuple[float, float]]:
    """Run ``script --child child_args`` ``rounds`` times against each tree, alternating; print and return
    ``measure → (median seconds before, median seconds after)``."""
    base = Path(baseline).resolve()
    if not (base / "lmforge" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {base}: not an lmforge checkout (git worktree add {base} <commit>)")
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for r in range(rounds):
        order = [("before", base), ("after", NEW_ROOT)]
        if r % 2:
            order.reverse()
        for label, root in order:
            env = {**os.environ, "PYTHONPATH": str(root)}
            proc = subprocess.run([sys.executable, str(HERE / script), "--child", *child_args], env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{label} ({root}) failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            for name, seconds in result.items():
                times[label].setdefault(name, []).append(seconds)
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    out = {}
    print(f"\n{'measure':<58s} {'before s':>9s} {'after s':>9s} {'ratio':>7s}")
    for name in times["before"]:
        before = statistics.median(times["before"][name])
        after = statistics.median(times["after"][name])
        out[name] = (before, after)
        print(f"{name:<58s} {before:9.3f} {after:9.3f} {before / after:6.2f}x")
    print(f"\nmedians of {rounds} rounds, before = {base}, after = {NEW_ROOT}; ratio = before / after "
          "(> 1: the new code is faster)")
    return out


def emit(result: dict[str, float]) -> None:
    """The child's answer: one JSON line on stdout."""
    print(json.dumps(result))

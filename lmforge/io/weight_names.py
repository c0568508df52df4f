"""The one style of weight-name table every importer uses: a list of :class:`Row` (lmforge name ← their name(s)).

``{i}`` in a name is the block index, ``{e}`` the expert index; :func:`expand_rows` fills them in. Where lmforge
fuses matrices (Q|K|V into ``qkv``, gate|up into ``gate_up``) a row lists several tensors of the other format, which
are stacked along dim 0 in that order (and split again on export).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """lmforge parameter ← the other format's tensor(s). ``transpose``: the other format stores the matrix as
    ``(in, out)`` (GPT-2's ``Conv1D``)."""

    ours: str
    theirs: tuple[str, ...]
    transpose: bool = False


def row(ours: str, *theirs: str, transpose: bool = False) -> Row:
    """``row("wte.weight", "model.embed_tokens.weight")`` → ``Row('wte.weight', ('model.embed_tokens.weight',))``."""
    return Row(ours, theirs, transpose)


def expand_rows(table: list[Row], n_layer: int, n_expert: int = 0, prefix: str = "") -> list[Row]:
    """Rows with ``{i}`` / ``{e}`` filled in for every block / expert, ``prefix`` put before every foreign name.

    >>> expand_rows([row("blocks.{i}.w", "h.{i}.w")], n_layer=2, prefix="bert.")[1]
    Row(ours='blocks.1.w', theirs=('bert.h.1.w',), transpose=False)
    """
    rows = []
    for r in table:
        for i in range(n_layer) if "{i}" in r.ours else [0]:
            for e in range(n_expert) if "{e}" in r.ours else [0]:
                theirs = tuple(prefix + t.format(i=i, e=e) for t in r.theirs)
                rows.append(Row(r.ours.format(i=i, e=e), theirs, r.transpose))
    return rows

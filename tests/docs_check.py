"""Runs the fenced ```bash / ```python blocks of a markdown page, in order, in one scratch folder.

The rules (also written for authors in docs/testing.md, "Writing a docs page that the checker runs"):

- Every block fenced as ```bash or ```python runs; other fences (```, ```text, ```console ...) are shown, not run.
- Blocks of one page run in order, in one fresh folder shared by that page's blocks (files made by one block are
  there for the next). Environment: HF_HUB_OFFLINE=1, OMP_NUM_THREADS=1, PYTHONPATH=<repo>, $LMFORGE_REPO=<repo>;
  ``lmforge``, ``python`` and ``python3`` on PATH run the repository's code with the test interpreter.
- bash blocks run as ``bash -euo pipefail FILE``; python blocks as ``python FILE``. A non-zero exit fails the page.
- A python statement ``print(...)  # -> VALUE`` states its output: each time it runs, what it prints (the
  whitespace at both ends dropped) must equal VALUE, where ``...`` in VALUE stands for any text.
- Markers, each an HTML comment on its own line, on the lines right before a block (several may be stacked):
    <!-- docs: skip REASON -->            the block is not run; the checker reports it with REASON
    <!-- docs: replace "OLD" "NEW" -->    before running, every OLD in the block becomes NEW (JSON string syntax:
                                          \\" and \\\\ escape). OLD must occur in the block, else the page fails.
  A marker that is malformed, unknown, or not directly followed by a ```bash / ```python block fails the page.

    >>> blocks = parse_page_text('<!-- docs: replace "600" "6" -->\\n```bash\\nlmforge demo --steps 600\\n```\\n')
    >>> blocks[0].runnable_code()
    'lmforge demo --steps 6\\n'
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN_LANGS = ("bash", "python")
BLOCK_TIMEOUT_S = 300

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)[^`]*$")  # CommonMark: no backtick after a backtick fence
_MARKER = re.compile(r"^\s*<!--\s*docs:(.*?)-->\s*$")
_JSON_STRING = r'"(?:[^"\\]|\\.)*"'
_REPLACE = re.compile(rf"^\s*replace\s+({_JSON_STRING})\s+({_JSON_STRING})\s*$")
_EXPECT = re.compile(r"^#\s*->\s?(.*?)\s*$")


class DocsError(Exception):
    """A page that breaks the checker's rules, or a block that failed."""


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None
    replaces: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def runnable_code(self) -> str:
        """The code with the replace markers applied; an OLD text that is not in the block is an error."""
        code = self.code
        for old, new in self.replaces:
            if old not in code:
                raise DocsError(f"{self.where}: replace marker: {old!r} does not occur in the block")
            code = code.replace(old, new)
        return code


def _parse_marker(body: str, where: str) -> tuple[str, object]:
    body = body.strip()
    if body.startswith("skip"):
        reason = body[len("skip"):].strip()
        if not reason or not body[len("skip"):][:1].isspace():
            raise DocsError(f"{where}: 'docs: skip' needs a reason: <!-- docs: skip REASON -->")
        return "skip", reason
    m = _REPLACE.match(body)
    if m:
        return "replace", (json.loads(m.group(1)), json.loads(m.group(2)))
    raise DocsError(f"{where}: unknown docs marker {body!r}: use <!-- docs: skip REASON --> or "
                    f'<!-- docs: replace "OLD" "NEW" -->')


def parse_page_text(text: str, page: str = "<page>") -> list[Block]:
    """Every fenced block of a markdown text whose language is bash or python, with its markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: list[tuple[int, str, object]] = []  # markers waiting for their block
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        if marker:
            pending.append((i + 1, *_parse_marker(marker.group(1), f"{page}:{i + 1}")))
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            indent, ticks, lang = fence.groups()
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(ticks):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
                j += 1
            if j == len(lines):
                raise DocsError(f"{page}:{i + 1}: unclosed code fence")
            if lang in RUN_LANGS:
                block = Block(page, i + 1, lang, "\n".join(body) + "\n")
                for _, kind, value in pending:
                    if kind == "skip":
                        block.skip = str(value)
                    else:
                        block.replaces.append(value)  # type: ignore[arg-type]
                blocks.append(block)
            elif pending:
                raise DocsError(f"{page}:{pending[0][0]}: docs marker before a ```{lang} block: markers apply only "
                                "to ```bash and ```python blocks")
            pending = []
            i = j + 1
            continue
        if pending and line.strip():
            raise DocsError(f"{page}:{pending[0][0]}: docs marker not directly followed by a code block")
        i += 1
    if pending:
        raise DocsError(f"{page}:{pending[0][0]}: docs marker at the end of the page, with no block after it")
    for block in blocks:
        block.runnable_code()  # an unmatched replace is an error even in a block that is skipped
    return blocks


def parse_page(path: Path, page: str | None = None) -> list[Block]:
    return parse_page_text(path.read_text(encoding="utf-8"), page or path.name)


_PRELUDE = '''\
import contextlib as _docs_contextlib, io as _docs_io, re as _docs_re, sys as _docs_sys
@_docs_contextlib.contextmanager
def _docs_expect(expected, where):
    buffer = _docs_io.StringIO()
    with _docs_contextlib.redirect_stdout(buffer):
        yield
    got = buffer.getvalue()
    _docs_sys.stdout.write(got)
    got = got.strip()
    pattern = ".*?".join(_docs_re.escape(part) for part in expected.split("..."))
    if not _docs_re.fullmatch(pattern, got, _docs_re.DOTALL):
        raise AssertionError(f"{where}: printed {got!r}, the page says '# -> {expected}'")
'''


def instrument_python(code: str, page: str, first_line: int) -> str:
    """Wraps every statement whose last line ends in a ``# -> VALUE`` comment in a check of what it prints.

    ``first_line`` is the page line of the block's first code line (for messages). A ``# ->`` comment on a line
    that does not end a simple statement is an error.
    """
    try:
        tree = ast.parse(code)
        comments = [t for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.COMMENT]
    except (SyntaxError, tokenize.TokenError) as e:
        raise DocsError(f"{page}:{first_line}: python block does not parse: {e}") from None
    expects = {t.start[0]: m.group(1) for t in comments if (m := _EXPECT.match(t.string))}
    if not expects:
        return code
    compound = (ast.For, ast.While, ast.If, ast.With, ast.Try, ast.FunctionDef, ast.ClassDef, ast.AsyncFor,
                ast.AsyncWith, ast.AsyncFunctionDef)
    statements = {node.end_lineno: node for node in ast.walk(tree)
                  if isinstance(node, ast.stmt) and not isinstance(node, compound)}
    lines = code.splitlines()
    out = list(lines)
    for n in sorted(expects, reverse=True):  # bottom-up, so earlier line numbers stay valid
        where = f"{page}:{first_line + n - 1}"
        node = statements.get(n)
        if node is None:
            raise DocsError(f"{where}: '# ->' must end a simple statement (e.g. a print call)")
        indent = lines[node.lineno - 1][: node.col_offset]
        head = f"{indent}with _docs_expect({expects[n]!r}, {where!r}):"
        out[node.lineno - 1: n] = [head, *("    " + line for line in lines[node.lineno - 1: n])]
    return _PRELUDE + "\n".join(out) + "\n"


def _shim_dir(folder: Path) -> Path:
    """A bin folder whose lmforge / python / python3 run this repository with the test interpreter."""
    bin_dir = folder / ".docs-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, line in (("lmforge", f'exec "{sys.executable}" -m lmforge "$@"'),
                       ("python", f'exec "{sys.executable}" "$@"'), ("python3", f'exec "{sys.executable}" "$@"')):
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{line}\n")
        shim.chmod(0o755)
    return bin_dir


def page_env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               MPLBACKEND="Agg", LMFORGE_REPO=str(REPO), PYTHONPATH=str(REPO),
               PATH=f"{_shim_dir(folder)}{os.pathsep}{env.get('PATH', '')}")
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def run_block(block: Block, folder: Path, env: dict[str, str]) -> str:
    """Runs one block in ``folder``; returns its output, raises DocsError when it fails."""
    code = block.runnable_code()
    script = folder / ".docs-block"
    if block.lang == "python":
        script.write_text(instrument_python(code, block.page, block.line + 1), encoding="utf-8")
        cmd = [sys.executable, str(script)]
    else:
        script.write_text(code, encoding="utf-8")
        cmd = ["bash", "-euo", "pipefail", str(script)]
    try:
        proc = subprocess.run(cmd, cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DocsError(f"{block.where}: ```{block.lang} block ran over {BLOCK_TIMEOUT_S} s") from None
    finally:
        script.unlink(missing_ok=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        shown = textwrap.indent(code.rstrip(), "    ")
        raise DocsError(f"{block.where}: ```{block.lang} block exited with status {proc.returncode}\n{shown}\n"
                        f"--- output (last 3000 characters) ---\n{output[-3000:]}")
    return output


def run_page(path: Path, folder: Path, page: str | None = None) -> list[Block]:
    """Runs every block of a page not marked skip, in order, in ``folder``; returns the skipped blocks."""
    blocks = parse_page(path, page)
    env = page_env(folder)
    for block in blocks:
        if block.skip is None:
            run_block(block, folder, env)
    return [b for b in blocks if b.skip is not None]


def doc_pages() -> list[Path]:
    """README.md and every docs/*.md page (pages added later are picked up automatically)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

"""Every ```bash / ```python block of README.md and docs/*.md runs and succeeds (the rules: tests/docs_check.py).

One test per page, so xdist spreads the pages over its workers; each page's blocks run in order in one fresh
scratch folder. Blocks marked ``<!-- docs: skip REASON -->`` are listed as skipped tests (``-ra`` prints them with
their reasons), one per block, so what is not run is always visible and a failure is never hidden among them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs_check import REPO, DocsError, doc_pages, parse_page, run_page


def _name(path: Path) -> str:
    return str(path.relative_to(REPO))


PAGES = doc_pages()


def _skipped_blocks() -> list:
    params = []
    for path in PAGES:
        try:
            blocks = parse_page(path, _name(path))
        except DocsError:
            continue  # the page's own test reports the error
        params += [pytest.param(f"{b.where}: {b.skip}", id=b.where) for b in blocks if b.skip is not None]
    return params


@pytest.mark.parametrize("path", PAGES, ids=_name)
def test_page_blocks_run(path: Path, tmp_path: Path) -> None:
    run_page(path, tmp_path, _name(path))


@pytest.mark.parametrize("block", _skipped_blocks())
def test_skipped_block(block: str) -> None:
    pytest.skip(f"docs block not run: {block}")


def test_docs_pages_are_linked() -> None:
    """Every docs page is reachable from the README and from the docs index."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    for page in sorted((REPO / "docs").glob("*.md")):
        if page.name == "README.md":
            continue
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
        assert f"({page.name})" in index, f"docs/README.md does not link {page.name}"


@pytest.mark.parametrize("path", PAGES, ids=_name)
def test_relative_links_resolve(path: Path) -> None:
    """Every relative link of a page names a file that exists (anchors and web links are not checked)."""
    text = path.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{_name(path)}: broken link ({target})"


def test_readme_is_a_landing_page() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    # the two set-up lines, exactly as CI and a fresh machine run them (they are skipped blocks, see below)
    assert "pip install -e . && lmforge demo" in readme
    assert "bash scripts/install_test_deps.sh && python3 -m pytest -n 2 --dist loadgroup -q" in readme
    assert "bash scripts/install_test_deps.sh && python3 -m pytest -n 2 --dist loadgroup -q" in (
        REPO / ".ci" / "run").read_text(encoding="utf-8")


# --- the checker itself fails on what it must catch ---------------------------------------------------------------

def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def _run(tmp_path: Path, text: str) -> list:
    work = tmp_path / "work"
    work.mkdir()
    return run_page(_page(tmp_path, text), work)


def test_checker_runs_blocks_in_order_in_one_folder(tmp_path: Path) -> None:
    skipped = _run(tmp_path, (
        "Intro.\n\n```bash\necho hello > note.txt\n```\n\n"
        "```python\nprint(open('note.txt').read().strip())  # -> hello\n"
        "for i in range(2):\n    print(f'item {i}')  # -> item ...\n"
        "import os\nprint(os.environ['LMFORGE_REPO'] == os.environ['PYTHONPATH'], os.environ['HF_HUB_OFFLINE'])"
        "  # -> True 1\n```\n\n"
        "```\nnot run: no language\n```\n\n"
        "- inline fences such as ```` ```bash ```` are text, not blocks\n\n"
        "<!-- docs: skip needs a GPU -->\n```bash\nexit 1\n```\n\n"
        '<!-- docs: replace "--steps 600" "--steps 6" -->\n<!-- docs: replace "exit 1" "true" -->\n'
        "```bash\ntest \"$(echo --steps 600)\" = '--steps 6'\nexit 1\n```\n"
        "```bash\nlmforge --help > /dev/null\n```\n"))
    assert [b.skip for b in skipped] == ["needs a GPU"]


@pytest.mark.parametrize("text, message", [
    ("```bash\nfalse\n```\n", "exited with status 1"),
    ("```bash\nfalse | cat\n```\n", "exited with status 1"),  # pipefail
    ("```bash\necho $UNSET_VARIABLE_X\n```\n", "exited with status 1"),  # nounset
    ("```python\nraise SystemExit('broken')\n```\n", "exited with status 1"),
    ("```bash\ntouch made.txt\n```\n```python\nimport os\nassert not os.path.exists('made.txt')\n```\n", "status 1"),
    ("```python\nprint(1 + 1)  # -> 3\n```\n", "printed '2', the page says '# -> 3'"),
    ("```python\nprint('a b c')  # -> a ... d\n```\n", "the page says"),
    ('<!-- docs: replace "--steps 600" "--steps 6" -->\n```bash\nlmforge demo --steps 60\n```\n', "does not occur"),
    ('<!-- docs: replace "x" "y" -->\n<!-- docs: skip slow -->\n```bash\necho z\n```\n', "does not occur"),
    ("<!-- docs: skip -->\n```bash\ntrue\n```\n", "needs a reason"),
    ("<!-- docs: sikp typo -->\n```bash\ntrue\n```\n", "unknown docs marker"),
    ("<!-- docs: skip slow -->\n\nSome text.\n```bash\ntrue\n```\n", "not directly followed"),
    ("<!-- docs: skip slow -->\n```text\ntrue\n```\n", "markers apply only"),
    ("```python\nx = 1  # -> 1\n```\n", None),  # an assignment prints nothing: '' != '1'
    ("```python\nfor i in range(2):  # -> 0\n    print(i)\n```\n", "must end a simple statement"),
    ("```bash\ntrue\n", "unclosed code fence"),
])
def test_checker_fails_on_a_bad_page(tmp_path: Path, text: str, message: str | None) -> None:
    with pytest.raises(DocsError, match=None) as info:
        _run(tmp_path, "# A page\n\n" + text)
    if message is not None:
        assert message in str(info.value)
    assert "page.md:" in str(info.value)  # the failure names the page and line

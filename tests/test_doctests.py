"""The tiny input → output examples in every module's docstrings are true (the tokenizer modules have their own
test in tests/tokenizers/test_doctests.py)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import lmforge

MODULES = sorted(
    m.name for m in pkgutil.walk_packages(lmforge.__path__, prefix="lmforge.")
    if not m.name.startswith("lmforge.tokenizers") and not m.name.endswith("__main__")
)


def test_modules_are_found():
    assert {"lmforge.generate", "lmforge.fileio", "lmforge.nn.attention", "lmforge.data.tokens"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that touch files see an empty folder
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"

"""The tiny input → output examples in the tokenizer modules' docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["bpe", "pipeline", "tokenizer", "formats", "train", "fast", "unigram", "alphabet", "decoders", "hf_json",
           "bert_normalizer", "wordpiece"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"lmforge.tokenizers.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module.__name__}"

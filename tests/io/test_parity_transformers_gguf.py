"""The real SmolLM2-135M-Instruct GGUF file: ``lmforge.load`` alone (weights, tokenizer, chat template) against
``transformers`` loading the same file with ``gguf_file=`` — token ids, logits, greedy generation, chat template,
chat replies — and the dequantized-weight cache (hit, corrupt entry made again)."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

import lmforge
from lmforge.chat import chat_prompt
from lmforge.generate import generate_ids
from lmforge.io import cache

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]

PROMPTS = [
    "The capital of France is",
    "Hello world! It costs $12.50 (about 11 €), see https://example.org/a_b?c=1.",
    "def add(a, b):\n    return a + b\n\n\n# Tabs\tand   spaces",
    "Ünïcödé, 日本語, emoji 🙂 and <|im_start|>user\nHi<|im_end|>",
]

CONVERSATION = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "And of Germany?"},
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # One thread per process: CI runs two test processes on two cores, and torch's 2-thread kernels slow down
    # ~10x when their threads compete with another process for the cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def hf_smollm2(smollm2_gguf_path, one_thread):
    """transformers' tokenizer and model from the same GGUF (~20-40 s, ~1 GB): loaded once for the module."""
    import transformers.modeling_utils
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("accelerate") is None:
        # transformers refuses gguf_file= without `accelerate`, but its GGUF path on a CPU never calls it: lift
        # the availability check only (the conversion and the model are transformers' own).
        transformers.modeling_utils.is_accelerate_available = lambda: True
    folder, name = str(smollm2_gguf_path.parent), smollm2_gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return tokenizer, model


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("lmforge-cache")


@pytest.fixture(scope="module")
def lm(smollm2_gguf_path, cache_root, one_thread):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(cache_root))
        return lmforge.load(smollm2_gguf_path)


def test_load_gives_model_tokenizer_and_template(lm, hf_smollm2):
    _, hf_model = hf_smollm2
    assert lm.config.n_layer == hf_model.config.num_hidden_layers
    assert lm.config.n_embd == hf_model.config.hidden_size
    assert lm.config.vocab_size == hf_model.config.vocab_size
    assert lm.config.n_kv_head == hf_model.config.num_key_value_heads
    assert lm.model.num_params() == sum(p.numel() for p in hf_model.parameters())
    assert lm.tokenizer.chat_template


@pytest.mark.parametrize("prompt", PROMPTS)
def test_token_ids_match_transformers(lm, hf_smollm2, prompt):
    hf_tokenizer, _ = hf_smollm2
    ids = lm.tokenizer.encode(prompt)
    assert ids == hf_tokenizer(prompt)["input_ids"]
    assert lm.tokenizer.decode(ids, skip_special_tokens=False) == hf_tokenizer.decode(ids)


def test_logits_match_transformers(lm, hf_smollm2):
    hf_tokenizer, hf_model = hf_smollm2
    for prompt in PROMPTS:
        ids = torch.tensor([hf_tokenizer(prompt)["input_ids"]])
        with torch.inference_mode():
            ours = lm.model(ids)
            theirs = hf_model(ids).logits
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= 1e-3, prompt


def test_greedy_generation_matches_transformers(lm, hf_smollm2):
    hf_tokenizer, hf_model = hf_smollm2
    prompt = "The capital of France is"
    prompt_ids = hf_tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        out = hf_model.generate(torch.tensor([prompt_ids]), max_new_tokens=10, do_sample=False)
    theirs = out[0, len(prompt_ids):].tolist()
    ours = generate_ids(lm.model, [prompt_ids], max_new_tokens=10, eos_token_ids=lm.eos_token_ids).new_ids[0]
    assert ours == [t for t in theirs if t not in lm.eos_token_ids]
    assert "Paris" in lm.tokenizer.decode(ours)  # the model really answers: not two equally broken models


def test_chat_template_matches_apply_chat_template(lm, hf_smollm2):
    hf_tokenizer, _ = hf_smollm2
    for messages in (CONVERSATION, [{"role": "system", "content": "Be terse."}, *CONVERSATION]):
        expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        rendered = chat_prompt(lm.tokenizer, messages)
        assert rendered == expected
        assert lm.tokenizer.encode(rendered) == hf_tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert chat_prompt(lm.tokenizer, CONVERSATION, add_generation_prompt=False) == hf_tokenizer.apply_chat_template(
        CONVERSATION, add_generation_prompt=False, tokenize=False
    )


def test_chat_reply_matches_transformers_greedy(lm, hf_smollm2):
    hf_tokenizer, hf_model = hf_smollm2
    text = hf_tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([hf_tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = hf_model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=lm.eos_token_ids)
    expected = hf_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "".join(lm.chat(CONVERSATION, max_new_tokens=12, stream=True)) == expected


def _reload(path, cache_root) -> tuple[lmforge.io.bundle.LM, float]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(cache_root))
        start = time.perf_counter()
        lm = lmforge.load(path)
        return lm, time.perf_counter() - start


def _same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_hit_then_corrupt_entry_is_remade(lm, smollm2_gguf_path, cache_root, capsys):
    entries = list((cache_root / "gguf").glob("*.safetensors"))
    assert len(entries) == 1
    entry = entries[0]
    assert entry.name.startswith(cache.file_sha256(smollm2_gguf_path))  # keyed by the file's content

    again, seconds = _reload(smollm2_gguf_path, cache_root)  # a hit: no dequantization
    assert _same_weights(lm, again)
    with capsys.disabled():
        print(f"\n[gguf] second load of {smollm2_gguf_path.name} (cache hit): {seconds:.1f} s")

    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x55  # one flipped byte deep inside the tensor data
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="checksum"):
        remade, _ = _reload(smollm2_gguf_path, cache_root)
    assert _same_weights(lm, remade)
    assert cache.read_entry(entry) is not None  # whole again on disk
    # (truncated and emptied entries: tests/io/test_gguf.py::test_damaged_cache_entry_is_made_again)

"""``lmforge serve`` through the official ``openai`` client on loopback: completions, chat (streamed and not),
``n`` choices, logprobs in both of OpenAI's shapes, embeddings, /tokenize — each compared with the library's own
answer (``lm.generate``, ``log_softmax`` of the model's logits, ``lm.embed``, the tokenizer's counts)."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
import torch

from lmforge.generate import generate_ids
from lmforge.serve import DEFAULT_CHAT_TEMPLATE, Server, create_app

HTTP = httpx.Client(timeout=120)  # generous: CI machines may be loaded

PROMPTS = ["The interpreter reads", "Once upon a time", "def f(x):"]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a token?"}]


@pytest.fixture(scope="module")
def server(peaked_lm, minilm_path):
    import lmforge

    embed_lm = lmforge.load(minilm_path)
    with Server(create_app(peaked_lm, embed_lm=embed_lm, model_name="peaked", embed_model_name="minilm")) as s:
        yield s, embed_lm


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0].url + "/v1", api_key="unused", max_retries=0)


def _chat_ids(lm) -> list[int]:
    from lmforge.chat import render_chat

    return lm.tokenizer.encode(render_chat(DEFAULT_CHAT_TEMPLATE, MESSAGES, add_generation_prompt=True))


@torch.inference_mode()
def _model_logprobs(lm, prompt_ids: list[int], new_ids: list[int]) -> torch.Tensor:
    """log_softmax of the model's logits at each generated position, one full forward: ``(N, V)``."""
    logits = lm.model(torch.tensor([prompt_ids + new_ids]))[0, len(prompt_ids) - 1 : -1]
    return torch.log_softmax(logits.float(), dim=-1)


def test_models_lists_both(client):
    assert [m.id for m in client.models.list().data] == ["peaked", "minilm"]


def test_greedy_completions_equal_generate_and_usage_counts(client, peaked_lm):
    for prompt in PROMPTS:
        r = client.completions.create(model="peaked", prompt=prompt, max_tokens=12, temperature=0)
        ids = peaked_lm.tokenizer.encode(prompt)
        expected = generate_ids(peaked_lm.model, [ids], max_new_tokens=12, eos_token_ids=peaked_lm.eos_token_ids)
        assert r.choices[0].text == peaked_lm.generate(prompt, max_new_tokens=12)
        assert r.choices[0].finish_reason == ("stop" if expected.finish_reasons[0] == "eos" else "length")
        assert r.usage.prompt_tokens == len(ids)
        assert r.usage.completion_tokens == len(expected.new_ids[0])
        assert r.usage.total_tokens == len(ids) + len(expected.new_ids[0])
    # A list of prompts: one choice each, in order; token-id prompts are taken as they are.
    r = client.completions.create(model="peaked", prompt=PROMPTS, max_tokens=5, temperature=0)
    assert [c.text for c in r.choices] == peaked_lm.generate(PROMPTS, max_new_tokens=5)
    ids = peaked_lm.tokenizer.encode(PROMPTS[0])
    r2 = client.completions.create(model="peaked", prompt=ids, max_tokens=5, temperature=0)
    assert r2.choices[0].text == r.choices[0].text


def test_completion_logprobs_and_echo_equal_log_softmax(client, peaked_lm):
    prompt = PROMPTS[1]
    ids = peaked_lm.tokenizer.encode(prompt)
    r = client.completions.create(model="peaked", prompt=prompt, max_tokens=6, temperature=0, logprobs=3, echo=True)
    lp = r.choices[0].logprobs
    assert r.choices[0].text.startswith(prompt)
    n = len(ids)
    new = generate_ids(peaked_lm.model, [ids], max_new_tokens=6, eos_token_ids=peaked_lm.eos_token_ids).new_ids[0]
    assert len(lp.tokens) == n + 6 and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    with torch.inference_mode():  # prompt tokens too: token t scored given tokens before it
        all_ids = ids + new
        full = torch.log_softmax(peaked_lm.model(torch.tensor([all_ids]))[0].float(), dim=-1)
    for i in range(1, len(all_ids)):
        assert abs(lp.token_logprobs[i] - float(full[i - 1, all_ids[i]])) < 1e-4
        top = full[i - 1].topk(3)
        # a dict {token text: logprob}, as OpenAI's: tokens that print alike (partial UTF-8 bytes) share a key
        expected = {peaked_lm.tokenizer.token_bytes(t).decode("utf-8", "replace"): v
                    for t, v in zip(top.indices.tolist(), top.values.tolist(), strict=True)}
        assert lp.top_logprobs[i] == pytest.approx(expected, abs=1e-4, rel=1e-5)
    assert lp.text_offset[n] == len(prompt)  # offsets count characters of the echoed text
    assert "".join(lp.tokens[n:]) == r.choices[0].text[len(prompt):]


def test_chat_greedy_streamed_and_not_with_logprobs(client, peaked_lm):
    ids = _chat_ids(peaked_lm)
    expected = generate_ids(peaked_lm.model, [ids], max_new_tokens=10, eos_token_ids=peaked_lm.eos_token_ids)
    r = client.chat.completions.create(model="peaked", messages=MESSAGES, max_tokens=10, temperature=0,
                                       logprobs=True, top_logprobs=2)
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content == peaked_lm.tokenizer.decode(expected.new_ids[0])
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == len(expected.new_ids[0])
    content = r.choices[0].logprobs.content
    ref = _model_logprobs(peaked_lm, ids, expected.new_ids[0])
    assert len(content) == len(expected.new_ids[0])
    for i, (entry, tid) in enumerate(zip(content, expected.new_ids[0], strict=True)):
        assert abs(entry.logprob - float(ref[i, tid])) < 1e-4
        assert bytes(entry.bytes) == peaked_lm.tokenizer.token_bytes(tid)
        # runners-up far in the tail (logprob ~ -13 from logits in the hundreds): float32 rounding is relative there
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(ref[i].topk(2).values.tolist(), abs=1e-4,
                                                                        rel=1e-5)
    chunks = list(client.chat.completions.create(model="peaked", messages=MESSAGES, max_tokens=10, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == msg.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == r.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_n_choices_with_a_seed_are_the_seeded_single_requests(client):
    options = dict(model="peaked", messages=MESSAGES, max_tokens=8, temperature=1.5, top_p=0.95)
    r = client.chat.completions.create(n=3, seed=11, **options)
    assert [c.index for c in r.choices] == [0, 1, 2]
    singles = [client.chat.completions.create(seed=11 + j, **options).choices[0].message.content for j in range(3)]
    assert [c.message.content for c in r.choices] == singles
    assert len(set(singles)) > 1  # really sampled


def test_seeded_sampling_equals_generate(client, peaked_lm):
    options = dict(temperature=0.9, top_k=40, seed=3)
    r = client.completions.create(model="peaked", prompt=PROMPTS[0], max_tokens=10, extra_body={"top_k": 40},
                                  temperature=0.9, seed=3)
    assert r.choices[0].text == peaked_lm.generate(PROMPTS[0], max_new_tokens=10, **options)


def test_stream_completion_joins_to_the_text(client):
    full = client.completions.create(model="peaked", prompt=PROMPTS[2], max_tokens=9, temperature=0)
    chunks = list(client.completions.create(model="peaked", prompt=PROMPTS[2], max_tokens=9, temperature=0,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason


def test_stop_string_cuts_the_text(client, peaked_lm):
    text = client.completions.create(model="peaked", prompt=PROMPTS[0], max_tokens=16, temperature=0).choices[0].text
    stop = text[5:7]
    r = client.completions.create(model="peaked", prompt=PROMPTS[0], max_tokens=16, temperature=0, stop=[stop])
    assert r.choices[0].text == text[: text.find(stop)] and r.choices[0].finish_reason == "stop"


def test_embeddings_equal_embed(client, server):
    texts = ["a cat sat on the mat", "Paris is the capital of France"]
    r = client.embeddings.create(model="minilm", input=texts)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in r.data])
    np.testing.assert_allclose(got, server[1].embed(texts), atol=1e-6)
    assert r.usage.prompt_tokens == sum(len(server[1].tokenizer.encode(t)) for t in texts)
    plain = client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    np.testing.assert_allclose(plain.data[0].embedding, got[0], atol=1e-6)


def test_tokenize_detokenize(server, peaked_lm):
    url = server[0].url
    r = HTTP.post(url + "/tokenize", json={"prompt": PROMPTS[0]}).json()
    assert r["tokens"] == peaked_lm.tokenizer.encode(PROMPTS[0]) and r["count"] == len(r["tokens"])
    assert HTTP.post(url + "/tokenize", json={"messages": MESSAGES}).json()["tokens"] == _chat_ids(peaked_lm)
    assert HTTP.post(url + "/detokenize", json={"tokens": r["tokens"]}).json() == {"prompt": PROMPTS[0]}


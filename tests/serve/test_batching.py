"""Continuous batching does not change anyone's output: 32 concurrent streams (greedy and seeded sampling,
different prompts and lengths) each get exactly the tokens of their sequential run, logprobs within 1e-4, while
/health keeps answering; a client that disconnects mid-stream frees its slot."""

from __future__ import annotations

import asyncio
import threading
import time
import types

import httpx
import openai
import torch

from lmforge.serve import Server, create_app

HTTP = httpx.Client(timeout=120)  # generous: CI machines may be loaded

WORDS = "the interpreter reads each line once upon a time there was a list of numbers and a function".split()


def _requests() -> list[dict]:
    out = []
    for i in range(32):
        prompt = " ".join(WORDS[i % 7 : i % 7 + 2 + i % 9])
        options = dict(model="peaked", prompt=prompt, max_tokens=6 + (i * 7) % 30, logprobs=1)
        if i % 2:  # seeded sampling; the other half greedy
            options.update(temperature=1.0, seed=100 + i, top_p=0.9 if i % 4 == 1 else 1.0)
        else:
            options.update(temperature=0.0)
        out.append(options)
    return out


async def _stream(client: openai.AsyncOpenAI, options: dict) -> tuple[list[str], list[float], str]:
    tokens, logprobs, text = [], [], ""
    async for chunk in await client.completions.create(stream=True, **options):
        c = chunk.choices[0]
        text += c.text
        if c.logprobs is not None:
            tokens += c.logprobs.tokens
            logprobs += c.logprobs.token_logprobs
    return tokens, logprobs, text


def test_32_concurrent_streams_equal_their_sequential_runs(peaked_lm):
    requests = _requests()
    with Server(create_app(peaked_lm, model_name="peaked", max_batch=32)) as server:
        sync = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        alone = []
        for options in requests:  # one at a time: each request has the batch to itself
            r = sync.completions.create(**options)
            alone.append((r.choices[0].logprobs.tokens, r.choices[0].logprobs.token_logprobs, r.choices[0].text))
        busy, health_codes, stop = [], [], threading.Event()

        def watch() -> None:  # /health answers while the model is busy
            while not stop.is_set():
                r = HTTP.get(server.url + "/health")
                health_codes.append(r.status_code)
                busy.append(r.json()["slots_busy"])
                time.sleep(0.005)

        async def together():
            client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
            return await asyncio.gather(*(_stream(client, options) for options in requests))

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            batched = asyncio.run(together())
        finally:
            stop.set()
            watcher.join()
    assert max(busy) >= 8, busy  # they really were decoded together
    assert set(health_codes) == {200}
    for (tokens, lps, text), (tokens1, lps1, text1) in zip(batched, alone, strict=True):
        assert tokens == tokens1 and text == text1
        assert max(abs(a - b) for a, b in zip(lps, lps1, strict=True)) < 1e-4
    assert len({b[2] for b in batched}) > 20  # different prompts and lengths: not 32 copies of one text
    greedy = requests[0]  # and the greedy ones are lm.generate's text
    assert batched[0][2] == peaked_lm.generate(greedy["prompt"], max_new_tokens=greedy["max_tokens"])


class _SlowModel(torch.nn.Module):
    """The peaked model, 20 ms per step: a disconnect lands mid-generation, not after it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = model, model.config

    def new_kv_cache(self, *args, **kwargs):
        return self.inner.new_kv_cache(*args, **kwargs)

    def forward(self, *args, **kwargs):
        time.sleep(0.02)
        return self.inner(*args, **kwargs)


def slow_lm(lm) -> types.SimpleNamespace:
    return types.SimpleNamespace(model=_SlowModel(lm.model), tokenizer=lm.tokenizer, eos_token_ids=[], path=None)


def _metric(url: str, name: str) -> float:
    for line in HTTP.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_disconnect_frees_the_slot(peaked_lm):
    with Server(create_app(slow_lm(peaked_lm), model_name="peaked", max_batch=1)) as server:
        body = {"model": "peaked", "prompt": "Once upon a time", "max_tokens": 200, "temperature": 0, "stream": True}
        with HTTP.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
            lines = r.iter_lines()
            got = [next(lines) for _ in range(6)]  # a few tokens (and their blank separator lines)
        assert sum(line.startswith("data: ") for line in got) == 3
        deadline = time.monotonic() + 60
        while _metric(server.url, "lmforge_slots_busy") != 0.0:
            assert time.monotonic() < deadline, "slot still busy after the client left"
            time.sleep(0.05)
        # freed early: far fewer than the 200 tokens asked for were generated
        assert _metric(server.url, "lmforge_generation_tokens_total") < 100
        r = HTTP.post(server.url + "/v1/completions", timeout=30,
                       json={"model": "peaked", "prompt": "Hello", "max_tokens": 3, "temperature": 0})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3

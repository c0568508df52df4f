"""Every bad request gets its OpenAI-style JSON error and status, and the server keeps serving: wrong types,
negative max_tokens, unknown model, a prompt beyond the context, malformed JSON, oversize bodies (declared and
chunked), a missing or wrong key, a full queue, unknown routes."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from lmforge.serve import Server, create_app
from tests.serve.test_batching import HTTP, slow_lm

KEY = "s3cret"
AUTH = {"Authorization": f"Bearer {KEY}"}
GOOD = {"model": "peaked", "prompt": "Hello", "max_tokens": 2, "temperature": 0}


TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'robot' %}{{ raise_exception('unknown role robot') }}"
            "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class _WithTemplate:
    """The peaked model's tokenizer with a chat template of its own (one that rejects some conversations)."""

    chat_template = TEMPLATE

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


@pytest.fixture(scope="module")
def url(peaked_lm):
    lm = slow_lm(peaked_lm)
    lm.tokenizer = _WithTemplate(lm.tokenizer)
    app = create_app(lm, model_name="peaked", api_key=KEY, max_batch=1, max_queue=1, ctx_size=64,
                     max_body_bytes=4096)
    with Server(app) as server:
        yield server.url


def _still_serving(url: str) -> None:
    r = HTTP.post(url + "/v1/completions", json=GOOD, headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2


def _check(r: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


BAD_BODIES = [
    ({**GOOD, "temperature": "hot"}, 400, "float_type", "temperature"),
    ({**GOOD, "max_tokens": -1}, 400, "greater_than_equal", "max_tokens"),
    ({**GOOD, "max_tokens": "3"}, 400, "int_type", "max_tokens"),
    ({**GOOD, "n": 0}, 400, None, "n"),
    ({**GOOD, "top_p": 1.5}, 400, None, "top_p"),
    ({**GOOD, "logit_bias": {"1": 5}}, 400, "extra_forbidden", "logit_bias"),
    ({k: v for k, v in GOOD.items() if k != "prompt"}, 400, "missing", "prompt"),
    ({**GOOD, "model": "gpt-4"}, 404, "model_not_found", "model"),
    ({**GOOD, "prompt": "word " * 80}, 400, "context_length_exceeded", "prompt"),
    ({**GOOD, "max_tokens": 61}, 400, "context_length_exceeded", "max_tokens"),
    ({**GOOD, "prompt": [5, 100000]}, 400, None, "prompt"),
]


@pytest.mark.parametrize(("body", "status", "code", "param"), BAD_BODIES)
def test_bad_bodies(url, body, status, code, param):
    _check(HTTP.post(url + "/v1/completions", json=body, headers=AUTH), status, code, param)
    _still_serving(url)


def test_bad_chat_bodies(url, peaked_lm):
    chat = {"model": "peaked", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    _check(HTTP.post(url + "/v1/chat/completions", json={**chat, "messages": []}, headers=AUTH), 400, None,
           "messages")
    _check(HTTP.post(url + "/v1/chat/completions", json={**chat, "messages": [{"content": "x"}]}, headers=AUTH),
           400, "missing")
    _check(HTTP.post(url + "/v1/chat/completions", json={**chat, "top_logprobs": 2}, headers=AUTH), 400)
    robot = {**chat, "messages": [{"role": "robot", "content": "beep"}]}
    error = _check(HTTP.post(url + "/v1/chat/completions", json=robot, headers=AUTH), 422, "chat_template_error")
    assert "unknown role robot" in error["message"]
    r = HTTP.post(url + "/tokenize", json={"messages": chat["messages"]}, headers=AUTH)
    assert r.json()["tokens"] == peaked_lm.tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    _check(HTTP.post(url + "/v1/embeddings", json={"model": "peaked", "input": "x"}, headers=AUTH), 404,
           "model_not_found")
    _still_serving(url)


def test_malformed_json_and_oversize_bodies(url):
    headers = {**AUTH, "Content-Type": "application/json"}
    _check(HTTP.post(url + "/v1/completions", content=b'{"model": "peaked", "prompt": ', headers=headers), 400,
           "invalid_json")
    _check(HTTP.post(url + "/v1/completions", content=b"", headers=headers), 400, "invalid_json")
    big = json.dumps({**GOOD, "prompt": "x" * 5000}).encode()
    _check(HTTP.post(url + "/v1/completions", content=big, headers=headers), 413, "request_too_large")

    def chunked():  # no Content-Length: the limit is enforced while the body arrives
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    _check(HTTP.post(url + "/v1/completions", content=chunked(), headers=headers), 413, "request_too_large")
    _still_serving(url)


def test_api_key(url):
    _check(HTTP.post(url + "/v1/completions", json=GOOD), 401, "invalid_api_key")
    _check(HTTP.post(url + "/v1/completions", json=GOOD, headers={"Authorization": "Bearer wrong"}), 401,
           "invalid_api_key")
    _check(HTTP.get(url + "/v1/models"), 401)
    assert HTTP.get(url + "/health").status_code == 200  # liveness probes need no key
    _check(HTTP.get(url + "/v1/nothing-here", headers=AUTH), 404)
    _check(HTTP.get(url + "/v1/completions", headers=AUTH), 405)
    _still_serving(url)


def test_full_queue_is_429(url):
    long = {**GOOD, "max_tokens": 50, "stream": True}
    with HTTP.stream("POST", url + "/v1/completions", json=long, headers=AUTH, timeout=30) as running:
        lines = running.iter_lines()
        next(lines)  # the one slot is taken
        waiting = threading.Thread(target=lambda: HTTP.post(url + "/v1/completions", json=GOOD, headers=AUTH,
                                                             timeout=30))
        waiting.start()
        deadline = time.monotonic() + 60
        while HTTP.get(url + "/health").json()["queue_depth"] != 1:  # the queue (1) fills
            assert time.monotonic() < deadline
            time.sleep(0.01)
        error = _check(HTTP.post(url + "/v1/completions", json=GOOD, headers=AUTH), 429, "queue_full")
        assert error["type"] == "rate_limit_error"
        streamed = {**GOOD, "stream": True}  # a stream is refused before it starts: 429 is its status too
        _check(HTTP.post(url + "/v1/completions", json=streamed, headers=AUTH), 429, "queue_full")
    waiting.join()
    _still_serving(url)
    metrics = HTTP.get(url + "/metrics").text
    assert 'lmforge_requests_total{path="/v1/completions",status="429"} 2.0' in metrics

"""The ui's JSON API on a tiny GPT (FastAPI's TestClient): answers equal the probe's, one head at a time, and every
user mistake is HTTP 400 with a JSON error after which the server still answers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient

import lmforge
from lmforge.probe import logit_lens, probe
from lmforge.ui.app import create_app
from tests.probe_helpers import make_gpt_folder

TEXT = "The interpreter reads the"


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return lmforge.load(make_gpt_folder(tmp_path_factory.mktemp("gpt")))


@pytest.fixture(scope="module")
def client(lm):
    return TestClient(create_app(lm))


def test_page_and_assets_are_served_locally(client):
    page = client.get("/").text
    assert '<script src="/static/app.js">' in page and "http" not in page.replace('xmlns="http://www.w3.org', "")
    for asset in ("app.js", "style.css"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and "cdn" not in r.text.lower()


def test_analyze_equals_the_probe(client, lm):
    data = client.post("/api/analyze", json={"text": TEXT, "top_k": 4}).json()
    pr = probe(lm, TEXT)
    assert data["ids"] == pr.ids and data["tokens"] == pr.tokens and data["position"] == len(pr.ids) - 1
    assert data["top"] == pr.top_k(lm.tokenizer, 4)
    assert data["lens"] == logit_lens(lm, pr, k=3)
    assert (data["n_layer"], data["n_head"]) == (2, 4)


def test_attention_is_one_head(client, lm):
    pr = probe(lm, TEXT)
    a = client.post("/api/attention", json={"text": TEXT, "layer": 1, "head": 2}).json()
    torch.testing.assert_close(torch.tensor(a["weights"]), pr.attention(1, 2), atol=1e-6, rtol=0)
    b = client.post("/api/attention", json={"text": TEXT, "layer": 1, "head": 3}).json()
    assert a["weights"] != b["weights"]


def test_lens_at_another_position(client, lm):
    data = client.post("/api/lens", json={"text": TEXT, "position": 2}).json()
    assert data == logit_lens(lm, probe(lm, TEXT), positions=[2], k=3)


def test_generate_streams_the_library_text(client, lm):
    with client.stream("GET", "/api/generate", params={"text": TEXT, "max_new_tokens": 6, "temperature": 0.9,
                                                       "top_k": 20, "top_p": 0.9, "seed": 3}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == {"done": True}
    text = "".join(e.get("text", "") for e in events)
    assert text == lm.generate(TEXT, max_new_tokens=6, temperature=0.9, top_k=20, top_p=0.9, seed=3)


@pytest.mark.parametrize("method, path, body, message", [
    ("post", "/api/analyze", {"text": ""}, "the text is empty"),
    ("post", "/api/analyze", {"text": "word " * 100}, "context window is 64 tokens"),
    ("post", "/api/analyze", {"top_k": 3}, "text: Field required"),
    ("post", "/api/analyze", {"text": TEXT, "top_k": 0}, "top_k"),
    ("post", "/api/attention", {"text": TEXT, "layer": 2, "head": 0}, "layer 2 does not exist"),
    ("post", "/api/attention", {"text": TEXT, "layer": 0, "head": -1}, "head -1 does not exist"),
    ("post", "/api/attention", {"text": TEXT, "layer": "x", "head": 0}, "layer"),
    ("post", "/api/lens", {"text": TEXT, "position": 40}, "do not exist"),
    ("get", "/api/generate", {"text": TEXT, "top_p": 3}, "top_p"),
    ("get", "/api/generate", {"text": "word " * 14, "max_new_tokens": 10}, "context window (64 tokens)"),
])
def test_bad_input_is_a_json_400_and_the_server_goes_on(client, method, path, body, message):
    r = client.post(path, json=body) if method == "post" else client.get(path, params=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert client.post("/api/analyze", json={"text": TEXT}).status_code == 200


def test_model_without_attention_is_refused():
    no_attention = SimpleNamespace(model=torch.nn.Linear(2, 2), tokenizer=None, path=None)
    client = TestClient(create_app(no_attention))
    assert client.get("/api/info").json()["n_layer"] == 0
    r = client.post("/api/attention", json={"text": "hi", "layer": 0, "head": 0})
    assert r.status_code == 400 and "error" in r.json()

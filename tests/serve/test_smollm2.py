"""A real chat model behind the server: SmolLM2-135M-Instruct (GGUF, its own chat template) answers through the
official ``openai`` client exactly as ``lm.chat`` does."""

from __future__ import annotations

import openai
import pytest

from lmforge.serve import Server, create_app


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_smollm2_gguf_chat_completion(smollm2_gguf_path):
    import lmforge

    lm = lmforge.load(smollm2_gguf_path)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    with Server(create_app(lm, max_batch=2, ctx_size=256)) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        assert model == "SmolLM2-135M-Instruct.Q4_1"
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
        streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=model, messages=messages, max_tokens=12, temperature=0, stream=True))
    expected = lm.chat(messages, max_new_tokens=12, temperature=0.0)
    assert r.choices[0].message.content == expected == streamed
    assert "Paris" in expected

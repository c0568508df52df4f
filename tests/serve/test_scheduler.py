"""The scheduler without HTTP: penalties against a plain implementation, on a model that loves repeating itself."""

from __future__ import annotations

import threading

import pytest
import torch

import lmforge
from lmforge.serve import SamplingParams, Scheduler, Sequence
from tests.test_generate import make_tiny_text_model


@pytest.fixture(scope="module")
def repeating_lm(tmp_path_factory):
    return lmforge.load(make_tiny_text_model(tmp_path_factory.mktemp("rep")))  # greedy: "ssssssss..."


def _run(model, prompts: list[list[int]], params: SamplingParams) -> list[list[int]]:
    scheduler = Scheduler(model, max_batch=4, ctx_size=64).start()
    try:
        outs, done = [[] for _ in prompts], [threading.Event() for _ in prompts]

        def emitter(i):
            def emit(event):
                if event[0] == "token":
                    outs[i].append(event[1])
                elif event[0] in ("finish", "error"):
                    done[i].set()
            return emit

        scheduler.submit([Sequence(p, params, emit=emitter(i)) for i, p in enumerate(prompts)])
        for d in done:
            assert d.wait(60)
    finally:
        scheduler.close()
    return outs


@torch.inference_mode()
def _naive_penalised_greedy(model, ids: list[int], n: int, presence: float, frequency: float, repetition: float):
    """Greedy decoding written out plainly (full forward every step, no cache) with OpenAI's additive penalties
    over generated tokens and CTRL's repetition penalty over prompt + output: the oracle for the scheduler's."""
    out: list[int] = []
    for _ in range(n):
        logits = model(torch.tensor([ids + out]))[0, -1].float()
        for t in set(ids + out):
            logits[t] = logits[t] / repetition if logits[t] > 0 else logits[t] * repetition
        for t in set(out):
            logits[t] -= frequency * out.count(t) + presence
        out.append(int(logits.argmax()))
    return out


@pytest.mark.parametrize(("presence", "frequency", "repetition"), [(0.0, 0.0, 1.0), (1.5, 0.0, 1.0),
                                                                   (0.0, 1.0, 1.0), (0.5, 0.7, 1.3)])
def test_penalties_match_a_plain_implementation(repeating_lm, presence, frequency, repetition):
    prompts = [repeating_lm.tokenizer.encode(p) for p in ("The interpreter reads", "Once upon", "x = 1")]
    params = SamplingParams(max_tokens=12, temperature=0.0, presence_penalty=presence, frequency_penalty=frequency,
                            repetition_penalty=repetition)
    got = _run(repeating_lm.model, prompts, params)
    for ids, out in zip(prompts, got, strict=True):
        assert out == _naive_penalised_greedy(repeating_lm.model, ids, 12, presence, frequency, repetition)
    plain = [_naive_penalised_greedy(repeating_lm.model, ids, 12, 0.0, 0.0, 1.0) for ids in prompts]
    assert any(len(set(out)) < 4 for out in plain)  # unpenalised, the model repeats itself
    if (presence, frequency, repetition) != (0.0, 0.0, 1.0):
        assert got != plain  # and the penalties change that

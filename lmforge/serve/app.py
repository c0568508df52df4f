"""The OpenAI-compatible HTTP API: a FastAPI app over one :class:`~lmforge.serve.scheduler.Scheduler`.

Endpoints: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``, ``/v1/embeddings`` (with an encoder
model), ``/tokenize``, ``/detokenize``, ``/health``, ``/metrics`` (Prometheus text). Responses, stream chunks
(server-sent events ending with ``data: [DONE]``), logprobs and errors have the OpenAI API's exact shapes, so the
official ``openai`` client and anything built on it work unchanged.

The event loop never runs the model: requests become :class:`~lmforge.serve.scheduler.Sequence` objects for the
scheduler's thread, whose events come back through an ``asyncio.Queue`` per request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge import __version__
from lmforge.chat import ChatTemplateError, chat_prompt, render_chat, without_added_bos
from lmforge.errors import LmforgeError
from lmforge.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
    error_body,
)
from lmforge.serve.scheduler import QueueFull, SamplingParams, Scheduler, Sequence
from lmforge.serve.text import TextAssembler, token_text

# Used when the model ships no chat template: ChatML, the format of many open chat models (Qwen, SmolLM2).
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
    " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MAX_BODY_BYTES = 4 * 1024 * 1024
FINGERPRINT = f"lmforge-{__version__}"
METRIC_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/tokenize",
                "/detokenize", "/health", "/metrics")


class ApiError(Exception):
    """Answered as an OpenAI error body with ``status``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status)


@dataclass
class _Choice:
    """One choice of a request while it is generated: its sequence, its text, its logprobs."""

    index: int
    prompt: int  # which prompt of the request
    seq: Sequence
    text: TextAssembler
    finish_reason: str | None = None
    completion_tokens: int = 0
    logprobs: list[tuple[int, float, list]] = field(default_factory=list)  # (id, logprob, [(id, logprob)])
    prompt_logprobs: list | None = None
    sent_logprobs: int = 0  # entries already streamed


class _Metrics:
    def __init__(self, scheduler: Scheduler) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lmforge_requests", "HTTP requests answered", ["path", "status"], registry=r)
        self.prompt_tokens = Counter("lmforge_prompt_tokens", "prompt tokens prefilled", registry=r)
        self.generation_tokens = Counter("lmforge_generation_tokens", "tokens generated", registry=r)
        self.ttft = Histogram("lmforge_time_to_first_token_seconds", "request arrival to first generated token",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        Gauge("lmforge_queue_depth", "requests waiting for a slot", registry=r).set_function(
            lambda: scheduler.queue_depth)
        Gauge("lmforge_slots_busy", "KV-cache slots decoding a sequence", registry=r).set_function(
            lambda: scheduler.busy_slots)
        Gauge("lmforge_slots_total", "KV-cache slots (--max-batch)", registry=r).set(scheduler.max_batch)


class _Guard:
    """ASGI middleware: refuse a declared oversize body before reading it (413) and count every answer."""

    def __init__(self, app: Any, max_body: int, metrics: _Metrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] if scope["path"] in METRIC_PATHS else "other"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            response = _error_response(413, f"request body of {int(length)} bytes exceeds the limit of "
                                            f"{self.max_body} bytes", code="request_too_large")
            await response(scope, receive, send)
            self.metrics.requests.labels(path, "413").inc()
            return
        status = [500]

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(path, str(status[0])).inc()


def create_app(
    lm: Any,
    *,
    embed_lm: Any = None,
    model_name: str | None = None,
    embed_model_name: str | None = None,
    api_key: str | None = None,
    max_batch: int = 8,
    max_queue: int = 256,
    ctx_size: int | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The app for ``lm`` (what :func:`lmforge.load` returns: a GPT-family model with a tokenizer) and optionally
    an encoder ``embed_lm`` for ``/v1/embeddings``. The scheduler thread starts and stops with the app's lifespan.

    ``ctx_size``: positions per KV-cache slot (default the model's context, at most 2048: the cache is
    ``max_batch × ctx_size`` positions, preallocated); a prompt plus ``max_tokens`` must fit in it.
    """
    if lm is None or lm.tokenizer is None or not hasattr(lm.model, "new_kv_cache"):
        raise LmforgeError("serve: --model must be a GPT-family model (GPT-2, Llama, ...) with a tokenizer")
    if embed_lm is not None and (embed_lm.tokenizer is None or not hasattr(embed_lm.model, "encode")):
        raise LmforgeError("serve: --embed-model must be an encoder (BERT / sentence-transformers) with a tokenizer")
    model_name = model_name or _name_of(lm)
    embed_model_name = embed_model_name or (_name_of(embed_lm) if embed_lm is not None else None)
    if ctx_size is None:
        ctx_size = min(lm.model.config.block_size, 2048)
    scheduler = Scheduler(lm.model, max_batch=max_batch, max_queue=max_queue, ctx_size=ctx_size)
    metrics = _Metrics(scheduler)
    tokenizer = lm.tokenizer
    end_ids = frozenset(lm.eos_token_ids)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            await run_in_threadpool(scheduler.close)

    app = FastAPI(title="lmforge", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.scheduler = scheduler
    app.state.metrics = metrics
    app.add_middleware(_Guard, max_body=max_body_bytes, metrics=metrics)

    # ------------------------------------------------------------ errors: always OpenAI's JSON shape

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error_response(e.status, e.message, e.param, e.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return _error_response(e.status_code, message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        return _error_response(500, f"internal error: {type(e).__name__}: {e}")

    # ------------------------------------------------------------ request helpers

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer KEY'",
                           code="invalid_api_key")

    async def parse(request: Request, model_cls: type[BaseModel]) -> Any:
        check_key(request)
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it arrives: a chunked upload cannot exceed the limit
            size += len(chunk)
            if size > max_body_bytes:
                raise ApiError(413, f"request body exceeds the limit of {max_body_bytes} bytes",
                               code="request_too_large")
            chunks.append(chunk)
        try:
            return model_cls.model_validate_json(b"".join(chunks))
        except ValidationError as e:
            err = e.errors()[0]
            param = ".".join(str(p) for p in err["loc"]) or None
            if err["type"] == "json_invalid":
                raise ApiError(400, f"the body is not valid JSON: {err['msg']}", code="invalid_json") from None
            where = f"{param}: " if param else ""
            raise ApiError(400, f"{where}{err['msg']}", param=param, code=err["type"]) from None

    def check_model(name: str | None, served: str | None, what: str = "model") -> None:
        if name is not None and name != served:
            raise ApiError(404, f"The model '{name}' does not exist; this server has {what} '{served}'",
                           param="model", code="model_not_found")

    def check_ids(ids: list[int], param: str) -> None:
        vocab = lm.model.config.vocab_size
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ApiError(400, f"{param}: token id {bad[0]} is outside the vocabulary (0..{vocab - 1})", param=param)

    def fit(ids: list[int], max_tokens: int | None, param: str) -> int:
        if not ids:
            raise ApiError(400, f"{param}: the prompt has no tokens", param=param)
        room = scheduler.ctx_size - len(ids)
        if room <= 0 or (max_tokens is not None and max_tokens > room):
            asked = len(ids) + (max_tokens or 0)
            raise ApiError(400, f"This model's maximum context length is {scheduler.ctx_size} tokens. However, you "
                                f"requested {asked} tokens ({len(ids)} in the prompt, {max_tokens or 0} for the "
                                f"completion). Please reduce the prompt or max_tokens.",
                           param="max_tokens" if room > 0 else param, code="context_length_exceeded")
        return room if max_tokens is None else max_tokens

    def sampling(req: Any, max_tokens: int, index: int, top_logprobs: int | None, prompt_lp: bool) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p if req.top_p < 1.0 else None,
            top_k=req.top_k if req.top_k and req.top_k > 0 else None, min_p=req.min_p or None,
            presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
            repetition_penalty=req.repetition_penalty, seed=None if req.seed is None else req.seed + index,
            end_ids=end_ids, top_logprobs=top_logprobs, prompt_logprobs=prompt_lp,
        )

    def stops(stop: str | list[str] | None) -> list[str]:
        return [stop] if isinstance(stop, str) else list(stop or [])

    def chat_ids(messages: list[Any]) -> list[int]:
        plain = []
        for m in messages:
            d = m.model_dump(exclude_none=True)
            if isinstance(m.content, list):  # content parts: the text ones, joined
                d["content"] = "".join(p.text or "" for p in m.content if p.type == "text")
            d.setdefault("content", "")
            plain.append(d)
        try:
            if getattr(tokenizer, "chat_template", None):
                return tokenizer.encode(without_added_bos(tokenizer, chat_prompt(tokenizer, plain)))
            return tokenizer.encode(render_chat(DEFAULT_CHAT_TEMPLATE, plain, add_generation_prompt=True))
        except ChatTemplateError as e:
            raise ApiError(422, str(e), param="messages", code="chat_template_error") from None

    def submit(choices: list[_Choice]) -> asyncio.Queue:
        """Queue the choices' sequences (429 when the queue is full: before any response is started, so a
        streaming request gets it as its status too); their events arrive on the returned queue."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        for c in choices:
            c.seq.emit = _emitter(loop, queue, c.index)
        try:
            scheduler.submit([c.seq for c in choices])
        except QueueFull as e:
            raise ApiError(429, str(e), code="queue_full") from None
        return queue

    async def run(choices: list[_Choice], queue: asyncio.Queue, request: Request
                  ) -> AsyncIterator[tuple[_Choice, str, bool]]:
        """Yield ``(choice, new text, finished)`` as the submitted choices' tokens arrive. On exit (finished, client
        gone, error) every sequence is cancelled, freeing its slot at the scheduler's next step."""
        t0 = choices[0].seq.submitted
        by_index = {c.index: c for c in choices}
        remaining, first = len(choices), True
        try:
            while remaining:
                try:
                    index, event = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                c = by_index[index]
                if c.finish_reason is not None:
                    continue  # tokens the scheduler made before it saw the cancel (after a stop string)
                kind = event[0]
                if kind == "prompt_logprobs":
                    c.prompt_logprobs = event[1]
                elif kind == "token":
                    _, token, logprob, top = event
                    if first:
                        metrics.ttft.observe(time.perf_counter() - t0)
                        first = False
                    metrics.generation_tokens.inc()
                    if token in end_ids:
                        continue  # the finish event follows; the end id is not part of the text
                    c.completion_tokens += 1
                    if logprob is not None:
                        c.logprobs.append((token, logprob, top))
                    piece = c.text.add(token)
                    if c.text.stopped:
                        c.finish_reason, c.seq.cancelled = "stop", True
                        remaining -= 1
                    yield c, piece, c.finish_reason is not None
                elif kind == "finish":
                    c.finish_reason = "stop" if event[1] == "stop" else "length"
                    remaining -= 1
                    yield c, c.text.flush(), True
                else:
                    raise ApiError(500, f"generation failed: {event[1]}", code="generation_error")
        finally:
            for c in choices:
                c.seq.cancelled = True

    def new_choices(prompts: list[list[int]], n: int, req: Any, max_tokens: list[int], top_lp: int | None,
                    prompt_lp: bool) -> list[_Choice]:
        choices = []
        for p, ids in enumerate(prompts):
            metrics.prompt_tokens.inc(len(ids))
            for j in range(n):
                params = sampling(req, max_tokens[p], j, top_lp, prompt_lp)
                seq = Sequence(list(ids), params, emit=lambda event: None)
                choices.append(_Choice(len(choices), p, seq, TextAssembler(tokenizer, stops(req.stop))))
        return choices

    def usage(prompts: list[list[int]], choices: list[_Choice]) -> dict:
        prompt_tokens = sum(len(p) for p in prompts)
        completion_tokens = sum(c.completion_tokens for c in choices)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens}

    # ------------------------------------------------------------ logprobs in OpenAI's two shapes

    def completion_logprobs(c: _Choice, prompt_ids: list[int] | None, start: int, end: int | None) -> dict:
        """``{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`` for entries ``start:end`` (plus the
        prompt's tokens first when ``prompt_ids``, echo)."""
        tokens, token_lps, tops, offsets = [], [], [], []
        base = 0
        if prompt_ids is not None:
            for i, tid in enumerate(prompt_ids):
                tokens.append(token_text(tokenizer, tid)[0])
                offsets.append(len(tokenizer.decode(prompt_ids[:i])))
                if i == 0 or c.prompt_logprobs is None:
                    token_lps.append(None)
                    tops.append(None)
                else:
                    lp, top = c.prompt_logprobs[i - 1]
                    token_lps.append(lp)
                    tops.append({token_text(tokenizer, t)[0]: v for t, v in top})
            base = len(tokenizer.decode(prompt_ids))
        elif c.prompt_logprobs is not None or c.seq.params.prompt_logprobs:
            base = len(tokenizer.decode(c.seq.prompt_ids))
        ids = [t for t, _, _ in c.logprobs]
        for i in range(start, len(c.logprobs) if end is None else end):
            tid, lp, top = c.logprobs[i]
            tokens.append(token_text(tokenizer, tid)[0])
            token_lps.append(lp)
            tops.append({token_text(tokenizer, t)[0]: v for t, v in top})
            offsets.append(base + len(tokenizer.decode(ids[:i])))
        return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": tops, "text_offset": offsets}

    def chat_logprobs(c: _Choice, start: int, end: int | None) -> dict:
        def entry(tid: int, lp: float) -> dict:
            text, raw = token_text(tokenizer, tid)
            return {"token": text, "logprob": lp, "bytes": list(raw)}

        content = []
        for tid, lp, top in c.logprobs[start:end]:
            content.append({**entry(tid, lp), "top_logprobs": [entry(t, v) for t, v in top]})
        return {"content": content, "refusal": None}

    def kept_logprobs(c: _Choice) -> int:
        """How many logprob entries belong to the final text (a stop string may cut the last tokens off)."""
        if not c.text.stopped:
            return len(c.logprobs)
        ids = [t for t, _, _ in c.logprobs]
        n = 0
        while n < len(ids) and len(tokenizer.decode(ids[:n])) < len(c.text.text):
            n += 1
        return n

    # ------------------------------------------------------------ endpoints

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "slots_busy": scheduler.busy_slots, "slots_total": scheduler.max_batch,
                "queue_depth": scheduler.queue_depth}

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        check_key(request)
        data = [{"id": model_name, "object": "model", "created": created, "owned_by": "lmforge",
                 "max_model_len": scheduler.ctx_size}]
        if embed_model_name is not None:
            data.append({"id": embed_model_name, "object": "model", "created": created, "owned_by": "lmforge"})
        return {"object": "list", "data": data}

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        req: CompletionRequest = await parse(request, CompletionRequest)
        check_model(req.model, model_name)
        raw = req.prompt
        if isinstance(raw, str):
            raw = [raw]
        if raw and all(isinstance(x, int) for x in raw):
            raw = [raw]
        if not raw:
            raise ApiError(400, "prompt: expected a string, a list of strings or token ids", param="prompt")
        prompts = []
        for item in raw:
            ids = tokenizer.encode(item) if isinstance(item, str) else list(item)
            check_ids(ids, "prompt")
            prompts.append(ids)
        max_tokens = [fit(ids, req.max_tokens, "prompt") for ids in prompts]
        echo_lp = req.echo and req.logprobs is not None
        choices = new_choices(prompts, req.n, req, max_tokens, req.logprobs, echo_lp)
        queue = submit(choices)
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(choice_list: list[dict], usage_value: Any = None, with_usage: bool = False) -> str:
            body = {"id": rid, "object": "text_completion", "created": now, "model": model_name,
                    "system_fingerprint": FINGERPRINT, "choices": choice_list}
            if with_usage:
                body["usage"] = usage_value
            return f"data: {json.dumps(body)}\n\n"

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            async def events() -> AsyncIterator[str]:
                echoed, lp_echoed = set(), set()
                async for c, piece, done in run(choices, queue, request):
                    text = piece
                    lp = None
                    if req.echo and c.index not in echoed:
                        echoed.add(c.index)
                        text = tokenizer.decode(prompts[c.prompt]) + text
                    if req.logprobs is not None:
                        end = kept_logprobs(c) if done else len(c.logprobs)
                        with_prompt = echo_lp and c.index not in lp_echoed
                        lp_echoed.add(c.index)
                        lp = completion_logprobs(c, prompts[c.prompt] if with_prompt else None, c.sent_logprobs, end)
                        c.sent_logprobs = end
                    if text or done or (lp and lp["tokens"]):
                        yield chunk([{"index": c.index, "text": text, "logprobs": lp,
                                      "finish_reason": c.finish_reason if done else None}], None, include_usage)
                if include_usage:
                    yield chunk([], usage(prompts, choices), True)
                yield "data: [DONE]\n\n"

            return StreamingResponse(_sse_errors(events()), media_type="text/event-stream")

        async for _ in run(choices, queue, request):
            pass
        out = []
        for c in choices:
            text = (tokenizer.decode(prompts[c.prompt]) if req.echo else "") + c.text.text
            lp = None
            if req.logprobs is not None:
                lp = completion_logprobs(c, prompts[c.prompt] if echo_lp else None, 0, kept_logprobs(c))
            out.append({"index": c.index, "text": text, "logprobs": lp, "finish_reason": c.finish_reason})
        return {"id": rid, "object": "text_completion", "created": now, "model": model_name,
                "system_fingerprint": FINGERPRINT, "choices": out, "usage": usage(prompts, choices)}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        req: ChatCompletionRequest = await parse(request, ChatCompletionRequest)
        check_model(req.model, model_name)
        if req.top_logprobs is not None and not req.logprobs:
            raise ApiError(400, "top_logprobs: requires logprobs=true", param="top_logprobs")
        ids = await run_in_threadpool(chat_ids, req.messages)
        max_tokens = fit(ids, req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens,
                         "messages")
        top_lp = (req.top_logprobs or 0) if req.logprobs else None
        prompts = [ids]
        choices = new_choices(prompts, req.n, req, [max_tokens], top_lp, False)
        queue = submit(choices)
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            def chunk(choice_list: list[dict], usage_value: Any = None) -> str:
                body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name,
                        "system_fingerprint": FINGERPRINT, "choices": choice_list}
                if include_usage:
                    body["usage"] = usage_value
                return f"data: {json.dumps(body)}\n\n"

            async def events() -> AsyncIterator[str]:
                for c in choices:  # the first chunk of every choice names the role
                    yield chunk([{"index": c.index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                  "finish_reason": None}])
                async for c, piece, done in run(choices, queue, request):
                    lp = None
                    if req.logprobs:
                        end = kept_logprobs(c) if done else len(c.logprobs)
                        lp = chat_logprobs(c, c.sent_logprobs, end)
                        c.sent_logprobs = end
                    if piece or (lp and lp["content"]):
                        yield chunk([{"index": c.index, "delta": {"content": piece}, "logprobs": lp,
                                      "finish_reason": None}])
                    if done:
                        yield chunk([{"index": c.index, "delta": {}, "logprobs": None,
                                      "finish_reason": c.finish_reason}])
                if include_usage:
                    yield chunk([], usage(prompts, choices))
                yield "data: [DONE]\n\n"

            return StreamingResponse(_sse_errors(events()), media_type="text/event-stream")

        async for _ in run(choices, queue, request):
            pass
        out = [{"index": c.index, "message": {"role": "assistant", "content": c.text.text},
                "logprobs": chat_logprobs(c, 0, kept_logprobs(c)) if req.logprobs else None,
                "finish_reason": c.finish_reason} for c in choices]
        return {"id": rid, "object": "chat.completion", "created": now, "model": model_name,
                "system_fingerprint": FINGERPRINT, "choices": out, "usage": usage(prompts, choices)}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict:
        req: EmbeddingRequest = await parse(request, EmbeddingRequest)
        if embed_lm is None:
            raise ApiError(404, f"The model '{req.model}' does not exist; this server has no embedding model "
                                "(start it with --embed-model)", param="model", code="model_not_found")
        check_model(req.model, embed_model_name, "embedding model")
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts or any(not t for t in texts):
            raise ApiError(400, "input: expected non-empty strings", param="input")
        vectors = await run_in_threadpool(embed_lm.embed, texts)
        limit = getattr(embed_lm.model.config, "max_positions", None)
        n_tokens = sum(min(len(embed_lm.tokenizer.encode(t)), limit or 1 << 30) for t in texts)
        data = []
        for i, v in enumerate(vectors):
            v = np.asarray(v, dtype=np.float32)
            value = base64.b64encode(v.tobytes()).decode() if req.encoding_format == "base64" else v.tolist()
            data.append({"object": "embedding", "embedding": value, "index": i})
        return {"object": "list", "data": data, "model": embed_model_name,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}

    @app.post("/tokenize")
    async def tokenize(request: Request) -> dict:
        req: TokenizeRequest = await parse(request, TokenizeRequest)
        check_model(req.model, model_name)
        if (req.prompt is None) == (req.messages is None):
            raise ApiError(400, "give exactly one of 'prompt' (text) or 'messages' (chat)", param="prompt")
        if req.prompt is not None:
            ids = tokenizer.encode(req.prompt, add_special_tokens=req.add_special_tokens)
        else:
            ids = chat_ids(req.messages)
        return {"tokens": ids, "count": len(ids), "max_model_len": scheduler.ctx_size}

    @app.post("/detokenize")
    async def detokenize(request: Request) -> dict:
        req: DetokenizeRequest = await parse(request, DetokenizeRequest)
        check_model(req.model, model_name)
        check_ids(req.tokens, "tokens")
        return {"prompt": tokenizer.decode(req.tokens)}

    return app


async def _sse_errors(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """A failure after the response started cannot change its status: it is sent as an error event (OpenAI's
    shape, as its API does mid-stream), and the stream ends."""
    try:
        async for event in events:
            yield event
    except ApiError as e:
        yield f"data: {json.dumps(error_body(e.status, e.message, e.param, e.code))}\n\n"


def _emitter(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, index: int):
    def emit(event: tuple) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed (server shutting down): nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, (index, event))

    return emit


def _name_of(lm: Any) -> str:
    path = getattr(lm, "path", None)
    if path is None:
        return "lmforge"
    name = path.name
    return name[: -len(".gguf")] if name.endswith(".gguf") else name


class Server:
    """Run an app with uvicorn in a background thread — for notebooks, tests and benchmarks::

        with Server(create_app(lm)) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")

    ``port=0`` picks a free port. Leaving the block shuts the server (and the scheduler) down.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="lmforge-server", daemon=True)
        self.url = ""

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise LmforgeError("serve: the server did not start (is the port in use?)")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

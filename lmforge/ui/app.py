"""The page's server: FastAPI over :mod:`lmforge.probe` and :mod:`lmforge.generate`, for ONE loaded model.

Endpoints (JSON; a user mistake answers HTTP 400 ``{"error": "..."}`` and the server keeps serving):

- ``GET /`` the page; ``GET /static/...`` its assets; ``GET /api/info`` the model's shape.
- ``POST /api/analyze {text, top_k}`` → tokens, ids, the next-token (or first ``[MASK]``) candidates, the logit lens
  at the last position. The forward pass (with attention weights) is kept for the calls below on the same text.
- ``POST /api/attention {text, layer, head}`` → one head's weights ``(T, T)``: the page fetches only the head shown.
- ``POST /api/lens {text, position}`` → the logit lens at another position.
- ``GET /api/generate?text=&temperature=&top_k=&top_p=&max_new_tokens=&seed=`` → server-sent events, one
  ``{"text": piece}`` per piece as tokens are produced, then ``{"done": true}``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from lmforge.errors import InputError, LmforgeError
from lmforge.probe import Probe, blocks_of, context_window, encode_text, is_causal_lm, logit_lens, probe

STATIC = files("lmforge.ui") / "static"
MAX_PAGE_TOKENS = 1024  # every head's (T, T) weights are kept per text: 30 layers x 9 heads x 1024^2 x 4 B = 1.1 GB
_KEPT_TEXTS = 4


class AnalyzeRequest(BaseModel):
    text: str
    top_k: int = Field(10, ge=1, le=200)


class AttentionRequest(BaseModel):
    text: str
    layer: int
    head: int


class LensRequest(BaseModel):
    text: str
    position: int


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def create_app(lm: Any, max_tokens: int = MAX_PAGE_TOKENS) -> FastAPI:
    """The app for ``lm`` (an ``lmforge.load`` bundle). ``max_tokens``: the longest text the page analyses (the
    model's context window if smaller)."""
    app = FastAPI(title="lmforge ui", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()  # one forward pass at a time: torch already uses every core for one
    kept: OrderedDict[str, Probe] = OrderedDict()
    window = context_window(lm.model)
    limit = min(window, max_tokens) if window is not None else max_tokens

    @app.exception_handler(LmforgeError)
    async def _lmforge_error(request: Request, exc: LmforgeError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc))

    def run(text: str) -> Probe:
        """The forward pass for ``text`` (kept for the next calls on the same text)."""
        with lock:
            if text in kept:
                kept.move_to_end(text)
                return kept[text]
            ids = encode_text(lm, text)
            if len(ids) > limit:
                raise InputError(f"the text is {len(ids)} tokens long; this page shows at most {limit} tokens")
            blocks_of(lm.model)
            pr = probe(lm, ids=ids)
            kept[text] = pr
            while len(kept) > _KEPT_TEXTS:
                kept.popitem(last=False)
            return pr

    def info() -> dict:
        model = lm.model
        has_blocks = hasattr(model, "blocks")
        first = next(iter(getattr(model, "blocks", [])), None)
        return {
            "model": type(model).__name__,
            "path": str(lm.path) if lm.path is not None else None,
            "causal": is_causal_lm(model),
            "n_layer": len(model.blocks) if has_blocks else 0,
            "n_head": first.attn.n_head if first is not None else 0,
            "max_tokens": limit,
            "can_generate": is_causal_lm(model) and lm.tokenizer is not None,
        }

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    @app.get("/api/info")
    def api_info() -> dict:
        return info()

    @app.post("/api/analyze")
    def analyze(req: AnalyzeRequest) -> dict:
        pr = run(req.text)
        top, at, lens = None, None, None
        if pr.logits is not None:
            if pr.causal:
                at = len(pr.ids) - 1
            else:  # a masked LM: candidates under the first [MASK]
                mask_id = lm.tokenizer.token_to_id("[MASK]")
                at = pr.ids.index(mask_id) if mask_id in pr.ids else None
            if at is not None:
                top = pr.top_k(lm.tokenizer, req.top_k, position=at)
                lens = logit_lens(lm, pr, positions=[at], k=3)
        return {"ids": pr.ids, "tokens": pr.tokens, "causal": pr.causal, "n_layer": pr.n_layer,
                "n_head": pr.n_head, "position": at, "top": top, "lens": lens}

    @app.post("/api/attention")
    def attention(req: AttentionRequest) -> dict:
        pr = run(req.text)
        weights = pr.attention(req.layer, req.head)
        return {"layer": req.layer, "head": req.head, "tokens": pr.tokens,
                "weights": [[round(float(v), 6) for v in row] for row in weights.tolist()]}

    @app.post("/api/lens")
    def lens(req: LensRequest) -> dict:
        pr = run(req.text)
        if pr.logits is None:
            raise InputError("this model has no language-model head, so no logit lens")
        return logit_lens(lm, pr, positions=[req.position], k=3)

    @app.get("/api/generate")
    def generate(
        text: str,
        temperature: float = Query(0.0, ge=0.0, le=5.0),
        top_k: int | None = Query(None, ge=1),
        top_p: float | None = Query(None, gt=0.0, le=1.0),
        max_new_tokens: int = Query(32, ge=1, le=512),
        seed: int | None = None,
    ):
        if not info()["can_generate"]:
            raise InputError("this model does not generate text (it is not a GPT-family model)")
        ids = encode_text(lm, text)
        if len(ids) + max_new_tokens > (window or 10**9):
            raise InputError(f"the text ({len(ids)} tokens) plus max_new_tokens ({max_new_tokens}) is longer than "
                             f"the model's context window ({window} tokens)")
        options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        pieces = lm.stream(text, **options)

        def events():
            try:
                with lock:
                    for piece in pieces:
                        yield f"data: {json.dumps({'text': piece}, ensure_ascii=False)}\n\n"
            except LmforgeError as e:  # after the stream started, an error is an event, not a status
                yield f"data: {json.dumps({'error': str(e)})}\n\n"
            yield f"data: {json.dumps({'done': True})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app

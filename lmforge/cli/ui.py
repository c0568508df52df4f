"""``lmforge ui --model PATH``: a local web page to look inside a model (see :mod:`lmforge.ui.app`)."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ui", help="a local web page to look inside a model: tokens, candidates, attention, logit lens, generation",
        description="Serve a page on 127.0.0.1 that shows, for text you type: the tokens with ids, the next-token "
        "candidates (click one to append it), the attention of a chosen layer and head, the logit lens, and "
        "streamed generation. Everything is served by lmforge; nothing is fetched from the internet.",
    )
    p.add_argument("--model", "-m", required=True, help="model folder (lmforge/HF) or .gguf file")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument("--max-tokens", type=int, default=1024, help="longest text the page analyses (default: 1024)")
    p.set_defaults(func=_ui)


def _ui(args) -> int:
    import uvicorn

    import lmforge
    from lmforge.errors import InputError
    from lmforge.probe import blocks_of
    from lmforge.ui.app import create_app

    if args.max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    lm = lmforge.load(args.model)
    blocks_of(lm.model)  # a model without attention: say so now, not on the page
    app = create_app(lm, max_tokens=args.max_tokens)
    print(f"lmforge ui: {lm} at http://{args.host}:{args.port}/  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

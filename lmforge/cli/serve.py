"""``lmforge serve``: an OpenAI-compatible HTTP API (completions, chat, embeddings) with continuous batching."""

from __future__ import annotations

import argparse

HELP = "serve a model over an OpenAI-compatible HTTP API (streaming, continuous batching)"
DESCRIPTION = """\
Serve a GPT-family model (an lmforge folder, a Hugging Face GPT-2/Llama/Mistral folder or a .gguf file) at
/v1/completions and /v1/chat/completions, and optionally an encoder (BERT / sentence-transformers) at /v1/embeddings,
with the OpenAI API's request and response shapes: any OpenAI client works unchanged. Also /v1/models, /tokenize,
/detokenize, /health and /metrics (Prometheus).

Requests are decoded together (continuous batching): up to --max-batch sequences share every model step, and a
request's output does not depend on the others (greedy ids equal a lone request's; a seed reproduces its text).

Examples:
  lmforge serve --model SmolLM2-135M-Instruct.Q4_1.gguf
  lmforge serve --model runs/tiny --port 8001 --api-key secret --max-batch 8
  lmforge serve --model model.gguf --embed-model all-MiniLM-L6-v2/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, metavar="PATH", help="generation model: lmforge/HF folder or .gguf")
    p.add_argument("--embed-model", metavar="PATH", default=None, help="encoder for /v1/embeddings (optional)")
    p.add_argument("--model-name", default=None, metavar="NAME",
                   help="the id clients send as 'model' (default: the file or folder name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (else 401)")
    p.add_argument("--max-batch", type=int, default=8, metavar="N", help="sequences decoded together (8)")
    p.add_argument("--max-queue", type=int, default=256, metavar="N",
                   help="requests that may wait for a slot; more get 429 (256)")
    p.add_argument("--ctx-size", type=int, default=None, metavar="N",
                   help="positions per sequence: prompt + max_tokens (default: the model's, at most 2048)")
    p.add_argument("--max-body", type=int, default=4 * 1024 * 1024, metavar="BYTES",
                   help="largest request body accepted; larger gets 413 (4 MiB)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from lmforge.errors import ConfigError

    for name in ("max_batch", "max_queue", "max_body", "threads", "ctx_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: expected a positive integer, got {value}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port: expected 0..65535, got {args.port}")
    import torch
    import uvicorn

    import lmforge
    from lmforge.serve import create_app

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    lm = lmforge.load(args.model)
    embed_lm = lmforge.load(args.embed_model) if args.embed_model else None
    app = create_app(lm, embed_lm=embed_lm, model_name=args.model_name, api_key=args.api_key,
                     max_batch=args.max_batch, max_queue=args.max_queue, ctx_size=args.ctx_size,
                     max_body_bytes=args.max_body)
    print(f"lmforge: serving {lm!r} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0

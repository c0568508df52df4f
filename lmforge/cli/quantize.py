"""``lmforge quantize`` (a model → int8 / int4 / Q8_0 / Q4_0 weights, as an lmforge folder or a GGUF file) and
``lmforge export --gguf`` (a GPT → a GGUF file llama.cpp runs). Thin shells over :mod:`lmforge.io.quantize` and
:mod:`lmforge.io.gguf_export`."""

from __future__ import annotations

import argparse

QUANTIZE_TYPES = ("int8", "int4", "q8_0", "q4_0", "q4_1")


def register(subparsers: argparse._SubParsersAction) -> None:
    q = subparsers.add_parser(
        "quantize", help="quantize a model's weights (int8, int4, q8_0, q4_0) into a folder or a .gguf file",
        description="Quantize every weight matrix of a GPT-family model (any model lmforge loads: lmforge or "
        "Hugging Face folder, GGUF file). The token embedding and LM head get an 8-bit format (int8 for int4, "
        "q8_0 for q4_0/q4_1). --out ending in .gguf writes a GGUF file (q8_0, q4_0 only); otherwise an lmforge "
        "folder that lmforge.load opens with the layers still quantized.",
        epilog="example: lmforge quantize --model smollm2.gguf --to int4 --group 64 --out smollm2-int4",
    )
    q.add_argument("--model", required=True, help="model folder or .gguf file")
    q.add_argument("--to", required=True, choices=QUANTIZE_TYPES, help="the format of the weight matrices")
    q.add_argument("--group", type=int, default=None,
                   help="int4 only: weights per scale (32, 64, 128 or 256; default 128); it must divide every row")
    q.add_argument("--out", required=True, help="output folder, or a path ending in .gguf")
    q.set_defaults(func=run_quantize)

    e = subparsers.add_parser(
        "export", help="export a GPT to another format (--gguf: a llama.cpp GGUF file)",
        description="Write a GPT-2-shaped or Llama-shaped model (e.g. one trained with 'lmforge train gpt') as a "
        "GGUF file with its tokenizer, for llama.cpp and the tools around it; transformers opens it with "
        "gguf_file=. Other shapes (MoE, sliding windows, RoPE scaling) are refused with the reason.",
        epilog="example: lmforge export --model runs/tiny/model --gguf tiny-q8.gguf --type q8_0",
    )
    e.add_argument("--model", required=True, help="model folder or .gguf file")
    e.add_argument("--gguf", required=True, metavar="OUT.gguf", help="the GGUF file to write")
    e.add_argument("--type", default="f16", choices=("f32", "f16", "q8_0", "q4_0"),
                   help="weight type of the matrices (default f16)")
    e.set_defaults(func=run_export)


def _summary(model) -> str:
    from lmforge.io.quantize import quantization_spec
    from lmforge.nn.quantized import quantized_nbytes

    kinds: dict[str, int] = {}
    for layer in quantization_spec(model).values():
        key = layer["qtype"] + (f"/g{layer['group']}" if layer["qtype"] == "int4" else "")
        kinds[key] = kinds.get(key, 0) + 1
    layers = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return f"{layers} layers; tensors {quantized_nbytes(model) / 1e6:.1f} MB"


def run_quantize(args: argparse.Namespace) -> int:
    from pathlib import Path

    import lmforge
    from lmforge.errors import ConfigError
    from lmforge.io.lmforge_format import save_model
    from lmforge.io.quantize import quantize_model

    out = Path(args.out)
    to_gguf = out.suffix.lower() == ".gguf"
    if to_gguf and args.to not in ("q8_0", "q4_0"):
        raise ConfigError(f"--out {out}: a GGUF file holds q8_0 or q4_0 weights here, not {args.to} "
                          "(write an lmforge folder instead)")
    if args.group is not None and args.to != "int4":
        raise ConfigError(f"--group: only int4 has a choice of group size ({args.to} has a fixed one)")
    lm = lmforge.load(args.model, quantized=False)
    if to_gguf:
        from lmforge.io.gguf_export import export_gguf

        export_gguf(out, lm.model, lm.tokenizer, lm.generation_config, qtype=args.to)
        print(f"wrote {out}: {args.to} ({out.stat().st_size / 1e6:.1f} MB)")
        return 0
    quantize_model(lm.model, args.to, args.group)
    save_model(out, lm.model, lm.tokenizer, lm.generation_config)
    print(f"wrote {out}: {_summary(lm.model)}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    import lmforge
    from lmforge.io.gguf_export import export_gguf

    lm = lmforge.load(args.model)  # a GGUF input stays packed: layers already in --type are copied byte for byte
    out = export_gguf(Path(args.gguf), lm.model, lm.tokenizer, lm.generation_config, qtype=args.type)
    print(f"wrote {out}: {args.type} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0

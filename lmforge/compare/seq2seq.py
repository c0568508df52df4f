"""``lmforge compare seq2seq``: the no-attention RNN, the attention RNN and the Transformer trained on the same
parallel text with the same budget (steps x batch, one shared tokenizer), then scored on the same held-out test
pairs: BLEU and chrF overall and by source length, parameters, training time, translation speed.

Writes ``OUT/report.md`` (the table), ``OUT/results.json``, ``OUT/bleu_by_length.png`` and one run folder per model.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lmforge.fileio import atomic_write_text

# (name, arch, model overrides): the three steps of the story.
MODELS: list[tuple[str, str, dict]] = [
    ("rnn-no-attention", "rnn", {"attention": "none"}),
    ("rnn-attention", "rnn", {"attention": "additive"}),
    ("transformer", "transformer", {}),
]


def compare_seq2seq(
    data: str | os.PathLike | list, out_dir: str | os.PathLike, *, steps: int = 2000, batch_size: int = 64,
    vocab_size: int | None = None, max_test: int = 1000, seed: int = 1337, progress: bool = True,
    models: list[tuple[str, str, dict]] | None = None, train_overrides: dict | None = None,
    block_size: int | None = None,
) -> dict[str, Any]:
    """Train and score each of ``models`` (default :data:`MODELS`); returns ``{name: row}`` as in results.json."""
    import torch

    from lmforge.data.parallel import read_parallel
    from lmforge.plot import bleu_by_length, save_figure
    from lmforge.train.loop import train
    from lmforge.train.seq2seq import prepare, scores_by_length, translate_ids

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = read_parallel(data)
    budget = {"steps": steps, "batch_size": batch_size, "seed": seed, **(train_overrides or {})}
    tokenizer = None
    results: dict[str, Any] = {}
    for name, arch, overrides in models or MODELS:
        shape = {**overrides, **({"block_size": block_size} if block_size else {})}
        setup = prepare(data, arch, shape, budget, vocab_size=vocab_size, tokenizer=tokenizer, pairs=pairs)
        tokenizer = setup.tokenizer  # trained once, on the first model's (identical) training split
        run_dir = out / name
        start = time.perf_counter()
        train(setup.model, setup.task, setup.train_config, run_dir, progress=progress,
              model_config={"arch": arch, **setup.model.config.to_dict()})
        train_s = time.perf_counter() - start
        from lmforge.io.lmforge_format import save_model

        save_model(run_dir, setup.model, tokenizer)
        test = setup.splits["test"][:max_test]
        sources = [p.source for p in test]
        start = time.perf_counter()
        with torch.inference_mode():
            hyps = translate_ids(setup.model, tokenizer, sources, batch_size=32)
        translate_s = time.perf_counter() - start
        new_tokens = sum(len(ids) + 1 for ids in tokenizer.encode_many(hyps, add_special_tokens=False))
        scores = scores_by_length(sources, hyps, [p.target for p in test])
        results[name] = {
            "arch": arch, **overrides, "parameters": setup.model.num_parameters(), "train_seconds": round(train_s, 1),
            "sentences_per_second": round(len(sources) / translate_s, 1),
            "tokens_per_second": round(new_tokens / translate_s, 1), "scores": scores,
            "examples": [{"source": s, "reference": p.target, "output": h}
                         for s, p, h in list(zip(sources, test, hyps, strict=True))[:5]],
        }
    spec = [str(d) for d in data] if isinstance(data, (list, tuple)) else str(data)
    atomic_write_text(out / "results.json", json.dumps({"data": spec, "budget": budget, "models": results},
                                                       indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", report_table(results) + "\n")
    buckets = {name: {b: s["bleu"] for b, s in row["scores"].items() if b != "all" and s["n"]}
               for name, row in results.items()}
    save_figure(bleu_by_length(buckets, title=f"BLEU by source length ({spec})"), out / "bleu_by_length.png")
    return results


def report_table(results: dict[str, Any]) -> str:
    """A Markdown table: one row per model; BLEU/chrF overall, BLEU per length bucket (test pairs in the header)."""
    first = next(iter(results.values()))
    buckets = [b for b in first["scores"] if b != "all"]
    head = ["model", "params", "train s", "sent/s", "BLEU", "chrF"] + [
        f"BLEU {b} ({first['scores'][b]['n']})" for b in buckets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in results.items():
        s = row["scores"]
        cells = [name, f"{row['parameters'] / 1e6:.2f}M", f"{row['train_seconds']:.0f}",
                 f"{row['sentences_per_second']:.0f}", f"{s['all']['bleu']:.1f}", f"{s['all']['chrf']:.1f}"]
        cells += [f"{s[b]['bleu']:.1f}" if s[b]["n"] else "–" for b in buckets]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

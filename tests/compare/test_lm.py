"""compare lm: the count models' numbers equal an independent computation; bits per byte on multi-byte text."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from lmforge.cli import main
from lmforge.compare.lm import EOS, LMSettings, bits_per_byte, compare_lm, neural_log_probs
from lmforge.errors import ConfigError, InputError
from lmforge.tokenizers import load_tokenizer

# Multi-byte UTF-8 on purpose: bits per *byte* must divide by len(text.encode()), not by characters.
DOCS = ["Über die Brücke gehen wir — ça va, naïve café. Über die Brücke.",
        "Ελληνικά και ελληνικά: καλημέρα, καλησπέρα. Über café.",
        "日本語のテキスト、日本語のテキスト。Brücke café naïve.",
        "Die Brücke, die Brücke: καλημέρα café. 日本語。"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    path = folder / "toy.txt"
    path.write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")
    return path


def test_count_models_equal_independent_computation(corpus, tmp_path):
    settings = LMSettings(vocab_size=300, val_fraction=0.25, ngram_orders=(2,), tokens=1024, gpt_sizes=())
    report = compare_lm([corpus], tmp_path, settings=settings, arms=["unigram", "kn-2"], progress=False)
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    eos = tok.token_to_id(EOS)
    train = [eos]
    for d in DOCS[:3]:
        train += [*tok.encode(DOCS[DOCS.index(d)], add_special_tokens=False), eos]
    train = train[:-1]
    held_text = DOCS[3]
    held = tok.encode(held_text, add_special_tokens=False)  # scored: every token of the held-out document
    assert tok.decode(held) == held_text
    V = tok.vocab_size
    # add-one unigram, by hand
    counts = Counter(train)
    bits = sum(-math.log2((counts[t] + 1) / (len(train) + V)) for t in held)
    n_bytes = len(held_text.encode("utf-8"))
    assert n_bytes > len(held_text) + 10  # the test is about multi-byte text
    assert report.arm("unigram").bits_per_byte == pytest.approx(bits / n_bytes, rel=1e-12)
    # interpolated Kneser-Ney bigram, by hand (Chen & Goodman): raw counts on top, continuation counts below
    big = Counter(zip(train, train[1:], strict=False))
    cont = Counter(w for (_, w) in big)
    cont_total, cont_types = sum(cont.values()), len(cont)
    D = settings.discount

    def p(w, h):
        low = max(cont[w] - D, 0) / cont_total + D * cont_types / cont_total / V
        c_h = sum(c for (a, _), c in big.items() if a == h)
        if c_h == 0:
            return low
        types = sum(1 for (a, _) in big if a == h)
        return max(big[(h, w)] - D, 0) / c_h + D * types / c_h * low

    context = [eos, *held]
    bits_kn = sum(-math.log2(p(w, h)) for h, w in zip(context, context[1:], strict=False))
    assert report.arm("kn-2").bits_per_byte == pytest.approx(bits_kn / n_bytes, rel=1e-12)
    assert report.arm("kn-2").perplexity == pytest.approx(2 ** (bits_kn / len(held)), rel=1e-12)
    assert report.arm("kn-2").bits_per_byte < report.arm("unigram").bits_per_byte


def test_neural_log_probs_are_the_windows_next_token_probabilities():
    from lmforge.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=32))
    tokens = np.random.default_rng(0).integers(0, 50, size=20)
    got = neural_log_probs(model, tokens, block_size=8)
    with torch.no_grad():
        want = []
        for s in range(0, 19, 8):  # windows of 8 predictions; each sees only its own window
            x = torch.tensor(tokens[s : s + 8])[None]
            logp = model(x).log_softmax(-1)[0]
            want += logp[torch.arange(len(tokens[s + 1 : s + 9])), torch.tensor(tokens[s + 1 : s + 9])].tolist()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert bits_per_byte(got, 10) == pytest.approx(-sum(want) / math.log(2) / 10, rel=1e-5)


def test_cli_trains_every_arm_reports_and_resumes(corpus, tmp_path, capsys):
    out = tmp_path / "lm"
    args = ["compare", "lm", "--corpus", str(corpus), "--out", str(out), "--vocab-size", "300", "--val-fraction",
            "0.25", "--orders", "3", "--tokens", "2048", "--block-size", "16", "--gru-width", "32", "--gpt-sizes",
            "1x32", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    names = [a["name"] for a in report["arms"]]
    assert names == ["unigram", "kn-3", "gru-32", "gpt-1x32"]
    for a in report["arms"]:  # the table prints the report's values
        assert f"{a['bits_per_byte']:.3f}" in printed.split(a["name"], 1)[1].splitlines()[0]
        assert a["bits_per_byte"] == pytest.approx(a["nats_per_token"] * report["held_out_tokens"]
                                                   / math.log(2) / report["held_out_bytes"], rel=1e-9)
    gpt = report["arms"][3]
    assert gpt["curve"] and gpt["train_flops"] == pytest.approx(gpt["curve"][-1][0])
    assert (out / "loss_vs_flops.png").stat().st_size > 1000 and (out / "report.md").is_file()
    # a re-run reuses every finished arm: the same numbers, no training
    assert main(args[:-1]) == 0
    assert json.loads((out / "report.json").read_text())["arms"] == report["arms"]
    assert "done earlier" in capsys.readouterr().err


def test_bad_input(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("just one document without a blank line\n", encoding="utf-8")
    with pytest.raises(InputError, match="at least 2"):
        compare_lm([one], tmp_path / "o", progress=False)
    with pytest.raises(ConfigError, match="arms"):
        compare_lm(["builtin"], tmp_path / "o", arms=["trigram"], progress=False)
    with pytest.raises(ConfigError, match="budget"):
        LMSettings(tokens=10)
    assert main(["compare", "lm", "--corpus", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "o")]) == 1
    assert main(["compare", "lm", "--gpt-sizes", "4x100", "--out", str(tmp_path / "o")]) == 1

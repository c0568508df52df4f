"""CLI commands print the right *values*: each is compared with the library's answer computed independently or with
an outside oracle (transformers, gensim, scikit-learn), and each option is shown to change the result."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import torch

import lmforge
from lmforge.cli import main
from tests.test_generate import make_tiny_text_model

PROMPT = "Lists are"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny text model's tokenizer with an untied, widely initialised GPT (std 0.5, head 0.3): its greedy text
    does not loop on one token, so beams, penalties and a system prompt visibly change the output."""
    from lmforge.io import save_model
    from lmforge.models.gpt import GPT

    base = lmforge.load(make_tiny_text_model(tmp_path_factory.mktemp("base")))
    config = base.model.config
    config.tie_embeddings = False
    torch.manual_seed(1)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3 if "lm_head" in name else 0.5)
    folder = tmp_path_factory.mktemp("values")
    save_model(folder, model, base.tokenizer)
    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    return folder


# ---------------------------------------------------------------- generate


@pytest.mark.parametrize("flags, options", [
    (["--num-beams", "3"], {"num_beams": 3}),
    (["--repetition-penalty", "3"], {"repetition_penalty": 3.0}),
    (["--temperature", "0.8", "--top-k", "3", "--seed", "5"], {"temperature": 0.8, "top_k": 3, "seed": 5}),
    (["--temperature", "1.2", "--min-p", "0.2", "--seed", "5"], {"temperature": 1.2, "min_p": 0.2, "seed": 5}),
])
def test_generate_flags_reach_the_decoder(model_dir, capsys, flags, options):
    lm = lmforge.load(model_dir)
    assert main(["generate", "--model", str(model_dir), "--prompt", PROMPT, "--max-new-tokens", "16", *flags]) == 0
    printed = capsys.readouterr().out
    expected = lm.generate(PROMPT, max_new_tokens=16, **options)
    assert printed == expected + "\n"
    if "seed" not in options:  # deterministic options must change greedy's text, or the test proves nothing
        assert expected != lm.generate(PROMPT, max_new_tokens=16)


def test_generate_flags_with_a_known_effect(model_dir, capsys):
    """top-k 1 and min-p 1 leave only the likeliest token: at temperature 5 that is greedy decoding (an ignored
    flag would sample nearly uniformly); --stop cuts greedy's text before the stop string."""
    greedy = lmforge.load(model_dir).generate(PROMPT, max_new_tokens=16)
    for flag in (["--top-k", "1"], ["--min-p", "1.0"]):
        assert main(["generate", "--model", str(model_dir), "--prompt", PROMPT, "--max-new-tokens", "16",
                     "--temperature", "5", "--seed", "1", *flag]) == 0
        assert capsys.readouterr().out == greedy + "\n"
    stop = greedy[len(greedy) // 2 : len(greedy) // 2 + 2]
    assert stop.strip()
    assert main(["generate", "--model", str(model_dir), "--prompt", PROMPT, "--max-new-tokens", "16",
                 "--stop", stop]) == 0
    assert capsys.readouterr().out == greedy[: greedy.index(stop)] + "\n"


_ENTRY = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*") +(\d\.\d{3})""")


def test_show_probs_equal_softmax_of_the_logits(model_dir, capsys):
    lm = lmforge.load(model_dir)
    n_steps, top_n = 5, 3
    assert main(["generate", "--model", str(model_dir), "--prompt", PROMPT, "--max-new-tokens", str(n_steps),
                 "--show-probs", str(top_n)]) == 0
    rows = capsys.readouterr().out.splitlines()[1 : 1 + n_steps]
    ids = lm.tokenizer.encode(PROMPT)
    show = lambda i: repr(lm.tokenizer.decode([i], skip_special_tokens=False))  # noqa: E731
    for row in rows:
        entries = _ENTRY.findall(row)  # [(token, prob), then top_n alternatives]
        with torch.no_grad():
            p = lm.model(torch.tensor([ids]))[0, -1].double().softmax(-1)
        best = int(p.argmax())
        assert entries[0][0] == show(best) and float(entries[0][1]) == pytest.approx(float(p[best]), abs=6e-4)
        top = p.topk(top_n)
        assert [e[0] for e in entries[1:]] == [show(int(i)) for i in top.indices]
        assert [float(e[1]) for e in entries[1:]] == pytest.approx(top.values.tolist(), abs=6e-4)
        ids.append(best)


def test_chat_system_prompt_is_sent(model_dir, capsys, monkeypatch):
    lm = lmforge.load(model_dir)
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\n/exit\n"))
    assert main(["chat", "--model", str(model_dir), "--system", "Answer in French.", "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    printed = capsys.readouterr().out
    with_system = lm.chat([{"role": "system", "content": "Answer in French."},
                           {"role": "user", "content": "Hello there"}], max_new_tokens=8)
    without = lm.chat([{"role": "user", "content": "Hello there"}], max_new_tokens=8)
    assert printed == with_system + "\n"
    assert with_system != without


# ---------------------------------------------------------------- eval: perplexity against transformers


def test_eval_perplexity_equals_transformers_on_the_exported_model(model_dir, tmp_path, capsys):
    import transformers

    from lmforge.io import save_hf

    text = tmp_path / "held_out.txt"
    from lmforge.data.corpus import builtin_text

    text.write_text(builtin_text()[200_000:206_000], encoding="utf-8")
    assert main(["data", "prepare", str(text), "--tokenizer", str(model_dir / "tokenizer.json"),
                 "--out", str(tmp_path / "data"), "--val-fraction", "0.5"]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "data"), "--block-size", "32"]) == 0
    printed = capsys.readouterr().out
    loss, ppl = (float(x) for x in re.search(r"loss ([\d.]+) nats/token, perplexity ([\d.]+)", printed).groups())

    lm = lmforge.load(model_dir)
    save_hf(tmp_path / "hf", lm.model, lm.tokenizer)
    ref = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=manifest["dtype"]).astype(np.int64)
    n = (len(val) - 1) // 32
    assert 1 < n <= 512  # every window is used, so the oracle needs no window selection
    x = torch.tensor(np.stack([val[i * 32 : i * 32 + 32] for i in range(n)]))
    y = torch.tensor(np.stack([val[i * 32 + 1 : i * 32 + 33] for i in range(n)]))
    with torch.no_grad():
        logits = ref(x).logits
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
    assert loss == pytest.approx(want, abs=1e-4)
    assert ppl == pytest.approx(np.exp(want), rel=1e-3)


# ---------------------------------------------------------------- bag-of-words against scikit-learn


def test_bow_options_print_scikit_learns_values(tmp_path, capsys):
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the mat and the log",
            "cats and dogs sat"]
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for i, d in enumerate(docs):
        (corpus / f"{i}.txt").write_text(d, encoding="utf-8")
    show = "the cat sat on the log"
    assert main(["bow", "--corpus", str(corpus), "--tfidf", "--ngram", "1", "2", "--min-df", "2",
                 "--show", show, "--top", "50"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^  (.+?) +col +(\d+)  +([\d.]+)", out, flags=re.M)
    ref = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    ref.fit([(corpus / f"{i}.txt").read_text() for i in range(len(docs))])
    want = ref.transform([show]).toarray()[0]
    names = ref.get_feature_names_out()
    expected = {names[j]: want[j] for j in np.flatnonzero(want)}
    assert {term.strip(): float(v) for term, _, v in rows} == pytest.approx(expected, abs=1e-3)
    assert len(rows) == len(expected) > 3


# ---------------------------------------------------------------- word2vec against gensim


@pytest.fixture(scope="module")
def toy_vectors(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("w2v")
    rng = np.random.default_rng(0)
    animals, foods = ["cat", "dog", "cow", "pig"], ["bread", "rice", "soup", "cake"]
    lines = [f"the {rng.choice(animals)} runs fast" if i % 2 else f"we cook {rng.choice(foods)} slowly"
             for i in range(1500)]
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    vectors = tmp / "v.txt"
    assert main(["word2vec", "train", "--corpus", str(corpus), "--min-count", "1", "--epochs", "3", "--sample", "0",
                 "--vector-size", "12", "--workers", "1", "--engine", "numba", "--quiet", "--out", str(vectors)]) == 0
    return corpus, vectors


def _pairs(out: str) -> list[tuple[str, float]]:
    return [(w, float(s)) for w, s in re.findall(r"^  (\S+) +(-?[\d.]+)$", out, flags=re.M)]


def test_word2vec_similar_and_analogy_equal_gensim(toy_vectors, capsys):
    from gensim.models import KeyedVectors as GensimKV

    _, vectors = toy_vectors
    capsys.readouterr()
    ref = GensimKV.load_word2vec_format(str(vectors))
    assert main(["word2vec", "similar", "cat", "--vectors", str(vectors), "--topn", "5"]) == 0
    got = _pairs(capsys.readouterr().out)
    want = ref.most_similar("cat", topn=5)
    assert [w for w, _ in got] == [w for w, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
    assert main(["word2vec", "analogy", "cat", "dog", "bread", "--vectors", str(vectors), "--topn", "3"]) == 0
    got = _pairs(capsys.readouterr().out)
    want = ref.most_similar(positive=["cat", "bread"], negative=["dog"], topn=3)
    assert [w for w, _ in got] == [w for w, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)


def test_word2vec_eval_accuracy_equals_gensim(toy_vectors, tmp_path, capsys):
    from gensim.models import KeyedVectors as GensimKV

    _, vectors = toy_vectors
    questions = tmp_path / "q.txt"
    questions.write_text(": animals\ncat dog cow pig\ndog cat pig cow\ncow pig cat dog\n"
                         ": food\nbread rice soup cake\nrice bread cake soup\ncat bread dog rice\n"
                         ": unknown\nzebra cat dog cow\n")
    capsys.readouterr()
    assert main(["word2vec", "eval", str(questions), "--vectors", str(vectors)]) == 0
    printed = float(re.search(r"analogy accuracy: ([\d.]+)%", capsys.readouterr().out).group(1))
    score, _ = GensimKV.load_word2vec_format(str(vectors)).evaluate_word_analogies(str(questions))
    assert printed == pytest.approx(100 * score, abs=0.005)


def test_word2vec_training_options_reach_the_trainer(toy_vectors, tmp_path, capsys):
    """The CLI with non-default options writes exactly the vectors the library trains with those options."""
    from lmforge.represent import KeyedVectors, Word2Vec

    corpus, _ = toy_vectors
    out = tmp_path / "cbow.txt"
    assert main(["word2vec", "train", "--corpus", str(corpus), "--cbow", "--window", "2", "--negative", "3",
                 "--min-count", "1", "--epochs", "2", "--sample", "0", "--alpha", "0.05", "--vector-size", "8",
                 "--seed", "7", "--workers", "1", "--engine", "numba", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    cli = KeyedVectors.load_word2vec_format(out)
    sentences = [line.split() for line in corpus.read_text(encoding="utf-8").splitlines()]  # lower-case words
    model = Word2Vec(sentences, sg=0, window=2, negative=3, min_count=1, epochs=2, sample=0,
                     alpha=0.05, vector_size=8, seed=7, workers=1, engine="numba")
    np.testing.assert_allclose(cli.vectors, model.wv.vectors, atol=1e-5)  # the text format keeps 6 decimals
    default = KeyedVectors.load_word2vec_format(toy_vectors[1])
    assert cli.vectors.shape[1] == 8 != default.vectors.shape[1]

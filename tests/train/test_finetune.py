"""Fine-tuning: readers for CSV/TSV/JSONL/fastText, metrics vs scikit-learn and a hand-checked entity case,
classification and tagging that learn, the real MiniLM beating chance on gensim's pang_lee sentiment data,
and clear errors for bad input."""

from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from lmforge.embed import SentenceConfig
from lmforge.errors import ConfigError, FormatError, InputError
from lmforge.io.hf_bert import save_hf_bert
from lmforge.models.bert import Bert, BertConfig
from lmforge.train.finetune import (
    Example,
    classification_scores,
    default_pooling,
    encode_examples,
    entity_scores,
    entity_spans,
    finetune,
    predict,
    read_examples,
)


@pytest.fixture(scope="module")
def tiny_bert(minilm_path, tmp_path_factory):
    """A tiny randomly initialised BERT with the real MiniLM WordPiece vocabulary, as an HF folder."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model = Bert(BertConfig(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, ffn_hidden=64, block_size=64,
                            dropout=0.0))
    return save_hf_bert(model, folder, tokenizer_source=minilm_path)


def test_classification_scores_match_sklearn():
    rng = random.Random(0)
    gold = [rng.choice("abc") for _ in range(200)]
    pred = [g if rng.random() < 0.6 else rng.choice("abcd") for g in gold]  # "d" is never gold
    ours = classification_scores(gold, pred)
    assert ours["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert ours["f1_macro"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))


def test_entity_scores_hand_checked():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "I-ORG", "O"]]
    # gold entities: PER(0,2) LOC(3,4) ORG(1,4); predicted: PER(0,2) ORG(3,4) ORG(1,3) -> only PER is right
    assert entity_spans(gold[1]) == {("ORG", 1, 4)}
    scores = entity_scores(gold, pred)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert scores["accuracy"] == pytest.approx(6 / 8)
    # conlleval: an I- tag after O opens an entity; a type change splits one
    assert entity_spans(["O", "I-X", "I-Y", "I-Y"]) == {("X", 1, 2), ("Y", 2, 4)}


def test_readers(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"good, really",pos\nbad,neg\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("sentence\tother\tgold\nfine\tfine too\tyes\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(json.dumps({"tokens": ["mr", "smith"], "tags": ["O", "B-PER"]}) + "\n",
                                      encoding="utf-8")
    (tmp_path / "a.txt").write_text("__label__pos nice film\n\n__label__neg dull\n", encoding="utf-8")
    assert read_examples(tmp_path / "a.csv", "classify") == [Example("good, really", "pos"), Example("bad", "neg")]
    cols = {"text": "sentence", "text_pair": "other", "label": "gold"}
    assert read_examples(tmp_path / "a.tsv", "pair", cols) == [Example("fine", "yes", "fine too")]
    assert read_examples(tmp_path / "a.jsonl", "tag") == [Example(["mr", "smith"], ["O", "B-PER"])]
    assert read_examples(tmp_path / "a.txt", "classify")[1] == Example("dull", "neg")


def test_bad_input_is_a_clear_error(tmp_path, minilm_path):
    (tmp_path / "a.csv").write_text("text,label\nfine,pos\n", encoding="utf-8")
    with pytest.raises(InputError, match="no column 'sentiment'"):
        read_examples(tmp_path / "a.csv", "classify", {"label": "sentiment"})
    (tmp_path / "b.txt").write_text("pos fine\n", encoding="utf-8")
    with pytest.raises(FormatError, match="__label__"):
        read_examples(tmp_path / "b.txt", "classify")
    (tmp_path / "c.jsonl").write_text('{"tokens": ["a", "b"], "tags": ["O"]}\n', encoding="utf-8")
    with pytest.raises(InputError, match="2 tokens but 1 tags"):
        read_examples(tmp_path / "c.jsonl", "tag")
    from lmforge.tokenizers import load_tokenizer

    tok = load_tokenizer(minilm_path)
    with pytest.raises(InputError, match="does not occur in the training data"):
        encode_examples(tok, [Example("x", "maybe")], "classify", ["neg", "pos"], 16)
    # A pair longer than max_length is cut (longest first), not a crash.
    long_a, long_b = "word " * 300, "other " * 50
    enc = encode_examples(tok, [Example(long_a, "pos", long_b)], "pair", ["neg", "pos"], 64)
    assert enc.input_ids.shape == (1, 64)
    assert (enc.token_type_ids[0] == 1).sum() > 0  # the second text survived truncation


def _presence_data(n: int, seed: int) -> list[Example]:
    # The label depends on one word's presence anywhere in the sentence, among random filler words.
    rng = random.Random(seed)
    filler = "the a film story actor scene plot music long short old new today night city river".split()
    out = []
    for _ in range(n):
        words = rng.sample(filler, 6)
        label = rng.random() < 0.5
        if label:
            words.insert(rng.randrange(7), "excellent")
        out.append(Example(" ".join(words), "pos" if label else "neg"))
    return out


# Budgets of the three toy tasks below: with them, 12 of 12 seeds (of the tiny model and of fine-tuning) reached
# 1.0 here; with half the epochs 1 or 2 seeds in 12 stayed near chance. The margin matters because another CPU
# rounds differently, which acts like another seed.
def test_classification_learns(tiny_bert, tmp_path):
    result = finetune(tiny_bert, None, "classify", tmp_path / "clf", train_examples=_presence_data(256, 0),
                      eval_examples=_presence_data(100, 1), epochs=8, lr=3e-3, batch_size=32, progress=False)
    assert result.metrics["accuracy"] >= 0.9  # chance is ~0.5
    assert result.losses[-1] < result.losses[0]
    # a plain BERT folder (no sentence-transformers pooling) gets BERT's own [CLS] classifier
    assert result.pooling == "cls"
    assert json.loads((tmp_path / "clf" / "metrics.json").read_text())["pooling"] == "cls"
    # validation loss is logged, but no "perplexity": a classifier's cross-entropy is not one
    rows = [json.loads(line) for line in (tmp_path / "clf" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in rows if "val_loss" in r]
    assert evaluated and not any("val_ppl" in r for r in rows)
    preds = predict(tmp_path / "clf", ["the film excellent story night", "the film story night old"])
    assert [p.label for p in preds] == ["pos", "neg"]
    # what we saved is a real HF BertForSequenceClassification with the same outputs
    from transformers import BertForSequenceClassification

    import lmforge

    lm = lmforge.load(tmp_path / "clf")
    ref = BertForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    ids = torch.tensor([[101, 1996, 2143, 6581, 102]])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids), ref(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    assert ref.config.id2label == {0: "neg", 1: "pos"}


def _tag_data(n: int, seed: int) -> list[Example]:
    # Toy entities: the one or two words after "mr" are a person (B-PER, I-PER); everything else is O.
    rng = random.Random(seed)
    names = "smith jones brown taylor wilson davies evans thomas".split()
    words = "went to the city and saw river yesterday with old friends".split()
    out = []
    for _ in range(n):
        toks = rng.sample(words, 5)
        tags = ["O"] * 5
        at = rng.randrange(5)
        person = rng.sample(names, rng.choice([1, 2]))
        toks[at:at] = ["mr", *person]
        tags[at:at] = ["O", "B-PER"] + ["I-PER"] * (len(person) - 1)
        out.append(Example(toks, tags))
    return out


def test_tagging_learns(tiny_bert, tmp_path):
    result = finetune(tiny_bert, None, "tag", tmp_path / "tag", train_examples=_tag_data(256, 0),
                      eval_examples=_tag_data(64, 1), epochs=40, lr=5e-3, batch_size=32, progress=False)
    assert result.labels == ["B-PER", "I-PER", "O"]
    assert result.metrics["f1"] >= 0.8
    pred = predict(tmp_path / "tag", ["yesterday mr jones went to the city"])[0]
    assert pred.tags[2] == ("jones", "B-PER") and pred.tags[0] == ("yesterday", "O")


@pytest.mark.slow
def test_real_minilm_one_epoch_on_pang_lee_beats_chance(minilm_path, gensim_test_data, tmp_path):
    from sklearn.metrics import roc_auc_score

    # the file is Windows-1252 (it holds 0x97 em dashes), not UTF-8
    examples = read_examples(gensim_test_data / "pang_lee_polarity.cor", "classify", encoding="cp1252")
    assert len(examples) == 200
    train_ex, eval_ex = examples[0::2], examples[1::2]  # the file is sorted by label: alternate for balance
    truth = [e.label == "pos" for e in eval_ex]
    # One epoch is 13 optimizer steps. The classifier reads MiniLM's mean-pooled sentence embedding (the default
    # for a mean-pooling sentence-transformers folder; a logistic regression on it reaches ~0.76, on the pooled
    # [CLS] ~0.63). After so few steps the model ranks the sentences but has not found the threshold, so the
    # accuracy at p = 0.5 still swings from seed to seed — with mean pooling 0.50-0.73 over seeds 0-7 (with
    # [CLS]: 0.50-0.78); seeds 2 and 7 give every held-out sentence p(pos) < 0.5 — while the ranking by p(pos)
    # is what it learned: ROC AUC 0.64-0.78 over those 8 seeds (with [CLS]: 0.63-0.78; both from
    # `python bench/finetune_cv.py --seeds 8 --epochs 1 --lr 3e-4`). So the test asks the
    # mean AUC of two seeds to beat chance (0.5; the standard deviation of that mean under chance is ~0.04, so
    # 0.6 is ~2.4 of them). The cross-validated several-epoch accuracy is bench/finetune_cv.py's.
    from lmforge.io import load_parts
    from lmforge.train.finetune import encode_examples, predict_encoded

    base = load_parts(minilm_path)
    aucs, before = [], []
    for seed in (0, 1):
        # Before: the model the run starts from (the same seed draws the same fresh head on MiniLM's encoder).
        torch.manual_seed(seed)
        start = base.model.with_head("classify", ["neg", "pos"], "mean").eval()
        probs = predict_encoded(start, encode_examples(base.tokenizer, eval_ex, "classify", ["neg", "pos"], 128))
        before.append(roc_auc_score(truth, probs[:, 1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = finetune(minilm_path, None, "classify", tmp_path / f"pl{seed}", train_examples=train_ex,
                              eval_examples=eval_ex, epochs=1, lr=3e-4, batch_size=8, seed=seed, progress=False)
        assert np.isfinite(result.losses).all()
        assert result.pooling == "mean"
        saved = json.loads((tmp_path / f"pl{seed}" / "metrics.json").read_text())
        assert saved["accuracy"] == result.metrics["accuracy"] and saved["pooling"] == "mean"
        preds = predict(tmp_path / f"pl{seed}", [e.text for e in eval_ex])
        assert [p.label for p in preds].count("pos") + [p.label for p in preds].count("neg") == 100
        p_pos = [p.score if p.label == "pos" else 1.0 - p.score for p in preds]
        aucs.append(roc_auc_score(truth, p_pos))
    assert np.mean(aucs) >= 0.6, aucs
    # Before fine-tuning the fresh head ranks at chance: ROC AUC 0.40-0.65 over seeds 0-7 (0.54 and 0.40 for the
    # seeds here); the 13 steps move the mean of these two seeds up by well over 0.1.
    assert np.mean(aucs) >= np.mean(before) + 0.1, (before, aucs)


def _which_text_data(n: int, seed: int) -> list[Example]:
    # Sentence pairs: the label says WHICH of the two texts holds "excellent" — only the segment (token types,
    # [SEP]) tells them apart, so this learns only if pairs are encoded as two segments.
    rng = random.Random(seed)
    filler = "the a car house tree dog red green".split()
    out = []
    for _ in range(n):
        a, b, in_second = rng.sample(filler, 3), rng.sample(filler, 3), rng.random() < 0.5
        (b if in_second else a).insert(rng.randrange(4), "excellent")
        out.append(Example(" ".join(a), "second" if in_second else "first", " ".join(b)))
    return out


def test_pair_classification_learns(tiny_bert, tmp_path):
    result = finetune(tiny_bert, None, "pair", tmp_path / "pair", train_examples=_which_text_data(256, 0),
                      eval_examples=_which_text_data(100, 1), epochs=10, lr=3e-3, batch_size=32, progress=False)
    assert result.metrics["accuracy"] >= 0.9
    preds = predict(tmp_path / "pair", ["the excellent car", "a red dog"], pairs=["a red dog", "the excellent car"])
    assert [p.label for p in preds] == ["first", "second"]  # swapping the texts flips the answer


@pytest.fixture(scope="module")
def tiny_sentence_bert(minilm_path, tmp_path_factory):
    """The tiny BERT as a sentence-transformers folder that mean-pools (modules.json, 1_Pooling/config.json)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-st")
    model = Bert(BertConfig(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, ffn_hidden=64, block_size=64,
                            dropout=0.0))
    return save_hf_bert(model, folder, tokenizer_source=minilm_path, sentence_config=SentenceConfig(("mean",)))


def test_default_pooling_follows_the_sentence_transformers_config(tiny_bert, tiny_sentence_bert, tmp_path,
                                                                 minilm_path):
    import lmforge

    assert default_pooling(lmforge.load(tiny_bert)) == "cls"  # no modules.json: plain BERT
    assert default_pooling(lmforge.load(tiny_sentence_bert)) == "mean"
    assert default_pooling(lmforge.load(minilm_path)) == "mean"  # the real all-MiniLM-L6-v2
    cls_pooled = save_hf_bert(lmforge.load(tiny_bert).model, tmp_path / "st-cls", tokenizer_source=minilm_path,
                              sentence_config=SentenceConfig(("cls",)))
    assert default_pooling(lmforge.load(cls_pooled)) == "cls"


def test_mean_pooling_learns_and_round_trips(tiny_sentence_bert, tmp_path):
    # Same toy task and budget as test_classification_learns; with mean pooling 12 of 12 runs (3 tiny models x
    # 4 fine-tuning seeds) reached 1.0 here.
    result = finetune(tiny_sentence_bert, None, "classify", tmp_path / "mean", train_examples=_presence_data(256, 0),
                      eval_examples=_presence_data(100, 1), epochs=8, lr=3e-3, batch_size=32, progress=False)
    assert result.pooling == "mean"  # chosen from the folder's 1_Pooling/config.json
    assert result.metrics["accuracy"] >= 0.9
    assert json.loads((tmp_path / "mean" / "metrics.json").read_text())["pooling"] == "mean"
    # saved as lmforge's own folder: lmforge.load rebuilds the mean-pooled head, which scores the held-out set
    # exactly as the trained model did, and lmforge predict labels with it
    import lmforge
    from lmforge.train.finetune import evaluate_examples

    folder = tmp_path / "mean"
    assert (folder / "lmforge.json").is_file()
    assert not (folder / "config.json").exists() and not (folder / "model.safetensors").exists()
    lm = lmforge.load(folder)
    assert lm.model.config.classifier_pooling == "mean" and lm.model.config.labels == ["neg", "pos"]
    assert evaluate_examples(lm.model, lm.tokenizer, _presence_data(100, 1), "classify", 128) == result.metrics
    preds = predict(folder, ["the film excellent story night", "the film story night old", "excellent"])
    assert [p.label for p in preds] == ["pos", "neg", "pos"]
    # ... while transformers refuses the folder instead of reading it as a [CLS] classifier
    from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

    with pytest.raises(OSError, match="no file named model.safetensors"):
        BertForSequenceClassification.from_pretrained(folder)
    with pytest.raises((OSError, ValueError)):
        AutoModelForSequenceClassification.from_pretrained(folder)
    with pytest.raises(ConfigError, match="BertForSequenceClassification"):
        save_hf_bert(lm.model, tmp_path / "hf")


def test_pooling_option_overrides_and_is_checked(tiny_sentence_bert, tmp_path):
    # "cls" on a mean-pooling sentence-transformers model: an HF BertForSequenceClassification folder that
    # transformers opens with the same outputs.
    from transformers import BertForSequenceClassification

    import lmforge

    result = finetune(tiny_sentence_bert, None, "classify", tmp_path / "cls", train_examples=_presence_data(64, 0),
                      epochs=1, lr=3e-3, batch_size=32, progress=False, pooling="cls")
    assert result.pooling == "cls" and not (tmp_path / "cls" / "lmforge.json").exists()
    lm = lmforge.load(tmp_path / "cls")
    ref = BertForSequenceClassification.from_pretrained(tmp_path / "cls").eval()
    ids = torch.tensor([[101, 1996, 2143, 6581, 102, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids, mask), ref(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="pooling must be one of"):
        finetune(tiny_sentence_bert, None, "classify", tmp_path / "x", train_examples=_presence_data(8, 0),
                 pooling="max")
    with pytest.raises(ConfigError, match="'tag' labels every token"):
        finetune(tiny_sentence_bert, None, "tag", tmp_path / "y", train_examples=_tag_data(8, 0), pooling="mean")

"""Fill-mask (lmforge.fill_mask and ``lmforge fill-mask``): the printed candidates are the softmax of the model's
logits at the mask, and a mask past the model's length is a clear error, not an IndexError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.errors import InputError
from lmforge.fill_mask import fill_mask
from lmforge.io.hf_bert import save_hf_bert
from lmforge.models.bert import Bert, BertConfig

# a WordPiece tokenizer (120 tokens, with [MASK]) in an HF BERT folder written by lmforge train bert
TOKENIZER_FOLDER = Path(__file__).parent / "fixtures" / "old_format" / "bert_run"


@pytest.fixture(scope="module")
def mlm_folder(tmp_path_factory) -> Path:
    """A masked-LM BERT with weights large enough that its predictions are peaked (no near-ties in the top k)."""
    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=120, n_embd=16, n_layer=1, n_head=2, ffn_hidden=32, block_size=32,
                            dropout=0.0, head="mlm"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.7)
    return save_hf_bert(model.eval(), tmp_path_factory.mktemp("mlm") / "model", tokenizer_source=TOKENIZER_FOLDER)


def test_printed_candidates_are_the_softmax_of_the_logits(mlm_folder, capsys):
    text = "the [MASK] is used to [MASK] a file"
    assert main(["fill-mask", "--model", str(mlm_folder), "-k", "4", text]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == text and len(lines) == 3
    lm = lmforge.load(mlm_folder)
    ids = lm.tokenizer.encode(text)
    with torch.no_grad():
        probs = lm.model(torch.tensor([ids]))[0].softmax(-1)  # (T, V)
    positions = [i for i, t in enumerate(ids) if t == lm.tokenizer.mask_token_id]
    for n, (line, pos) in enumerate(zip(lines[1:], positions, strict=True), 1):
        prefix = f"  [MASK] #{n}: "
        assert line.startswith(prefix)
        printed = re.findall(r"(\S+) (\d\.\d{3})(?:, |$)", line[len(prefix):])
        top = probs[pos].topk(4)
        expected = [(lm.tokenizer.id_to_token(int(i)), f"{float(p):.3f}")
                    for p, i in zip(top.values, top.indices, strict=True)]
        assert printed == expected
        assert float(top.values[0]) > 2 * float(top.values[-1])  # peaked: the order is not an accident of ties


def test_library_matches_the_logits(mlm_folder):
    lm = lmforge.load(mlm_folder)
    (candidates,) = lm.fill_mask("a [MASK] here", top_k=3)
    ids = lm.tokenizer.encode("a [MASK] here")
    pos = ids.index(lm.tokenizer.mask_token_id)
    with torch.no_grad():
        probs = lm.model(torch.tensor([ids]))[0, pos].softmax(-1)
    assert [c.id for c in candidates] == probs.topk(3).indices.tolist()
    assert [c.probability for c in candidates] == pytest.approx(probs.topk(3).values.tolist(), abs=1e-6)


def test_mask_past_the_model_length_is_a_clear_error(mlm_folder, capsys):
    lm = lmforge.load(mlm_folder)
    long_text = " ".join(["the"] * 40) + " [MASK]"
    n = len(lm.tokenizer.encode(long_text))
    with pytest.raises(InputError, match=rf"\[MASK\] at token {n - 1} of {n} is past the model's limit of 32 tokens"):
        fill_mask(lm.model, lm.tokenizer, long_text)
    assert main(["fill-mask", "--model", str(mlm_folder), long_text]) == 1
    err = capsys.readouterr().err
    assert "past the model's limit of 32 tokens" in err and "Traceback" not in err
    # a mask inside the limit of a long text: the text is cut to block_size and the mask still predicted
    (candidates,) = lm.fill_mask("the [MASK] " + " ".join(["the"] * 40), top_k=2)
    assert len(candidates) == 2

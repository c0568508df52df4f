"""GPT pre-training end to end: memorisation, beating the unigram baseline, kill-and-resume, options, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lmforge
from lmforge.cli import main as cli
from lmforge.data.tokens import open_tokens, prepare_tokens
from lmforge.errors import ConfigError
from lmforge.generate import generate_ids
from lmforge.tokenizers import train_tokenizer
from lmforge.train.evaluate import perplexity, unigram_entropy
from lmforge.train.pretrain import pretrain_gpt

EOT = "<|endoftext|>"
SMALL = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 32}
QUIET = {"eval_every": 0, "checkpoint_every": 0, "log_every": 1000}

MEMO_TEXT = (
    "Quillon the cartographer measured every river of Vesh twice: once at dawn, when the water ran cold and green, "
    "and once at dusk, when it ran amber. Her maps were sold in the harbour market beside jars of salted plums, "
    "and sailors swore that a Quillon chart had never once led a ship onto the rocks of the northern strait."
)


@pytest.fixture(scope="module")
def builtin_data(tmp_path_factory) -> Path:
    """The built-in corpus with a 512-token BPE (trained on it in well under a second)."""
    from lmforge.data.corpus import builtin_documents

    tok = train_tokenizer(builtin_documents(), kind="bpe", vocab_size=512, special_tokens=[EOT], show_progress=False)
    out = tmp_path_factory.mktemp("builtin") / "data"
    prepare_tokens(None, tok, out)
    return out


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_memorises_a_text_and_greedy_generation_reproduces_it(tmp_path):
    src = tmp_path / "memo.txt"
    src.write_text(MEMO_TEXT, encoding="utf-8")
    tok = train_tokenizer([MEMO_TEXT], kind="bpe", vocab_size=320, special_tokens=[EOT], show_progress=False)
    data = prepare_tokens([src], tok, tmp_path / "data", val_fraction=0.3)
    result = pretrain_gpt(tmp_path / "data", tmp_path / "run", "tiny", {**SMALL, "dropout": 0.0},
                          {"steps": 250, "batch_size": 16, "lr": 3e-3, "warmup_steps": 10, "weight_decay": 0.0,
                           **QUIET}, progress=False)
    # From ln(320) ~ 5.8 to near 0: over seeds 0-5 the last loss was 0.021-0.041 after 250 steps (0.039-0.057
    # after 150, too close to a fixed bar for another CPU's rounding, which acts like another seed).
    assert result.losses[-1] < 0.08, result.losses[-10:]
    lm = lmforge.load(tmp_path / "run")
    train = data.train.astype(np.int64).tolist()
    for start in (0, 40):
        prompt, expected = train[start : start + 8], train[start + 8 : start + 8 + 20]
        out = generate_ids(lm.model, [prompt], max_new_tokens=20)
        assert out.new_ids[0] == expected
    assert lm.tokenizer.decode(train[8:28]) in MEMO_TEXT


@pytest.mark.slow
def test_tiny_beats_the_unigram_baseline_on_the_builtin_corpus(builtin_data, tmp_path):
    data = open_tokens(builtin_data)
    baseline = unigram_entropy(data.train, data.val, data.vocab_size)
    result = pretrain_gpt(builtin_data, tmp_path / "run", "tiny", {"n_layer": 2, "n_head": 2, "n_embd": 64,
                                                                  "block_size": 64},
                          {"steps": 300, "batch_size": 16, "lr": 3e-3, "warmup_steps": 20, "eval_every": 150,
                           "eval_batches": 16, "checkpoint_every": 0}, progress=False)
    # A context-free model cannot do better than `baseline` (5.34 nats here); 300 steps of the transformer clearly
    # do: 0.83-1.44 nats below it over seeds 0-4 (200 steps judged on 4 batches gave 0.59-1.12, too close to the bar).
    assert result.val_loss < baseline - 0.5, (result.val_loss, baseline)
    lm = lmforge.load(tmp_path / "run")
    ppl = perplexity(lm.model, data.val, batch_size=16, max_windows=16 * 16)
    assert ppl.loss == pytest.approx(result.val_loss, abs=1e-4)  # the saved model is the trained one


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lmforge", "train", "gpt", "--data", str(data), "--out", str(out),
            "--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "8",
            "--steps", "40", "--warmup-steps", "4", "--checkpoint-every", "5", "--eval-every", "10",
            "--eval-batches", "2", "--keep-checkpoints", "3", "--threads", "1", "--no-progress", *extra]


@pytest.mark.slow
def test_sigkill_and_resume_matches_the_uninterrupted_run(builtin_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full, broken = tmp_path / "full", tmp_path / "broken"
    subprocess.run(_train_cmd(builtin_data, full), env=env, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_train_cmd(builtin_data, broken), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (broken / "checkpoints" / "step-5").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    steps_done = sorted(int(p.name.split("-")[1]) for p in (broken / "checkpoints").glob("step-*"))
    assert steps_done and steps_done[-1] < 40, "the run finished before it could be killed"

    resumed = subprocess.run(_train_cmd(builtin_data, broken, "--resume"), env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from the step-{steps_done[-1]} checkpoint" in resumed.stdout
    a, b = losses(full), losses(broken)
    assert len(a) == len(b) == 40
    assert np.abs(np.array(a) - np.array(b)).max() <= 1e-6
    rows_a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("val_loss") for r in rows_a] == pytest.approx([r.get("val_loss") for r in rows_b], abs=1e-6)


OPTION_STEPS = {"bf16": 120, "grad_accum": 120, "tiny-llama": 120, "moe": 200}  # MoE learns slower


def train_with_option(data: Path, run: Path, option: str, seed: int = 0, steps: int | None = None):
    """``(result, dtypes)``: ``OPTION_STEPS`` steps of a 2-layer model with one training option, judged on
    validation at the end; ``dtypes`` are the output dtypes of every ``nn.Linear`` the training steps ran."""
    model = dict(SMALL)
    steps = steps or OPTION_STEPS[option]
    train = {"steps": steps, "batch_size": 16, "lr": 6e-3, "warmup_steps": 8, "eval_every": steps,
             "eval_batches": 8, "checkpoint_every": 0, "log_every": 1000, "seed": seed}
    preset = "tiny"
    if option == "bf16":
        train["bf16"] = True
    elif option == "grad_accum":
        train["grad_accum"] = 4
    elif option == "tiny-llama":
        preset = "tiny-llama"
        model = {"n_layer": 2, "n_embd": 64, "block_size": 32}
    elif option == "moe":
        model["n_expert"] = 4
    dtypes = set()

    def seen(module, _inputs, output):
        if isinstance(module, torch.nn.Linear) and module.training:  # training steps only, not evaluation
            dtypes.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(seen)
    try:
        result = pretrain_gpt(data, run, preset, model, train, progress=False)
    finally:
        handle.remove()
    return result, dtypes


@pytest.mark.parametrize("option", ["bf16", "grad_accum", "tiny-llama", "moe"])
def test_every_training_option_trains(builtin_data, tmp_path, option):
    data = open_tokens(builtin_data)
    baseline = unigram_entropy(data.train, data.val, data.vocab_size)  # 5.34 nats: the best context-free model
    result, dtypes = train_with_option(builtin_data, tmp_path / "run", option)
    assert all(np.isfinite(result.losses))
    # Validation loss at the end, over seeds 0-5: bf16 5.07-5.26, grad_accum 5.07-5.26, tiny-llama 4.05-4.71 (120
    # steps), moe 4.73-5.00 (200 steps; at 120 it reached only 5.09-5.33). Every option beats the unigram baseline
    # on held-out text, by 0.08 nats at the least: the model uses context, which no frequency table can.
    assert result.val_loss < baseline - 0.03, (result.val_loss, baseline)
    # bf16 autocast is really on in the training steps: the linear layers computed in bfloat16 (and only then).
    assert (torch.bfloat16 in dtypes) == (option == "bf16"), dtypes
    lm = lmforge.load(tmp_path / "run")
    assert lm.config.n_layer == 2
    if option == "tiny-llama":
        assert lm.config.norm == "rms" and lm.config.pos == "rope" and lm.config.n_kv_head == 2
    if option == "moe":
        assert lm.config.n_expert == 4


def test_moe_auxiliary_loss_is_added_to_the_training_loss(builtin_data):
    from lmforge.models.gpt import GPT
    from lmforge.train.lm import NextTokenTask, next_token_loss
    from lmforge.train.presets import model_config

    torch.manual_seed(0)
    model = GPT(model_config("tiny", **SMALL, vocab_size=512, n_expert=4, router_aux_loss_coef=0.5)).train()
    task = NextTokenTask(open_tokens(builtin_data), 32)
    x, y = task.next_batch(4)
    loss = task.loss(model, (x, y))
    assert model.aux_loss is not None and float(model.aux_loss) > 0.5  # ~n_layer x 1 for a balanced router
    torch.testing.assert_close(loss, next_token_loss(model(x), y) + 0.5 * model.aux_loss)
    model.eval()  # evaluation reports the language-model loss alone
    torch.testing.assert_close(task.loss(model, (x, y)), next_token_loss(model(x), y))


@pytest.mark.slow
def test_torch_compile_trains_like_eager(builtin_data, tmp_path):
    train = {"steps": 5, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, **QUIET}
    model = {**SMALL, "n_layer": 1}  # compilation time grows with the graph; one block shows the same thing
    eager = pretrain_gpt(builtin_data, tmp_path / "eager", "tiny", model, train, progress=False)
    compiled = pretrain_gpt(builtin_data, tmp_path / "compiled", "tiny", model, {**train, "compile": True},
                            progress=False)
    # Inductor fuses and reorders float32 arithmetic: equal up to rounding, amplified a little by 5 Adam steps.
    assert compiled.losses == pytest.approx(eager.losses, abs=2e-3)
    assert lmforge.load(tmp_path / "compiled").model.state_dict().keys() == \
        lmforge.load(tmp_path / "eager").model.state_dict().keys()


def test_cli_prepare_train_eval(tmp_path, capsys):
    src = tmp_path / "text.txt"
    src.write_text(MEMO_TEXT * 3, encoding="utf-8")
    assert cli(["data", "prepare", str(src), "--vocab-size", "300", "--val-fraction", "0.3",
                "--out", str(tmp_path / "data")]) == 0
    assert "training +" in capsys.readouterr().out
    assert cli(["train", "gpt", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--n-layer", "1",
                "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--steps", "4", "--batch-size", "4",
                "--no-progress", "--no-bf16"]) == 0
    assert "finished at step 4" in capsys.readouterr().out
    meta = json.loads((tmp_path / "run" / "lmforge.json").read_text())
    assert meta["config"]["n_layer"] == 1 and meta["config"]["vocab_size"] == 300
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["steps"] == 4
    assert cli(["eval", "--model", str(tmp_path / "run"), "--data", str(tmp_path / "data")]) == 0
    line = capsys.readouterr().out
    assert "perplexity" in line
    assert cli(["eval", "--model", str(tmp_path / "run"), "--data", str(src)]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_bad_input_is_refused_clearly(builtin_data, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain_gpt(builtin_data, run, "tiny", SMALL, {"steps": 2, "batch_size": 4, **QUIET}, progress=False)
    good = sorted((run / "checkpoints").iterdir())
    # A checkpoint made for another model config.
    with pytest.raises(ConfigError, match="n_layer: checkpoint 2, this run 3"):
        pretrain_gpt(builtin_data, run, "tiny", {**SMALL, "n_layer": 3}, {"steps": 4, "batch_size": 4, **QUIET},
                     resume=True, progress=False)
    assert sorted((run / "checkpoints").iterdir()) == good  # nothing replaced the good checkpoint
    # A data folder made with another tokenizer than the one asked for / the run's.
    other = train_tokenizer(["some other text " * 50], kind="bpe", vocab_size=300, special_tokens=[EOT],
                            show_progress=False)
    other.save(str(tmp_path / "other.json"), format="hf")
    with pytest.raises(ConfigError, match="made with another tokenizer"):
        pretrain_gpt(builtin_data, tmp_path / "run2", "tiny", SMALL, {"steps": 2, **QUIET},
                     tokenizer_path=tmp_path / "other.json", progress=False)
    text = tmp_path / "t.txt"
    text.write_text(MEMO_TEXT * 4, encoding="utf-8")
    prepare_tokens([text], other, tmp_path / "other_data", val_fraction=0.3)
    with pytest.raises(ConfigError, match="another tokenizer than the run"):
        pretrain_gpt(tmp_path / "other_data", run, "tiny", SMALL, {"steps": 4, **QUIET}, resume=True,
                     progress=False)
    # A block size larger than the model's context.
    lm = lmforge.load(run)
    with pytest.raises(ConfigError, match="larger than the model's context"):
        perplexity(lm.model, open_tokens(builtin_data).val, block_size=64)
    assert cli(["eval", "--model", str(run), "--data", str(builtin_data), "--block-size", "64"]) == 1
    assert "larger than the model's context (block_size=32)" in capsys.readouterr().err
    # A context longer than the validation split; an empty file.
    with pytest.raises(ConfigError, match="validation split holds only"):
        pretrain_gpt(tmp_path / "other_data", tmp_path / "run3", "tiny", {**SMALL, "block_size": 512},
                     {"steps": 2, **QUIET}, progress=False)
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert cli(["data", "prepare", str(tmp_path / "empty.txt"), "--vocab-size", "300", "--out",
                str(tmp_path / "e")]) == 1
    assert "empty" in capsys.readouterr().err

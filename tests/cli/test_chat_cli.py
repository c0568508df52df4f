"""``lmforge chat`` driven through standard input, as a user's script would: multi-turn, /reset, /exit, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lmforge.io import cache


def _run_chat(args: list[str], stdin: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "lmforge", "chat", *args], input=stdin, capture_output=True, text=True, env=env,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_scripted_multi_turn_chat_with_reset(smollm2_gguf_path, tmp_path):
    import lmforge

    cache_root = tmp_path / "cache"
    options = dict(max_new_tokens=8, temperature=0.0)
    question, follow_up = "What is the capital of France?", "And of Germany?"
    script = f"{question}\n/reset\n\n{question}\n{follow_up}\n/exit\nnever read\n"
    result = _run_chat(
        ["--model", str(smollm2_gguf_path), "--temperature", "0", "--max-new-tokens", "8", "--threads", "1"],
        script, {cache.CACHE_ENV: str(cache_root)},
    )
    assert result.returncode == 0, result.stderr

    # The oracle: the same conversation through the Python API (the CLI's entry from the cache it just wrote).
    import torch

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(cache.CACHE_ENV, str(cache_root))
        torch.set_num_threads(1)  # as the CLI ran: CI runs two test processes on two cores
        try:
            lm = lmforge.load(smollm2_gguf_path)
            first = lm.chat([{"role": "user", "content": question}], **options)
            second = lm.chat(
                [{"role": "user", "content": question}, {"role": "assistant", "content": first.strip()},
                 {"role": "user", "content": follow_up}],
                **options,
            )
        finally:
            torch.set_num_threads(threads)
    # After /reset the first question gets the first answer again: the history really was forgotten; the blank
    # line is ignored; nothing after /exit is read.
    assert result.stdout == f"{first}\n(conversation reset)\n{first}\n{second}\n"
    assert first != second


def test_missing_model_is_one_clear_error(tmp_path):
    result = _run_chat(["--model", str(tmp_path / "nope.gguf")], "Hi\n")
    assert result.returncode == 1
    assert "nope.gguf" in result.stderr and "Traceback" not in result.stderr


def test_truncated_gguf_is_one_clear_error(smollm2_gguf_path, tmp_path):
    bad = tmp_path / "half.gguf"
    with open(smollm2_gguf_path, "rb") as f:
        bad.write_bytes(f.read(3_000_000))
    result = _run_chat(["--model", str(bad)], "Hi\n", {cache.CACHE_ENV: str(tmp_path / "cache")})
    assert result.returncode == 1
    assert "half.gguf" in result.stderr and "truncated" in result.stderr and "Traceback" not in result.stderr


def test_bad_decoding_option_is_rejected_before_loading(tmp_path):
    result = _run_chat(["--model", str(tmp_path / "unused.gguf"), "--max-new-tokens", "0"], "")
    assert result.returncode == 1
    assert "--max-new-tokens" in result.stderr

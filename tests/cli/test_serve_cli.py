"""``lmforge serve`` as a user starts it: a subprocess on a free loopback port answering an OpenAI request with
``lm.generate``'s text; bad options are one clear line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from tests.serve.conftest import make_peaked_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_like_generate(tmp_path):
    import lmforge

    folder = make_peaked_model(tmp_path / "model")
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmforge", "serve", "--model", str(folder), "--port", str(port), "--max-batch", "2",
         "--api-key", "k", "--threads", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        body = {"model": "model", "prompt": "Once upon a time", "max_tokens": 7, "temperature": 0}
        r = httpx.post(url + "/v1/completions", json=body, headers={"Authorization": "Bearer k"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == lmforge.load(folder).generate("Once upon a time", max_new_tokens=7)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bad_option_is_one_line(tmp_path, capsys):
    from lmforge.cli import main

    assert main(["serve", "--model", str(tmp_path), "--max-batch", "0"]) == 1
    assert capsys.readouterr().err == "lmforge: error: --max-batch: expected a positive integer, got 0\n"
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.startswith("lmforge: error: ")

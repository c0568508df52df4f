"""A real browser on the real page: start ``lmforge ui`` on a tiny model in a subprocess and drive Debian's chromium
with Playwright's Python client. What the page shows (tokens, candidates, attention) must equal the library's
answers; clicking a candidate appends it; switching layer/head changes the drawing; bad input shows a message and the
server keeps answering."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

import lmforge
from lmforge.probe import probe
from tests.probe_helpers import make_gpt_folder

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TEXT = "The interpreter reads the"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_gpt_folder(tmp_path_factory.mktemp("gpt"))


@pytest.fixture(scope="module")
def server(model_dir):
    """``lmforge ui`` in a subprocess on a free port; stopped (and waited for) at the end."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    cli = "import sys; from lmforge.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", cli, "ui", "--model", str(model_dir), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/info", timeout=2) as r:
                    assert json.load(r)["n_layer"] == 2
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"lmforge ui did not start: {proc.stdout.read()}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed: run scripts/install_test_deps.sh")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page()
        pg.set_default_timeout(20_000)
        pg.goto(server)
        pg.wait_for_selector("#layer option", state="attached")
        yield pg
        browser.close()


def _analyze(page, text: str) -> None:
    page.fill("#text", text)
    page.click("#analyze")
    page.wait_for_function("t => document.body.dataset.analyzed === t", arg=text)


def _heatmap(page) -> list[float]:
    return page.eval_on_selector_all("#heatmap rect", "rs => rs.map(r => Number(r.dataset.w))")


def test_page_shows_the_library_answers(page, model_dir):
    lm = lmforge.load(model_dir)
    _analyze(page, TEXT)
    pr = probe(lm, TEXT)
    ids = page.eval_on_selector_all("#tokens .token", "ts => ts.map(t => Number(t.dataset.id))")
    assert ids == pr.ids
    assert page.eval_on_selector_all("#tokens .piece", "ts => ts.map(t => t.textContent)") == \
        [t.replace(" ", "\u2423") for t in pr.tokens]
    shown = page.eval_on_selector_all("#candidates .candidate",
                                      "cs => cs.map(c => [Number(c.dataset.id), Number(c.dataset.prob)])")
    expected = pr.top_k(lm.tokenizer, 10)
    assert [i for i, _ in shown] == [c["id"] for c in expected]
    assert [p for _, p in shown] == pytest.approx([c["prob"] for c in expected], abs=1e-6)
    # the attention drawn is layer 0, head 0's weights, cell by cell
    page.wait_for_selector("#heatmap[data-layer='0'][data-head='0'] rect")
    weights = torch.tensor(_heatmap(page)).view(len(pr.ids), len(pr.ids))
    torch.testing.assert_close(weights, pr.attention(0, 0), atol=1e-5, rtol=0)


def test_clicking_a_candidate_appends_it(page, model_dir):
    lm = lmforge.load(model_dir)
    _analyze(page, TEXT)
    second = page.locator("#candidates .candidate").nth(1)
    token = second.get_attribute("data-token")
    second.click()
    page.wait_for_function("t => document.body.dataset.analyzed === t", arg=TEXT + token)
    assert page.input_value("#text") == TEXT + token
    assert page.eval_on_selector_all("#tokens .token", "ts => ts.length") == len(lm.tokenizer.encode(TEXT + token))


def test_switching_layer_and_head_changes_the_view(page, model_dir):
    lm = lmforge.load(model_dir)
    _analyze(page, TEXT)
    pr = probe(lm, TEXT)
    page.wait_for_selector("#heatmap[data-layer='0'][data-head='0'] rect")
    before = _heatmap(page)
    lines_before = page.eval_on_selector_all("#headview line", "ls => ls.map(l => l.getAttribute('stroke-opacity'))")
    page.select_option("#layer", "1")
    page.select_option("#head", "3")
    page.wait_for_selector("#heatmap[data-layer='1'][data-head='3'] rect")
    after = _heatmap(page)
    assert after != before
    torch.testing.assert_close(torch.tensor(after).view(len(pr.ids), -1), pr.attention(1, 3), atol=1e-5, rtol=0)
    lines_after = page.eval_on_selector_all("#headview line", "ls => ls.map(l => l.getAttribute('stroke-opacity'))")
    assert lines_after != lines_before


def test_bad_input_shows_a_message_and_the_server_goes_on(page):
    _analyze(page, TEXT)
    page.fill("#text", "   ")
    page.click("#analyze")
    page.wait_for_selector("#error:not([hidden])")
    assert "the text is empty" in page.text_content("#error")
    page.fill("#text", "word " * 100)
    page.click("#analyze")
    page.wait_for_function("() => document.getElementById('error').textContent.includes('context window')")
    _analyze(page, TEXT + " file")  # the server still answers; the message goes away
    assert page.is_hidden("#error")


def test_generation_streams_into_the_page(page, model_dir):
    lm = lmforge.load(model_dir)
    page.fill("#text", TEXT)
    page.fill("#temperature", "0")
    page.fill("#gen-max", "5")
    page.click("#generate")
    page.wait_for_selector("#generated[data-done='1']")
    assert page.text_content("#generated .new") == lm.generate(TEXT, max_new_tokens=5, temperature=0.0)

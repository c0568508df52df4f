"""A model folder's tokenizer files, read and written the way ``transformers`` does: ``tokenizer.json`` (the HF
format) and ``tokenizer_config.json`` (chat template and which tokens play the bos/eos/pad/unk roles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.fileio import atomic_write_text, read_json

ROLES = ("bos", "eos", "pad", "unk")


def read_tokenizer_files(folder: Path) -> Any:
    """The folder's ``tokenizer.json`` as an lmforge ``Tokenizer`` (None when there is none); a chat template
    from ``tokenizer_config.json`` is attached when the tokenizer itself has none."""
    path = folder / "tokenizer.json"
    if not path.exists():
        return None
    from lmforge.tokenizers import Tokenizer

    tokenizer = Tokenizer.from_hf_json(read_json(path), where=str(path))
    config_path = folder / "tokenizer_config.json"
    if config_path.exists():
        extra = read_json(config_path)
        extra = extra if isinstance(extra, dict) else {}
        if isinstance(extra.get("chat_template"), str) and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = extra["chat_template"]
        for role in ROLES:
            # tokenizer.json has no notion of roles: the eos/bos/pad tokens are named here, and win over guesses
            token = extra.get(f"{role}_token")
            if isinstance(token, dict):  # older files: {"content": "<s>", ...}
                token = token.get("content")
            if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
                setattr(tokenizer, f"{role}_token", token)
    return tokenizer


def write_tokenizer_files(folder: Path, tokenizer: Any) -> None:
    """``tokenizer.json`` (HF format) and, when the tokenizer has a chat template or special-token roles,
    ``tokenizer_config.json`` with them — where ``transformers``' ``AutoTokenizer`` (and :func:`lmforge.load`)
    look for the template and the eos/bos/pad tokens."""
    atomic_write_text(folder / "tokenizer.json", json.dumps(tokenizer.to_hf_json(), ensure_ascii=False) + "\n")
    extra = {f"{role}_token": getattr(tokenizer, f"{role}_token", None) for role in ROLES}
    extra = {k: v for k, v in extra.items() if isinstance(v, str)}
    template = getattr(tokenizer, "chat_template", None)
    if template:
        extra["chat_template"] = template
    if extra:
        atomic_write_text(folder / "tokenizer_config.json", json.dumps(extra, indent=2, ensure_ascii=False) + "\n")

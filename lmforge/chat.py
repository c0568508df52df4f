"""Chat templates: turn a list of ``{"role": ..., "content": ...}`` messages into the exact prompt text an
instruct model was trained on.

Models ship their template as a jinja2 string (``tokenizer.chat_template`` in a GGUF file, ``chat_template`` in
``tokenizer_config.json``). Rendering must match what the ecosystem does — ``transformers``'
``apply_chat_template`` — character for character, or the model sees a prompt shape it never saw in training.
So the environment is set up the same way: a sandbox (templates are untrusted code from the internet),
``trim_blocks``/``lstrip_blocks``, the ``loopcontrols`` extension, a ``raise_exception`` helper, a ``tojson``
filter that does not HTML-escape, ``strftime_now``, and the special tokens as variables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from lmforge.errors import ConfigError, InputError

ROLES_HINT = "a list of {'role': str, 'content': str} dicts"


class ChatTemplateError(InputError):
    """The template refused the conversation (its own ``raise_exception``) or failed while rendering."""


def _raise_exception(message: str) -> None:
    import jinja2

    # Templates call this to reject a conversation, e.g. "roles must alternate user/assistant".
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    # jinja2's own tojson escapes <, >, & for HTML; chat prompts need the raw JSON (tool schemas).
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_chat_template(template: str):  # -> jinja2.Template (jinja2 is imported lazily)
    """Compile a chat template once (cached by its text) in the sandboxed environment described above.

    >>> compile_chat_template("{{ messages[0]['content'] }}").render(messages=[{"content": "hi"}])
    'hi'
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ConfigError(f"chat template: jinja2 syntax error on line {e.lineno}: {e.message}") from None


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if isinstance(messages, Mapping) or not isinstance(messages, Sequence) or isinstance(messages, str):
        raise InputError(f"chat messages: expected {ROLES_HINT}, got {type(messages).__name__}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise InputError(f"chat messages[{i}]: expected a dict with 'role' and 'content', got {message!r:.80}")
        checked.append(dict(message))
    return checked


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    bos_token: str | None = None,
    eos_token: str | None = None,
    **extra: Any,
) -> str:
    """Render ``messages`` with a jinja2 chat ``template``, as ``transformers``' ``apply_chat_template(...,
    tokenize=False)`` does. ``add_generation_prompt=True`` appends the header that opens the assistant's turn.
    Extra keyword arguments (``tools``, ``documents``, ``date_string`` …) become template variables.

    >>> t = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    >>> t += "{% if add_generation_prompt %}<assistant>{% endif %}"
    >>> render_chat(t, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    '<user>Hi<assistant>'
    """
    import jinja2

    if not isinstance(template, str) or not template:
        raise ConfigError("chat template: the model has no chat template (tokenizer.chat_template is empty)")
    compiled = compile_chat_template(template)
    variables = dict(extra)
    if bos_token is not None:
        variables["bos_token"] = bos_token
    if eos_token is not None:
        variables["eos_token"] = eos_token
    try:
        return compiled.render(
            messages=_check_messages(messages), add_generation_prompt=add_generation_prompt, **variables
        )
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"chat template rejected the conversation: {e}") from None


def chat_prompt(tokenizer: Any, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True,
                **extra: Any) -> str:
    """The prompt text for ``messages`` with ``tokenizer``'s own chat template and special tokens, ready for the
    model to write the assistant's next turn. ``tokenizer`` is any object with ``chat_template`` and optional
    ``bos_token`` / ``eos_token`` attributes (lmforge's ``Tokenizer``)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ConfigError("chat template: the model's tokenizer has none (it is not an instruct/chat model?)")
    # Like transformers, every special-token role the tokenizer has is a template variable (bos_token, ...).
    for role in ("bos", "eos", "unk", "pad"):
        token = getattr(tokenizer, f"{role}_token", None)
        if token is not None:
            extra.setdefault(f"{role}_token", token)
    return render_chat(template, messages, add_generation_prompt=add_generation_prompt, **extra)


def without_added_bos(tokenizer: Any, prompt: str) -> str:
    """``prompt`` minus a leading bos token when ``tokenizer.encode`` will add one anyway.

    Templates such as Llama 3's write ``{{ bos_token }}`` themselves while the tokenizer also adds bos on encode;
    transformers encodes the rendered chat without special tokens, so the model sees ONE bos. Dropping the
    template's copy before an ordinary ``encode`` gives the same ids.

    >>> # bos "<s>", add_bos=True: "<s>[INST] hi" → "[INST] hi"  (encode adds the "<s>" back)
    """
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not prompt.startswith(bos):
        return prompt
    added = tokenizer.encode("")
    if added[:1] == [tokenizer.bos_token_id]:
        return prompt[len(bos):]
    return prompt

"""Chat-template rendering: parity with transformers' ``apply_chat_template(tokenize=False)`` on templates that use
the features real templates rely on (whitespace control, trim/lstrip blocks, raise_exception, bos/eos variables,
loop controls, tojson, namespace, add_generation_prompt)."""

from __future__ import annotations

import pytest

from lmforge.chat import ChatTemplateError, chat_prompt, render_chat, without_added_bos
from lmforge.errors import ConfigError, InputError

# ChatML with a default system prompt (the shape SmolLM2 / Qwen use).
CHATML = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama-2 style: bos/eos variables, a system prompt folded into the first user turn, strict alternation
# enforced with raise_exception, and block tags on their own lines (trim_blocks / lstrip_blocks matter).
LLAMA2_STYLE = """
{% if messages[0]['role'] == 'system' %}
    {% set system = messages[0]['content'] %}
    {% set rest = messages[1:] %}
{% else %}
    {% set system = false %}
    {% set rest = messages %}
{% endif %}
{% for message in rest %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
    {% if loop.index0 == 0 and system %}
        {% set content = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + message['content'] %}
    {% else %}
        {% set content = message['content'] %}
    {% endif %}
    {% if message['role'] == 'user' %}
        {{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}
    {% elif message['role'] == 'assistant' %}
        {{ ' ' + content.strip() + ' ' + eos_token }}
    {% endif %}
{% endfor %}
"""

# Tools as JSON, a namespace counter, loop controls (continue/break) and {%- -%} whitespace control.
TOOLS_STYLE = """
{%- set ns = namespace(turns=0) -%}
{%- if tools -%}
<tools>{{ tools | tojson }}</tools>
{% endif -%}
{%- for message in messages -%}
    {%- if message['role'] == 'system' -%}{%- continue -%}{%- endif -%}
    {%- if message['content'] == 'STOP' -%}{%- break -%}{%- endif -%}
    {%- set ns.turns = ns.turns + 1 -%}
[{{ ns.turns }}|{{ message['role'] }}] {{ message['content'] }}
{% endfor -%}
{%- if add_generation_prompt -%}[{{ ns.turns + 1 }}|assistant]{%- endif -%}
"""

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy? Answer in one word, with «quotes» & <tags>."},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "  Spaces around  "},
        {"role": "assistant", "content": "Noted.\n"},
        {"role": "user", "content": "STOP"},
        {"role": "user", "content": "never shown by the tools template"},
    ],
]

WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in <city> & région",
                                           "parameters": WEATHER_PARAMETERS}}]


@pytest.fixture(scope="module")
def hf_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({"<s>": 0, "</s>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _reference(hf_tokenizer, template: str, messages, **kwargs) -> str:
    hf_tokenizer.chat_template = template
    return hf_tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


@pytest.mark.parametrize("template", [CHATML, TOOLS_STYLE], ids=["chatml", "tools"])
@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_render_matches_transformers(hf_tokenizer, template, conversation, add_generation_prompt):
    messages = CONVERSATIONS[conversation]
    kwargs = {"add_generation_prompt": add_generation_prompt}
    if template is TOOLS_STYLE:
        kwargs["tools"] = TOOLS if conversation != 1 else None
    expected = _reference(hf_tokenizer, template, messages, **kwargs)
    got = render_chat(template, messages, bos_token="<s>", eos_token="</s>", **kwargs)
    assert got == expected


def test_llama2_style_bos_eos_and_system_prompt(hf_tokenizer):
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": " Hello "},
        {"role": "assistant", "content": "Bonjour"},
        {"role": "user", "content": "Thanks"},
    ]
    expected = _reference(hf_tokenizer, LLAMA2_STYLE, messages)
    got = render_chat(LLAMA2_STYLE, messages, bos_token="<s>", eos_token="</s>")
    assert got == expected
    assert "<s>[INST] <<SYS>>" in got and "Bonjour </s>" in got  # the variables really reached the template


def test_raise_exception_rejects_like_transformers(hf_tokenizer):
    import jinja2

    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(jinja2.exceptions.TemplateError):
        _reference(hf_tokenizer, LLAMA2_STYLE, bad)
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        render_chat(LLAMA2_STYLE, bad, bos_token="<s>", eos_token="</s>")


def test_sandbox_blocks_attribute_escape():
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(InputError):
        render_chat(escape, [{"role": "user", "content": "x"}])


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ConfigError, match="syntax error"):
        render_chat("{% for m in messages %}", [{"role": "user", "content": "x"}])
    with pytest.raises(ConfigError, match="no chat template"):
        render_chat("", [{"role": "user", "content": "x"}])
    with pytest.raises(InputError, match="messages"):
        render_chat(CHATML, "just a string")
    with pytest.raises(InputError, match=r"messages\[1\]"):
        render_chat(CHATML, [{"role": "user", "content": "x"}, {"content": "no role"}])


# Llama-3 style: the template writes bos itself, first thing.
BOS_FIRST = (
    "{{ bos_token }}{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|start|>assistant\n{% endif %}"
)


def _byte_tokenizer(add_bos: bool):
    from lmforge.tokenizers import Tokenizer, bytes_to_unicode

    spelling = bytes_to_unicode()
    vocab = {spelling[b]: b for b in range(256)} | {"<s>": 256, "</s>": 257}
    tok = Tokenizer.from_byte_level_bpe(vocab, [], special_tokens={"<s>": 256, "</s>": 257}, bos_token="<s>",
                                        eos_token="</s>", add_bos=add_bos)
    tok.chat_template = BOS_FIRST
    return tok


@pytest.mark.parametrize("add_bos", [True, False])
def test_one_bos_when_template_and_tokenizer_both_add_it(hf_tokenizer, add_bos):
    """transformers encodes a rendered chat WITHOUT special tokens; lmforge's prompt, after dropping the template's
    own bos when encode adds one, must encode to the same ids with an ordinary encode."""
    tok = _byte_tokenizer(add_bos)
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                {"role": "user", "content": "Bye"}]
    rendered = chat_prompt(tok, messages)
    assert rendered == _reference(hf_tokenizer, BOS_FIRST, messages, add_generation_prompt=True)
    ids = tok.encode(without_added_bos(tok, rendered))
    assert ids == tok.encode(rendered, add_special_tokens=False)
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id

"""Decoding: turn a language model's next-token scores into text, one token at a time.

Strategies: greedy (``temperature=0``), sampling with temperature / top-k / top-p / min-p, a repetition
penalty, and beam search (``num_beams > 1``, with a length penalty). Generation stops at an end-of-sequence id,
a stop token or stop string, or after ``max_new_tokens``. Batches of prompts of different lengths are left-padded
with positions derived from the mask (as ``transformers``' ``generate`` does), and keys/values live in a
preallocated :class:`~lmforge.nn.kv_cache.KVCache`, so each step only runs the newest token through the model.

Two levels: ``generate_ids`` / ``beam_search_ids`` work on token ids and any model with the
``model(input_ids, attention_mask, position_ids, kv_cache=, last_only=)`` interface of
:class:`~lmforge.models.gpt.GPT`; ``generate`` / ``stream`` take text and an :class:`~lmforge.lm.LM`.

Encoder–decoder models (``model.is_encoder_decoder``: :mod:`lmforge.models.transformer`,
:mod:`lmforge.models.rnn_seq2seq`) decode through the same greedy / sampling / beam code: see the protocol at
"encoder–decoder" below.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lmforge.errors import ConfigError, InputError


@dataclass
class StepInfo:
    """One generated token: its id, its probability, and the ``top_n`` most likely ``(id, probability)`` pairs.

    Probabilities come from the distribution the token was chosen from, before top-k/top-p/min-p truncation:
    softmax of the logits after the repetition penalty and temperature (temperature 1 when greedy).
    """

    token_id: int
    prob: float
    alternatives: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Generation:
    """Result of :func:`generate_ids`: per prompt, the new ids (end-of-sequence id not included), why it stopped
    (``"eos"``, ``"stop"``, ``"length"``) and, when asked for, one :class:`StepInfo` per new token."""

    new_ids: list[list[int]]
    finish_reasons: list[str]
    steps: list[list[StepInfo]]


# ---------------------------------------------------------------- logits processing


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty: for every token already present in ``seen (N, S)``, divide a positive score by
    ``penalty`` and multiply a negative one by it, making repeats less likely. ``logits (N, V)``.

    >>> apply_repetition_penalty(torch.tensor([[2.0, -1.0, 3.0]]), torch.tensor([[0, 1]]), 2.0)
    tensor([[ 1., -2.,  3.]])
    """
    score = logits.gather(1, seen)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return logits.scatter(1, seen, score)


def apply_presence_frequency_penalty(
    logits: torch.Tensor, counts: torch.Tensor, presence: float = 0.0, frequency: float = 0.0
) -> torch.Tensor:
    """OpenAI's additive penalties: subtract ``frequency × count + presence × (count > 0)`` from each token's
    score, where ``counts (N, V)`` says how often each token was generated so far. ``logits (N, V)``.

    >>> apply_presence_frequency_penalty(torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([[0, 1, 3]]), 0.5, 0.1)
    tensor([[1.0000, 0.4000, 0.2000]])
    """
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None, min_p: float | None = None
) -> torch.Tensor:
    """Set to -inf every token outside the top ``top_k``, outside the smallest set whose probability reaches
    ``top_p`` (nucleus), or below ``min_p`` × the best token's probability. ``logits (N, V)``; the best token
    always survives.

    >>> filter_logits(torch.tensor([[1.0, 3.0, 2.0]]), top_k=2)
    tensor([[-inf, 3., 2.]])
    """
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    if min_p is not None and min_p > 0.0:
        probs = logits.softmax(dim=-1)
        logits = logits.masked_fill(probs < min_p * probs.max(dim=-1, keepdim=True).values, float("-inf"))
    return logits


def _check_options(max_new_tokens: int, temperature: float, top_k, top_p, min_p, repetition_penalty, num_beams) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens: expected an integer >= 0, got {max_new_tokens!r}")
    if temperature is None or temperature < 0:
        raise ConfigError(f"temperature: expected a value >= 0, got {temperature!r}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k: expected an integer >= 1, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top_p: expected a value in (0, 1], got {top_p!r}")
    if min_p is not None and not 0.0 <= min_p <= 1.0:
        raise ConfigError(f"min_p: expected a value in [0, 1], got {min_p!r}")
    if repetition_penalty is not None and repetition_penalty <= 0:
        raise ConfigError(f"repetition_penalty: expected a value > 0, got {repetition_penalty!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ConfigError(f"num_beams: expected an integer >= 1, got {num_beams!r}")


# ---------------------------------------------------------------- batching


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-align prompts of different lengths: ``ids (B, T)`` and ``mask (B, T)`` (1 = real token).

    >>> left_pad([[5, 6], [7]], 0)
    (tensor([[5, 6],
            [0, 7]]), tensor([[1, 1],
            [0, 1]]))
    """
    t = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), t), dtype=torch.long)
    for row, p in enumerate(prompts):
        if p:
            ids[row, t - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[row, t - len(p) :] = 1
    return ids, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``(B, T)`` counting real tokens only (padding gets 1, as ``transformers`` does).

    >>> positions_from_mask(torch.tensor([[0, 0, 1, 1]]))
    tensor([[1, 1, 0, 1]])
    """
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _prepare(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, pad_id: int):
    """Left-padded inputs on the model's device and the number of new tokens that fit the context."""
    if not prompts:
        raise InputError("no prompts given")
    vocab = model.config.vocab_size
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise InputError(f"prompt {i} is empty (no tokens to condition on)")
        if min(p) < 0 or max(p) >= vocab:
            raise InputError(f"prompt {i}: token id {max(p) if max(p) >= vocab else min(p)} is outside the model's "
                             f"vocabulary (0..{vocab - 1}); do the tokenizer and the model belong together?")
    block_size = model.config.block_size
    longest = max(len(p) for p in prompts)
    if longest > block_size:
        raise InputError(
            f"prompt of {longest} tokens is longer than the model's context window (block_size={block_size})"
        )
    ids, mask = left_pad(prompts, pad_id)
    device = _model_device(model)
    padded = bool((mask == 0).any())
    # The last new token is never fed back, so a prompt of n tokens leaves room for block_size - n + 1 new ones.
    return ids.to(device), mask.to(device), padded, min(max_new_tokens, block_size - longest + 1)


# ---------------------------------------------------------------- sampling / greedy


@torch.inference_mode()
def iter_tokens(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
    eos_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
    seed: int | None = None,
    top_n: int = 0,
    stopped: set[int] | None = None,
) -> Iterator[list[tuple[int, int, StepInfo | None]]]:
    """Greedy / sampled decoding of a batch of prompts, one step at a time.

    Yields, per step, ``[(row, token_id, StepInfo or None), ...]`` for the rows still running (an
    end-of-sequence id is yielded too, and ends its row). A consumer may add a row number to ``stopped`` to end
    that row (stop strings are checked that way). The KV cache is allocated once for the whole generation.
    """
    _check_options(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty, 1)
    ids, mask, padded, max_new = _prepare(model, prompts, max_new_tokens, pad_token_id)
    stopped = stopped if stopped is not None else set()
    b, t = ids.shape
    device = ids.device
    if max_new == 0:
        return
    generator = None
    if temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=device)
    cache = model.new_kv_cache(b, t + max_new)
    # Every id so far (for the repetition penalty); padding replaced by the row's last prompt token, which is real.
    seq = torch.empty((b, t + max_new), dtype=torch.long, device=device)
    seq[:, :t] = torch.where(mask.bool(), ids, ids[:, -1:])
    full_mask = None
    if padded:
        full_mask = torch.ones((b, t + max_new), dtype=torch.long, device=device)
        full_mask[:, :t] = mask
        logits = model(ids, mask, positions_from_mask(mask), kv_cache=cache, last_only=True)[:, -1]
        next_pos = mask.sum(-1)  # (B,) position of each row's next token
    else:
        logits = model(ids, kv_cache=cache, last_only=True)[:, -1]
    running = torch.ones(b, dtype=torch.bool, device=device)
    for step in range(max_new):
        logits = logits.float()
        if repetition_penalty is not None and repetition_penalty != 1.0:
            logits = apply_repetition_penalty(logits, seq[:, : t + step], repetition_penalty)
        if temperature > 0:
            logits = logits / temperature
            probs = filter_logits(logits, top_k, top_p, min_p).softmax(dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]
        else:
            token = logits.argmax(dim=-1)
        infos: list[StepInfo | None] = [None] * b
        if top_n:
            dist = logits.softmax(dim=-1)
            chosen = dist.gather(1, token[:, None])[:, 0].tolist()
            alt_p, alt_i = dist.topk(min(top_n, dist.shape[-1]), dim=-1)
            alt_p, alt_i = alt_p.tolist(), alt_i.tolist()
            infos = [StepInfo(0, chosen[r], list(zip(alt_i[r], alt_p[r], strict=True))) for r in range(b)]
        token_list = token.tolist()
        was_running = running.tolist()
        out = []
        for r in range(b):
            if was_running[r] and r not in stopped:
                if infos[r] is not None:
                    infos[r].token_id = token_list[r]
                out.append((r, token_list[r], infos[r]))
        if not out:
            return
        yield out
        running &= ~torch.isin(token, eos) if eos.numel() else running
        for r in stopped:
            running[r] = False
        if not bool(running.any()) or step == max_new - 1:
            return
        seq[:, t + step] = token
        if padded:
            logits = model(token[:, None], full_mask[:, : t + step + 1], next_pos[:, None], kv_cache=cache,
                           last_only=True)[:, -1]
            next_pos = next_pos + 1
        else:
            logits = model(token[:, None], kv_cache=cache, last_only=True)[:, -1]


def generate_ids(model: torch.nn.Module, prompts: Sequence[Sequence[int]], **options: Any) -> Generation:
    """Run :func:`iter_tokens` (or :func:`beam_search_ids` when ``num_beams > 1``) to the end → :class:`Generation`.

    For an encoder–decoder (``model.is_encoder_decoder``) ``prompts`` are the source sentences' ids; see
    :func:`seq2seq_generate_ids`."""
    if getattr(model, "is_encoder_decoder", False):
        return seq2seq_generate_ids(model, prompts, **options)
    num_beams = options.pop("num_beams", 1)
    if num_beams > 1:
        for unsupported in ("temperature", "top_k", "top_p", "min_p", "seed", "top_n"):
            if options.get(unsupported) not in (None, 0, 0.0):
                raise ConfigError(f"{unsupported} cannot be combined with num_beams > 1 (beam search is deterministic)")
        options = {k: v for k, v in options.items() if k in ("max_new_tokens", "repetition_penalty", "eos_token_ids",
                                                            "pad_token_id", "length_penalty")}
        return beam_search_ids(model, prompts, num_beams=num_beams, **options)
    options.pop("length_penalty", None)  # only meaningful for beam search
    eos = set(options.get("eos_token_ids", ()))
    new_ids: list[list[int]] = [[] for _ in prompts]
    steps: list[list[StepInfo]] = [[] for _ in prompts]
    reasons = ["length"] * len(prompts)
    for out in iter_tokens(model, prompts, **options):
        for row, token, info in out:
            if token in eos:
                reasons[row] = "eos"
                continue
            new_ids[row].append(token)
            if info is not None:
                steps[row].append(info)
    return Generation(new_ids, reasons, steps)


# ---------------------------------------------------------------- beam search


@torch.inference_mode()
def beam_search_ids(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    num_beams: int = 4,
    max_new_tokens: int = 64,
    length_penalty: float = 1.0,
    repetition_penalty: float | None = None,
    eos_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
) -> Generation:
    """Beam search: keep the ``num_beams`` most probable continuations (sum of log-probabilities) at every step.

    A hypothesis that ends (end-of-sequence id, or ``max_new_tokens`` reached) is scored
    ``sum_logprob / length ** length_penalty`` and competes for the ``num_beams`` finished slots; the search ends
    when no running beam can beat the worst finished one (``transformers``' default ``early_stopping=False``
    heuristic), so the result is the one ``transformers``' ``generate(num_beams=...)`` returns.
    """
    _check_options(max_new_tokens, 0.0, None, None, None, repetition_penalty, num_beams)
    ids, mask, padded, max_new = _prepare(model, prompts, max_new_tokens, pad_token_id)
    b, t = ids.shape
    k = num_beams
    device = ids.device
    if max_new == 0:
        return Generation([[] for _ in prompts], ["length"] * b, [[] for _ in prompts])
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=device)
    keep = max(2, 1 + eos.numel()) * k  # candidates per prompt: enough that k survive even if some just ended
    ids_k, mask_k = ids.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)  # (B*K, T)
    cache = model.new_kv_cache(b * k, t + max_new)
    seen = torch.where(mask_k.bool(), ids_k, ids_k[:, -1:])  # (B*K, T) for the repetition penalty
    if padded:
        full_mask = torch.ones((b * k, t + max_new), dtype=torch.long, device=device)
        full_mask[:, :t] = mask_k
        logits = model(ids_k, mask_k, positions_from_mask(mask_k), kv_cache=cache, last_only=True)[:, -1]
        next_pos = mask_k.sum(-1)
    else:
        logits = model(ids_k, kv_cache=cache, last_only=True)[:, -1]
    running_seq = torch.full((b, k, max_new), pad_token_id, dtype=torch.long, device=device)
    running_score = torch.zeros((b, k), device=device)
    running_score[:, 1:] = -1e9  # all beams start identical: only the first may expand at step 0
    done_seq = running_seq.clone()
    done_score = torch.full((b, k), -1e9, device=device)
    done_len = torch.zeros((b, k), dtype=torch.long, device=device)
    done_flag = torch.zeros((b, k), dtype=torch.bool, device=device)
    done_eos = torch.zeros((b, k), dtype=torch.bool, device=device)
    can_improve = torch.ones((b, 1), dtype=torch.bool, device=device)
    top_slots = torch.arange(keep, device=device) < k
    rows = torch.arange(b, device=device)[:, None]
    for step in range(max_new):
        logprobs = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        if repetition_penalty is not None and repetition_penalty != 1.0:
            logprobs = apply_repetition_penalty(logprobs, seen, repetition_penalty)
        v = logprobs.shape[-1]
        total = (logprobs.view(b, k, v) + running_score[:, :, None]).view(b, k * v)
        cand_score, cand_index = total.topk(keep, dim=-1)  # (B, keep)
        cand_beam, cand_token = cand_index // v, cand_index % v
        cand_seq = running_seq[rows, cand_beam]  # (B, keep, max_new)
        cand_seq[:, :, step] = cand_token
        is_eos = torch.isin(cand_token, eos) if eos.numel() else torch.zeros_like(cand_token, dtype=torch.bool)
        ends = is_eos | (step + 1 >= max_new)
        # the k best candidates that did not end keep running
        run_score = cand_score + ends.float() * -1e9
        best = run_score.topk(k, dim=-1).indices
        running_seq, running_score = cand_seq[rows, best], run_score.gather(1, best)
        source_beam = cand_beam.gather(1, best)  # (B, K) which old beam each new one extends
        # candidates that ended among the top k compete for the finished slots
        just_done = ends & top_slots
        final_score = cand_score / ((step + 1) ** length_penalty)
        final_score = final_score + (~can_improve).float() * -1e9 + (~just_done).float() * -1e9
        merged_score = torch.cat([done_score, final_score], dim=1)
        pick = merged_score.topk(k, dim=-1).indices
        done_score = merged_score.gather(1, pick)
        done_seq = torch.cat([done_seq, cand_seq], dim=1)[rows, pick]
        done_flag = torch.cat([done_flag, just_done], dim=1).gather(1, pick)
        done_eos = torch.cat([done_eos, is_eos], dim=1).gather(1, pick)
        done_len = torch.cat([done_len, torch.full_like(cand_token, step + 1)], dim=1).gather(1, pick)
        # could a running beam still beat the worst finished one?
        worst_done = torch.where(done_flag, done_score.min(dim=-1, keepdim=True).values, -1e9)
        best_running = running_score[:, :1] / ((step + 1) ** length_penalty)
        can_improve = can_improve & (best_running > worst_done).any(dim=-1, keepdim=True)
        if not bool(can_improve.any()) or bool(ends.all()) or step == max_new - 1:
            break
        flat_source = (torch.arange(b, device=device)[:, None] * k + source_beam).view(-1)
        cache.reorder(flat_source)
        token = running_seq[:, :, step].reshape(b * k)
        seen = torch.cat([seen[flat_source], token[:, None]], dim=1)
        if padded:
            full_mask = full_mask[flat_source]
            next_pos = next_pos[flat_source]
            logits = model(token[:, None], full_mask[:, : t + step + 1], next_pos[:, None], kv_cache=cache,
                           last_only=True)[:, -1]
            next_pos = next_pos + 1
        else:
            logits = model(token[:, None], kv_cache=cache, last_only=True)[:, -1]
    new_ids, reasons = [], []
    for r in range(b):
        n = int(done_len[r, 0])
        ended_by_eos = bool(done_eos[r, 0])
        new_ids.append(done_seq[r, 0, : n - 1 if ended_by_eos else n].tolist())
        reasons.append("eos" if ended_by_eos else "length")
    return Generation(new_ids, reasons, [[] for _ in prompts])


# ---------------------------------------------------------------- text level


def _normalise_stop(stop: str | int | Sequence[str | int] | None) -> tuple[list[str], list[int]]:
    if stop is None:
        return [], []
    items = [stop] if isinstance(stop, (str, int)) else list(stop)
    strings = [s for s in items if isinstance(s, str) and s]
    ids = [s for s in items if isinstance(s, int) and not isinstance(s, bool)]
    if len(strings) + len(ids) != len(items):
        raise ConfigError(f"stop: expected strings and/or token ids, got {stop!r}")
    return strings, ids


def encode_prompts(lm: Any, prompts: list[str]) -> list[list[int]]:
    if lm.tokenizer is None:
        raise InputError(f"{lm.path}: this model has no tokenizer, so it cannot take text prompts")
    for p in prompts:
        if not isinstance(p, str):
            raise InputError(f"prompt: expected a string, got {type(p).__name__}")
    return [lm.tokenizer.encode(p) for p in prompts]


def text_options(lm: Any, options: dict) -> tuple[dict, list[str]]:
    """Split user options into id-level options (with eos/pad ids from the bundle) and stop strings."""
    stop_strings, stop_ids = _normalise_stop(options.pop("stop", None))
    vocab = lm.config.vocab_size
    bad = [i for i in stop_ids if not 0 <= i < vocab]
    if bad:
        raise ConfigError(f"stop: token id(s) {bad} outside the vocabulary (0..{vocab - 1})")
    eos = list(dict.fromkeys([*lm.eos_token_ids, *stop_ids]))
    pad = getattr(lm.tokenizer, "pad_token_id", None)
    if pad is None:
        pad = eos[0] if eos else 0
    return {**options, "eos_token_ids": eos, "pad_token_id": pad}, stop_strings


def _without_beam_options(options: dict) -> dict:
    return {k: v for k, v in options.items() if k not in ("num_beams", "length_penalty")}


def _cut_at_stop(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop_strings) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def generate(lm: Any, prompt: str | list[str], **options: Any) -> str | list[str]:
    """New text for one prompt (→ str) or several (→ list[str], left-padded into one batch).

    Options: ``max_new_tokens=64, temperature=0.0`` (0 = greedy), ``top_k, top_p, min_p, repetition_penalty,
    num_beams=1, length_penalty=1.0, stop`` (strings and/or token ids; the text is cut before a stop string),
    ``seed``. Special tokens are skipped; no chat template is applied.
    """
    if getattr(lm.model, "is_encoder_decoder", False):
        return translate(lm, prompt, **options)
    single = isinstance(prompt, str)
    prompts = [prompt] if single else list(prompt)
    id_options, stop_strings = text_options(lm, dict(options))
    prompt_ids = encode_prompts(lm, prompts)
    if stop_strings and id_options.get("num_beams", 1) == 1:
        texts = _generate_with_stop_strings(lm, prompt_ids, id_options, stop_strings)
    else:
        result = generate_ids(lm.model, prompt_ids, **id_options)
        texts = [_cut_at_stop(lm.tokenizer.decode(ids), stop_strings)[0] for ids in result.new_ids]
    return texts[0] if single else texts


def _generate_with_stop_strings(lm: Any, prompt_ids: list[list[int]], options: dict, stop: list[str]) -> list[str]:
    eos = set(options["eos_token_ids"])
    stopped: set[int] = set()
    new_ids: list[list[int]] = [[] for _ in prompt_ids]
    texts = [""] * len(prompt_ids)
    for out in iter_tokens(lm.model, prompt_ids, stopped=stopped, **_without_beam_options(options)):
        for row, token, _ in out:
            if token in eos:
                continue
            new_ids[row].append(token)
            texts[row], hit = _cut_at_stop(lm.tokenizer.decode(new_ids[row]), stop)
            if hit:
                stopped.add(row)
    return [texts[r] if r in stopped else lm.tokenizer.decode(new_ids[r]) for r in range(len(prompt_ids))]


def _held_back(text: str, stop_strings: list[str]) -> int:
    """How many trailing characters may not be shown yet: an incomplete UTF-8 sequence (decoded as U+FFFD) or
    the beginning of a stop string."""
    n = len(text) - len(text.rstrip("\ufffd"))
    for s in stop_strings:
        for size in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:size]):
                n = max(n, size)
                break
    return n


def stream(lm: Any, prompt: str, **options: Any) -> Iterator[str]:
    """Yield the new text in pieces as tokens are produced: ``"".join(stream(lm, p)) == generate(lm, p)``.

    Incomplete UTF-8 sequences (a character split across tokens) and possible beginnings of a stop string are
    held back until they are resolved. With ``num_beams > 1`` the text is only known at the end: one piece.
    """
    if not isinstance(prompt, str):
        raise InputError("stream: expected one prompt string")
    if getattr(lm.model, "is_encoder_decoder", False):  # a translation is yielded whole
        yield translate(lm, prompt, **options)
        return
    id_options, stop_strings = text_options(lm, dict(options))
    if id_options.get("num_beams", 1) > 1:
        yield generate(lm, prompt, **options)
        return
    prompt_ids = encode_prompts(lm, [prompt])
    eos = set(id_options["eos_token_ids"])
    ids: list[int] = []
    shown = 0
    text = ""
    stopped: set[int] = set()
    for out in iter_tokens(lm.model, prompt_ids, stopped=stopped, **_without_beam_options(id_options)):
        _, token, _ = out[0]
        if token in eos:
            break
        ids.append(token)
        text, hit = _cut_at_stop(lm.tokenizer.decode(ids), stop_strings)
        if hit:
            stopped.add(0)
            break
        safe = len(text) - _held_back(text, stop_strings)
        if safe > shown:
            yield text[shown:safe]
            shown = safe
    if len(text) > shown:
        yield text[shown:]


# ---------------------------------------------------------------- encoder–decoder
#
# The protocol an encoder–decoder model follows (Transformer and RNN alike):
#   memory = model.encode(source_ids (B, S), source_mask (B, S))         -- once per input
#   cache  = model.new_cache(memory, source_mask, max_len)                -- EncoderDecoderCache: what every decoder
#            layer attends to in the source, computed ONCE (cross-attention K/V; RNN: states + attention keys),
#            and the decoder's own past, which GROWS per step (self-attention KVCache; RNN: the hidden state)
#   logits = model.decode(target_ids (B, T), cache, last_only=True)      -- per step; appends to the growing part
# Beam search keeps B*K rows: the encoder still runs on the B inputs, the cache's rows are repeated K times
# (``repeat_rows``) and ``cache.reorder`` re-ranks the cross part and the growing part together.
# ``_EncoderDecoderSteps`` presents exactly this to iter_tokens / beam_search_ids as if it were a decoder-only
# model whose prompt is the decoder start token, so every strategy and stop condition is shared with GPT.


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-align sequences (sources are right-padded, as ``transformers`` pads them): ``ids, mask (B, S)``.

    >>> right_pad([[5, 6], [7]], 0)
    (tensor([[5, 6],
            [7, 0]]), tensor([[1, 1],
            [1, 0]]))
    """
    s = max(len(p) for p in sequences)
    ids = torch.full((len(sequences), s), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), s), dtype=torch.long)
    for row, p in enumerate(sequences):
        ids[row, : len(p)] = torch.tensor(list(p), dtype=torch.long)
        mask[row, : len(p)] = 1
    return ids, mask


class _ModelShape:
    def __init__(self, vocab_size: int, block_size: int) -> None:
        self.vocab_size, self.block_size = vocab_size, block_size


class _EncoderDecoderSteps:
    """An encoder–decoder seen as a decoder-only model for :func:`iter_tokens` / :func:`beam_search_ids`: the
    sources are encoded here, once; ``new_kv_cache`` builds the :class:`EncoderDecoderCache` (repeating its rows
    for beam search) and each call runs the decoder on the new target tokens."""

    def __init__(self, model: torch.nn.Module, sources: Sequence[Sequence[int]], pad_id: int) -> None:
        c = model.config
        if not sources:
            raise InputError("no source sentences given")
        src_vocab = getattr(c, "src_vocab_size", None) or c.vocab_size
        for i, src in enumerate(sources):
            if len(src) == 0:
                raise InputError(f"source {i} is empty (nothing to translate)")
            if min(src) < 0 or max(src) >= src_vocab:
                raise InputError(f"source {i}: token id {max(src) if max(src) >= src_vocab else min(src)} is outside "
                                 f"the model's source vocabulary (0..{src_vocab - 1})")
            if len(src) > c.block_size:
                raise InputError(f"source {i} has {len(src)} tokens, more than the model allows "
                                 f"(block_size={c.block_size})")
        self.model = model
        self.config = _ModelShape(c.vocab_size, c.block_size)
        ids, mask = right_pad(sources, pad_id)
        device = _model_device(model)
        self.source_mask = mask.to(device)
        self.memory = model.encode(ids.to(device), self.source_mask)

    def parameters(self):
        return self.model.parameters()

    def new_kv_cache(self, batch_size: int, max_len: int):
        cache = self.model.new_cache(self.memory, self.source_mask, max_len)
        n = batch_size // cache.batch_size
        return cache.repeat_rows(n) if n > 1 else cache

    def __call__(self, ids: torch.Tensor, mask=None, position_ids=None, *, kv_cache, last_only: bool = False):
        return self.model.decode(ids, kv_cache, last_only=last_only)


def seq2seq_generate_ids(model: torch.nn.Module, sources: Sequence[Sequence[int]], **options: Any) -> Generation:
    """Translate source id lists with an encoder–decoder: the options of :func:`generate_ids` (greedy, sampling,
    ``num_beams``, ``max_new_tokens``, ``eos_token_ids``, ...). The decoder starts from
    ``model.config.decoder_start_token_id``; ``eos_token_ids`` defaults to ``model.config.eos_token_id`` and
    ``pad_token_id`` (source padding) to ``model.config.pad_token_id``."""
    c = model.config
    options.setdefault("eos_token_ids", [c.eos_token_id])
    options.setdefault("pad_token_id", c.pad_token_id)
    with torch.inference_mode():
        steps = _EncoderDecoderSteps(model, sources, options["pad_token_id"])
    return generate_ids(steps, [[c.decoder_start_token_id]] * len(sources), **options)


def translate(lm: Any, source: str | list[str], **options: Any) -> str | list[str]:
    """Translate one sentence (→ str) or several (→ list[str], one batch) with an encoder–decoder ``LM``.

    Options as in :func:`generate` (``max_new_tokens`` defaults to the model's ``block_size``; ``stop`` strings
    cut the text). Special tokens are skipped.
    """
    single = isinstance(source, str)
    sources = [source] if single else list(source)
    stop_strings, stop_ids = _normalise_stop(options.pop("stop", None))
    c = lm.model.config
    options.setdefault("max_new_tokens", c.block_size)
    options["eos_token_ids"] = list(dict.fromkeys([c.eos_token_id, *stop_ids]))
    options["pad_token_id"] = c.pad_token_id
    if lm.tokenizer is None:
        raise InputError(f"{lm.path}: this model has no tokenizer, so it cannot translate text "
                         "(use lmforge.generate.generate_ids with token ids)")
    for s in sources:
        if not isinstance(s, str):
            raise InputError(f"source: expected a string, got {type(s).__name__}")
    ids = [lm.tokenizer.encode(s, add_special_tokens=False) + [c.eos_token_id] for s in sources]
    result = seq2seq_generate_ids(lm.model, ids, **options)
    texts = [_cut_at_stop(lm.tokenizer.decode(new), stop_strings)[0] for new in result.new_ids]
    return texts[0] if single else texts

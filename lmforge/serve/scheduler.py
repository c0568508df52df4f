"""Continuous batching: one thread owns the model and decodes every running request together, one token per step.

At every step, finished or abandoned sequences leave the batch and waiting ones join it: a newcomer is prefilled
alone into a free slot (row) of one preallocated :class:`~lmforge.nn.kv_cache.KVCache`, then decoded with the rest
through the cache's per-row view, where each row has its own length, positions and causal mask. Busy rows are kept
packed at the front (a leaving row's slot is taken by the last one), so a step computes only busy rows.

A sequence's output does not depend on its neighbours: its logits are its own row's (the arithmetic of a batch
differs from a single row's only in rounding), every sampling option is applied to its row alone, and sampling
draws from its own ``torch.Generator`` seeded from the request — the same seed gives the same text alone or among
thirty other requests.

The scheduler works on token ids only; text (stop strings, UTF-8 pieces) is the HTTP layer's job. It talks to
the outside through each sequence's ``emit`` callback, called from the scheduler thread with events:
``("prompt_logprobs", [(logprob, [(id, logprob), ...]) per prompt token after the first])``,
``("token", id, logprob, [(id, logprob), ...])`` and finally ``("finish", reason)`` (``"stop"``: an end id;
``"length"``: ``max_tokens``; ``"cancelled"``) or ``("error", message)``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lmforge.errors import InputError
from lmforge.generate import apply_presence_frequency_penalty, apply_repetition_penalty, filter_logits


class QueueFull(InputError):
    """More requests are waiting than the server's ``max_queue``."""


@dataclass
class SamplingParams:
    """One sequence's decoding options (the HTTP layer validates them). ``temperature`` 0 = greedy;
    ``top_logprobs`` None = no logprobs, k >= 0: the chosen token's logprob and the k likeliest alternatives;
    ``prompt_logprobs``: also score every prompt token (``echo`` with ``logprobs``)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    seed: int | None = None
    end_ids: frozenset[int] = frozenset()
    top_logprobs: int | None = None
    prompt_logprobs: bool = False

    @property
    def plain_greedy(self) -> bool:
        penalised = self.presence_penalty or self.frequency_penalty or self.repetition_penalty not in (None, 1.0)
        return self.temperature == 0 and not penalised


@dataclass(eq=False)
class Sequence:
    """One generated continuation of ``prompt_ids``: its place in the batch, its ids so far, its generator."""

    prompt_ids: list[int]
    params: SamplingParams
    emit: Callable[[tuple], Any]
    out_ids: list[int] = field(default_factory=list)
    length: int = 0  # positions in the KV cache
    cancelled: bool = False  # set from any thread: the slot is freed at the next step
    generator: torch.Generator | None = None
    submitted: float = field(default_factory=time.perf_counter)


class Scheduler:
    """Owns ``model`` in a background thread (start it with :meth:`start`, stop it with :meth:`close`).

    ``max_batch`` sequences decode together in a cache of ``max_batch × ctx_size`` positions; up to ``max_queue``
    more wait (:meth:`submit` raises :class:`QueueFull` beyond that).
    """

    def __init__(self, model: torch.nn.Module, *, max_batch: int = 8, max_queue: int = 256,
                 ctx_size: int | None = None) -> None:
        self.model = model
        self.max_batch, self.max_queue = max_batch, max_queue
        self.ctx_size = min(ctx_size or model.config.block_size, model.config.block_size)
        self.device = next(model.parameters()).device
        self.vocab_size = model.config.vocab_size
        self.cache = model.new_kv_cache(max_batch, self.ctx_size)
        self.active: list[Sequence] = []  # active[i] lives in cache row i
        self.waiting: collections.deque[Sequence] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="lmforge-scheduler", daemon=True)
        self.steps = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0

    # ------------------------------------------------------------ outside (any thread)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def submit(self, sequences: list[Sequence]) -> None:
        """Queue ``sequences`` (the ``n`` choices of one request join or wait together)."""
        with self._wake:
            if len(self.waiting) + len(sequences) > self.max_queue:
                raise QueueFull(f"the server's queue is full ({self.max_queue} waiting requests); retry later")
            for seq in sequences:
                if seq.params.temperature > 0:
                    seq.generator = torch.Generator(device=self.device)
                    seed = seq.params.seed
                    seq.generator.manual_seed(seed if seed is not None else int.from_bytes(_random_bytes(), "little"))
                self.waiting.append(seq)
            self._wake.notify()

    @property
    def busy_slots(self) -> int:
        return len(self.active)

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    # ------------------------------------------------------------ the model's thread

    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._closing and not self.waiting and not self.active:
                        self._wake.wait()
                    if self._closing:
                        break
                try:
                    self._step()
                except Exception as e:  # noqa: BLE001 — a bug or OOM must not kill the server: fail these requests
                    for seq in [*self.active]:
                        seq.emit(("error", f"{type(e).__name__}: {e}"))
                    self.active.clear()
        for seq in [*self.active, *self.waiting]:
            seq.emit(("finish", "cancelled"))

    def _step(self) -> None:
        for seq in [s for s in self.active if s.cancelled]:
            self._remove(seq, "cancelled")
        while self.waiting and len(self.active) < self.max_batch:
            with self._wake:
                seq = self.waiting.popleft()
            if seq.cancelled:
                seq.emit(("finish", "cancelled"))
                continue
            self._prefill(seq)
        if not self.active:
            return
        tokens = torch.tensor([[s.out_ids[-1]] for s in self.active], device=self.device)  # (B, 1)
        lengths = [s.length for s in self.active]
        logits = self.model(tokens, kv_cache=self.cache.rows(lengths), last_only=True)[:, -1]  # (B, V)
        for s in self.active:
            s.length += 1
        self.steps += 1
        self._sample(list(self.active), logits)

    def _prefill(self, seq: Sequence) -> None:
        ids = torch.tensor([seq.prompt_ids], device=self.device)  # (1, T)
        row = len(self.active)
        try:
            logits = self.model(ids, kv_cache=self.cache.slot(row), last_only=not seq.params.prompt_logprobs)
        except Exception as e:  # noqa: BLE001 — this request fails alone; the batch goes on
            seq.emit(("error", f"{type(e).__name__}: {e}"))
            return
        seq.length = len(seq.prompt_ids)
        self.prompt_tokens += seq.length
        self.active.append(seq)
        if seq.params.prompt_logprobs:
            logp = torch.log_softmax(logits[0, :-1].float(), dim=-1)  # (T - 1, V): token t+1 given tokens ..t
            chosen = logp.gather(1, ids[0, 1:, None])[:, 0].tolist()
            top = _top(logp, seq.params.top_logprobs or 0)
            seq.emit(("prompt_logprobs", list(zip(chosen, top, strict=True))))
        if seq.params.max_tokens == 0:
            self._remove(seq, "length")
            return
        self._sample([seq], logits[:, -1])

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor) -> None:
        """Choose each row's next token from ``logits (B, V)`` with that row's own options and generator."""
        logits = logits.float()
        greedy = logits.argmax(dim=-1).tolist()
        want_logprobs = any(s.params.top_logprobs is not None for s in seqs)
        logp = torch.log_softmax(logits, dim=-1) if want_logprobs else None  # the model's own distribution
        tokens = []
        for r, seq in enumerate(seqs):
            p = seq.params
            if p.plain_greedy:
                tokens.append(greedy[r])
                continue
            row = logits[r : r + 1]  # (1, V)
            if p.repetition_penalty not in (None, 1.0):
                seen = torch.tensor([seq.prompt_ids + seq.out_ids], device=self.device)
                row = apply_repetition_penalty(row, seen, p.repetition_penalty)
            if (p.presence_penalty or p.frequency_penalty) and seq.out_ids:
                counts = torch.bincount(torch.tensor(seq.out_ids, device=self.device), minlength=self.vocab_size)
                row = apply_presence_frequency_penalty(row, counts[None], p.presence_penalty, p.frequency_penalty)
            if p.temperature > 0:
                probs = filter_logits(row / p.temperature, p.top_k, p.top_p, p.min_p).softmax(dim=-1)
                tokens.append(int(torch.multinomial(probs, 1, generator=seq.generator)[0, 0]))
            else:
                tokens.append(int(row.argmax(dim=-1)[0]))
        self.generated_tokens += len(seqs)
        for r, (seq, token) in enumerate(zip(seqs, tokens, strict=True)):
            if seq.params.top_logprobs is not None:
                top = _top(logp[r : r + 1], seq.params.top_logprobs)[0]
                seq.emit(("token", token, float(logp[r, token]), top))
            else:
                seq.emit(("token", token, None, []))
            seq.out_ids.append(token)
            if token in seq.params.end_ids:
                self._remove(seq, "stop")
            elif len(seq.out_ids) >= seq.params.max_tokens or seq.length + 1 > self.ctx_size:
                self._remove(seq, "length")

    def _remove(self, seq: Sequence, reason: str) -> None:
        """Free ``seq``'s slot: the last busy row moves into it, so busy rows stay packed at the front."""
        i = self.active.index(seq)
        last = self.active[-1]
        if last is not seq:
            self.cache.move_row(len(self.active) - 1, i, last.length)
            self.active[i] = last
        self.active.pop()
        seq.emit(("finish", reason))


def _top(logp: torch.Tensor, k: int) -> list[list[tuple[int, float]]]:
    """Per row of ``logp (N, V)``, the ``k`` likeliest ``(id, logprob)`` pairs."""
    if k <= 0:
        return [[] for _ in range(logp.shape[0])]
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return [list(zip(i, v, strict=True)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]


def _random_bytes() -> bytes:
    import os

    return os.urandom(7)

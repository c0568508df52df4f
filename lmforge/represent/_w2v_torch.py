"""word2vec's PyTorch engine: the same objective as the numba kernel, trained on large batches (GPU-friendly).

Per chunk of ~1M corpus positions, numpy draws the subsampling and the dynamic windows and lists every
(context, centre) training pair in text order; torch then trains ``batch_size`` pairs at a time:

    v = syn0[context]                    (P, D)        one input row per pair
    u = syn1neg[centre]                  (P, D)        the true word
    n = syn1neg[noise]                   (P/64, S, D)  noise words, shared by groups of 64 pairs
    scores u·v (P,) and v @ nᵀ (P/64, 64, S); g = (label - σ(score)) * alpha
    syn0.index_add_(context, ...)        sparse updates: only the touched rows move
    syn1neg.index_add_(centre and noise rows, ...)

Gradients are computed by hand (no autograd graph: it would double the memory traffic). Within a batch all pairs
see the same weights and their updates are summed — the batched counterpart of word2vec's lock-free threads.
CBOW: the mean of the (up to 2 * window) context rows of each centre is the input; its update goes to every
context row.
"""

from __future__ import annotations

import numpy as np

CHUNK_POSITIONS = 1_000_000
GROUP = 64  # examples that share their noise words
SHARED_NOISE = 16  # noise words drawn per group


def window_pairs(sentence_of: np.ndarray, reach: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) position pairs within each centre's window and sentence, in text order.

    ``sentence_of`` (N,): sentence id per kept position; ``reach`` (N,): window size per centre (1..window).

    >>> c, x = window_pairs(np.array([0, 0, 0, 1]), np.array([1, 1, 2, 1]), 2)
    >>> list(zip(c.tolist(), x.tolist()))
    [(0, 1), (1, 0), (1, 2), (2, 0), (2, 1)]
    """
    n = len(sentence_of)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])  # (2W,)
    context = np.arange(n)[:, None] + offsets[None, :]  # (N, 2W)
    inside = (context >= 0) & (context < n) & (np.abs(offsets)[None, :] <= reach[:, None])
    clipped = np.clip(context, 0, max(n - 1, 0))
    valid = inside & (sentence_of[clipped] == sentence_of[:, None])
    centre, slot = np.nonzero(valid)  # row-major: grouped by centre, in text order
    return centre, context[centre, slot]


def train_torch(model, corpus, keep: np.ndarray, noise: np.ndarray, epochs: int, bar) -> list[float]:
    """Train ``model.wv.vectors`` / ``model.syn1neg`` in place; returns the mean loss per example of each epoch."""
    import torch

    cfg = model.config
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads_before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cfg.workers)
    try:
        syn0 = torch.from_numpy(model.wv.vectors).to(device)  # on CPU this shares memory with the numpy array
        syn1neg = torch.from_numpy(model.syn1neg).to(device)
        cumulative = torch.from_numpy(np.cumsum(noise)).to(device)
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
        losses = _epochs(cfg, corpus, keep, syn0, syn1neg, cumulative, generator, epochs, bar, device)
        if device.type != "cpu":
            model.wv.vectors[:] = syn0.cpu().numpy()
            model.syn1neg[:] = syn1neg.cpu().numpy()
    finally:
        torch.set_num_threads(threads_before)
    return losses


def _epochs(cfg, corpus, keep, syn0, syn1neg, cumulative, generator, epochs, bar, device) -> list[float]:
    import torch

    n_positions = len(corpus.ids)
    sentence_of_all = np.repeat(np.arange(len(corpus.bounds) - 1), np.diff(corpus.bounds))
    losses = []
    for epoch in range(epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        loss_sum, examples = 0.0, 0
        for start in range(0, n_positions, CHUNK_POSITIONS):
            end = min(start + CHUNK_POSITIONS, n_positions)
            ids = corpus.ids[start:end]
            kept = rng.random(len(ids)) < keep[ids]
            kept_ids = ids[kept]
            kept_positions = np.flatnonzero(kept) + start
            reach = cfg.window - rng.integers(0, cfg.window, size=len(kept_ids))
            centre, context = window_pairs(sentence_of_all[kept_positions], reach, cfg.window)
            if len(centre) == 0:
                continue
            # linear decay by position in the whole run, one rate per batch
            progress_of = (epoch * n_positions + kept_positions[centre]) / (epochs * n_positions)
            if cfg.sg:
                step = _skipgram_batches
            else:
                step = _cbow_batches
            chunk_loss, chunk_examples = step(
                cfg, syn0, syn1neg, cumulative, generator, device,
                torch.from_numpy(kept_ids.astype(np.int64)), centre, context, progress_of,
            )
            loss_sum += chunk_loss
            examples += chunk_examples
            if bar is not None:
                bar.update(round((end - start) / n_positions * corpus.raw_words))
        losses.append(loss_sum / max(examples, 1))
        if not np.isfinite(losses[-1]):
            from lmforge.errors import ConfigError

            raise ConfigError(
                f"batch_size={cfg.batch_size}: training diverged in epoch {epoch + 1} (loss {losses[-1]}); the "
                "summed updates of frequent words in one batch are too large, lower batch_size or alpha"
            )
        if bar is not None:
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}")
    return losses


def _alpha(cfg, progress: float) -> float:
    return max(cfg.min_alpha, cfg.alpha - (cfg.alpha - cfg.min_alpha) * progress)


def _negative_sampling_step(syn1neg, inputs, true_words, cumulative, generator, negative, alpha):
    """One batch: ``inputs`` (P, D) predict ``true_words`` (P,) against noise words.

    Noise words are shared within groups of GROUP consecutive examples: SHARED_NOISE draws per group, each
    weighted ``negative / SHARED_NOISE``. In expectation this is exactly word2vec's gradient and loss with
    ``negative`` private draws per example (every noise word is drawn as often, with the same weight), but the
    noise scores become one batched matrix product and 5x fewer rows are gathered and scattered.
    Updates ``syn1neg`` in place; returns (gradient step for the inputs (P, D), loss sum, examples).
    """
    import torch
    import torch.nn.functional as F

    p, dim = inputs.shape
    n_groups = -(-p // GROUP)
    padded = n_groups * GROUP
    grouped_inputs = F.pad(inputs, (0, 0, 0, padded - p)).view(n_groups, GROUP, dim)  # (G, GROUP, D)
    grouped_true = F.pad(true_words, (0, padded - p), value=-1).view(n_groups, GROUP, 1)
    draws = torch.rand(n_groups, SHARED_NOISE, generator=generator, device=inputs.device)
    noise_words = torch.searchsorted(cumulative, draws).clamp_(max=len(cumulative) - 1)  # (G, S)
    noise = syn1neg.index_select(0, noise_words.view(-1)).view(n_groups, SHARED_NOISE, dim)  # (G, S, D)
    positive = syn1neg.index_select(0, true_words)  # (P, D)

    positive_scores = (inputs * positive).sum(1)  # (P,)
    noise_scores = torch.bmm(grouped_inputs, noise.transpose(1, 2))  # (G, GROUP, S)
    # a noise draw equal to the example's true word is skipped (as in word2vec.c); padding rows count for nothing
    weight = negative / SHARED_NOISE
    active = ((noise_words.unsqueeze(1) != grouped_true) & (grouped_true >= 0)).to(inputs.dtype) * weight
    loss = float(F.softplus(-positive_scores).sum() + (F.softplus(noise_scores) * active).sum())

    g_positive = (1.0 - torch.sigmoid(positive_scores)) * alpha  # (P,)
    g_noise = -torch.sigmoid(noise_scores) * active * alpha  # (G, GROUP, S)
    input_step = g_positive.unsqueeze(1) * positive + torch.bmm(g_noise, noise).view(padded, dim)[:p]  # (P, D)
    syn1neg.index_add_(0, true_words, g_positive.unsqueeze(1) * inputs)
    syn1neg.index_add_(0, noise_words.view(-1), torch.bmm(g_noise.transpose(1, 2), grouped_inputs).view(-1, dim))
    return input_step, loss, p


def _skipgram_batches(cfg, syn0, syn1neg, cumulative, generator, device, kept_ids, centre, context, progress_of):
    import torch

    loss_sum, examples = 0.0, 0
    in_words = kept_ids[torch.from_numpy(context)].to(device)
    out_words = kept_ids[torch.from_numpy(centre)].to(device)
    for b in range(0, len(centre), cfg.batch_size):
        rows = in_words[b : b + cfg.batch_size]
        step, loss, n = _negative_sampling_step(
            syn1neg, syn0.index_select(0, rows), out_words[b : b + cfg.batch_size], cumulative, generator, cfg.negative,
            _alpha(cfg, float(progress_of[b])),
        )
        syn0.index_add_(0, rows, step)
        loss_sum += loss
        examples += n
    return loss_sum, examples


def _cbow_batches(cfg, syn0, syn1neg, cumulative, generator, device, kept_ids, centre, context, progress_of):
    import torch

    loss_sum, examples = 0.0, 0
    # pairs are grouped by centre: cut batches at centre boundaries so a centre's contexts stay together
    first_of_centre = np.flatnonzero(np.r_[True, centre[1:] != centre[:-1]])
    # about batch_size context rows per batch (as skip-gram's pairs), so a row collects as many summed updates
    centres_per_batch = max(1, cfg.batch_size // (2 * cfg.window))
    for b in range(0, len(first_of_centre), centres_per_batch):
        lo = first_of_centre[b]
        end = b + centres_per_batch
        hi = first_of_centre[end] if end < len(first_of_centre) else len(centre)
        firsts = first_of_centre[b:end]
        # (pairs,) which centre of the batch each context pair belongs to
        group = torch.from_numpy(np.searchsorted(firsts, np.arange(lo, hi), "right") - 1).to(device)
        n_centres = len(firsts)
        ctx_rows = kept_ids[torch.from_numpy(context[lo:hi])].to(device)
        sums = torch.zeros(n_centres, syn0.shape[1], device=device).index_add_(0, group, syn0.index_select(0, ctx_rows))
        counts = torch.bincount(group, minlength=n_centres).to(sums.dtype).unsqueeze(1)
        inputs = sums / counts if cfg.cbow_mean else sums
        true_words = kept_ids[torch.from_numpy(centre[firsts])].to(device)
        step, loss, n = _negative_sampling_step(
            syn1neg, inputs, true_words, cumulative, generator, cfg.negative, _alpha(cfg, float(progress_of[lo]))
        )
        syn0.index_add_(0, ctx_rows, step[group])
        loss_sum += loss
        examples += n
    return loss_sum, examples

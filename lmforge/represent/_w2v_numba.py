"""word2vec's CPU engine: the classic per-pair SGD update, compiled with numba, lock-free across threads.

One call trains a *slice* of an epoch: the slice is cut into blocks of whole sentences and ``prange`` hands the
blocks to the threads. Threads write to the shared weight matrices without locks (Hogwild, as word2vec.c and
gensim do): two threads rarely touch the same row at the same moment, and when they do the lost update is noise
SGD tolerates. Each block owns a random state derived from (seed, epoch, block), so the random draws never depend
on thread timing: with one worker a run is reproducible bit for bit.

Per kept position ``i`` (after frequent-word subsampling) with a random window ``1..window``:
- skip-gram: for every context word ``c`` in the window, the input row ``syn0[c]`` is trained to predict the
  centre word against ``negative`` noise words (output rows ``syn1neg``);
- CBOW: the mean of the context rows predicts the centre word; the same error is added to every context row.
Loss per example: ``-log σ(u_pos·v) - Σ_k log σ(-u_k·v)`` (every term, saturated ones included; the table is
linearly interpolated, error < 1e-5 per term), summed in float64 and returned with the number of examples, so
the caller reports the true mean loss per example.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Dropping "nnan"/"ninf" from fast-math keeps exp() overflow (a score below ~-88) well defined: σ -> 0.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
LCG_MULTIPLIER = np.uint64(25214903917)  # word2vec.c's random number generator
LCG_INCREMENT = np.uint64(11)
INV_2_53 = 1.0 / 9007199254740992.0
MAX_EXP = 6.0  # beyond |score| = 6, σ is 0 or 1 to within 0.25% (word2vec.c's cut-off)
TABLE_SIZE = 1024


def sigmoid_tables() -> tuple[np.ndarray, np.ndarray]:
    """σ(x) and -log σ(x) sampled at TABLE_SIZE + 1 points over [-MAX_EXP, MAX_EXP], float64.

    A table read (interpolated) costs a few cycles where exp/log1p cost tens: it is the hot loop's main saving.
    """
    x = np.linspace(-MAX_EXP, MAX_EXP, TABLE_SIZE + 1)
    return 1.0 / (1.0 + np.exp(-x)), np.logaddexp(0.0, -x)


@njit(cache=True, inline="always")
def _next_state(state):
    return state * LCG_MULTIPLIER + LCG_INCREMENT


@njit(cache=True, inline="always")
def _uniform(state):
    """A float in [0, 1) from the top 53 bits of the generator state (an LCG's best bits)."""
    return float(state >> np.uint64(11)) * INV_2_53


@njit(cache=True)
def build_alias_table(probs):
    """Walker/Vose alias table for O(1) sampling from ``probs`` (V,) (sums to 1).

    Draw: pick a column ``k`` uniformly, keep it with chance ``accept[k]``, else take ``alias[k]``.
    Returns (accept (V,) float64, alias (V,) int32).
    """
    n = probs.shape[0]
    scaled = probs * n
    accept = np.ones(n, dtype=np.float64)
    alias = np.arange(n).astype(np.int32)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    n_small = 0
    n_large = 0
    for i in range(n):
        if scaled[i] < 1.0:
            small[n_small] = i
            n_small += 1
        else:
            large[n_large] = i
            n_large += 1
    while n_small > 0 and n_large > 0:
        n_small -= 1
        s = small[n_small]
        l = large[n_large - 1]
        accept[s] = scaled[s]
        alias[s] = l
        scaled[l] = (scaled[l] + scaled[s]) - 1.0
        if scaled[l] < 1.0:
            n_large -= 1
            small[n_small] = l
            n_small += 1
    return accept, alias  # leftovers keep accept = 1 (their share is 1 up to rounding)


@njit(cache=True, inline="always")
def _draw_noise(accept, alias, u):
    """One draw from the alias table, with ``u`` uniform in [0, 1)."""
    scaled = u * accept.shape[0]
    k = min(np.int64(scaled), accept.shape[0] - 1)
    return k if scaled - k < accept[k] else alias[k]


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _negative_sampling(inputs, in_row, syn1neg, target_word, work, alpha, negative, noise, tables, state, compute_loss):
    """Train ``inputs[in_row]`` (D,) to pick ``target_word`` over ``negative`` noise words.

    Updates the output rows ``syn1neg`` in place and adds the input's gradient step into ``work`` (D,).
    Rows are indexed in place (no row views: a view costs two atomic reference-count updates in numba).
    Returns (loss of this example, new random state).
    """
    noise_accept, noise_alias = noise
    sigmoid_table, neg_log_sigmoid_table = tables
    dim = inputs.shape[1]
    loss = 0.0
    for d in range(negative + 1):
        if d == 0:
            target = target_word
            label = 1.0
        else:
            state = _next_state(state)
            target = _draw_noise(noise_accept, noise_alias, _uniform(state))
            if target == target_word:
                continue
            label = 0.0
        score = np.float32(0.0)
        for k in range(dim):
            score += inputs[in_row, k] * syn1neg[target, k]
        if -MAX_EXP < score < MAX_EXP:
            position = (score + MAX_EXP) * (TABLE_SIZE / (2.0 * MAX_EXP))
            i = min(np.int64(position), TABLE_SIZE - 1)
            frac = position - i
            prob = sigmoid_table[i] + frac * (sigmoid_table[i + 1] - sigmoid_table[i])
            if compute_loss:
                # -log σ(s) for the true word; for noise -log σ(-s) = -log σ(s) + s (same table entry)
                loss += neg_log_sigmoid_table[i] + frac * (neg_log_sigmoid_table[i + 1] - neg_log_sigmoid_table[i])
                if d > 0:
                    loss += score
        else:
            prob = 1.0 if score > 0 else 0.0
            if compute_loss:
                signed = score if d == 0 else -score
                loss += math.log1p(math.exp(-abs(signed))) + max(-signed, 0.0)
        g = np.float32((label - prob) * alpha)
        # two loops, not one: each vectorizes cleanly without run-time aliasing checks between the three rows
        for k in range(dim):
            work[k] += g * syn1neg[target, k]
        for k in range(dim):
            syn1neg[target, k] += g * inputs[in_row, k]
    return loss, state


@njit(cache=True, fastmath=FASTMATH)
def _train_block(
    syn0, syn1neg, ids, sentence_bounds, first_sentence, end_sentence, keep_prob, noise, tables,
    window, negative, sg, cbow_mean, alpha_start, alpha_end, position_offset, total_positions, state, compute_loss,
):
    """Train sentences ``[first_sentence, end_sentence)``. Returns (loss sum, examples, words kept)."""
    dim = syn0.shape[1]
    work = np.empty(dim, dtype=np.float32)
    context_mean = np.empty((1, dim), dtype=np.float32)  # (1, D): indexed like a weight matrix
    longest = 0
    for s in range(first_sentence, end_sentence):
        longest = max(longest, sentence_bounds[s + 1] - sentence_bounds[s])
    kept = np.empty(max(longest, 1), dtype=np.int32)
    loss = 0.0
    examples = 0
    words = 0
    for s in range(first_sentence, end_sentence):
        start, end = sentence_bounds[s], sentence_bounds[s + 1]
        # linear decay by the position in the whole run (all epochs), so every thread follows one schedule
        progress = (position_offset + start) / total_positions
        alpha = max(alpha_end, alpha_start - (alpha_start - alpha_end) * progress)
        n = 0
        for p in range(start, end):
            w = ids[p]
            if keep_prob[w] < 1.0:
                state = _next_state(state)
                if keep_prob[w] < _uniform(state):
                    continue
            kept[n] = w
            n += 1
        words += n
        for i in range(n):
            state = _next_state(state)
            reach = window - np.int64((state >> np.uint64(33)) % np.uint64(window))  # dynamic window 1..window
            lo = max(0, i - reach)
            hi = min(n, i + reach + 1)
            center = kept[i]
            if sg:
                for j in range(lo, hi):
                    if j == i:
                        continue
                    context = kept[j]
                    work[:] = 0.0
                    pair_loss, state = _negative_sampling(
                        syn0, context, syn1neg, center, work, alpha, negative, noise, tables, state, compute_loss
                    )
                    loss += pair_loss
                    examples += 1
                    for k in range(dim):
                        syn0[context, k] += work[k]
            else:
                count = hi - lo - 1
                if count == 0:
                    continue
                context_mean[0, :] = 0.0
                for j in range(lo, hi):
                    if j != i:
                        for k in range(dim):
                            context_mean[0, k] += syn0[kept[j], k]
                if cbow_mean:
                    scale = np.float32(1.0 / count)
                    for k in range(dim):
                        context_mean[0, k] *= scale
                work[:] = 0.0
                example_loss, state = _negative_sampling(
                    context_mean, 0, syn1neg, center, work, alpha, negative, noise, tables, state, compute_loss
                )
                loss += example_loss
                examples += 1
                for j in range(lo, hi):
                    if j != i:
                        for k in range(dim):
                            syn0[kept[j], k] += work[k]
    return loss, examples, words


@njit(cache=True, parallel=True)
def train_slice(
    syn0, syn1neg, ids, sentence_bounds, block_starts, keep_prob, noise, tables,
    window, negative, sg, cbow_mean, alpha_start, alpha_end, position_offset, total_positions,
    block_states, compute_loss, loss_out, examples_out, words_out,
):
    """Train the blocks ``block_starts[b] .. block_starts[b + 1]`` (sentence indices) in parallel.

    ``noise``: the alias table (accept (V,) float64, alias (V,) int32); ``tables``: (σ, -log σ) from
    ``sigmoid_tables()``. ``syn0``/``syn1neg``: (V, D) float32, updated in place. ``block_states``: (n_blocks,)
    uint64 random states, one per block (the caller derives fresh ones for every call). Per block, writes the loss
    sum, the number of examples and the number of kept words.
    """
    n_blocks = block_starts.shape[0] - 1
    for b in prange(n_blocks):
        loss, examples, words = _train_block(
            syn0, syn1neg, ids, sentence_bounds, block_starts[b], block_starts[b + 1], keep_prob, noise, tables,
            window, negative, sg, cbow_mean, alpha_start, alpha_end, position_offset, total_positions,
            block_states[b], compute_loss,
        )
        loss_out[b] = loss
        examples_out[b] = examples
        words_out[b] = words

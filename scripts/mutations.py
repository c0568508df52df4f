"""Plant named bugs in lmforge, one at a time, and check that the test suite kills each of them.

    python scripts/mutations.py                 # every mutation
    python scripts/mutations.py --list          # names and anchors only
    python scripts/mutations.py temperature rope_keys   # some, by name

Each mutation is anchored on a *function* (found by name anywhere under ``lmforge/``, so it survives files moving)
and replaces one snippet inside that function's source. The repository is copied to a scratch folder, the snippet is
replaced there, the package must still import, and the mutation's tests run against the copy (``pytest -x``):

- killed:   a test failed (the script prints the first failing test);
- survived: every test passed — the suite would not notice this bug;
- error:    the anchor or snippet was not found (or found twice), the mutant does not import, or pytest could not
            run (collection error, missing test file). An error is never counted as killed.

Exit status: 0 when every mutation is killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    function: str  # a function or method name; "Class.method" to pick a method of one class
    old: str  # must occur exactly once in the function's source
    new: str
    tests: tuple[str, ...]  # pytest arguments (files or node ids), relative to the repository
    why: str


MUTATIONS = [
    # ---------------------------------------------------------------- tokenizers
    Mutation("bpe_merge_rank_off_by_one", "merge", "out.append(new_id)", "out.append(new_id + 1)",
             ("tests/tokenizers/test_bpe.py",), "a merged pair gets the next rank's id"),
    Mutation("bpe_pair_counts", "get_stats", "counts.get(pair, 0) + weight", "counts.get(pair, 0) + 1",
             ("tests/tokenizers/test_bpe.py",), "pair counts ignore how often a word occurs"),
    Mutation("wordpiece_no_prefix", "WordPieceModel.__init__", 'continuing_subword_prefix: str = "##"',
             'continuing_subword_prefix: str = ""', ("tests/tokenizers/test_wordpiece.py",),
             "WordPiece without the ## prefix on word-internal pieces"),
    # ---------------------------------------------------------------- bag-of-words, word2vec
    Mutation("tfidf_without_smoothing", "fit_transform", "np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0",
             "np.log(counts.shape[0] / df) + 1.0", ("tests/represent/test_parity_sklearn.py",),
             "idf without scikit-learn's smoothing"),
    Mutation("word2vec_no_subsampling", "keep_probabilities", "if sample == 0:", "if True:",
             ("tests/represent/test_word2vec.py", "tests/represent/test_parity_gensim.py"),
             "frequent words are never subsampled"),
    Mutation("most_similar_dot_not_cosine", "KeyedVectors._nearest", "@ mean / self.norms[:clip]", "@ mean",
             ("tests/represent/test_keyed_vectors.py", "tests/represent/test_parity_gensim.py"),
             "neighbours ranked by dot product instead of cosine"),
    # ---------------------------------------------------------------- nn: the transformer block
    Mutation("causal_mask_shift", "build_mask", "allowed = key_pos <= query_pos if causal",
             "allowed = key_pos <= query_pos + 1 if causal",
             ("tests/nn/test_attention.py", "tests/models/test_parity_transformers_gpt.py"),
             "each query also sees the next token"),
    Mutation("rope_keys_not_rotated", "Attention.forward", "qk = apply_rotary(qk, *rope)",
             "qk = torch.cat([apply_rotary(qk[:, :h], *rope), qk[:, h:]], dim=1)",
             ("tests/models/test_parity_transformers_gpt.py", "tests/io/test_parity_transformers_rope_window.py"),
             "RoPE rotates the queries only"),
    Mutation("rope_sign", "apply_rotary", "x * cos + rotate_half(x) * sin", "x * cos - rotate_half(x) * sin",
             ("tests/nn/test_parity_transformers_positions.py", "tests/models/test_parity_transformers_gpt.py"),
             "rotation by the opposite angle"),
    Mutation("prenorm_as_postnorm", "Block.forward", "if self.prenorm:", "if not self.prenorm:",
             ("tests/models/test_parity_transformers_gpt.py", "tests/models/test_parity_transformers_bert.py"),
             "pre-norm and post-norm swapped"),
    Mutation("attention_scale", "explicit_attention", "/ math.sqrt(q.shape[-1])", "/ q.shape[-1]",
             ("tests/nn/test_attention.py",), "scores divided by d instead of sqrt(d)"),
    Mutation("gqa_repeat_order", "Attention.forward",
             "k, v = k.repeat_interleave(h // hkv, dim=1), v.repeat_interleave(h // hkv, dim=1)",
             "k, v = k.repeat(1, h // hkv, 1, 1), v.repeat(1, h // hkv, 1, 1)",
             ("tests/nn/test_attention.py",), "query heads paired with the wrong key/value head"),
    Mutation("kv_cache_overwrites", "KVCache.update", "self.k[layer, :, :, self.length : end] = k",
             "self.k[layer, :, :, 0 : end - self.length] = k",
             ("tests/models/test_parity_transformers_gpt.py",), "the cache writes new keys over the oldest ones"),
    # ---------------------------------------------------------------- decoding
    Mutation("temperature_ignored", "iter_tokens", "logits = logits / temperature", "logits = logits",
             ("tests/test_sampling_stats.py",), "sampling ignores the temperature"),
    Mutation("top_p_keeps_one_more", "filter_logits", ">= top_p", "> top_p + 0.1",
             ("tests/test_sampling_stats.py", "tests/test_generate.py"), "nucleus keeps tokens past top_p"),
    Mutation("min_p_relative_to_sum", "filter_logits", "min_p * probs.max(dim=-1, keepdim=True).values",
             "min_p * probs.sum(dim=-1, keepdim=True)", ("tests/test_sampling_stats.py",),
             "min-p relative to the total instead of the best token"),
    Mutation("repetition_penalty_inverted", "apply_repetition_penalty",
             "torch.where(score < 0, score * penalty, score / penalty)",
             "torch.where(score < 0, score / penalty, score * penalty)",
             ("tests/test_sampling_stats.py", "tests/test_parity_transformers_generate.py"),
             "repeats made more likely"),
    Mutation("beam_length_penalty_sign", "beam_search_ids", "cand_score / ((step + 1) ** length_penalty)",
             "cand_score * ((step + 1) ** length_penalty)",
             ("tests/test_parity_transformers_generate.py", "tests/test_generate.py"),
             "finished beams scored with the length penalty's sign flipped"),
    Mutation("left_pad_positions", "positions_from_mask", "mask.cumsum(-1) - 1", "mask.cumsum(-1)",
             ("tests/test_generate.py", "tests/test_parity_transformers_generate.py"),
             "positions of left-padded prompts start at 1"),
    # ---------------------------------------------------------------- training
    Mutation("targets_shifted", "next_token_loss", "targets.reshape(-1)", "targets.roll(1, dims=-1).reshape(-1)",
             ("tests/train/test_loop.py", "tests/train/test_pretrain.py"), "targets shifted by one more position"),
    Mutation("weight_decay_on_everything", "decay_groups", "p.ndim < 2 or", "False and",
             ("tests/train/test_optim.py",), "norms and biases decayed too"),
    Mutation("warmup_off_by_one", "lr_at", "max_lr * (step + 1) / warmup_steps", "max_lr * step / warmup_steps",
             ("tests/train/test_optim.py",), "the first step runs at learning rate 0"),
    Mutation("checkpoint_forgets_optimizer", "load_checkpoint", "if optimizer is not None:", "if False:",
             ("tests/train/test_loop.py",), "resume restarts Adam's moments"),
    Mutation("mlm_no_mask_token", "mask_tokens", "inputs[picked & (r < 0.8)] = mask_token_id",
             "inputs[picked & (r < 0.8)] = input_ids[picked & (r < 0.8)]",
             ("tests/train/test_mlm.py",), "the 80% of picked tokens keep their word instead of [MASK]"),
    Mutation("save_in_place", "atomic_open",
             'fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)',
             "fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)",
             ("tests/test_fileio.py",), "writes in place with no temp file: a failure leaves half a file"),
    # ---------------------------------------------------------------- embeddings, formats
    Mutation("mean_pool_counts_padding", "pool", "count = mask.sum(dim=1).clamp(min=1e-9)",
             "count = torch.full_like(mask.sum(dim=1), mask.shape[1])",
             ("tests/test_embed.py", "tests/test_parity_sentence_transformers_embed.py"),
             "mean pooling divides by the padded length"),
    Mutation("token_ids_unchecked", "open_tokens", "if count and int(arrays[split].max()) >= vocab_size:",
             "if False:", ("tests/io/test_fuzz_loaders.py",), "out-of-vocabulary ids reach training"),
    Mutation("gguf_rope_rows_kept_interleaved", "unpermute_rope_rows", "w.swapaxes(1, 2).reshape", "w.reshape",
             ("tests/io/test_gguf.py",), "llama.cpp's interleaved Q/K rows read as lmforge's halves"),
    Mutation("gguf_dequantized_through_f16", "gguf_state_dict", "array = dequantize(t.data, t.tensor_type)",
             "array = dequantize(t.data, t.tensor_type).astype(np.float16)",
             ("tests/io/test_parity_transformers_gguf.py::test_float32_gguf_equals_the_model_it_was_written_from",
              "tests/io/test_parity_transformers_gguf.py::test_q8_0_gguf_matches_transformers_on_the_same_file"),
             "dequantized weights rounded to float16"),
    Mutation("unigram_scores_spelled_shortest", "hf_json_float_text",
             "if not _JSON_NUMBER.fullmatch(text) or hf_json_float(text) == value:", "if True:",
             ("tests/tokenizers/test_parity_tokenizers_sentencepiece.py::"
              "test_lmforge_written_files_load_in_hf_with_identical_ids",),
             "Unigram scores written with Python's shortest spelling, which HF reads back as another float"),
    Mutation("int4_tile_zero_dropped", "_int4_tile", "acc[lane] += s[lane] * part[lane] + z[lane] * xg",
             "acc[lane] += s[lane] * part[lane]", ("tests/nn/test_quantized.py",),
             "the packed 4-bit kernel forgets the per-group zero/min term"),
    Mutation("int4_tile_rows_zero_dropped", "_int4_tile_rows", "acc[m, lane] += s[lane] * part[lane] + z[lane] * xg",
             "acc[m, lane] += s[lane] * part[lane]", ("tests/nn/test_quantized.py",),
             "the 4-bit kernel for three rows or more forgets the per-group zero/min term"),
    Mutation("int8_activations_truncated", "quantize_rows_int8", "xq[m, k] = np.int32(np.rint(x[m, k] * inv))",
             "xq[m, k] = np.int32(x[m, k] * inv)", ("tests/nn/test_quantized.py",),
             "the opt-in int8 activations truncated instead of rounded"),
    Mutation("fused_decode_wrong_kv_head", "decode_block",
             "kh, vh = k_cache[h // per_kv], v_cache[h // per_kv]", "kh, vh = k_cache[h % n_kv], v_cache[h % n_kv]",
             ("tests/nn/test_packed_decode.py",),
             "the fused decoding step gives query heads the wrong key/value head (grouped-query attention)"),
    Mutation("fused_decode_window_off_by_one", "decode_block", "first = max(0, pos + 1 - window)",
             "first = max(0, pos - window)", ("tests/nn/test_packed_decode.py",),
             "the fused decoding step's sliding window sees one position too many"),
    Mutation("fused_decode_layernorm_uncentred", "_norm", "            mean /= np.float32(c_dim)",
             "            mean = np.float32(0)", ("tests/nn/test_packed_decode.py",),
             "the fused decoding step's LayerNorm forgets to subtract the mean (GPT-2-shaped blocks)"),
    Mutation("seq2seq_unpack_shifted", "unpack", "out[keep] = rows", "out[keep] = rows.roll(1, dims=0)",
             ("tests/models/test_seq2seq_models.py",),
             "the Transformer spreads its packed real positions back to the wrong places"),
    Mutation("normalizer_marks_unordered", "_traced_normalize",
             "items[i:j] = sorted(items[i:j], key=lambda item: combining(item[0]))", "pass",
             ("tests/tokenizers/test_parity_tokenizers.py::test_unicode_normalizer_alignment_matches_hf",),
             "combining marks traced in text order, not Unicode's canonical order"),
    # ---------------------------------------------------------------- saving folders, training options, BERT heads
    Mutation("folder_saved_in_place", "model_folder",
             "with atomic_folder(path, keep=lambda name: not is_model_file(name)) as tmp:\n        yield tmp",
             "Path(path).mkdir(parents=True, exist_ok=True)\n    yield Path(path)",
             ("tests/io/test_atomic_save.py",), "a model save writes into the old folder: a crash mixes two models"),
    Mutation("aside_folder_not_recovered", "recover_folder", "        os.replace(aside, path)", "        pass",
             ("tests/io/test_atomic_save.py",), "a save killed between its two renames loses the model"),
    Mutation("prepare_force_ignored", "prepare_tokens", "if not force and (out / MANIFEST).exists():",
             "if (out / MANIFEST).exists():", ("tests/cli/test_data_cli.py",),
             "data prepare --force reuses stale token files"),
    Mutation("bf16_autocast_off", "train", "with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16):",
             "with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=False):",
             ("tests/train/test_pretrain.py::test_every_training_option_trains[bf16]",),
             "--bf16 trains in float32"),
    Mutation("moe_aux_loss_not_added", "NextTokenTask.loss",
             'loss = loss + getattr(inner.config, "router_aux_loss_coef", 0.01) * aux', "loss = loss",
             ("tests/train/test_pretrain.py::test_moe_auxiliary_loss_is_added_to_the_training_loss",),
             "the MoE load-balancing loss never reaches the gradient"),
    Mutation("mean_pooled_head_reads_cls", "Bert.head", 'sentence = pool(hidden, attention_mask, ["mean"])',
             "sentence = hidden[:, 0]",
             ("tests/models/test_parity_transformers_bert.py::"
              "test_cls_and_mean_pooling_each_match_transformers_and_are_far_apart",),
             "the mean-pooled classifier reads the [CLS] state"),
    Mutation("bert_token_types_ignored", "BertEmbeddings.forward", "x = x + self.token_types(token_type_ids)",
             "x = x + self.token_types.weight[0]",
             ("tests/models/test_parity_transformers_bert.py",), "segment B embedded as segment A"),
]


# ---------------------------------------------------------------- locating anchors


def find_function(root: Path, qualname: str) -> list[tuple[Path, int, int]]:
    """Every ``(file, first line, last line)`` (1-based, inclusive) of a def named ``qualname`` under ``root``;
    ``qualname`` is ``name`` (a function at any depth) or ``Class.name`` (a method of that class)."""
    cls, _, name = qualname.rpartition(".")
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    hits = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if cls:
                if not (isinstance(node, ast.ClassDef) and node.name == cls):
                    continue
                fns = [f for f in node.body if isinstance(f, defs) and f.name == name]
            else:
                fns = [node] if isinstance(node, defs) and node.name == name else []
            for fn in fns:
                hits.append((path, min([fn.lineno, *(d.lineno for d in fn.decorator_list)]), fn.end_lineno))
    return hits


def apply(root: Path, m: Mutation) -> Path:
    """Replace ``m.old`` by ``m.new`` inside ``m.function`` under ``root/lmforge``; returns the file changed."""
    candidates = []
    for path, start, end in find_function(root / "lmforge", m.function):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        body = "".join(lines[start - 1 : end])
        if body.count(m.old) == 1:
            candidates.append((path, start, end, lines, body))
        elif body.count(m.old) > 1:
            raise LookupError(f"{m.function} in {path}: the snippet {m.old!r} occurs {body.count(m.old)} times")
    if len(candidates) != 1:
        where = "no function" if not candidates else f"{len(candidates)} functions"
        raise LookupError(f"{where} named {m.function!r} contain {m.old!r}")
    path, start, end, lines, body = candidates[0]
    path.write_text("".join(lines[: start - 1]) + body.replace(m.old, m.new) + "".join(lines[end:]),
                    encoding="utf-8")
    return path


# ---------------------------------------------------------------- running


def scratch_copy() -> Path:
    """The tracked and untracked-but-not-ignored files of the repository, in a temp folder."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    dest = Path(tempfile.mkdtemp(prefix="lmforge-mutant-"))
    for f in files:
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def run(m: Mutation, workers: int) -> tuple[str, str, float]:
    """``(outcome, detail, seconds)`` for one mutation."""
    t0 = time.time()
    root = scratch_copy()
    try:
        missing = [t for t in m.tests if not (root / t.split("::")[0]).exists()]
        if missing:
            return "error", f"test file(s) not found: {missing}", time.time() - t0
        try:
            path = apply(root, m)
        except LookupError as e:
            return "error", str(e), time.time() - t0
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        module = ".".join(path.relative_to(root).with_suffix("").parts)
        imp = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=root, env=env, capture_output=True,
                             text=True)
        if imp.returncode != 0:
            return "error", f"mutant does not import: {imp.stderr.strip().splitlines()[-1]}", time.time() - t0
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
               *(["-n", str(workers), "--dist", "loadgroup"] if workers > 1 else []), *m.tests]
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        if proc.returncode == 1:
            failed = re.search(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
            return "killed", failed.group(1) if failed else "(a test failed)", time.time() - t0
        if proc.returncode == 0:
            return "survived", f"{len(m.tests)} test file(s) passed", time.time() - t0
        return "error", f"pytest exit {proc.returncode}: {out.strip().splitlines()[-1] if out.strip() else ''}", \
            time.time() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers per mutation (1)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {sorted(unknown)}")
    if args.list:
        for m in chosen:
            print(f"{m.name:<30} {m.function:<26} {m.why}")
        return 0
    results = []
    for m in chosen:
        outcome, detail, seconds = run(m, args.workers)
        results.append((m, outcome, detail))
        print(f"{m.name:<30} {outcome:<8} {seconds:5.0f}s  {detail}", flush=True)
    counts = {k: sum(1 for _, o, _ in results if o == k) for k in ("killed", "survived", "error")}
    print(f"\n{counts['killed']} killed, {counts['survived']} survived, {counts['error']} errors "
          f"of {len(results)} mutations")
    return 0 if counts["killed"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

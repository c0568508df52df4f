"""``lmforge train gpt`` (pre-train a GPT on a token folder) and ``lmforge train bert`` (masked-LM pre-training)."""

from __future__ import annotations

import argparse
import os

from lmforge.cli.options import TRAIN_OPTIONS, add_options

# Model-shape options: GPTConfig fields (name, type, help). Kept as a table so ``--help`` needs no torch.
MODEL_OPTIONS: list[tuple[str, type, str]] = [
    ("vocab_size", int, "vocabulary size (default: the data's tokenizer)"),
    ("block_size", int, "context length in tokens"),
    ("n_layer", int, "transformer blocks"),
    ("n_head", int, "attention heads"),
    ("n_kv_head", int, "key/value heads (< n_head: grouped-query attention)"),
    ("n_embd", int, "model width"),
    ("ffn_hidden", int, "feed-forward hidden width"),
    ("dropout", float, "dropout probability"),
    ("norm", str, "layer | rms"),
    ("mlp", str, "gelu | gelu_tanh | swiglu"),
    ("pos", str, "learned | rope"),
    ("bias", bool, "biases in linear layers and norms"),
    ("tie_embeddings", bool, "LM head shares the embedding matrix"),
    ("n_expert", int, "> 0: mixture-of-experts feed-forward with this many experts"),
    ("n_expert_per_tok", int, "experts each token is routed to"),
]
# Optimisation options: TrainConfig fields.
def add_override_options(parser: argparse.ArgumentParser) -> None:
    """Every preset field as ``--field-name`` (default None: keep the preset's value)."""
    add_options(parser.add_argument_group("model shape (override the preset)"), MODEL_OPTIONS)
    add_options(parser.add_argument_group("training (override the preset)"), TRAIN_OPTIONS)


def overrides_from(args: argparse.Namespace) -> tuple[dict, dict]:
    """(model overrides, train overrides) that were given on the command line."""
    model = {name: getattr(args, name) for name, _, _ in MODEL_OPTIONS if getattr(args, name, None) is not None}
    train = {name: getattr(args, name) for name, _, _ in TRAIN_OPTIONS if getattr(args, name, None) is not None}
    return model, train


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="train a model: GPT pre-training, BERT masked-LM pre-training",
                                  description="Train a model. See 'lmforge train gpt --help' and "
                                  "'lmforge train bert --help'.")
    kinds = train.add_subparsers(dest="train_kind", metavar="MODEL")
    gpt = kinds.add_parser(
        "gpt", help="pre-train a GPT on a token folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Pre-train a GPT on tokens made by 'lmforge data prepare'. The run folder is a loadable model "
        "folder (lmforge.load / lmforge generate --model OUT) with checkpoints/step-N/, metrics.jsonl and loss.png. "
        "Run the same command under 'torchrun --nproc_per_node N' for DistributedDataParallel (add --fsdp for "
        "FSDP2); the global batch stays the same.",
        epilog="example: lmforge train gpt --data data/builtin --out runs/tiny --preset tiny --steps 300",
    )
    gpt.add_argument("--data", required=True, help="token folder from 'lmforge data prepare'")
    gpt.add_argument("--out", required=True, help="run folder (created; with --resume: continued)")
    gpt.add_argument("--preset", default="tiny", help="tiny | tiny-llama | gpt2-small | gpt2-medium | llama-small | "
                     "smollm2-135m (lmforge.train.presets)")
    gpt.add_argument("--tokenizer", default=None,
                     help="check that the data was made with this tokenizer (default: the data folder's own)")
    gpt.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    gpt.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    gpt.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    add_override_options(gpt)
    gpt.set_defaults(func=run_train_gpt)
    register_train_bert(kinds)
    from lmforge.cli.seq2seq import register_train_seq2seq

    register_train_seq2seq(kinds)
    train.set_defaults(func=lambda args: (train.print_help(), 0)[1])


def run_train_gpt(args: argparse.Namespace) -> int:
    import torch

    from lmforge.train.pretrain import pretrain_gpt

    if args.threads:
        torch.set_num_threads(args.threads)
    model_overrides, train_overrides = overrides_from(args)
    result = pretrain_gpt(args.data, args.out, args.preset, model_overrides, train_overrides,
                          tokenizer_path=args.tokenizer, resume=args.resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        status = "interrupted at" if result.interrupted else "finished at"
        val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
        if result.resumed_from is not None:
            print(f"resumed from the step-{result.resumed_from} checkpoint")
        print(f"{status} step {result.step}{val}")
        print(f"run folder: {result.run_dir}  (lmforge generate --model {result.run_dir} --prompt '...')")
    return 130 if result.interrupted else 0


def register_train_bert(kinds: argparse._SubParsersAction) -> None:
    """Add ``lmforge train bert``."""
    p = kinds.add_parser(
        "bert", help="pre-train a BERT with masked-language modelling",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Masked-LM pre-training: 15%% of tokens picked, 80%% -> [MASK], 10%% random, 10%% kept "
        "(--whole-word: whole words). Without --tokenizer a WordPiece vocabulary is trained on the same text. "
        "The run folder is an HF BertForMaskedLM folder (lmforge fill-mask / lmforge finetune / transformers "
        "load it), with checkpoints/, metrics.jsonl and loss.png; the masked-token accuracy is printed at the end.",
        epilog="example: lmforge train bert --text builtin --out runs/bert --preset bert-tiny --steps 300",
    )
    p.add_argument("--text", nargs="+", default=["builtin"], help="text files / folders / globs, or 'builtin'")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--preset", default="bert-tiny", help="bert-tiny | bert-mini | bert-base")
    p.add_argument("--tokenizer", default=None, help="WordPiece vocab.txt / tokenizer.json / model folder")
    p.add_argument("--vocab-size", type=int, default=8000, help="size of the trained WordPiece (no --tokenizer)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per training sequence")
    p.add_argument("--mask-prob", type=float, default=0.15, help="fraction of tokens to predict")
    p.add_argument("--whole-word", action="store_true", help="mask whole words, not single word pieces")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    for name, kind, help_text in (("n_embd", int, "model width"), ("n_layer", int, "encoder blocks"),
                                  ("n_head", int, "attention heads"), ("ffn_hidden", int, "feed-forward width"),
                                  ("dropout", float, "dropout probability")):
        p.add_argument("--" + name.replace("_", "-"), dest="model_" + name, type=kind, default=None, help=help_text)
    add_options(p.add_argument_group("training"), TRAIN_OPTIONS)
    p.set_defaults(func=run_train_bert)


def run_train_bert(args: argparse.Namespace) -> int:
    from lmforge.train.mlm import pretrain_bert

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = {k[len("model_"):]: v for k, v in vars(args).items() if k.startswith("model_") and v is not None}
    train = {name: getattr(args, name) for name, _, _ in TRAIN_OPTIONS if getattr(args, name, None) is not None}
    result, acc = pretrain_bert(args.text, args.out, args.tokenizer, args.preset, vocab_size=args.vocab_size,
                                seq_len=args.seq_len, mask_prob=args.mask_prob, whole_word=args.whole_word,
                                model_overrides=model, train_overrides=train, resume=args.resume,
                                progress=not args.no_progress)
    status = "interrupted at" if result.interrupted else "finished at"
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"{status} step {result.step}{val}")
    print(f"masked-token accuracy {acc.accuracy:.4f} (frequency baseline {acc.baseline:.4f}, "
          f"{acc.predicted} predictions)")
    print(f"run folder: {result.run_dir}  (lmforge fill-mask --model {result.run_dir} \"... [MASK] ...\")")
    return 130 if result.interrupted else 0

"""Hugging Face BERT folders (and sentence-transformers folders) ⇄ lmforge's :class:`~lmforge.models.bert.Bert`.

Reads ``config.json`` + the weights (``model.safetensors``, sharded ``model.safetensors.index.json``, or
``pytorch_model.bin``) of ``BertModel``, ``BertForMaskedLM``,
``BertForPreTraining``, ``BertForSequenceClassification`` and ``BertForTokenClassification``; the tokenizer from
``vocab.txt`` / ``tokenizer.json``; and, when present, the sentence-transformers description of how to turn
token states into one sentence vector (``modules.json``, ``sentence_bert_config.json``, ``1_Pooling/config.json``).
Writes the same layout back, so transformers and sentence-transformers load what lmforge fine-tuned (except a
classifier on mean pooling, which no HF class computes: :func:`config_to_hf` refuses it).

All names are mapped in one table, ``ENCODER_NAMES`` / ``POOLER_NAMES`` / ``HEAD_NAMES`` (lists of
:class:`~lmforge.io.weight_names.Row`): lmforge name ← HF name(s). Where lmforge
fuses HF's separate query/key/value matrices into one ``qkv`` matrix, the HF names are listed in row order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from lmforge.embed import SentenceConfig
from lmforge.errors import ConfigError, FormatError
from lmforge.fileio import atomic_write_text, read_json
from lmforge.io.folders import model_folder
from lmforge.io.hf_files import read_hf_config, read_hf_weights, transformer_folder
from lmforge.io.model_parts import ModelParts
from lmforge.io.weight_names import Row, expand_rows
from lmforge.io.weight_names import row as _r
from lmforge.models.bert import Bert, BertConfig

# lmforge parameter ← HF parameter(s) of the encoder ("{i}" = layer index). HF prefixes these with "bert." in
# models that carry a head.
ENCODER_NAMES: list[Row] = [
    _r("embed.tokens.weight", "embeddings.word_embeddings.weight"),
    _r("embed.positions.weight", "embeddings.position_embeddings.weight"),
    _r("embed.token_types.weight", "embeddings.token_type_embeddings.weight"),
    _r("embed.norm.weight", "embeddings.LayerNorm.weight"),
    _r("embed.norm.bias", "embeddings.LayerNorm.bias"),
]
for _p in ("weight", "bias"):
    ENCODER_NAMES += [
        _r(f"blocks.{{i}}.attn.qkv.{_p}", *(f"encoder.layer.{{i}}.attention.self.{n}.{_p}" for n in ("query", "key",
                                                                                                       "value"))),
        _r(f"blocks.{{i}}.attn.proj.{_p}", f"encoder.layer.{{i}}.attention.output.dense.{_p}"),
        _r(f"blocks.{{i}}.norm_attn.{_p}", f"encoder.layer.{{i}}.attention.output.LayerNorm.{_p}"),
        _r(f"blocks.{{i}}.mlp.fc.{_p}", f"encoder.layer.{{i}}.intermediate.dense.{_p}"),
        _r(f"blocks.{{i}}.mlp.proj.{_p}", f"encoder.layer.{{i}}.output.dense.{_p}"),
        _r(f"blocks.{{i}}.norm_mlp.{_p}", f"encoder.layer.{{i}}.output.LayerNorm.{_p}"),
    ]
POOLER_NAMES = [_r("pooler.weight", "pooler.dense.weight"), _r("pooler.bias", "pooler.dense.bias")]
_CLASSIFIER = [_r("classifier.weight", "classifier.weight"), _r("classifier.bias", "classifier.bias")]
HEAD_NAMES: dict[str, list[Row]] = {
    "none": [],
    "mlm": [
        _r("mlm.transform.weight", "cls.predictions.transform.dense.weight"),
        _r("mlm.transform.bias", "cls.predictions.transform.dense.bias"),
        _r("mlm.norm.weight", "cls.predictions.transform.LayerNorm.weight"),
        _r("mlm.norm.bias", "cls.predictions.transform.LayerNorm.bias"),
        _r("mlm.bias", "cls.predictions.bias"),
    ],
    "classify": _CLASSIFIER,
    "tag": _CLASSIFIER,
}
ARCHITECTURES = {
    "BertModel": "none",
    "BertForMaskedLM": "mlm",
    "BertForPreTraining": "mlm",
    "BertForSequenceClassification": "classify",
    "BertForTokenClassification": "tag",
}
HEAD_TO_ARCHITECTURE = {"none": "BertModel", "mlm": "BertForMaskedLM", "classify": "BertForSequenceClassification",
                        "tag": "BertForTokenClassification"}
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# sentence-transformers' legacy pooling switches → lmforge's pooling names, in the order it concatenates them
ST_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
}


def config_from_hf(hf: dict, source: str = "config.json") -> BertConfig:
    """Map an HF BERT ``config.json`` (as a dict) to :class:`BertConfig`.

    >>> config_from_hf({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
    ...                 "intermediate_size": 16, "vocab_size": 10}).head_dim
    4
    """
    if hf.get("model_type", "bert") != "bert":
        raise FormatError(f"{source}: model_type is {hf.get('model_type')!r}, expected 'bert'")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise FormatError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} is not supported "
                          "(only 'absolute')")
    act = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}.get(hf.get("hidden_act", "gelu"))
    if act is None:
        raise FormatError(f"{source}: hidden_act {hf.get('hidden_act')!r} is not supported (gelu, gelu_new)")
    archs = hf.get("architectures") or ["BertModel"]
    head = ARCHITECTURES.get(archs[0])
    if head is None:
        raise FormatError(
            f"{source}: architecture {archs[0]!r} is not supported; expected one of {list(ARCHITECTURES)}"
        )
    labels: list[str] = []
    if head in ("classify", "tag"):
        id2label = hf.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(hf.get("num_labels", 2)))}
        labels = [id2label[k] for k in sorted(id2label, key=int)]
    try:
        return BertConfig(
            vocab_size=int(hf["vocab_size"]),
            n_embd=int(hf["hidden_size"]),
            n_layer=int(hf["num_hidden_layers"]),
            n_head=int(hf["num_attention_heads"]),
            ffn_hidden=int(hf["intermediate_size"]),
            block_size=int(hf.get("max_position_embeddings", 512)),
            type_vocab_size=int(hf.get("type_vocab_size", 2)),
            norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
            mlp=act,
            dropout=float(hf.get("hidden_dropout_prob", 0.1)),
            pad_token_id=int(hf.get("pad_token_id") or 0),
            head=head,
            labels=labels,
            classifier_dropout=hf.get("classifier_dropout"),
        )
    except KeyError as e:
        raise FormatError(f"{source}: missing field {e.args[0]!r}") from None


def config_to_hf(cfg: BertConfig) -> dict:
    """The HF ``config.json`` dict of a :class:`BertConfig` (inverse of :func:`config_from_hf`)."""
    if cfg.head == "classify" and cfg.classifier_pooling != "cls":
        # BertForSequenceClassification always reads the pooled [CLS]: it would load these weights without a
        # complaint and compute different labels. lmforge's own folder keeps the switch.
        raise ConfigError(f"a classifier on {cfg.classifier_pooling!r} pooling has no Hugging Face layout "
                          "(BertForSequenceClassification reads [CLS]); save it with lmforge.io.save_model")
    hf = {
        "architectures": [HEAD_TO_ARCHITECTURE[cfg.head]],
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.ffn_hidden,
        "max_position_embeddings": cfg.block_size,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.norm_eps,
        "hidden_act": {"gelu": "gelu", "gelu_tanh": "gelu_new"}[cfg.mlp],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout,
        "classifier_dropout": cfg.classifier_dropout,
        "pad_token_id": cfg.pad_token_id,
        "position_embedding_type": "absolute",
        "initializer_range": 0.02,
    }
    if cfg.labels:
        hf["id2label"] = {str(i): name for i, name in enumerate(cfg.labels)}
        hf["label2id"] = {name: i for i, name in enumerate(cfg.labels)}
    return hf


def _name_table(cfg: BertConfig, encoder_prefix: str) -> list[Row]:
    """The full table for this config, layer indices filled in, the encoder's HF names prefixed."""
    rows = expand_rows(ENCODER_NAMES, cfg.n_layer, prefix=encoder_prefix)
    if cfg.use_pooler:
        rows += expand_rows(POOLER_NAMES, cfg.n_layer, prefix=encoder_prefix)
    return rows + HEAD_NAMES[cfg.head]


def model_from_hf_weights(cfg: BertConfig, weights: dict[str, torch.Tensor], source: str = "weights") -> Bert:
    """Build a :class:`Bert` from an HF state dict (any of the supported architectures)."""
    # Very old TF-converted checkpoints call LayerNorm's parameters gamma/beta.
    weights = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
               for k, v in weights.items()}
    if "cls.predictions.bias" not in weights and "cls.predictions.decoder.bias" in weights:
        weights["cls.predictions.bias"] = weights["cls.predictions.decoder.bias"]
    prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""
    cfg.use_pooler = f"{prefix}pooler.dense.weight" in weights or cfg.head == "classify"
    model = Bert(cfg)
    own = model.state_dict()
    state = {}
    for r in _name_table(cfg, prefix):
        ours, theirs = r.ours, r.theirs
        missing = [t for t in theirs if t not in weights]
        if missing:
            raise FormatError(f"{source}: missing tensor {missing[0]!r} (needed for lmforge's {ours!r})")
        tensor = torch.cat([weights[t] for t in theirs], dim=0) if len(theirs) > 1 else weights[theirs[0]]
        if tuple(tensor.shape) != tuple(own[ours].shape):
            raise FormatError(f"{source}: tensor {theirs[0]!r} has shape {tuple(tensor.shape)}, config.json implies "
                              f"{tuple(own[ours].shape)}")
        state[ours] = tensor.float()
    model.load_state_dict(state, strict=True)
    return model


def hf_weights_from_model(model: Bert) -> dict[str, torch.Tensor]:
    """The HF state dict of a :class:`Bert` (fused qkv split back into query/key/value)."""
    cfg = model.config
    prefix = "" if cfg.head == "none" else "bert."
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for r in _name_table(cfg, prefix):
        ours, theirs = r.ours, r.theirs
        parts = own[ours].chunk(len(theirs), dim=0) if len(theirs) > 1 else [own[ours]]
        for name, part in zip(theirs, parts, strict=True):
            out[name] = part.detach().contiguous().cpu()
    return out


def read_sentence_config(path: str | Path, model_cfg: BertConfig | None = None) -> SentenceConfig:
    """The sentence-embedding recipe of a folder. No ``modules.json``: mean pooling, no normalisation."""
    path = Path(path)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return SentenceConfig()
    modules = read_json(modules_file)
    if not isinstance(modules, list):
        raise FormatError(f"{modules_file}: expected a list of modules")
    pooling: tuple[str, ...] = ("mean",)
    normalize = False
    max_seq_length = None
    for m in modules:
        kind = str(m.get("type", "")).rsplit(".", 1)[-1]
        sub = path / m.get("path", "")
        if kind == "Transformer":
            for name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
                if (sub / name).is_file():
                    max_seq_length = read_json(sub / name).get("max_seq_length")
                    break
        elif kind == "Pooling":
            pooling = _pooling_modes(read_json(sub / "config.json"), sub / "config.json")
        elif kind == "Normalize":
            normalize = True
        else:
            raise FormatError(f"{modules_file}: module type {m.get('type')!r} is not supported "
                              "(lmforge reads Transformer, Pooling and Normalize)")
    if max_seq_length is not None and model_cfg is not None:
        max_seq_length = min(int(max_seq_length), model_cfg.block_size)
    return SentenceConfig(pooling=pooling, normalize=normalize, max_seq_length=max_seq_length)


def _pooling_modes(pc: dict, source: Path) -> tuple[str, ...]:
    if "pooling_mode" in pc:  # sentence-transformers >= 5 writes one string or a list
        modes = pc["pooling_mode"]
        modes = (modes,) if isinstance(modes, str) else tuple(modes)
    else:
        modes = tuple(mode for key, mode in ST_POOLING_KEYS.items() if pc.get(key))
        unsupported = [k for k in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken") if pc.get(k)]
        if unsupported:
            raise FormatError(f"{source}: {unsupported[0]} is not supported (cls, max, mean, mean_sqrt_len)")
    try:
        return SentenceConfig(pooling=modes or ("mean",)).pooling
    except ConfigError as e:
        raise FormatError(f"{source}: {e}") from None


def read_bert_tokenizer(folder: Path, cfg: BertConfig) -> Any:
    """The folder's tokenizer (vocab.txt or tokenizer.json), checked against the model's vocabulary size."""
    from lmforge.tokenizers import load_tokenizer

    tok = load_tokenizer(folder)
    size = getattr(tok, "vocab_size", None)
    if size is None:
        size = len(tok)
    if int(size) > cfg.vocab_size:
        raise FormatError(f"{folder}: the tokenizer has {size} tokens but the model's config.json says vocab_size="
                          f"{cfg.vocab_size}; the checkpoint and vocabulary do not belong together")
    return tok


def load_hf_bert(path: str | Path, **_: Any) -> ModelParts:
    """The loader for HF BERT and sentence-transformers folders (:func:`lmforge.load` wraps the parts into an
    ``LM``): model (eval mode), tokenizer, and the sentence-embedding recipe."""
    path = Path(path)
    if not path.is_dir():
        raise FormatError(f"{path}: not a folder (expected an HF BERT folder with config.json)")
    folder = transformer_folder(path)
    cfg = config_from_hf(read_hf_config(folder / "config.json"), str(folder / "config.json"))
    model = model_from_hf_weights(cfg, read_hf_weights(folder), str(folder))
    model.eval()
    tok = read_bert_tokenizer(folder, cfg)
    return ModelParts(model=model, tokenizer=tok, config=model.config, sentence_config=read_sentence_config(path, cfg),
                      path=path)


def save_hf_bert(
    model: Bert,
    folder: str | Path,
    tokenizer_source: str | Path | None = None,
    tokenizer: Any = None,
    sentence_config: SentenceConfig | None = None,
) -> Path:
    """Write ``model`` as an HF BERT folder (config.json + model.safetensors) that transformers, sentence-
    transformers and :func:`lmforge.load` open. Tokenizer files are copied from ``tokenizer_source`` (a folder)
    or written by ``tokenizer.save(folder)``; ``sentence_config`` adds modules.json and the pooling config."""
    from safetensors.torch import save_file

    folder = Path(folder)
    weights = hf_weights_from_model(model)
    # Built beside the old folder and swapped in as a whole (lmforge.io.folders); tokenizer files copied from
    # ``folder`` itself are read from the old folder, which stays in place until the swap.
    with model_folder(folder) as tmp:
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config_to_hf(model.config), indent=2) + "\n", encoding="utf-8")
        if tokenizer_source is not None:
            src = transformer_folder(Path(tokenizer_source))
            for name in TOKENIZER_FILES:
                if (src / name).is_file():
                    shutil.copyfile(src / name, tmp / name)
        elif tokenizer is not None:
            tokenizer.save(tmp, format="hf")
        if sentence_config is not None:
            _write_sentence_config(tmp, model.config, sentence_config)
    return folder


def _write_sentence_config(folder: Path, cfg: BertConfig, sc: SentenceConfig) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if sc.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    atomic_write_text(folder / "modules.json", json.dumps(modules, indent=2) + "\n")
    atomic_write_text(
        folder / "sentence_bert_config.json",
        json.dumps({"max_seq_length": sc.max_seq_length or cfg.block_size, "do_lower_case": False}, indent=2) + "\n",
    )
    pooling: dict[str, Any] = {"word_embedding_dimension": cfg.n_embd}
    canonical = tuple(mode for mode in ST_POOLING_KEYS.values() if mode in sc.pooling)
    if canonical == sc.pooling:  # the switches every sentence-transformers version reads
        pooling.update({key: mode in sc.pooling for key, mode in ST_POOLING_KEYS.items()})
    else:  # the switches would reorder a concatenation; sentence-transformers >= 5 reads an ordered list
        pooling["pooling_mode"] = list(sc.pooling)
    atomic_write_text(folder / "1_Pooling" / "config.json", json.dumps(pooling, indent=2) + "\n")

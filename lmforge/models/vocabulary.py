"""The one config vocabulary of lmforge's transformer models, and the older names it replaced.

Every transformer config (``GPTConfig``, ``BertConfig``, the encoder–decoder's) uses these names for what they share:
``vocab_size, block_size, n_layer, n_head, n_kv_head, head_dim, n_embd, ffn_hidden, mlp, norm, norm_eps, pos, bias,
dropout, tie_embeddings`` (a family takes the ones that apply to it, plus its own extras). Folders and run checkpoints
written before BERT spoke this vocabulary carry the old names; :func:`upgrade_config_dict` maps them on read.
"""

from __future__ import annotations

# old BertConfig name → the vocabulary's name
OLD_FIELD_NAMES: dict[str, str] = {
    "d_model": "n_embd",
    "n_layers": "n_layer",
    "n_heads": "n_head",
    "d_ff": "ffn_hidden",
    "max_positions": "block_size",
    "layer_norm_eps": "norm_eps",
    "activation": "mlp",
}


def upgrade_config_dict(d: dict, known: set[str]) -> dict:
    """``d`` with every old name that ``known`` (a config's field names) lacks renamed to its new name.

    >>> upgrade_config_dict({"d_model": 8, "vocab_size": 5}, {"n_embd", "vocab_size"})
    {'n_embd': 8, 'vocab_size': 5}
    >>> upgrade_config_dict({"n_layers": 3}, {"n_layer"} | {"n_layers"})   # a config that has the name keeps it
    {'n_layers': 3}
    """
    return {OLD_FIELD_NAMES[k] if k not in known and OLD_FIELD_NAMES.get(k) in known else k: v for k, v in d.items()}

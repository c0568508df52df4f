"""Loading lmforge-named tensors into a freshly built model, for the models whose weights may be tied."""

from __future__ import annotations

import torch
from torch import nn

from lmforge.errors import FormatError


def check_state(expected: dict[str, torch.Size], state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Every name of ``expected`` present in ``state_dict`` with its shape, and nothing else; else a FormatError
    naming ``source`` and the tensor."""
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise FormatError(f"{source}: missing tensor(s) {missing[:5]}, unexpected tensor(s) {unexpected[:5]}")
    for name, shape in expected.items():
        if tuple(state_dict[name].shape) != tuple(shape):
            raise FormatError(f"{source}: tensor {name!r} has shape {tuple(state_dict[name].shape)}, "
                              f"expected {tuple(shape)}")


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
               dtype: torch.dtype | None = None) -> nn.Module:
    """Copy ``state_dict`` into ``model``, checking names and shapes; a FormatError names ``source`` and the tensor.

    Tied parameters (one tensor under several names, e.g. an LM head that is the target embedding) need only one of
    their names present: files store a tied tensor once.
    """
    expected = model.state_dict()
    names_of: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        names_of.setdefault(tensor.untyped_storage().data_ptr(), []).append(name)
    missing = [names[0] for names in names_of.values() if not any(n in state_dict for n in names)]
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise FormatError(f"{source}: missing tensor(s) {missing[:5]}, unexpected tensor(s) {unexpected[:5]}")
    for name, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise FormatError(f"{source}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                              f"expected {tuple(expected[name].shape)}")
    model.load_state_dict(state_dict, strict=False)
    if dtype is not None:
        model.to(dtype)
    return model

"""Whether a network's tensors changed in place. torch counts in-place changes per tensor
in ``Tensor._version`` (private, stable since torch 1.0, what autograd itself checks);
the sanity check re-initialises layers in place, after which a folded or private copy of
the network must be rebuilt."""

from __future__ import annotations

import itertools

from torch import nn


def weights_state(model: nn.Module) -> tuple[int, ...]:
    """Which network, and the in-place change counter of each of its tensors."""
    tensors = itertools.chain(model.parameters(), model.buffers())
    return (id(model), *(tensor._version for tensor in tensors))

"""The one diagnosis every checker gives: which known mistake the reader's answer matches."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor


def matching_mistake(got, mistakes: Iterable[tuple[object, str]], same: Callable) -> str | None:
    """The hint of the first ``(wrong answer, hint)`` whose answer is ``same(got, wrong)``, if any.

    Example: ``matching_mistake([4, 3], [([3, 4], "swapped"), ([4, 3], "no merge")], eq)``
    gives ``"no merge"``.
    """
    for wrong, hint in mistakes:
        if same(got, wrong):
            return hint
    return None


def close(atol: float, rtol: float = 0.0) -> Callable[[Tensor, Tensor], bool]:
    """``same`` for tensors: equal shapes and equal values within ``atol`` and ``rtol``."""
    return lambda got, wrong: (
        got.shape == wrong.shape and torch.allclose(got, wrong, atol=atol, rtol=rtol)
    )

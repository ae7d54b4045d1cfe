"""Checks for the exercises of chapter 02 (embeddings)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def check_embed_tokens(embed_tokens: Callable, seed: int = 0) -> None:
    """Check ``embed_tokens(tokens, W_E, W_pos) -> resid[batch, pos, d_model]``: the token
    embedding plus the positional embedding of positions ``0 .. pos-1``."""
    gen = torch.Generator().manual_seed(seed)
    W_E = torch.randn(50, 8, generator=gen)
    W_pos = torch.randn(12, 8, generator=gen)
    tokens = torch.randint(0, 50, (3, 7), generator=gen)
    expected = W_E[tokens] + W_pos[: tokens.shape[1]]
    got = embed_tokens(tokens, W_E, W_pos)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (3, 7, 8):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(
            f"expected a tensor of shape (batch, pos, d_model) = (3, 7, 8), got {shape}"
        )
    if torch.allclose(got, W_E[tokens], atol=1e-6):
        raise AssertionError(
            "the result is the token embedding alone: add the positional embedding"
        )
    torch.testing.assert_close(
        got,
        expected,
        atol=1e-6,
        rtol=0,
        msg="position p of every row should get W_E[token] + W_pos[p]",
    )
    print("Correct: the residual stream starts as token embedding + positional embedding.")

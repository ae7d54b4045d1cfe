"""Checks for the exercises of chapter 03 (attention)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from minigpt.attention import Attention
from minigpt.config import GPTConfig


def _reference_pattern(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    n = q.shape[1]
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    return scores.masked_fill(future, float("-inf")).softmax(-1)


def check_attention_pattern(attention_pattern: Callable, seed: int = 0) -> None:
    """Check ``attention_pattern(q, k) -> pattern[batch, n_heads, query_pos, key_pos]`` for
    ``q, k[batch, pos, n_heads, d_head]``: scaled dot products, causal mask, softmax over keys."""
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 6, 3, 16, generator=gen), torch.randn(2, 6, 3, 16, generator=gen)
    got = attention_pattern(q, k)
    if tuple(got.shape) != (2, 3, 6, 6):
        raise AssertionError(
            f"expected shape (batch, n_heads, query_pos, key_pos) = (2, 3, 6, 6), got {tuple(got.shape)}"
        )
    if not torch.allclose(got.sum(-1), torch.ones(2, 3, 6), atol=1e-5):
        raise AssertionError(
            "each query's pattern should sum to 1 over the keys (softmax over the last axis)"
        )
    if got[..., torch.ones(6, 6, dtype=torch.bool).triu(1)].abs().max() > 1e-6:
        raise AssertionError(
            "a query attends to a later key: apply the causal mask before the softmax"
        )
    expected = _reference_pattern(q, k)
    unscaled = _reference_pattern(q * math.sqrt(16), k)
    if torch.allclose(got, unscaled, atol=1e-5) and not torch.allclose(got, expected, atol=1e-5):
        raise AssertionError("divide the scores by sqrt(d_head) before the softmax")
    torch.testing.assert_close(
        got,
        expected,
        atol=1e-5,
        rtol=0,
        msg="the pattern differs from softmax(q.k / sqrt(d_head)) with a causal mask",
    )
    print("Correct: scaled, masked, normalised: that is the attention pattern.")


def check_attention_layer(attention_layer: Callable, seed: int = 0) -> None:
    """Check ``attention_layer(x, W_Q, b_Q, W_K, b_K, W_V, b_V, W_O, b_O) -> out[batch, pos, d_model]``
    against :class:`minigpt.attention.Attention` with the same (random) weights."""
    cfg = GPTConfig(d_model=24, n_heads=3, d_head=8, d_mlp=96, n_layers=1, n_ctx=16, d_vocab=10)
    gen = torch.Generator().manual_seed(seed)
    attn = Attention(cfg, impl="einsum")
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        x = torch.randn(2, 5, 24, generator=gen)
        expected = attn(x)
        got = attention_layer(
            x, attn.W_Q, attn.b_Q, attn.W_K, attn.b_K, attn.W_V, attn.b_V, attn.W_O, attn.b_O
        )
    if tuple(got.shape) != (2, 5, 24):
        raise AssertionError(
            f"expected shape (batch, pos, d_model) = (2, 5, 24), got {tuple(got.shape)}"
        )
    torch.testing.assert_close(
        got.detach(),
        expected,
        atol=1e-4,
        rtol=0,
        msg="the output differs from minigpt's Attention: check the biases, the mask, and W_O",
    )
    print("Correct: your attention layer matches minigpt.attention.Attention.")

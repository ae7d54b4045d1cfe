"""Checks for the exercises of chapter 05 (LayerNorm and the whole model)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.analysis import parameter_count
from minigpt.config import GPTConfig


def check_layer_norm(layer_norm: Callable, seed: int = 0) -> None:
    """Check ``layer_norm(x, w, b, eps) -> [..., d_model]`` against ``torch.nn.functional.layer_norm``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 16, generator=gen) * 3 + 1
    w, b = torch.randn(16, generator=gen), torch.randn(16, generator=gen)
    eps = 1e-5
    got = layer_norm(x, w, b, eps)
    expected = torch.nn.functional.layer_norm(x, (16,), w, b, eps)
    centred = x - x.mean(-1, keepdim=True)
    bessel = centred / (centred.var(-1, unbiased=True, keepdim=True) + eps).sqrt() * w + b
    if torch.allclose(got, bessel, atol=1e-5):
        raise AssertionError(
            "use the biased variance (mean of squares, divide by d_model, not d_model - 1)"
        )
    torch.testing.assert_close(
        got,
        expected,
        atol=1e-5,
        rtol=0,
        msg="expected (x - mean) / sqrt(var + eps) * w + b, over the last axis",
    )
    print("Correct: your LayerNorm matches torch's.")


def check_parameter_count(count_parameters: Callable) -> None:
    """Check ``count_parameters(cfg) -> int``: the parameters of a GPT-2-style model with the
    unembedding tied to the embedding (no extra weights, no output bias), as in GPT-2."""
    configs = [
        GPTConfig.gpt2_small(),
        GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=200, n_layers=3, n_ctx=32, d_vocab=1000),
    ]
    for cfg in configs:
        expected = sum(parameter_count(cfg, tied_unembed=True).values())
        got = int(count_parameters(cfg))
        if got == expected + cfg.d_model * cfg.d_vocab + cfg.d_vocab:
            raise AssertionError(
                f"{cfg}: you counted W_U and b_U; GPT-2 reuses W_E as the unembedding"
            )
        if got != expected:
            raise AssertionError(
                f"for {cfg}: got {got:,}, expected {expected:,} (off by {got - expected:,})"
            )
    print("Correct: 124,439,808 for GPT-2 small, and right for another shape too.")

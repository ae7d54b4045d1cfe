"""Checks for the exercises of chapter 04 (the MLP)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.mlp import gelu_new


def check_gelu(gelu: Callable) -> None:
    """Check ``gelu(x)`` against GPT-2's tanh approximation of GELU, to 1e-6."""
    x = torch.linspace(-5, 5, 1001)
    got = gelu(x)
    if torch.allclose(got, torch.nn.functional.gelu(x), atol=1e-6):
        raise AssertionError("that is the exact GELU (erf); GPT-2 uses the tanh approximation")
    if torch.allclose(got, torch.relu(x), atol=1e-6):
        raise AssertionError("that is ReLU; GELU is smooth and slightly negative just below 0")
    torch.testing.assert_close(
        got,
        gelu_new(x),
        atol=1e-6,
        rtol=0,
        msg="expected 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))",
    )
    print("Correct: that is GPT-2's GELU.")


def check_mlp(mlp: Callable, seed: int = 0) -> None:
    """Check ``mlp(x, W_in, b_in, W_out, b_out) -> [batch, pos, d_model]``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, generator=gen)
    W_in, b_in = torch.randn(8, 32, generator=gen), torch.randn(32, generator=gen)
    W_out, b_out = torch.randn(32, 8, generator=gen), torch.randn(8, generator=gen)
    got = mlp(x, W_in, b_in, W_out, b_out)
    expected = gelu_new(x @ W_in + b_in) @ W_out + b_out
    if tuple(got.shape) != (2, 4, 8):
        raise AssertionError(
            f"expected shape (batch, pos, d_model) = (2, 4, 8), got {tuple(got.shape)}"
        )
    if torch.allclose(got, torch.nn.functional.gelu(x @ W_in + b_in) @ W_out + b_out, atol=1e-4):
        raise AssertionError("close, but with the exact GELU: GPT-2 uses the tanh approximation")
    torch.testing.assert_close(
        got,
        expected,
        atol=1e-4,
        rtol=1e-5,
        msg="expected gelu_new(x @ W_in + b_in) @ W_out + b_out",
    )
    print("Correct: your MLP matches GPT-2's.")

"""GPT-2's MLP and its GELU, against the reference."""

from __future__ import annotations

import torch

from minigpt.config import GPTConfig
from minigpt.formats.gpt2_weights import load_tl_parameters
from minigpt.mlp import MLP, gelu_new


def test_gelu_new_is_the_tanh_approximation():
    x = torch.linspace(-6, 6, 2001)
    torch.testing.assert_close(
        gelu_new(x), torch.nn.functional.gelu(x, approximate="tanh"), atol=1e-6, rtol=0
    )
    # Hand-derived points: gelu(0) = 0, and for large |x| it is relu(x).
    assert gelu_new(torch.tensor(0.0)).item() == 0.0
    torch.testing.assert_close(gelu_new(torch.tensor([10.0, -10.0])), torch.tensor([10.0, 0.0]))
    # ... and it is *not* the exact GELU: close, but not within a parity tolerance of 1e-4.
    gap = (gelu_new(x) - torch.nn.functional.gelu(x)).abs().max().item()
    assert 1e-4 < gap < 1e-3


def test_mlp_matches_reference(reference):
    tokens = reference.to_tokens("The MLP reads the residual stream at each position.")
    with torch.no_grad():
        _, cache = reference.bridge.run_with_cache(tokens)
    params = reference.bridge.tl_parameters()
    for layer in (0, 11):
        mlp = MLP(GPTConfig.gpt2_small())
        load_tl_parameters(mlp, params, prefix=f"blocks.{layer}.mlp.")
        acts: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            out = mlp(cache[f"blocks.{layer}.ln2.hook_out"], acts=acts)
        for name in ("hook_pre", "hook_post"):
            torch.testing.assert_close(
                acts[name],
                cache[f"blocks.{layer}.mlp.{name}"],
                atol=1e-5,
                rtol=1e-4,
                msg=lambda m, n=name, i=layer: f"blocks.{i}.mlp.{n}: {m}",
            )
        torch.testing.assert_close(out, cache[f"blocks.{layer}.hook_mlp_out"], atol=1e-4, rtol=0)


def test_mlp_acts_position_by_position():
    cfg = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    torch.manual_seed(0)
    mlp = MLP(cfg)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        whole = mlp(x)
        one = mlp(x[:, 3:4])
    torch.testing.assert_close(whole[:, 3:4], one, atol=1e-6, rtol=0)

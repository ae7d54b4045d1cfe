"""GPT-2's LayerNorm (minigpt.layernorm): the fused path, the explicit one and its hooks."""

from __future__ import annotations

import torch

from minigpt.config import GPTConfig
from minigpt.layernorm import LayerNorm


def test_layer_norm_fused_path_equals_explicit_path():
    from minigpt.layernorm import LayerNorm

    cfg = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    torch.manual_seed(0)
    ln = LayerNorm(cfg)
    with torch.no_grad():
        ln.w.normal_()
        ln.b.normal_()
        x = torch.randn(3, 7, 32) * 5 + 2
        acts: dict[str, torch.Tensor] = {}
        explicit = ln(x, acts=acts)
        fused = ln(x)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        acts["hook_normalized"].mean(-1), torch.zeros(3, 7), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        acts["hook_normalized"].pow(2).mean(-1), torch.ones(3, 7), atol=1e-3, rtol=0
    )


def test_layer_norm_equals_torch_and_records_the_scale():
    cfg = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    ln = LayerNorm(cfg)
    assert torch.equal(ln.w, torch.ones(16)) and torch.equal(ln.b, torch.zeros(16))  # GPT-2's init
    torch.manual_seed(1)
    reference = torch.nn.LayerNorm(16, eps=cfg.layer_norm_eps)
    with torch.no_grad():
        reference.weight.normal_()
        reference.bias.normal_()
        ln.w.copy_(reference.weight)
        ln.b.copy_(reference.bias)
        x = torch.randn(2, 5, 16) * 3 - 1
        acts: dict[str, torch.Tensor] = {}
        torch.testing.assert_close(ln(x), reference(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(ln(x, acts=acts), reference(x), atol=1e-5, rtol=0)
    assert acts["hook_scale"].shape == (2, 5, 1)
    # the biased standard deviation (divide by d_model), with eps inside the square root
    expected = (x.var(dim=-1, unbiased=False, keepdim=True) + cfg.layer_norm_eps).sqrt()
    torch.testing.assert_close(acts["hook_scale"], expected, atol=1e-6, rtol=1e-6)

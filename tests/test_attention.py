"""Causal self-attention and the key/value cache, against the reference and by hand."""

from __future__ import annotations

import pytest
import torch

from minigpt.attention import Attention, KVCache, attention_mask_for
from minigpt.config import GPTConfig
from minigpt.weights import load_tl_parameters

HOOKS = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z")


@pytest.mark.parametrize("layer", [0, 5])
def test_attention_matches_reference(reference, layer):
    tokens = reference.to_tokens("When Mary and John went to the store, John gave a drink to")
    with torch.no_grad():
        _, cache = reference.bridge.run_with_cache(tokens)
    attn = Attention(GPTConfig.gpt2_small(), layer=layer, impl="einsum")
    load_tl_parameters(attn, reference.bridge.tl_parameters(), prefix=f"blocks.{layer}.attn.")
    x = cache[f"blocks.{layer}.ln1.hook_out"]
    acts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        out = attn(x, acts=acts)
        attn.impl = "sdpa"
        fused = attn(x)
    for name in HOOKS:
        theirs = cache[f"blocks.{layer}.attn.{name}"]
        torch.testing.assert_close(
            acts[name],
            theirs,
            atol=1e-5,
            rtol=1e-4,
            msg=lambda m, n=name: f"blocks.{layer}.attn.{n}: {m}",
        )
    torch.testing.assert_close(out, cache[f"blocks.{layer}.hook_attn_out"], atol=1e-4, rtol=0)
    torch.testing.assert_close(fused, out, atol=1e-5, rtol=0)


def test_pattern_is_causal_and_normalised():
    cfg = GPTConfig(d_model=16, n_heads=4, d_head=4, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    torch.manual_seed(0)
    attn = Attention(cfg, impl="einsum")
    acts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        attn(torch.randn(2, 6, 16), acts=acts)
    pattern = acts["hook_pattern"]
    assert pattern.shape == (2, 4, 6, 6)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4, 6), atol=1e-6, rtol=0)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    assert (pattern[..., future] == 0).all()
    assert (pattern[..., 0, 0] == 1).all()  # the first token can only look at itself
    assert (acts["hook_attn_scores"][..., future] == torch.finfo(torch.float32).min).all()


def test_attention_mask_by_hand():
    # Two cached positions, two new ones; row 0 has its first position padded.
    mask = attention_mask_for(2, 2, 2, torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))
    expected_row1 = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[1], expected_row1)
    assert torch.equal(mask[0], expected_row1 & torch.tensor([0, 1, 1, 1], dtype=torch.bool))
    # A padded query is left to attend to itself alone (so its softmax is defined).
    pad_query = attention_mask_for(1, 0, 3, torch.tensor([[0, 0, 1]]))
    assert torch.equal(pad_query[0, 1], torch.tensor([False, True, False]))


@pytest.mark.parametrize("impl", ["sdpa", "einsum"])
def test_attention_with_cache_equals_one_pass(impl):
    cfg = GPTConfig(d_model=16, n_heads=4, d_head=4, d_mlp=64, n_layers=1, n_ctx=16, d_vocab=10)
    torch.manual_seed(1)
    attn = Attention(cfg, impl=impl)
    x = torch.randn(3, 9, 16)
    cache = KVCache(n_layers=1, batch_size=3, n_ctx=16)
    with torch.no_grad():
        whole = attn(x)
        first = attn(x[:, :5], cache=cache)
        # Several new queries after cached keys: the causal mask must be offset.
        rest = attn(x[:, 5:], mask=attention_mask_for(3, 5, 4), cache=cache)
    assert cache.length == 9
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, atol=1e-6, rtol=0)
    # Without a mask, several new tokens after a cache are still offset correctly.
    cache.crop(5)
    with torch.no_grad():
        again = attn(x[:, 5:], cache=cache)
    torch.testing.assert_close(again, whole[:, 5:], atol=1e-6, rtol=0)


def test_kv_cache_rejects_bad_use():
    with pytest.raises(ValueError, match="batch_size=0"):
        KVCache(n_layers=2, batch_size=0, n_ctx=8)
    cache = KVCache(n_layers=1, batch_size=2, n_ctx=8)
    with pytest.raises(ValueError, match="batch_size=2 rows, got keys for 3"):
        cache.update(0, torch.zeros(3, 1, 1, 4), torch.zeros(3, 1, 1, 4))
    with pytest.raises(ValueError, match=r"attn_impl='fast'"):
        Attention(GPTConfig(), impl="fast")


def test_cache_grows_past_its_first_buffer_and_keeps_gradients():
    cfg = GPTConfig(d_model=16, n_heads=4, d_head=4, d_mlp=64, n_layers=1, n_ctx=100, d_vocab=10)
    torch.manual_seed(2)
    attn = Attention(cfg, impl="sdpa")
    x = torch.randn(2, 70, 16)
    with torch.no_grad():
        whole = attn(x)
        cache = KVCache(n_layers=1, batch_size=2, n_ctx=100)
        steps = [attn(x[:, i : i + 1], cache=cache) for i in range(70)]  # buffers of 32, 64, 100
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, atol=1e-6, rtol=0)
    assert cache.keys(0).shape == (2, 4, 70, 4)
    # With gradients on, appending is functional, and backward through the cache works.
    x.requires_grad_(True)
    attn(x).pow(2).sum().backward()
    expected = x.grad.clone()
    x.grad = None
    cache = KVCache(n_layers=1, batch_size=2, n_ctx=100)
    first = attn(x[:, :30], cache=cache)
    rest = attn(x[:, 30:], cache=cache)
    torch.cat([first, rest], dim=1).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, expected, atol=1e-5, rtol=0)

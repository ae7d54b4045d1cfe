"""The key/value cache (minigpt.kv_cache): what it stores, how it grows, select and crop,
and that a model run through it chunk by chunk gives the logits of one full pass."""

from __future__ import annotations

import pytest
import torch

from minigpt.attention import Attention
from minigpt.config import GPTConfig
from minigpt.kv_cache import KVCache
from minigpt.model import GPT


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=2, n_ctx=24, d_vocab=101)
    model = GPT(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("impl", ["sdpa", "einsum"])
@pytest.mark.parametrize("chunks", [[1] * 12, [5, 4, 3], [1, 11], [12]])
def test_kv_cache_equals_full_pass(small, impl, chunks):
    small.attn_impl = impl
    tokens = torch.randint(0, 101, (2, sum(chunks)), generator=torch.Generator().manual_seed(1))
    cache = small.new_cache(2)
    with torch.no_grad():
        full = small(tokens)
        pieces, start = [], 0
        for n in chunks:
            pieces.append(small(tokens[:, start : start + n], cache=cache))
            start += n
            assert cache.length == start
    small.attn_impl = "sdpa"
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


def test_cache_select_and_crop(small):
    tokens = torch.randint(0, 101, (3, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = small(tokens)
        cache = small.new_cache(3)
        small(tokens[:, :6], cache=cache)
        cache.select(torch.tensor([2, 0]))  # keep rows 2 and 0, in that order
        assert cache.batch_size == 2 and cache.length == 6
        out = small(tokens[[2, 0], 6:], cache=cache)
        torch.testing.assert_close(out, full[[2, 0], 6:], atol=1e-5, rtol=0)
        cache.crop(4)
        assert cache.length == 4
        out = small(tokens[[2, 0], 4:], cache=cache)
        torch.testing.assert_close(out, full[[2, 0], 4:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="crop length=11"):
        cache.crop(11)
    with pytest.raises(ValueError, match=r"valid rows are \[0, 2\)"):
        cache.select(torch.tensor([2]))


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


def test_cache_by_hand_append_read_select_crop():
    cache = KVCache(n_layers=2, batch_size=2, n_ctx=40)
    assert cache.length == 0 and cache.keys(0) is None and cache.values(1) is None
    k1, v1 = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    k_all, v_all = cache.update(0, k1, v1)
    assert torch.equal(k_all, k1) and torch.equal(v_all, v1)
    assert cache.length == 0  # the last layer is written last: the length moves with it
    cache.update(1, k1 + 1, v1 + 1)
    assert cache.length == 4
    k2, v2 = torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 5)
    for layer in range(2):
        k_all, v_all = cache.update(layer, k2 + layer, v2 + layer)
        assert torch.equal(k_all, torch.cat([k1, k2], dim=2) + layer)  # appended on the pos axis
        assert torch.equal(v_all, torch.cat([v1, v2], dim=2) + layer)
    assert cache.length == 5 and cache.keys(1).shape == (2, 3, 5, 5)
    assert repr(cache) == "KVCache(n_layers=2, batch_size=2, length=5, n_ctx=40)"
    before = cache.keys(0).clone()
    assert cache.select(torch.tensor([1, 1, 0])) is cache  # repeat and reorder rows
    assert cache.batch_size == 3 and torch.equal(cache.keys(0), before[[1, 1, 0]])
    assert cache.crop(2) is cache and cache.length == 2
    assert torch.equal(cache.keys(0), before[[1, 1, 0], :, :2])
    assert cache.crop(0).length == 0 and cache.keys(0) is None
    with pytest.raises(ValueError, match=r"non-empty 1-D tensor, got shape \(0,\)"):
        cache.select(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match=r"batch_indices range over \[-1, 0\]"):
        cache.select(torch.tensor([-1, 0]))

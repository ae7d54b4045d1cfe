"""Causal self-attention (minigpt.attention), with and without a key/value cache, against the
reference and by hand."""

from __future__ import annotations

import einops
import pytest
import torch
import torch.nn.functional as F

from minigpt.attention import Attention, attention, attention_mask_for
from minigpt.config import GPTConfig
from minigpt.formats.gpt2_weights import load_tl_parameters
from minigpt.kv_cache import KVCache

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


# --------------------------------------------------------------------------------------
# The public attention function (minigpt.attention.attention) against PyTorch's fused
# ``scaled_dot_product_attention`` (SDPA), and against the module that uses it.
#
# ``attention`` takes the module's layout, ``[batch, n_heads, pos, d_head]``, which is SDPA's
# layout too, so nothing needs transposing here.
#
# Tolerance (``rtol=0``): float32 ``atol=1e-6`` at the default scale ``1/sqrt(d_head)``; the two
# sum in different orders, and over 200 seeds of each case here the largest difference is
# 6e-7 (7e-7 for the cache step). A larger ``scale`` spreads the scores, and the difference grows
# with it (1.3e-6 at scale 1, 2.5e-6 at 2.5), so ``test_scale`` allows ``1e-6 * max(1, 2 *
# scale)``. float64: ``atol=1e-14`` (largest seen 1.3e-15). Gradients: ``1e-5``.
# --------------------------------------------------------------------------------------


ATOL = 1e-6  # float32


def qkv(batch=2, n_heads=3, n_q=5, n_k=5, d_head=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, n_heads, n_q, d_head, generator=g, dtype=dtype)
    k = torch.randn(batch, n_heads, n_k, d_head, generator=g, dtype=dtype)
    v = torch.randn(batch, n_heads, n_k, d_head, generator=g, dtype=dtype)
    return q, k, v


def sdpa(q, k, v, mask=None, **kw):
    """SDPA with our mask: [batch, query_pos, key_pos] becomes [batch, 1 (heads), ...]."""
    if mask is not None and mask.ndim == 3:
        mask = mask[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)


def close(ours, theirs, atol=ATOL):
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)


def test_no_mask():
    q, k, v = qkv()
    z = attention(q, k, v)
    assert z.shape == q.shape
    close(z, sdpa(q, k, v))


def test_float64():
    q, k, v = qkv(dtype=torch.float64)
    close(attention(q, k, v), sdpa(q, k, v), atol=1e-14)


def test_causal_mask():
    q, k, v = qkv(n_q=7, n_k=7)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    expected = sdpa(q, k, v, is_causal=True)
    close(attention(q, k, v, causal), expected)  # [query_pos, key_pos]
    close(attention(q, k, v, causal[None]), expected)  # [1, query_pos, key_pos]
    close(attention(q, k, v, attention_mask_for(2, 0, 7)), expected)  # [batch, ...]


def random_mask(batch, n_q, n_k, seed=0):
    """Random, but every query may attend to at least one key (its own diagonal)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, n_q, n_k, generator=g) < 0.5
    mask[:, torch.arange(n_q), torch.arange(n_q) % n_k] = True
    return mask


def test_random_boolean_mask():
    q, k, v = qkv(batch=3, n_q=6, n_k=9)
    mask = random_mask(3, 6, 9)
    assert not mask.all()
    close(attention(q, k, v, mask), sdpa(q, k, v, mask))


def test_broadcast_masks_equal_the_expanded_mask():
    q, k, v = qkv(batch=3, n_q=4, n_k=6)
    padding = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    per_row = padding[:, None, :]  # [batch, 1, key_pos]: padded keys hidden from every query
    full = per_row.expand(3, 4, 6)
    assert torch.equal(attention(q, k, v, per_row), attention(q, k, v, full))
    close(attention(q, k, v, per_row), sdpa(q, k, v, full))


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_scale(scale):
    q, k, v = qkv()
    atol = ATOL * max(1.0, 2 * scale)  # the difference grows with the scale: see the top
    close(attention(q, k, v, scale=scale), sdpa(q, k, v, scale=scale), atol=atol)
    mask = random_mask(2, 5, 5)
    close(attention(q, k, v, mask, scale=scale), sdpa(q, k, v, mask, scale=scale), atol=atol)


def test_default_scale_is_one_over_sqrt_d_head():
    q, k, v = qkv(d_head=16)
    close(attention(q, k, v), attention(q, k, v, scale=16**-0.5))


def test_kv_cache_step_one_query_many_keys():
    q, k, v = qkv(n_q=1, n_k=11)
    z = attention(q, k, v)
    assert z.shape == (2, 3, 1, 8)
    close(z, sdpa(q, k, v))
    # The same step with left padding: row 0's first three keys are padding.
    padding = torch.ones(2, 11, dtype=torch.long)
    padding[0, :3] = 0
    mask = attention_mask_for(2, 10, 1, padding)  # [batch, 1, 11]
    close(attention(q, k, v, mask), sdpa(q, k, v, mask))


def test_several_queries_after_a_cache():
    # 3 new queries are the last 3 of 10 positions: the causal mask is offset.
    q, k, v = qkv(n_q=3, n_k=10)
    mask = attention_mask_for(2, 7, 3)
    close(attention(q, k, v, mask), sdpa(q, k, v, mask))


def test_gradients_match_sdpa():
    q, k, v = (t.requires_grad_() for t in qkv())
    mask = random_mask(2, 5, 5)
    (attention(q, k, v, mask) ** 2).sum().backward()
    ours = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    (sdpa(q, k, v, mask) ** 2).sum().backward()
    for a, b in zip(ours, (q.grad, k.grad, v.grad)):
        close(a, b, atol=1e-5)


def test_fully_masked_query_returns_zeros():
    """Documented: a query that may attend to no key gets z = 0 and an all-zero pattern row.

    SDPA (the PyTorch this project pins, CPU) returns zeros for such a row too, so the module's
    two impls agree. The most negative float alone would give the uniform average over all
    (hidden) keys; -inf everywhere would give NaN.
    """
    q, k, v = qkv(n_q=4, n_k=6)
    mask = random_mask(2, 4, 6)
    mask[0, 2] = False  # query 2 of row 0 may attend to nothing
    acts: dict[str, torch.Tensor] = {}
    z = attention(q, k, v, mask, acts=acts)
    assert torch.equal(z[0, :, 2], torch.zeros(3, 8))
    assert torch.equal(acts["hook_pattern"][0, :, 2], torch.zeros(3, 6))
    # The other rows are untouched: the same as with that row given any key.
    unmasked = mask.clone()
    unmasked[0, 2, 0] = True
    others = torch.ones(2, 4, dtype=torch.bool)
    others[0, 2] = False
    assert torch.equal(
        z.transpose(1, 2)[others], attention(q, k, v, unmasked).transpose(1, 2)[others]
    )
    # SDPA: zeros too, for this row.
    theirs = sdpa(q, k, v, mask)
    assert torch.equal(theirs[0, :, 2], torch.zeros(3, 8))
    close(z, theirs)
    # Not the uniform average of the values, nor NaN.
    assert not torch.isnan(z).any()
    assert not torch.allclose(z[0, :, 2], v[0].mean(dim=1))


def test_no_keys_at_all_returns_zeros():
    q, k, v = qkv(n_q=2, n_k=0)
    assert torch.equal(attention(q, k, v), torch.zeros(2, 3, 2, 8))
    assert torch.equal(sdpa(q, k, v), torch.zeros(2, 3, 2, 8))


def test_module_einsum_path_is_this_function():
    """Attention(impl="einsum") computes z, the scores and the pattern with ``attention``."""
    cfg = GPTConfig(d_model=16, n_heads=4, d_head=4, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    torch.manual_seed(0)
    attn = Attention(cfg, impl="einsum")
    x = torch.randn(2, 6, 16)
    padding = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
    for mask in (None, attention_mask_for(2, 0, 6, padding)):
        acts: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            attn(x, mask=mask, acts=acts)
        q, k, v = (
            einops.rearrange(acts[n], "batch pos n_heads d_head -> batch n_heads pos d_head")
            for n in ("hook_q", "hook_k", "hook_v")
        )
        mine: dict[str, torch.Tensor] = {}
        causal = torch.ones(6, 6, dtype=torch.bool).tril()
        z = attention(q, k, v, causal if mask is None else mask, acts=mine)
        assert torch.equal(
            einops.rearrange(z, "batch n_heads pos d_head -> batch pos n_heads d_head"),
            acts["hook_z"],
        )
        for name in ("hook_attn_scores", "hook_pattern"):
            assert torch.equal(mine[name], acts[name])


def test_module_impls_agree_on_a_fully_masked_row():
    cfg = GPTConfig(d_model=16, n_heads=4, d_head=4, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    torch.manual_seed(0)
    attn = Attention(cfg, impl="einsum")
    x = torch.randn(2, 6, 16)
    mask = attention_mask_for(2, 0, 6)
    mask[1, 3] = False
    with torch.no_grad():
        einsum = attn(x, mask=mask)
        attn.impl = "sdpa"
        fused = attn(x, mask=mask)
    close(einsum, fused)
    assert torch.equal(einsum[1, 3], attn.b_O.detach())  # z = 0: only the output bias remains


# Bad arguments: a clear error naming the argument.
Q, K, V = qkv(n_q=5, n_k=7)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((Q[0], K, V), r"^q must have shape \[batch, n_heads, query_pos, d_head\]"),
        ((Q, K[0], V), r"^k must have shape \[batch, n_heads, key_pos, d_head\]"),
        ((Q, K, V[..., None]), r"^v must have shape"),
        ((Q, K[..., :4], V[..., :4]), r"^k has d_head=4 but q has d_head=8"),
        ((Q, K[:1], V[:1]), r"^k has batch=1 but q has batch=2"),
        ((Q, K[:, :2], V[:, :2]), r"^k has n_heads=2 but q has n_heads=3"),
        ((Q, K, V[:, :, :6]), r"^v must have the same shape as k"),
        ((Q, K, V, torch.ones(2, 5, 6, dtype=torch.bool)), r"^mask has key_pos=6 but must have 7"),
        ((Q, K, V, torch.ones(2, 4, 7, dtype=torch.bool)), r"^mask has query_pos=4"),
        ((Q, K, V, torch.ones(3, 5, 7, dtype=torch.bool)), r"^mask has batch=3 but must have 2"),
        ((Q, K, V, torch.ones(5, 6, dtype=torch.bool)), r"^mask has key_pos=6"),
        ((Q, K, V, torch.ones(2, 3, 5, 7, dtype=torch.bool)), r"^mask must have shape"),
    ],
)
def test_bad_shapes_raise_value_error_naming_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        attention(*args)


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match=r"^mask must be a torch.bool tensor"):
        attention(Q, K, V, torch.ones(2, 5, 7))
    with pytest.raises(TypeError, match=r"^q must be a floating-point tensor"):
        attention(Q.long(), K, V)
    with pytest.raises(TypeError, match=r"^q, k and v must share a dtype"):
        attention(Q, K.double(), V.double())
    with pytest.raises(TypeError, match=r"^scale must be a float or None"):
        attention(Q, K, V, scale=torch.tensor(0.5))


def test_fused_qkv_is_the_three_projections_and_follows_weight_changes():
    """The fused path's one QKV matrix holds W_Q, W_K, W_V; the copy kept for generation is
    rebuilt after an in-place update (an optimizer step) and after a change of dtype."""
    cfg = GPTConfig(d_model=16, n_heads=4, d_head=4, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=10)
    torch.manual_seed(0)
    attn = Attention(cfg, impl="sdpa")
    x = torch.randn(2, 6, 16)
    w, b = attn.fused_qkv()
    q = einops.einsum(
        x, attn.W_Q, "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head"
    )
    close(F.linear(x, w, b)[..., :16].view(2, 6, 4, 4), q + attn.b_Q)

    def both():
        return attn(x), Attention.forward(attn, x, acts={})  # fused, then the einsum path

    with torch.no_grad():
        fused, einsum = both()
        close(fused, einsum)
        assert attn.fused_qkv()[0] is attn.fused_qkv()[0]  # kept while nothing changes
        attn.W_K.mul_(2.0)
        fused2, einsum2 = both()
        assert not torch.allclose(fused2, fused)
        close(fused2, einsum2)
    loss = attn(x).square().sum()  # with gradients: built afresh, gradients reach W_Q
    loss.backward()
    assert attn.W_Q.grad is not None and attn.W_Q.grad.abs().sum() > 0
    attn.double()
    with torch.no_grad():
        close(attn(x.double()), Attention.forward(attn, x.double(), acts={}))

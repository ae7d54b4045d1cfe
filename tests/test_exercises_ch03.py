import math

import einops
import pytest
import torch

from minigpt.attention import Attention
from minigpt.config import GPTConfig
from minigpt.exercises.ch03 import (
    check_attn_scores,
    check_causal_mask,
    check_previous_token_head,
    check_softmax,
    check_weighted_values,
)


@pytest.fixture(scope="module")
def cache():
    """Layer 0's hooks as TransformerLens names them, from minigpt's own Attention (which
    masks with torch.finfo(float32).min, as the reference does)."""
    cfg = GPTConfig(d_model=24, n_heads=3, d_head=8, d_mlp=96, n_layers=1, n_ctx=16, d_vocab=10)
    gen = torch.Generator().manual_seed(0)
    attn = Attention(cfg, impl="einsum")
    acts = {}
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        attn(torch.randn(2, 7, 24, generator=gen), acts=acts)
    return {f"blocks.0.attn.{name}": t for name, t in acts.items()}


def scores(q, k, scale=1.0, transpose=False):
    spec = "b k h d, b q h d -> b h q k" if transpose else "b q h d, b k h d -> b h q k"
    return einops.einsum(q, k, spec) / math.sqrt(q.shape[-1]) * scale


def mask(s, fill=-math.inf, diagonal=1, invert=False):
    n = s.shape[-1]
    hidden = torch.ones(n, n, dtype=torch.bool).triu(diagonal)
    return s.masked_fill(~hidden if invert else hidden, fill)


def weighted(pattern, v, spec="b h q k, b k h d -> b q h d"):
    return einops.einsum(pattern, v, spec)


def test_accepts_right_answers(cache, capsys):
    check_attn_scores(scores, cache)
    check_attn_scores(lambda q, k: mask(scores(q, k)), cache)  # masked already: fine
    check_causal_mask(mask, cache)
    check_causal_mask(lambda s: mask(s, torch.finfo(s.dtype).min), cache)
    check_softmax(lambda s: s.softmax(-1), cache)
    check_weighted_values(weighted, cache)
    W_K = torch.eye(6)
    check_previous_token_head(20 * W_K.roll(-1, 1), W_K)
    check_previous_token_head(20 * W_K.roll(-2, 1), W_K, offset=2)
    assert capsys.readouterr().out.count("Correct") == 8


def test_the_reference_convention_is_the_most_negative_float(cache):
    s = cache["blocks.0.attn.hook_attn_scores"]
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)
    assert (s[..., future] == torch.finfo(s.dtype).min).all()


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda q, k: scores(q, k, scale=math.sqrt(q.shape[-1])), "not scaled"),
        (lambda q, k: scores(q, k, scale=1 / math.sqrt(q.shape[-1])), "divided by d_head"),
        (lambda q, k: scores(q, k, transpose=True), "swapped"),
        (lambda q, k: einops.einsum(q, k, "b q h d, b k h d -> b q k"), "summed over"),
        (lambda q, k: einops.einsum(q, k, "b q h d, b k h d -> b q k h"), "wrong order"),
    ],
)
def test_scores_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_attn_scores(wrong, cache)


def test_scores_failure_names_the_position(cache):
    def off(q, k):
        s = scores(q, k)
        s[0, 2, 5, 3] += 1
        return s

    with pytest.raises(AssertionError, match="head 2, query 5, key 3"):
        check_attn_scores(off, cache)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda s: s, "nothing was masked"),
        (lambda s: mask(s, diagonal=0), "diagonal is masked"),
        (lambda s: mask(s, invert=True), "inverted"),
        (lambda s: mask(s, fill=0.0), "set to 0"),
        (lambda s: mask(s, fill=-5.0), "only -5"),
        (lambda s: s + torch.ones_like(s).triu(1) * -math.inf, "NaN"),  # 0 * -inf = NaN
    ],
)
def test_mask_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_causal_mask(wrong, cache)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda s: s.softmax(-2), "query axis"),
        (lambda s: s.softmax(1), "over the heads"),
        (lambda s: s.exp(), "without dividing"),
        (lambda s: s.softmax(-1) * 2, "sum to 1"),
    ],
)
def test_softmax_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_softmax(wrong, cache)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda p, v: weighted(p, v, "b h k q, b k h d -> b q h d"), "transposed"),
        (lambda p, v: weighted(p, v, "b h q k, b k h d -> b h q d"), "n_heads, pos"),
        (lambda p, v: weighted(p, v, "b h q k, b k h d -> b q d"), "summed over"),
        (lambda p, v: v, "z is v itself"),
    ],
)
def test_weighted_values_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_weighted_values(wrong, cache)


def test_previous_token_head_diagnoses():
    W_K = torch.eye(6)
    with pytest.raises(AssertionError, match="matches the key at i"):
        check_previous_token_head(20 * W_K, W_K)
    with pytest.raises(AssertionError, match="later position"):
        check_previous_token_head(20 * W_K.roll(1, 1), W_K)
    with pytest.raises(AssertionError, match="not by enough"):
        check_previous_token_head(0.5 * W_K.roll(-1, 1), W_K)
    with pytest.raises(AssertionError, match=r"\[n_positions, d_head\]"):
        check_previous_token_head(W_K, W_K[:, :3])

import math

import einops
import pytest
import torch

from minigpt.exercises.ch03 import check_attention_layer, check_attention_pattern


def pattern(q, k, scale=True, mask=True):
    scores = einops.einsum(q, k, "b q h d, b k h d -> b h q k")
    if scale:
        scores = scores / math.sqrt(q.shape[-1])
    if mask:
        n = q.shape[1]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


def layer(x, W_Q, b_Q, W_K, b_K, W_V, b_V, W_O, b_O, use_b_O=True):
    q = einops.einsum(x, W_Q, "b p m, h m d -> b p h d") + b_Q
    k = einops.einsum(x, W_K, "b p m, h m d -> b p h d") + b_K
    v = einops.einsum(x, W_V, "b p m, h m d -> b p h d") + b_V
    z = einops.einsum(pattern(q, k), v, "b h q k, b k h d -> b q h d")
    return einops.einsum(z, W_O, "b q h d, h d m -> b q m") + (b_O if use_b_O else 0)


def test_accepts_right_answers(capsys):
    check_attention_pattern(pattern)
    check_attention_layer(layer)
    assert capsys.readouterr().out.count("Correct") == 2


def test_rejects_wrong_answers():
    with pytest.raises(AssertionError, match="causal mask"):
        check_attention_pattern(lambda q, k: pattern(q, k, mask=False))
    with pytest.raises(AssertionError, match="sqrt"):
        check_attention_pattern(lambda q, k: pattern(q, k, scale=False))
    with pytest.raises(AssertionError, match="sum to 1"):
        check_attention_pattern(lambda q, k: pattern(q, k) * 2)
    with pytest.raises(AssertionError, match="biases"):
        check_attention_layer(lambda *a: layer(*a, use_b_O=False))

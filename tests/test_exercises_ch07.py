"""The chapter-7 check functions accept right answers and reject wrong ones."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.exercises.ch07 import check_greedy_with_cache, check_min_p, check_top_p


def top_p_right(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    before = probs.cumsum(-1) - probs
    drop = (before >= p).scatter(-1, order, before >= p)
    return logits.masked_fill(drop, -math.inf)


def top_p_off_by_one(logits, p):  # drops the token that crosses p: keeps too few
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    drop = probs.cumsum(-1) > p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)


def min_p_right(logits, min_p):
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, -math.inf)


def min_p_absolute(logits, min_p):  # a fixed threshold, not relative to the top token
    return logits.masked_fill(logits.softmax(-1) < min_p, -math.inf)


def test_top_p_check(capsys):
    check_top_p(top_p_right)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="keeps"):
        check_top_p(top_p_off_by_one)
    with pytest.raises(AssertionError, match="shape"):
        check_top_p(lambda logits, p: logits[0])


def test_min_p_check(capsys):
    check_min_p(min_p_right)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="min_p"):
        check_min_p(min_p_absolute)
    with pytest.raises(AssertionError, match="unchanged"):
        check_min_p(lambda logits, m: min_p_right(logits, m) * 2)


def greedy_cached(model, tokens, n):
    cache = model.new_cache(tokens.shape[0])
    logits = model(tokens, cache=cache)
    out = tokens
    for _ in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
        logits = model(nxt, cache=cache)
    return out


def greedy_uncached(model, tokens, n):
    for _ in range(n):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def test_greedy_with_cache_check(capsys):
    check_greedy_with_cache(greedy_cached)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="cache"):
        check_greedy_with_cache(greedy_uncached)  # right tokens, but no cache
    with pytest.raises(AssertionError, match="differ"):
        check_greedy_with_cache(lambda m, t, n: greedy_cached(m, t, n).flip(0))

"""Checks for the exercises of chapter 00 (meet the reference)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def check_top_k_tokens(top_k_tokens: Callable, seed: int = 0) -> None:
    """Check ``top_k_tokens(logits, k) -> (ids, probs)`` against softmax + topk on random logits."""
    gen = torch.Generator().manual_seed(seed)
    for k in (1, 5, 10):
        logits = torch.randn(1000, generator=gen) * 3
        ids, probs = top_k_tokens(logits, k)
        expected = logits.softmax(-1).topk(k)
        ids, probs = list(map(int, ids)), [float(p) for p in probs]
        if ids != expected.indices.tolist():
            raise AssertionError(
                f"k={k}: got ids {ids}, expected {expected.indices.tolist()} (most likely first)"
            )
        torch.testing.assert_close(
            torch.tensor(probs),
            expected.values,
            atol=1e-6,
            rtol=1e-5,
            msg=f"k={k}: the probabilities should be softmax(logits) at those ids",
        )
    print("Correct: top_k_tokens returns the k most likely tokens and their probabilities.")

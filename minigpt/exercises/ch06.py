"""Checks for the exercises of chapter 06 (training)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from minigpt.train import TrainConfig, lm_loss, lr_at


def check_next_token_loss(loss_fn: Callable, seed: int = 0) -> None:
    """Check ``loss_fn(logits[batch, pos, d_vocab], tokens[batch, pos]) -> scalar``.

    The logits at position ``p`` predict the token at ``p + 1``, so the loss pairs
    ``logits[:, :-1]`` with ``tokens[:, 1:]`` and averages over every pair.
    """
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, 11, generator=gen)
    tokens = torch.randint(0, 11, (3, 7), generator=gen)
    got = loss_fn(logits, tokens)
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise AssertionError(f"expected a scalar tensor, got {type(got).__name__} {got!r:.60}")
    got = got.reshape(())
    expected = lm_loss(logits[:, :-1], tokens[:, 1:])
    unshifted = lm_loss(logits, tokens)
    backwards = lm_loss(logits[:, 1:], tokens[:, :-1])
    if torch.allclose(got, unshifted, atol=1e-5):
        raise AssertionError(
            "you compare logits[:, p] with tokens[:, p]: that asks the model to predict the "
            "token it is looking at. Shift: logits[:, :-1] predict tokens[:, 1:]"
        )
    if torch.allclose(got, backwards, atol=1e-5):
        raise AssertionError("shifted the wrong way: logits[:, :-1] predict tokens[:, 1:]")
    probs = torch.softmax(logits[:, :-1], -1).gather(-1, tokens[:, 1:, None])
    if torch.allclose(got, -probs.mean(), atol=1e-5) or torch.allclose(got, -probs.log().sum()):
        raise AssertionError("use the mean of -log(probability of the right token)")
    torch.testing.assert_close(
        got,
        expected,
        atol=1e-5,
        rtol=1e-5,
        msg="expected the mean cross-entropy of the shifted pairs",
    )
    print(f"Correct: loss {float(got):.4f}, the mean cross-entropy of next-token predictions.")


def check_lr_schedule(schedule: Callable) -> None:
    """Check ``schedule(step, max_steps, warmup_steps, lr, min_lr) -> float``.

    Linear warmup from ``lr / warmup_steps`` (at step 0) to ``lr`` (at step
    ``warmup_steps``), then half a cosine from ``lr`` down to ``min_lr`` at ``max_steps``.
    """
    cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    for step in (0, 5, 9, 10, 30, 55, 80, 100):
        got = float(schedule(step, cfg.max_steps, cfg.warmup_steps, cfg.lr, cfg.min_lr))
        want = lr_at(step, cfg)
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12):
            continue
        where = "during warmup" if step < cfg.warmup_steps else "during the decay"
        linear = cfg.lr - (cfg.lr - cfg.min_lr) * (step - cfg.warmup_steps) / 90
        hint = (
            " (that is a straight line; the decay follows half a cosine)"
            if step >= cfg.warmup_steps and math.isclose(got, linear, rel_tol=1e-6)
            else ""
        )
        raise AssertionError(
            f"at step {step} ({where}) expected {want:.6g}, got {got:.6g}{hint}; with "
            f"max_steps={cfg.max_steps}, warmup_steps={cfg.warmup_steps}, lr={cfg.lr}, "
            f"min_lr={cfg.min_lr}"
        )
    print("Correct: linear warmup, then cosine decay to min_lr.")

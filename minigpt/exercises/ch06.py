"""Checks for the exercises of chapter 06 (training).

Each ``check_*`` runs the reader's function beside :mod:`minigpt.train` on the same input,
prints a one-line verdict when they agree, and raises ``AssertionError`` saying what
differs, and the likely cause, when they do not. A typical mistake is recognised by
computing the known-wrong variant and comparing the reader's answer with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch06 as solutions
from minigpt.train import TrainConfig, lm_loss, lr_at


def _scalar(got) -> torch.Tensor:
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise AssertionError(
            f"expected a scalar tensor (the mean loss), got {type(got).__name__} "
            f"{tuple(got.shape) if isinstance(got, torch.Tensor) else got!r:.60}"
        )
    return got.reshape(()).detach().float()


def _loss_mistakes(logits: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The losses that typical mistakes compute, each with the diagnosis that names it."""
    inputs, targets = logits[:, :-1], tokens[:, 1:]
    n_vocab = logits.shape[-1]
    probs = inputs.softmax(-1).gather(-1, targets[..., None])
    return {
        "no shift: you compare logits[:, p] with tokens[:, p], which asks the model to "
        "predict the token it is looking at. Shift: logits[:, :-1] predict tokens[:, 1:]": (
            lm_loss(logits, tokens)
        ),
        "shifted the wrong way: you pair logits[:, 1:] with tokens[:, :-1] (each position "
        "predicting the token before it). logits[:, :-1] predict tokens[:, 1:]": (
            lm_loss(logits[:, 1:], tokens[:, :-1])
        ),
        "you sum the per-position losses: take their mean (F.cross_entropy's default "
        "reduction), so the loss does not grow with the batch and the window": (
            F.cross_entropy(inputs.flatten(0, 1), targets.flatten(), reduction="sum")
        ),
        "softmax applied before F.cross_entropy: it expects raw logits and applies "
        "log_softmax itself, so the softmax is applied twice. Pass the logits": (
            F.cross_entropy(inputs.softmax(-1).flatten(0, 1), targets.flatten())
        ),
        "you average the probabilities of the right tokens; the loss is the mean of "
        "-log(probability of the right token)": -probs.mean(),
        "you take minus the raw logit of the right token; the log-probabilities come "
        f"from log_softmax over the {n_vocab} logits first": (
            -inputs.gather(-1, targets[..., None]).mean()
        ),
    }


@exercise(solutions.next_token_loss)
def check_next_token_loss(loss_fn: Callable, ref=None, seed: int = 0) -> None:
    """Check ``loss_fn(logits[batch, pos, d_vocab], tokens[batch, pos]) -> scalar``.

    The logits at position ``p`` predict the token at ``p + 1``, so the loss pairs
    ``logits[:, :-1]`` with ``tokens[:, 1:]`` and averages the cross-entropy over every
    pair. The answer is compared with :func:`minigpt.train.lm_loss` on random logits
    (tolerance 1e-5) and, when ``ref`` (a :class:`minigpt.reference.Reference`, or anything
    with an ``hf_model``) is given, with the loss Hugging Face's GPT-2 computes itself from
    ``labels=tokens``.
    """
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, 11, generator=gen) * 2
    tokens = torch.randint(0, 11, (3, 7), generator=gen)
    with torch.no_grad():
        got = _scalar(loss_fn(logits, tokens))
    expected = lm_loss(logits[:, :-1], tokens[:, 1:])
    if not torch.allclose(got, expected, atol=1e-5, rtol=1e-5):
        for cause, wrong in _loss_mistakes(logits, tokens).items():
            if torch.allclose(got, wrong.float(), atol=1e-5, rtol=1e-5):
                raise AssertionError(
                    f"loss {float(got):.4f}, expected {float(expected):.4f}. Likely cause: {cause}."
                )
        raise AssertionError(
            f"loss {float(got):.4f}, expected {float(expected):.4f} (the mean cross-entropy "
            "of logits[:, :-1] against tokens[:, 1:], random logits [3, 7, 11])"
        )
    message = f"Correct: loss {float(got):.4f} equals minigpt.train.lm_loss"
    if ref is not None:
        hf = ref.hf_model
        ids = torch.randint(0, hf.config.vocab_size, (2, 12), generator=gen)
        ids = ids.to(next(hf.parameters()).device)
        with torch.no_grad():
            out = hf(input_ids=ids, labels=ids)
            got = _scalar(loss_fn(out.logits, ids)).cpu()
        if not torch.allclose(got, out.loss.float().cpu(), atol=1e-4, rtol=1e-5):
            raise AssertionError(
                f"on GPT-2's logits your loss is {float(got):.4f}, Hugging Face's "
                f"(labels=tokens) {float(out.loss):.4f}: does your function assume a "
                "vocabulary size or a batch shape?"
            )
        message += f" and Hugging Face's GPT-2 loss ({float(got):.4f}) on its logits"
    print(message + ".")


@exercise(solutions.schedule)
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
        late = cfg.lr * step / cfg.warmup_steps
        if step >= cfg.warmup_steps and math.isclose(got, linear, rel_tol=1e-6):
            hint = " (that is a straight line; the decay follows half a cosine)"
        elif step < cfg.warmup_steps and math.isclose(got, late, rel_tol=1e-6):
            hint = " (warmup off by one: step 0 must already get lr / warmup_steps, not 0)"
        else:
            hint = ""
        raise AssertionError(
            f"at step {step} ({where}) expected {want:.6g}, got {got:.6g}{hint}; with "
            f"max_steps={cfg.max_steps}, warmup_steps={cfg.warmup_steps}, lr={cfg.lr}, "
            f"min_lr={cfg.min_lr}"
        )
    print("Correct: linear warmup, then cosine decay to min_lr, as minigpt.train.lr_at.")

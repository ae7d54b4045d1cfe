import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.exercises.ch06 import check_lr_schedule, check_next_token_loss


def next_token_loss(logits, tokens):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def schedule(step, max_steps, warmup_steps, lr, min_lr):
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def test_accepts_right_answers(capsys):
    check_next_token_loss(next_token_loss)
    check_lr_schedule(schedule)
    assert capsys.readouterr().out.count("Correct") == 2


def test_rejects_wrong_losses():
    def flat(logits, tokens):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))

    with pytest.raises(AssertionError, match="predict the token it is looking at"):
        check_next_token_loss(flat)
    with pytest.raises(AssertionError, match="wrong way"):
        check_next_token_loss(lambda lg, t: next_token_loss(lg.flip(1), t.flip(1)))
    with pytest.raises(AssertionError, match="mean of -log"):
        check_next_token_loss(
            lambda lg, t: -torch.softmax(lg[:, :-1], -1).gather(-1, t[:, 1:, None]).mean()
        )
    with pytest.raises(AssertionError, match="scalar"):
        check_next_token_loss(lambda lg, t: lg.sum(-1))


def test_rejects_wrong_schedules():
    def linear_decay(step, max_steps, warmup_steps, lr, min_lr):
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        return lr - (lr - min_lr) * (step - warmup_steps) / (max_steps - warmup_steps)

    with pytest.raises(AssertionError, match="straight line"):
        check_lr_schedule(linear_decay)
    with pytest.raises(AssertionError, match="at step 0 \\(during warmup\\)"):
        check_lr_schedule(lambda s, m, w, lr, mn: schedule(s, m, w, lr, mn) if s >= w else lr)

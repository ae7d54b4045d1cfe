import math
from types import SimpleNamespace

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


def test_compares_with_hugging_face_loss(capsys, tiny):
    _, hf = tiny
    check_next_token_loss(next_token_loss, ref=SimpleNamespace(hf_model=hf))
    assert "Hugging Face's GPT-2 loss" in capsys.readouterr().out


def flat(logits, tokens):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1))


WRONG_LOSSES = {
    "no shift": flat,
    "wrong way": lambda lg, t: next_token_loss(lg.flip(1), t.flip(1)),
    "you sum": lambda lg, t: F.cross_entropy(
        lg[:, :-1].flatten(0, 1), t[:, 1:].flatten(), reduction="sum"
    ),
    "softmax applied before": lambda lg, t: next_token_loss(lg.softmax(-1), t),
    "average the probabilities": (
        lambda lg, t: -torch.softmax(lg[:, :-1], -1).gather(-1, t[:, 1:, None]).mean()
    ),
    "log_softmax": lambda lg, t: -lg[:, :-1].gather(-1, t[:, 1:, None]).mean(),
    "scalar": lambda lg, t: lg.sum(-1),
    "expected": lambda lg, t: next_token_loss(lg, t) + 0.1,
}


@pytest.mark.parametrize("diagnosis", WRONG_LOSSES)
def test_rejects_wrong_losses(diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_next_token_loss(WRONG_LOSSES[diagnosis])


def test_rejects_wrong_schedules():
    def linear_decay(step, max_steps, warmup_steps, lr, min_lr):
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        return lr - (lr - min_lr) * (step - warmup_steps) / (max_steps - warmup_steps)

    def warmup_from_zero(step, max_steps, warmup_steps, lr, min_lr):
        if step < warmup_steps:
            return lr * step / warmup_steps
        return schedule(step, max_steps, warmup_steps, lr, min_lr)

    with pytest.raises(AssertionError, match="straight line"):
        check_lr_schedule(linear_decay)
    with pytest.raises(AssertionError, match="warmup off by one"):
        check_lr_schedule(warmup_from_zero)
    with pytest.raises(AssertionError, match="at step 0 \\(during warmup\\)"):
        check_lr_schedule(lambda s, m, w, lr, mn: schedule(s, m, w, lr, mn) if s >= w else lr)

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from minigpt.exercises import ch06
from minigpt.exercises.ch06 import (
    check_lr_schedule,
    check_make_optimizer,
    check_next_token_loss,
    check_train_step,
)


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


# -- one training step and the optimizer's groups -------------------------------------------


def train_step(model, optimizer, tokens, scheduler, max_norm):
    optimizer.zero_grad(set_to_none=False)  # before the backward pass: as right as after
    log_probs = model(tokens[:, :-1]).log_softmax(-1)
    loss = -log_probs.gather(-1, tokens[:, 1:, None]).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    return loss.detach()  # a 0-d tensor is a loss too


def step_with(clip=True, zero="after", schedule="after", shift=True, window=False):
    """train_step with one mistake."""

    def step(model, optimizer, tokens, scheduler, max_norm):
        logits = model(tokens if window else tokens[:, :-1])
        targets = tokens[:, 1:] if shift else tokens[:, :-1]
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
        if zero == "before step":
            optimizer.zero_grad()
        if clip == "before step":
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if schedule == "first":
            scheduler.step()
        optimizer.step()
        if clip == "after step":
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if schedule == "after":
            scheduler.step()
        if zero == "after":
            optimizer.zero_grad()
        return loss.item()

    return step


def shifted_twice(model, optimizer, tokens, scheduler, max_norm):
    """next_token_loss, which shifts by itself, on logits already shifted."""
    loss = next_token_loss(model(tokens[:, :-1]), tokens[:, 1:])
    loss.backward()
    optimizer.step()
    return loss.item()


WRONG_STEPS = {
    "gradients accumulate": step_with(clip="before step", zero="never"),
    "not clipped before optimizer.step": step_with(clip="after step"),
    "not clipped": step_with(clip=False),
    "learning rate never moves": step_with(clip="before step", schedule="never"),
    "scheduler.step\\(\\) comes before": step_with(clip="before step", schedule="first"),
    "step sees no gradient|did not move": step_with(clip="before step", zero="before step"),
    "no shift": step_with(clip="before step", shift=False),
    "whole window": step_with(clip="before step", window=True),
    "shifted twice": shifted_twice,
    "must return the loss": lambda *args: None,
}


def test_train_step_accepts_right_answers(capsys):
    check_train_step(train_step)
    check_train_step(lambda *args: step_with(clip="before step")(*args))
    assert capsys.readouterr().out.count("Correct") == 2


# One wrong step calls the scheduler first on purpose; PyTorch warns about exactly that.
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
@pytest.mark.parametrize("diagnosis", WRONG_STEPS)
def test_train_step_diagnoses(diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_train_step(WRONG_STEPS[diagnosis])


def test_train_step_check_has_a_schedule_and_clipping_to_find():
    """The claims of the check's setup: the learning rate changes at every step checked and
    every gradient is longer than the clip, so a skipped schedule or clip shows."""
    model, data, cfg = ch06._step_setup(0)
    run = ch06._new_run(model, data, cfg)
    steps = [run.optimizer_step() for _ in range(ch06.STEPS)]
    lrs = [lr for _, _, lr in steps]
    assert len(set(lrs)) == ch06.STEPS
    assert all(norm > cfg.grad_clip for _, norm, _ in steps)


def groups(model, decays, weight_decay):
    decay = [p for n, p in model.named_parameters() if decays(n, p)]
    rest = [p for n, p in model.named_parameters() if not decays(n, p)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def matrix(name, p):
    return p.ndim >= 2 and not name.rsplit(".", 1)[-1].startswith("b_")


def make_optimizer(model, lr, weight_decay, betas):
    return torch.optim.AdamW(groups(model, matrix, weight_decay), lr=lr, betas=betas)


def by_name(model, lr, weight_decay, betas):
    """Another right answer: in this model the names of the matrices start with W_."""
    rule = lambda n, p: n.rsplit(".", 1)[-1].startswith("W_")
    return torch.optim.AdamW(groups(model, rule, weight_decay), lr=lr, betas=betas)


EMBEDDINGS = ("embed.W_E", "pos_embed.W_pos")
WRONG_OPTIMIZERS = {
    "every parameter decays:": lambda m, lr, wd, b: torch.optim.AdamW(
        m.parameters(), lr=lr, betas=b, weight_decay=wd
    ),
    "AdamW's default": lambda m, lr, wd, b: torch.optim.AdamW(m.parameters(), lr=lr, betas=b),
    "b_Q, b_K and b_V decay": lambda m, lr, wd, b: torch.optim.AdamW(
        groups(m, lambda n, p: p.ndim >= 2, wd), lr=lr, betas=b
    ),
    "embeddings W_E and W_pos do not decay": lambda m, lr, wd, b: torch.optim.AdamW(
        groups(m, lambda n, p: matrix(n, p) and n not in EMBEDDINGS, wd), lr=lr, betas=b
    ),
    "swapped": lambda m, lr, wd, b: torch.optim.AdamW(
        groups(m, lambda n, p: not matrix(n, p), wd), lr=lr, betas=b
    ),
    "nothing decays": lambda m, lr, wd, b: torch.optim.AdamW(
        groups(m, matrix, 0.0), lr=lr, betas=b
    ),
    "in no group": lambda m, lr, wd, b: torch.optim.AdamW(
        groups(m, matrix, wd)[:1], lr=lr, betas=b
    ),
    "one group only": lambda m, lr, wd, b: torch.optim.AdamW(
        [*groups(m, matrix, wd), {"params": [m.embed.W_E]}], lr=lr, betas=b
    ),
    "pass lr=lr, betas=betas": lambda m, lr, wd, b: torch.optim.AdamW(groups(m, matrix, wd)),
    "that is Adam": lambda m, lr, wd, b: torch.optim.Adam(groups(m, matrix, wd), lr=lr, betas=b),
    "give other weights": lambda m, lr, wd, b: torch.optim.AdamW(
        groups(m, matrix, wd), lr=lr, betas=b, amsgrad=True
    ),
    "must return the optimizer": lambda m, lr, wd, b: None,
}


def test_make_optimizer_accepts_right_answers(capsys):
    check_make_optimizer(make_optimizer)
    check_make_optimizer(by_name)
    assert capsys.readouterr().out.count("Correct") == 2


@pytest.mark.parametrize("diagnosis", WRONG_OPTIMIZERS)
def test_make_optimizer_diagnoses(diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_make_optimizer(WRONG_OPTIMIZERS[diagnosis])

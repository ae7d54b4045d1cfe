"""Checks for the exercises of chapter 06 (training).

Each ``check_*`` runs the reader's function beside :mod:`minigpt.train` on the same input,
prints a one-line verdict when they agree, and raises ``AssertionError`` saying what
differs, and the likely cause, when they do not. A typical mistake is recognised by
computing the known-wrong variant and comparing the reader's answer with it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.config import GPTConfig
from minigpt.data import TokenData
from minigpt.exercises.diagnose import close, matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch06 as solutions
from minigpt.model import GPT
from minigpt.train import TrainConfig, TrainRun, lm_loss, lr_at, param_groups


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


# -- one training step, and the optimizer's groups -----------------------------------------

STEPS = 4  # optimizer steps the reader's train_step takes beside the package's
# Every weight after each step, against the package's. The solution written other ways (the
# log-softmax by hand, zero_grad before the backward pass) gives the package's weights to the
# last bit here; each mistake the check names moves some weight by more than 5e-4.
WEIGHT_ATOL = 1e-6
LOSS_RTOL = 1e-6

# A small model and run, on CPU in float32 whatever the chapter's device: the learning rate
# warms up over the 4 steps checked (so it changes at every one) and the gradient's
# norm, above 0.9 on each of these steps, is always clipped to 0.5.
_STEP_MODEL = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=2, n_ctx=8, d_vocab=32)
_STEP_TRAIN = TrainConfig(
    max_steps=10,
    batch_size=4,
    lr=1e-2,
    min_lr=1e-3,
    warmup_steps=4,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=0.5,
    eval_windows=1,
    precision="float32",
    fused_adamw=False,
)


@contextlib.contextmanager
def _one_thread():
    """A model this small runs about 30 times faster on one thread than on two busy ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _step_setup(seed: int) -> tuple[GPT, TokenData, TrainConfig]:
    """The same random model and data for every run of a check (the global RNG untouched)."""
    ids = np.random.default_rng(seed).integers(0, _STEP_MODEL.d_vocab, 2000).astype(np.uint16)
    data = TokenData(ids, vocab_size=_STEP_MODEL.d_vocab, val_fraction=0.1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(_STEP_MODEL)
    return model, data, _STEP_TRAIN.replace(seed=seed)


def _new_run(model: GPT, data: TokenData, cfg: TrainConfig) -> TrainRun:
    """The package's state of a run on a copy of ``model``: optimizer, schedule, data order."""
    return TrainRun(copy.deepcopy(model), data, cfg, out_dir=None, device="cpu", meta=None)


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _flat(weights: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([w.flatten() for w in weights.values()])


def _package_steps(model, data, cfg, steps: int = STEPS) -> tuple[list[float], list[dict]]:
    """The losses of ``minigpt.train``'s own ``TrainRun.optimizer_step`` and the weights after
    each step."""
    run = _new_run(model, data, cfg)
    losses, weights = [], []
    for _ in range(steps):
        loss, _, _ = run.optimizer_step()
        losses.append(loss)
        weights.append(_weights(run.model))
    return losses, weights


def _steps_with(step: Callable, model, data, cfg, steps: int = STEPS, optimizer=None):
    """The losses and the weights after each step of ``step(model, optimizer, tokens,
    scheduler, max_norm)`` on the package's batches, with the package's optimizer and
    schedule unless ``optimizer`` (``make_optimizer(model)``) is given."""
    run = _new_run(model, data, cfg)
    opt, sched = run.optimizer, run.scheduler
    if optimizer is not None:
        opt = optimizer(run.model)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, cfg) / cfg.lr)
    losses, weights = [], []
    for _ in range(steps):
        windows = data.sample(cfg.batch_size, run.n_ctx, run.generator)
        losses.append(step(run.model, opt, windows, sched, cfg.grad_clip))
        weights.append(_weights(run.model))
    return losses, weights


def _wrong_step(zero_grad="after", clip="norm", schedule="after", step=True) -> Callable:
    """A train_step with one of the usual mistakes (the defaults give a right one)."""

    def train_step(model, optimizer, tokens, scheduler, max_norm):
        loss = lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
        loss.backward()
        if zero_grad == "before step":
            optimizer.zero_grad(set_to_none=False)
        if clip == "norm":
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        if schedule == "before":
            scheduler.step()
        if step:
            optimizer.step()
        if schedule == "after":
            scheduler.step()
        if zero_grad == "after":
            optimizer.zero_grad()
        return loss.item()

    return train_step


_STEP_MISTAKES = [
    (
        dict(zero_grad="never"),
        "the gradients accumulate from step to step: loss.backward() adds to every p.grad, "
        "it does not replace it, so call optimizer.zero_grad() once the step is taken",
    ),
    (
        dict(clip="none"),
        "the gradient is not clipped before optimizer.step() (clipped after the step, or not "
        "at all; clip_grad_value_, which clips each entry, finds none above max_norm here): "
        "call torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) between "
        "loss.backward() and optimizer.step()",
    ),
    (
        dict(schedule="never"),
        "the learning rate never moves: call scheduler.step() after optimizer.step(), once a step",
    ),
    (
        dict(schedule="before"),
        "scheduler.step() comes before optimizer.step(), so every step takes the learning "
        "rate of the step after it: step the optimizer first, then the scheduler",
    ),
    (
        dict(step=False),
        "the weights did not move: call optimizer.step() after loss.backward()",
    ),
    (
        dict(zero_grad="before step"),
        "optimizer.zero_grad() comes between loss.backward() and optimizer.step(), so the "
        "step sees no gradient (only the weight decay moves the weights): zero the gradients "
        "after the step, or before the backward pass",
    ),
]


def _loss_of(got, step: int) -> float:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        return float(got.detach())
    if isinstance(got, numbers.Real) and not isinstance(got, bool):
        return float(got)
    raise AssertionError(
        f"train_step must return the loss of its batch, a float; step {step + 1} returned "
        f"{type(got).__name__} {got!r:.60}"
    )


def _largest_difference(got: dict, want: dict) -> str:
    name = max(want, key=lambda n: float((got[n] - want[n]).abs().max()))
    return f"{float((got[name] - want[name]).abs().max()):.3g} on {name}"


def _step_mistake(got: dict, model, data, cfg) -> str:
    """The usual mistake whose weights after ``STEPS`` steps are ``got``, if any."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns of the scheduler stepped first
        wrong = [
            (_flat(_steps_with(_wrong_step(**kind), model, data, cfg)[1][-1]), hint)
            for kind, hint in _STEP_MISTAKES
        ]
    return matching_mistake(_flat(got), wrong, close(WEIGHT_ATOL)) or (
        "forward, loss, backward, clip_grad_norm_, optimizer.step(), scheduler.step(), "
        "optimizer.zero_grad(): one of them is missing or out of order"
    )


@exercise(solutions.train_step)
def check_train_step(train_step: Callable, seed: int = 0) -> None:
    """Check ``train_step(model, optimizer, tokens, scheduler, max_norm) -> loss``.

    A 2-layer GPT takes ``STEPS`` (4) steps of the reader's function, each on the batch the
    package draws, with the package's AdamW groups and schedule
    (:class:`minigpt.train.TrainRun`); the same model, from the same weights, takes 4 steps
    of :meth:`minigpt.train.TrainRun.optimizer_step`. Every weight must agree to
    ``WEIGHT_ATOL`` (1e-6) after each step, and the returned losses to ``LOSS_RTOL``
    (relative 1e-6). A wrong answer is compared with the usual mistakes (no ``zero_grad``,
    no clipping or clipping after the step, the schedule not stepped or stepped first, ...).
    """
    with _one_thread():
        _check_steps(train_step, seed)


def _check_steps(train_step: Callable, seed: int) -> None:
    model, data, cfg = _step_setup(seed)
    want_losses, want = _package_steps(model, data, cfg)
    try:
        got_losses, got = _steps_with(train_step, model, data, cfg)
    except ValueError as err:
        if "exceeds the context" not in str(err):
            raise
        raise AssertionError(
            f"the model was given the whole window ({err}). A window holds n_ctx + 1 tokens: "
            "the model reads tokens[:, :-1], and tokens[:, 1:] are its targets"
        ) from None
    got_losses = [_loss_of(loss, i) for i, loss in enumerate(got_losses)]
    if not math.isclose(got_losses[0], want_losses[0], rel_tol=LOSS_RTOL):
        generator = torch.Generator().manual_seed(cfg.seed)  # the run's first batch
        first = data.sample(cfg.batch_size, model.cfg.n_ctx, generator)
        with torch.no_grad():
            logits = model(first[:, :-1])
        wrong_losses = [
            (
                float(lm_loss(logits, first[:, :-1])),
                "no shift: the logits at position p predict tokens[:, p + 1], so the targets "
                "are tokens[:, 1:]",
            ),
            (
                float(lm_loss(logits[:, :-1], first[:, 2:])),
                "shifted twice: next_token_loss(logits, tokens) shifts by itself, so it wants "
                "the logits of the whole tokens it is given; here the model reads "
                "tokens[:, :-1], so take the cross-entropy against tokens[:, 1:] directly",
            ),
        ]
        hint = (
            matching_mistake(
                got_losses[0], wrong_losses, lambda a, b: math.isclose(a, b, rel_tol=1e-5)
            )
            or "the loss is the mean cross-entropy of model(tokens[:, :-1]) against tokens[:, 1:]"
        )
        raise AssertionError(
            f"the loss of the first step is {got_losses[0]:.5f}, the package's "
            f"{want_losses[0]:.5f}: {hint}"
        )
    same = close(WEIGHT_ATOL)
    for i in range(STEPS):
        if not same(_flat(got[i]), _flat(want[i])):
            raise AssertionError(
                f"after step {i + 1} of {STEPS} your weights differ from the package's "
                f"(largest difference {_largest_difference(got[i], want[i])}, atol "
                f"{WEIGHT_ATOL:g}). Likely cause: {_step_mistake(got[-1], model, data, cfg)}"
            )
        if not math.isclose(got_losses[i], want_losses[i], rel_tol=LOSS_RTOL):
            raise AssertionError(
                f"the weights agree, but the loss returned at step {i + 1} is "
                f"{got_losses[i]:.5f}, the package's {want_losses[i]:.5f}: return the loss "
                "of this step's batch"
            )
    print(
        f"Correct: your weights equal those of minigpt.train's TrainRun.optimizer_step "
        f"after each of {STEPS} steps (atol {WEIGHT_ATOL:g}), and so do the losses."
    )


def _decay_of(optimizer, model) -> dict[str, float | None]:
    """Each parameter's weight decay in ``optimizer`` (None: in no group), by name."""
    by_id = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            by_id[id(p)] = group["weight_decay"]
    return {name: by_id.get(id(p)) for name, p in model.named_parameters()}


def _group_mistakes(model, weight_decay: float) -> list[tuple[dict, str]]:
    """The decays that the usual wrong groups give, each with its diagnosis."""
    names = [name for name, _ in model.named_parameters()]
    ndim = {name: p.ndim for name, p in model.named_parameters()}
    embeddings = ("embed.W_E", "pos_embed.W_pos")
    right = _decay_of(torch.optim.AdamW(param_groups(model, weight_decay)), model)

    def decay_where(rule) -> dict:
        return {name: weight_decay if rule(name) else 0.0 for name in names}

    return [
        (
            decay_where(lambda n: True),
            f"every parameter decays: biases and LayerNorm gains take weight_decay=0.0, in "
            f"a group of their own (AdamW(model.parameters(), weight_decay={weight_decay}) "
            "puts them all in one group)",
        ),
        (
            {name: 0.01 for name in names},
            "every parameter decays by 0.01, AdamW's default: pass two groups, the matrices "
            "with weight_decay and the rest with 0.0",
        ),
        (
            decay_where(lambda n: False),
            "nothing decays: the matrices' group takes weight_decay",
        ),
        (
            decay_where(lambda n: ndim[n] >= 2),
            "the attention biases b_Q, b_K and b_V decay: they are [n_heads, d_head], 2-D, but "
            "biases all the same; leave out every name whose last part starts with b_",
        ),
        (
            {name: weight_decay if decay == 0 else 0.0 for name, decay in right.items()},
            "the groups are swapped: the biases and LayerNorm gains decay, the matrices do not",
        ),
        (
            {n: 0.0 if n in embeddings else d for n, d in right.items()},
            "the embeddings W_E and W_pos do not decay; in minigpt.train they are matrices "
            "like the others and decay with them",
        ),
    ]


@exercise(solutions.make_optimizer)
def check_make_optimizer(make_optimizer: Callable, seed: int = 0) -> None:
    """Check ``make_optimizer(model, lr, weight_decay, betas) -> torch.optim.AdamW``.

    On a 2-layer GPT, every parameter must be in exactly one group, with the weight decay
    :func:`minigpt.train.param_groups` gives it (``weight_decay`` for the matrices and the
    embeddings, 0 for the biases, ``b_Q[n_heads, d_head]`` included, and the LayerNorm
    gains), and every group must have the given ``lr`` and ``betas``. Then ``STEPS`` (4)
    steps of the book's training step with your optimizer must give the weights of
    :meth:`minigpt.train.TrainRun.optimizer_step` to ``WEIGHT_ATOL`` (1e-6). The values
    passed differ from AdamW's defaults, so that a default left in place shows.
    """
    with _one_thread():
        _check_groups(make_optimizer, seed)


def _check_groups(make_optimizer: Callable, seed: int) -> None:
    model, data, cfg = _step_setup(seed)
    lr, weight_decay, betas = cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2)
    try:
        optimizer = make_optimizer(model, lr, weight_decay, betas)
    except ValueError as err:
        if "more than one parameter group" not in str(err):
            raise
        raise AssertionError(
            f"torch refused the groups ({err}): put each parameter in one group only"
        ) from None
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise AssertionError(
            f"make_optimizer must return the optimizer, got {type(optimizer).__name__}"
        )
    got = _decay_of(optimizer, model)
    missing = [name for name, decay in got.items() if decay is None]
    if missing:
        raise AssertionError(
            f"{len(missing)} parameters are in no group, so they never train: {missing[:4]}"
        )
    want = _decay_of(torch.optim.AdamW(param_groups(model, weight_decay)), model)
    if got != want:
        cause = matching_mistake(got, _group_mistakes(model, weight_decay), lambda a, b: a == b)
        wrong = [f"{n}: {got[n]:g} (expected {want[n]:g})" for n in want if got[n] != want[n]]
        raise AssertionError(
            f"weight decay per parameter differs from minigpt.train.param_groups: "
            f"{'; '.join(wrong[:3])}{' ...' if len(wrong) > 3 else ''}. Likely cause: "
            f"{cause or 'decay on p.ndim >= 2, except the names that start with b_'}"
        )
    for group in optimizer.param_groups:
        if group["lr"] != lr or tuple(group["betas"]) != betas:
            raise AssertionError(
                f"a group has lr={group['lr']:g} and betas={tuple(group['betas'])}, expected "
                f"lr={lr:g} and betas={betas}: pass lr=lr, betas=betas to AdamW (its defaults "
                "are lr=1e-3, betas=(0.9, 0.999))"
            )
    if isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW):
        if not optimizer.defaults.get("decoupled_weight_decay", False):
            raise AssertionError(
                "that is Adam: its weight_decay is added to the gradient (L2), so Adam's "
                "scaling shrinks it; AdamW decouples it: torch.optim.AdamW"
            )
    want_weights = _package_steps(model, data, cfg)[1]
    got_weights = _steps_with(
        solutions.train_step,
        model,
        data,
        cfg,
        optimizer=lambda m: make_optimizer(m, lr, weight_decay, betas),
    )[1]
    if not close(WEIGHT_ATOL)(_flat(got_weights[-1]), _flat(want_weights[-1])):
        raise AssertionError(
            f"the groups are right, but {STEPS} steps with your optimizer give other weights "
            f"than the package's AdamW (largest difference "
            f"{_largest_difference(got_weights[-1], want_weights[-1])}): use "
            "torch.optim.AdamW(groups, lr=lr, betas=betas) and leave its other settings "
            "(eps, amsgrad) as they are"
        )
    decayed = sum(decay > 0 for decay in got.values())
    print(
        f"Correct: your groups decay the {decayed} matrices and embeddings and leave the "
        f"{len(got) - decayed} biases and LayerNorm gains alone, as "
        f"minigpt.train.param_groups does, and {STEPS} steps give the package's weights."
    )


# -- the learning-rate schedule ---------------------------------------------------------


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

"""Train a GPT on next-token prediction: ``train(model, data, TrainConfig(...), out_dir=...)``.

One optimizer step: draw ``batch_size`` random windows (from a seeded generator, so the
data order is reproducible and resumable), run them forward in ``grad_accum``
micro-batches, average the cross-entropy gradients, clip the global norm, take an AdamW
step (weight decay on matrices only), and move the learning rate along its schedule
(linear warmup, then cosine decay). Every so often it measures the loss on a fixed set of
validation windows and writes a checkpoint. Under ``torchrun`` it trains data-parallel
with PyTorch's ``DistributedDataParallel``; only rank 0 writes files.

The command line is ``python -m minigpt.train`` (see :mod:`minigpt.train_cli`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from minigpt.data import TokenData
from minigpt.run import TrainRun
from minigpt.train_config import TrainConfig

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "lm_loss",
    "lr_at",
    "main",
    "param_groups",
    "shakespeare_model",
    "train",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was left as it was."""


@dataclass
class TrainResult:
    """What :func:`train` did: ``status`` is ``"finished"`` or ``"interrupted"`` (Ctrl-C)."""

    status: str
    step: int
    history: list[dict] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.history if r["step"] > 0]


def lm_loss(
    logits: Float[Tensor, "batch pos d_vocab"], targets: Int[Tensor, "batch pos"]
) -> Float[Tensor, ""]:
    """Mean cross-entropy of predicting ``targets[b, p]`` from ``logits[b, p]`` (in float32)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices (and embeddings) decay; biases and LayerNorm gains do not.

    Decay pulls weights towards zero. For a matrix that limits its scale; for a bias or a
    LayerNorm gain, whose useful values sit far from zero, it would only get in the way.
    A parameter decays when it has two or more axes, unless its name starts with ``b_``
    (the attention biases ``b_Q[n_heads, d_head]`` are 2-D but still biases).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_bias = name.rsplit(".", 1)[-1].startswith("b_")
        (decay if param.ndim >= 2 and not is_bias else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (counted from 0): warmup, then cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


@contextlib.contextmanager
def _sigint_sets(flag: threading.Event):
    """While active, Ctrl-C sets ``flag`` (the loop then saves and stops); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def train(
    model: nn.Module,
    data: TokenData,
    cfg: TrainConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[int, dict, nn.Module], None] | None = None,
    meta: dict | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` and return what happened.

    Args:
        model: maps ``tokens[batch, pos]`` to ``logits[batch, pos, d_vocab]`` and has a
            ``.cfg`` (:class:`~minigpt.config.GPTConfig`), e.g. :class:`minigpt.model.GPT`.
        data: the token ids, split into training and validation.
        cfg: the run's settings.
        out_dir: where ``checkpoint.pt`` and ``metrics.jsonl`` go (``None``: nowhere).
        resume: continue from ``out_dir/checkpoint.pt``; without it an existing checkpoint
            there is an error (it is never overwritten by a new run).
        device: where to train (default: the model's device).
        progress: show a progress bar (on a terminal) with loss and tokens/s.
        callback: called as ``callback(step, record, model)`` after every step.
        meta: plain data saved in the checkpoint (e.g. the tokenizer's name).

    Raises:
        TrainingDiverged: the loss became NaN or inf (no checkpoint is written for it).
        minigpt.checkpoint.CheckpointError: ``resume`` without a usable checkpoint, a
            checkpoint of another model or config, or a new run over an old checkpoint.
    """
    run = TrainRun(model, data, cfg, out_dir=out_dir, device=device, meta=meta)
    run.start(resume)
    stop = threading.Event()
    bar = run.progress_bar(progress)
    try:
        with _sigint_sets(stop), run.profiler() as prof:
            while run.step < cfg.max_steps:
                t0 = time.perf_counter()
                loss, grad_norm, lr = run.optimizer_step()
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss is {loss} at step {run.step + 1} (learning rate {lr:.3g}); "
                        f"stopped without saving. {run.last_good()} Try a lower lr or "
                        "a smaller grad_clip."
                    )
                run.step += 1
                record = run.record(loss, grad_norm, lr, time.perf_counter() - t0)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                if prof is not None:
                    prof.step()
                if callback is not None:
                    callback(run.step, record, model)
                if stop.is_set():
                    run.save()
                    return run.result("interrupted")
    finally:
        bar.close()
        run.close()
    return run.result("finished")


def shakespeare_model(device: str | torch.device | None = None):
    """The ``tiny`` preset trained on Shakespeare: ``(GPT, BPETokenizer)``, trained only once.

    Loads ``cache_dir()/checkpoints/shakespeare-tiny/checkpoint.pt`` when it holds the
    finished run of the current preset; otherwise trains it (about two minutes on two CPU
    cores, resuming a partial run) and saves it atomically. A file lock makes processes
    that ask at the same time train it once.
    """
    from minigpt.zoo import shakespeare_model as _load

    return _load(device)


def main(argv: list[str] | None = None) -> int:
    """``python -m minigpt.train``: see ``--help``."""
    from minigpt.train_cli import main as _main

    return _main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

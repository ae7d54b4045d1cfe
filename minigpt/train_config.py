"""The settings of a training run, as one frozen dataclass (see :mod:`minigpt.train`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# Fields that may change between a run and its resumption without changing its losses.
RESUMABLE_CHANGES = (
    "max_steps",
    "eval_interval",
    "checkpoint_interval",
    "log_interval",
    "compile",
    "profile",
    "tensorboard",
)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults suit a small model on a CPU.

    ``batch_size`` counts sequences per optimizer step over every process and micro-step,
    so the same config gives the same losses on 1 or 2 processes and with any ``grad_accum``.
    """

    max_steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per optimizer step (all processes, all micro-steps)
    grad_accum: int = 1  # micro-steps per optimizer step (the batch is cut into this many)
    n_ctx: int | None = None  # tokens per training window; None: the model's n_ctx
    lr: float = 1e-3  # peak learning rate, reached after warmup
    min_lr: float = 1e-4  # learning rate at the end of the cosine decay
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps to lr
    weight_decay: float = 0.1  # AdamW decay, on matrices only (not biases or LayerNorm)
    beta1: float = 0.9
    beta2: float = 0.95  # GPT-3's value; steadier than 0.999 for transformers
    grad_clip: float = 1.0  # clip the global gradient norm to this; 0 turns clipping off
    eval_interval: int = 100  # steps between validation losses (also at step 0 and the end)
    eval_windows: int = 32  # validation windows, the same ones every time
    checkpoint_interval: int = 0  # steps between checkpoints; 0: only at the end and on Ctrl-C
    log_interval: int = 1  # steps between lines of metrics.jsonl
    seed: int = 0  # seeds the data order (and torch's global RNG for the run)
    precision: str = (
        "auto"  # auto: bfloat16 autocast on CUDA (float16 + scaler if no bf16), else float32
    )
    compile: bool = False  # torch.compile the model for the training steps
    fused_adamw: bool | None = None  # None: fused AdamW on CUDA, the default kernel elsewhere
    profile: bool = False  # write a torch.profiler trace of steps 2-4 to OUT/profile
    tensorboard: bool = False  # also write TensorBoard events to OUT/tensorboard

    def __post_init__(self) -> None:
        positive = ("max_steps", "batch_size", "grad_accum", "eval_interval", "eval_windows")
        for name in positive + ("log_interval",):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name}={value!r} must be a positive integer")
        for name in ("warmup_steps", "checkpoint_interval", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name}={value!r} must be an integer >= 0")
        if self.n_ctx is not None and self.n_ctx < 1:
            raise ValueError(f"TrainConfig.n_ctx={self.n_ctx!r} must be None or positive")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"TrainConfig.batch_size={self.batch_size} must be a multiple of "
                f"grad_accum={self.grad_accum}"
            )
        if not 0 < self.lr < 1 or not 0 <= self.min_lr <= self.lr:
            raise ValueError(
                f"TrainConfig: need 0 < lr < 1 and 0 <= min_lr <= lr, got lr={self.lr}, "
                f"min_lr={self.min_lr}"
            )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r} must be in [0, 1)")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("TrainConfig.weight_decay and grad_clip must be >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"TrainConfig.precision={self.precision!r} must be one of {', '.join(PRECISIONS)}"
            )

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: TrainConfig | dict) -> list[str]:
        """Fields (other than :data:`RESUMABLE_CHANGES`) where ``other`` differs from this."""
        theirs = other if isinstance(other, dict) else dataclasses.asdict(other)
        return [
            f"{k}: {theirs.get(k)!r} vs {v!r}"
            for k, v in dataclasses.asdict(self).items()
            if k not in RESUMABLE_CHANGES and theirs.get(k) != v
        ]

"""Train a GPT on next-token prediction: ``train(model, data, TrainConfig(...), out_dir=...)``.

One optimizer step: draw ``batch_size`` random windows (from a seeded generator, so the
data order is reproducible and resumable), run them forward in ``grad_accum``
micro-batches, average the cross-entropy gradients, clip the global norm, take an AdamW
step (weight decay on matrices only), and move the learning rate along its schedule
(linear warmup, then cosine decay). Every so often it measures the loss on a fixed set of
validation windows and writes a checkpoint. Under ``torchrun`` it trains data-parallel
with PyTorch's ``DistributedDataParallel``; only rank 0 writes files.

Everything of the loop lives here: its settings (:class:`TrainConfig`), the loss, the
schedule, the parameter groups, mixed precision and the profiler, the run's state
(:class:`TrainRun`) and :func:`train` itself. The command line is ``minigpt-train`` (or
``python -m minigpt.train``), in :mod:`minigpt.train_cli`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from minigpt.checkpoint import (
    CHECKPOINT_NAME,
    FORMAT,
    METRICS_NAME,
    VERSION,
    CheckpointError,
    check_model_config,
    load_checkpoint,
    read_metrics,
    save_atomic,
    truncate_metrics,
)
from minigpt.data import TokenData
from minigpt.files import FileLock

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainRun",
    "TrainingDiverged",
    "lm_loss",
    "lr_at",
    "param_groups",
    "train",
]

# -- the settings -------------------------------------------------------------------------

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
# Fields that may change between a run and its resumption without changing its losses.
# (Not max_steps: the cosine schedule is laid out over max_steps, so changing it changes
# every learning rate after warmup, and a resumed run would differ from an uninterrupted one.)
RESUMABLE_CHANGES = (
    "eval_interval",
    "checkpoint_interval",
    "log_interval",
    "compile",
    "profile",
    "tensorboard",
)


SEED_MAX = 2**32 - 1  # the largest seed every generator the run seeds accepts (numpy's too)


def setting(default, help: str, low=None, high=None, *, open_low=False, open_high=False,
            choices=None, flag: bool = True):  # fmt: skip
    """A :class:`TrainConfig` field with what ``minigpt-train --help`` says of it and the values
    it allows (``low``/``high`` closed unless ``open_low``/``open_high``; ``None``: no bound).
    ``flag=False``: set in a preset or in code only. Read by ``__post_init__`` and by
    :mod:`minigpt.train_cli`, which makes a flag of each such field."""
    bounds = (low, high, open_low, open_high)
    meta = {"help": help, "bounds": bounds, "choices": choices, "flag": flag}
    return field(default=default, metadata=meta)


def allowed(f) -> str:
    """The values a :func:`setting` allows, in words: ``an integer in [1, inf)``."""
    if f.metadata["choices"]:
        return "one of " + ", ".join(f.metadata["choices"])
    low, high, open_low, open_high = f.metadata["bounds"]
    kind = "an integer" if f.type.startswith("int") else "a number"
    interval = (
        f"{'(' if open_low else '['}{'-inf' if low is None else low}, "
        f"{'inf' if high is None else high}{')' if open_high or high is None else ']'}"
    )
    return f"{kind} in {interval}" + (" or None" if f.type.endswith("None") else "")


def check_setting(f, value) -> str | None:
    """Why ``value`` is not allowed for the field ``f`` (see :func:`allowed`), or None."""
    if value is None and f.type.endswith("None"):
        return None
    if f.metadata["choices"]:
        return None if value in f.metadata["choices"] else allowed(f)
    if f.type.startswith("bool"):
        return None if isinstance(value, bool) else "True or False"
    integer = f.type.startswith("int")
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        return allowed(f)
    low, high, open_low, open_high = f.metadata["bounds"]
    fits = math.isfinite(value)
    fits = fits and (low is None or (value > low if open_low else value >= low))
    fits = fits and (high is None or (value < high if open_high else value <= high))
    return None if fits else allowed(f)


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The defaults suit a small model on a CPU.

    ``batch_size`` counts sequences per optimizer step over every process and micro-step,
    so the same config gives the same losses on 1 or 2 processes and with any ``grad_accum``.
    Each field's help and allowed values are declared once, here: ``minigpt-train``'s flags
    are made from them.
    """

    max_steps: int = setting(1000, "optimizer steps", 1)
    batch_size: int = setting(32, "sequences per optimizer step, all processes together", 1)
    grad_accum: int = setting(1, "micro-steps per optimizer step (the batch is cut into them)", 1)
    n_ctx: int | None = setting(None, "tokens per training window (default: the model's)", 1)
    lr: float = setting(1e-3, "peak learning rate, reached after warmup", 0, 1,
                        open_low=True, open_high=True)  # fmt: skip
    min_lr: float = setting(1e-4, "learning rate at the end of the cosine decay", 0, flag=False)
    warmup_steps: int = setting(100, "steps of linear warmup (at most max_steps)", 0)
    weight_decay: float = setting(0.1, "AdamW decay, on matrices only", 0, flag=False)
    beta1: float = setting(0.9, "AdamW's beta1", 0, 1, open_high=True, flag=False)
    beta2: float = setting(0.95, "AdamW's beta2 (GPT-3's; steadier than 0.999)", 0, 1,
                           open_high=True, flag=False)  # fmt: skip
    grad_clip: float = setting(1.0, "clip the gradient norm to this; 0: off", 0, flag=False)
    eval_interval: int = setting(100, "steps between validation losses", 1)
    eval_windows: int = setting(32, "validation windows, the same every time", 1, flag=False)
    checkpoint_interval: int = setting(0, "steps between checkpoints (0: end and Ctrl-C only)", 0)
    log_interval: int = setting(1, "steps between lines of metrics.jsonl", 1, flag=False)
    seed: int = setting(0, "seed of the data order and the model's initialisation", 0, SEED_MAX)
    precision: str = setting("auto", "autocast dtype (auto: bfloat16 on CUDA, else float32)",
                             choices=PRECISIONS)  # fmt: skip
    compile: bool = setting(False, "torch.compile the model for the training steps")
    fused_adamw: bool | None = setting(None, "fused AdamW (None: on CUDA only)", flag=False)
    profile: bool = setting(False, "torch.profiler trace of steps 2-4 in OUT/profile")
    tensorboard: bool = setting(False, "TensorBoard events in OUT/tensorboard")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            problem = check_setting(f, getattr(self, f.name))
            if problem is not None:
                raise ValueError(
                    f"TrainConfig.{f.name}={getattr(self, f.name)!r} must be {problem}"
                )
        if self.warmup_steps > self.max_steps:
            raise ValueError(
                f"TrainConfig.warmup_steps={self.warmup_steps} exceeds max_steps={self.max_steps}: "
                "the peak learning rate would never be reached"
            )
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"TrainConfig.batch_size={self.batch_size} must be a multiple of "
                f"grad_accum={self.grad_accum}"
            )
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig: min_lr={self.min_lr} must be at most lr={self.lr}")

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: TrainConfig | dict) -> list[str]:
        """Fields (other than :data:`RESUMABLE_CHANGES`) where ``other`` differs from this."""
        theirs = other if isinstance(other, dict) else dataclasses.asdict(other)
        why = {"max_steps": " (the cosine schedule is laid out over max_steps)"}
        return [
            f"{k}: {theirs.get(k)!r} vs {v!r}{why.get(k, '')}"
            for k, v in dataclasses.asdict(self).items()
            if k not in RESUMABLE_CHANGES and theirs.get(k) != v
        ]


# -- the loss, the optimizer's groups, the schedule ---------------------------------------


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


# -- mixed precision, the profiler, TensorBoard -------------------------------------------


def precision_for(device: torch.device, precision: str) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use a gradient scaler)`` for a device and a precision name."""
    if precision == "auto":
        if device.type != "cuda":
            return None, False
        precision = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if precision == "float32":
        return None, False
    dtype = torch.bfloat16 if precision == "bfloat16" else torch.float16
    return dtype, dtype == torch.float16 and device.type == "cuda"


def step_profiler(folder: Path, device: torch.device):
    """A ``torch.profiler`` that records steps 2-4 (after a wait and a warmup step) to ``folder``.

    Call ``.step()`` after every training step; open the trace in Perfetto or TensorBoard.
    """
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    return profile(
        activities=activities,
        schedule=schedule(wait=1, warmup=1, active=3, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(folder)),
        record_shapes=True,
    )


def summary_writer(folder: Path):
    """A TensorBoard ``SummaryWriter`` (TensorBoard is optional: a clear error without it)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError(
            "TrainConfig.tensorboard=True needs the tensorboard package: "
            "`pip install tensorboard` (or the project's dev extra)"
        ) from err
    return SummaryWriter(str(folder))


# -- the state of a run -------------------------------------------------------------------


class TrainRun:
    """The state of one training run: optimizer, schedule, gradient scaler, data generator,
    step count and metrics file, and how to save all of it to a checkpoint and load it back,
    so that a resumed run takes exactly the steps the uninterrupted one would have taken."""

    def __init__(self, model, data: TokenData, cfg: TrainConfig, *, out_dir, device, meta):
        self.cfg, self.data, self.meta = cfg, data, dict(meta or {})
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.model = model.to(self.device)
        self.n_ctx = cfg.n_ctx or model.cfg.n_ctx
        if self.n_ctx > model.cfg.n_ctx:
            raise ValueError(
                f"TrainConfig.n_ctx={self.n_ctx} exceeds the model's {model.cfg.n_ctx}"
            )
        if data.vocab_size > model.cfg.d_vocab:
            raise ValueError(
                f"the data's vocab_size={data.vocab_size} exceeds the model's d_vocab="
                f"{model.cfg.d_vocab}"
            )
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if cfg.batch_size % (cfg.grad_accum * self.world):
            raise ValueError(
                f"TrainConfig.batch_size={cfg.batch_size} must be a multiple of grad_accum * "
                f"world_size = {cfg.grad_accum} * {self.world}"
            )
        self.micro = cfg.batch_size // (cfg.grad_accum * self.world)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.lm_loss = lm_loss
        fused = cfg.fused_adamw if cfg.fused_adamw is not None else self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay),
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            fused=fused or None,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_at(step, cfg) / cfg.lr
        )
        self.autocast_dtype, use_scaler = precision_for(self.device, cfg.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.history: list[dict] = []
        self.val_windows = data.fixed_windows(cfg.eval_windows, self.n_ctx, "val")
        self.step_model: nn.Module = model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.step_model = torch.compile(self.step_model)
        self._metrics = None
        self._writer = None
        self._lock: FileLock | None = None
        self._since_log = (0, 0.0)  # tokens and seconds since the last metrics line

    # -- files -----------------------------------------------------------------------

    @property
    def writes(self) -> bool:
        return self.out_dir is not None and self.rank == 0

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def start(self, resume: bool) -> None:
        path = self.checkpoint_path
        if resume and path is not None and not path.is_file():  # before any file is made
            raise CheckpointError(
                f"nothing to resume: {path} does not exist (run without resume to start "
                "a new run there). Nothing was written."
            )
        if self.writes:
            self._lock = FileLock(self.out_dir / ".lock")
            if not self._lock.acquire(wait=False):
                raise CheckpointError(
                    f"{self.out_dir} is in use by another training run (process "
                    f"{self._lock.holder()}); wait for it to finish or choose another output "
                    "folder. Nothing was changed."
                )
        if resume:
            if path is None:
                raise CheckpointError("resume=True needs out_dir, the folder of the run")
            self._load(path)
        elif path is not None and path.is_file():
            raise CheckpointError(
                f"{path} already holds a checkpoint; resume it (resume=True, --resume) or "
                "choose another output folder. Nothing was overwritten."
            )
        else:
            torch.manual_seed(self.cfg.seed)
        if self.writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            metrics = self.out_dir / METRICS_NAME
            if resume:
                truncate_metrics(metrics, self.step)
                self.history = read_metrics(metrics) if metrics.is_file() else []
            self._metrics = open(metrics, "a" if resume else "w", encoding="utf-8")
            if self.cfg.tensorboard:
                self._writer = summary_writer(self.out_dir / "tensorboard")
        if not resume:
            self._log({"step": 0, "loss": self.evaluate("train"), **self._eval()})

    def _state(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "step": self.step,
            "model_config": dataclasses.asdict(self.model.cfg),
            "train_config": dataclasses.asdict(self.cfg),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "data": self.generator.get_state(),
            },
            "meta": self.meta,
        }

    def save(self) -> None:
        if self.writes:
            save_atomic(self._state(), self.checkpoint_path)
        if self.distributed:
            dist.barrier()

    def last_good(self) -> str:
        path = self.checkpoint_path
        if path is not None and path.is_file():
            return f"The last good checkpoint, {path}, is untouched."
        return "No checkpoint was written."

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        check_model_config(state, self.model.cfg, path)
        diffs = self.cfg.differences(state["train_config"])
        if diffs:
            raise CheckpointError(
                f"checkpoint {path} was made with other training settings ({'; '.join(diffs)}); "
                "resume with the same arguments"
            )
        saved = state.get("meta") or {}
        changed = [
            f"{k}: {saved[k]!r} vs {v!r}" for k, v in self.meta.items() if saved.get(k, v) != v
        ]
        if changed:
            raise CheckpointError(
                f"checkpoint {path} was trained on other data ({'; '.join(changed)}); "
                "resume with the same corpus and tokenizer"
            )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        self.generator.set_state(state["rng"]["data"].cpu())
        self.step = int(state["step"])

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- steps -----------------------------------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def optimizer_step(self) -> tuple[float, float, float]:
        """One optimizer step; returns (mean loss over the global batch, grad norm, lr used)."""
        cfg = self.cfg
        windows = self.data.sample(cfg.batch_size, self.n_ctx, self.generator)
        share = cfg.batch_size // self.world  # this process's rows of the global batch
        local = windows[self.rank * share : (self.rank + 1) * share].to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        micro_batches = local.split(self.micro)
        for i, micro in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext()
            if self.distributed and not last:
                sync = self.step_model.no_sync()  # average gradients across processes once
            with sync, self._autocast():
                loss = self.lm_loss(self.step_model(micro[:, :-1]), micro[:, 1:])
            with sync:
                self.scaler.scale(loss / cfg.grad_accum).backward()
            loss_sum += loss.detach()
        if self.distributed:
            dist.all_reduce(loss_sum)
        loss = float(loss_sum) / (cfg.grad_accum * self.world)
        lr = self.optimizer.param_groups[0]["lr"]
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            return loss, float("nan"), lr
        self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss, float(grad_norm), lr

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> float:
        """Mean loss over the fixed windows of a split (the validation ones by default)."""
        windows = (
            self.val_windows
            if split == "val"
            else self.data.fixed_windows(self.cfg.eval_windows, self.n_ctx, split)
        )
        was_training = self.model.training
        self.model.eval()
        total = 0.0
        for chunk in windows.to(self.device).split(max(self.micro, 16)):
            with self._autocast():
                total += float(self.lm_loss(self.model(chunk[:, :-1]), chunk[:, 1:])) * len(chunk)
        self.model.train(was_training)
        return total / len(windows)

    def _eval(self) -> dict:
        val = self.evaluate("val")
        return {"val_loss": val, "val_ppl": math.exp(min(val, 50.0))}

    def record(self, loss: float, grad_norm: float, lr: float, seconds: float) -> dict:
        cfg = self.cfg
        tokens = cfg.batch_size * self.n_ctx
        rec = {
            "step": self.step,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": self.step * tokens,
            "tokens_per_s": tokens / max(seconds, 1e-9),
            "time": time.time(),
        }
        evaluated = self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps
        if evaluated:
            rec.update(self._eval())
        if evaluated or self.step % cfg.log_interval == 0 or self.step == cfg.max_steps:
            self._log(rec)
        at_interval = cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0
        if at_interval or self.step == cfg.max_steps:
            self.save()
        return rec

    def _log(self, rec: dict) -> None:
        self.history.append(rec)
        if self._metrics is not None:
            self._metrics.write(json.dumps(rec) + "\n")
            self._metrics.flush()
        if self._writer is not None:
            for key, value in rec.items():
                if key not in ("step", "time"):
                    self._writer.add_scalar(f"train/{key}", value, rec["step"])

    def progress_bar(self, enabled: bool):
        from tqdm import tqdm

        disable = True if not enabled or self.rank != 0 else None  # None: only on a terminal
        return tqdm(total=self.cfg.max_steps, initial=self.step, desc="training", disable=disable)

    def profiler(self):
        if not self.cfg.profile or self.out_dir is None:
            return contextlib.nullcontext()
        return step_profiler(self.out_dir / "profile", self.device)

    def result(self, status: str) -> TrainResult:
        return TrainResult(status, self.step, self.history, self.out_dir)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# -- the loop -----------------------------------------------------------------------------


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
    try:
        run.start(resume)
    except BaseException:
        run.close()  # releases the run folder's lock
        raise
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


if __name__ == "__main__":  # python -m minigpt.train runs the command line, minigpt.train_cli
    import runpy

    runpy.run_module("minigpt.train_cli", run_name="__main__", alter_sys=True)

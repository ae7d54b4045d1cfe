"""Train a GPT on next-token prediction: ``train(model, data, TrainConfig(...), out_dir=...)``.

One optimizer step: draw ``batch_size`` random windows (from a seeded generator, so the data
order is reproducible and resumable), run them forward in ``grad_accum`` micro-batches,
average the cross-entropy gradients, clip the global norm, take an AdamW step (weight decay
on matrices only), and move the learning rate along its schedule (linear warmup, then
cosine decay). Every so often it measures the loss on fixed validation windows and writes a
checkpoint. Under ``torchrun`` it trains data-parallel (``DistributedDataParallel``); only
rank 0 writes files. The command line, ``minigpt-train``, is :mod:`minigpt.train_cli`.
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
    METRICS_NAME,
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    read_metrics,
    truncate_metrics,
)
from minigpt.data import TokenData
from minigpt.files import FileLock
from minigpt.precision import DTYPES, PRECISIONS, resolve_precision
from minigpt.settings import Allowed, check_fields, flag, setting

__all__ = ["TrainConfig", "TrainResult", "TrainRun", "TrainingDiverged", "lm_loss", "lr_at",
           "param_groups", "train"]  # fmt: skip

# -- the settings -------------------------------------------------------------------------


SEEDS = Allowed(int, low=0, high=2**64 - 1)  # what torch's generators take: 64 unsigned bits
POSITIVE, COUNT, BOOL = Allowed(int, low=1), Allowed(int, low=0), Allowed(bool)
UNIT = Allowed(float, low=0, below=1)  # [0, 1)
NONNEGATIVE = Allowed(float, low=0)


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults suit a small model on a CPU. ``batch_size`` counts sequences
    over every process and micro-step, so a config gives the same losses on 1 or 2 processes
    and with any ``grad_accum``. Each field is declared once with its allowed values and help
    (:func:`~minigpt.settings.setting`); ``minigpt-train`` makes an option of each ``flag``."""

    max_steps: int = flag(1000, POSITIVE, "optimizer steps")
    batch_size: int = flag(32, POSITIVE, "sequences per optimizer step, all processes together")
    grad_accum: int = flag(1, POSITIVE, "micro-steps per optimizer step (each gets a slice)")
    n_ctx: int | None = flag(
        None,
        Allowed(int, low=1, none=True),
        "tokens per training window (unset: the model's context)",
    )
    lr: float = flag(1e-3, Allowed(float, above=0, below=1), "peak learning rate (after warmup)")
    min_lr: float = setting(1e-4, NONNEGATIVE, "learning rate at the end of the cosine decay")
    warmup_steps: int = flag(100, COUNT, "steps of linear warmup (at most max_steps)")
    weight_decay: float = setting(0.1, NONNEGATIVE, "AdamW decay, on matrices only")
    beta1: float = setting(0.9, UNIT, "AdamW's decay of the gradient's running mean")
    beta2: float = setting(0.95, UNIT, "GPT-3's value; steadier than 0.999 for transformers")
    grad_clip: float = setting(1.0, NONNEGATIVE, "clip the gradient norm to this (0: no clipping)")
    eval_interval: int = flag(100, POSITIVE, "steps between validation losses", resumable=True)
    eval_windows: int = setting(32, POSITIVE, "validation windows, the same ones every time")
    checkpoint_interval: int = flag(
        0, COUNT, "steps between checkpoints (0: end only)", resumable=True
    )
    log_interval: int = setting(1, POSITIVE, "steps between lines of metrics.jsonl", resumable=True)
    seed: int = flag(0, SEEDS, "seed of the data order and the init")
    # auto: bfloat16 autocast where the device multiplies bf16 natively (minigpt.precision),
    # float16 and a gradient scaler on older CUDA GPUs, float32 elsewhere
    precision: str = flag("auto", Allowed(str, choices=PRECISIONS), "autocast dtype")
    compile: bool = flag(False, BOOL, "torch.compile the model for training", resumable=True)
    fused_adamw: bool | None = setting(
        None, Allowed(bool, none=True), "None: fused AdamW on CUDA, the plain kernel elsewhere"
    )
    profile: bool = flag(
        False, BOOL, "torch.profiler trace of steps 2-4 in OUT/profile", resumable=True
    )
    tensorboard: bool = flag(False, BOOL, "TensorBoard events in OUT/tensorboard", resumable=True)

    def __post_init__(self) -> None:
        check_fields(self)
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
            raise ValueError(f"TrainConfig.min_lr={self.min_lr} must be at most lr={self.lr}")

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    def differences(self, other: TrainConfig | dict) -> list[str]:
        """Fields, other than the resumable ones, where ``other`` differs from this.

        (max_steps is not resumable: the cosine schedule is laid out over it, so changing it
        changes every learning rate after warmup.)"""
        theirs = other if isinstance(other, dict) else dataclasses.asdict(other)
        why = {"max_steps": " (the cosine schedule is laid out over max_steps)"}
        return [
            f"{f.name}: {theirs.get(f.name)!r} vs {getattr(self, f.name)!r}{why.get(f.name, '')}"
            for f in dataclasses.fields(self)
            if not f.metadata["resumable"] and theirs.get(f.name) != getattr(self, f.name)
        ]


RESUMABLE_CHANGES = tuple(
    f.name for f in dataclasses.fields(TrainConfig) if f.metadata["resumable"]
)


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
    dtype = DTYPES[resolve_precision(device, precision)]
    if dtype == torch.float32:
        return None, False
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
        first = next(model.parameters(), None)
        here = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device) if device is not None else here
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
        self.precision = resolve_precision(self.device, cfg.precision)  # what auto became
        self.autocast_dtype, use_scaler = precision_for(self.device, self.precision)
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
        self._metrics = self._writer = None  # the metrics file and TensorBoard, once started
        self._lock: FileLock | None = None

    # -- files -----------------------------------------------------------------------

    @property
    def writes(self) -> bool:
        return self.out_dir is not None and self.rank == 0

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    def start(self, resume: bool) -> None:
        path = self.checkpoint_path
        if resume and (path is None or not path.is_file()):
            where = "resume=True needs out_dir" if path is None else f"there is no {path}"
            raise CheckpointError(f"nothing to resume: {where}. Nothing was created.")
        self._lock = FileLock(self.out_dir / ".lock") if self.writes else None
        if self._lock is not None and not self._lock.acquire(wait=False):
            raise CheckpointError(
                f"{self.out_dir} is in use by another training run (process "
                f"{self._lock.holder()}); wait for it to finish or choose another output "
                "folder. Nothing was changed."
            )
        if resume:
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

    def checkpoint(self) -> Checkpoint:
        """Everything a resumed run needs to take the steps this one would have taken."""
        return Checkpoint(
            model_config=self.model.cfg,
            model=self.model.state_dict(),
            step=self.step,
            meta=self.meta,
            train_config=dataclasses.asdict(self.cfg),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            data_rng=self.generator.get_state(),
        )

    def save(self) -> None:
        if self.writes:
            self.checkpoint().save(self.checkpoint_path)
        if self.distributed:
            dist.barrier()

    def last_good(self) -> str:
        path = self.checkpoint_path
        if path is not None and path.is_file():
            return f"The last good checkpoint, {path}, is untouched."
        return "No checkpoint was written."

    def _load(self, path: Path) -> None:
        ckpt = read_checkpoint(path, map_location=self.device)
        ckpt.check_model_config(self.model.cfg)
        ckpt.require_training_state()
        diffs = self.cfg.differences(ckpt.train_config)
        if diffs:
            raise CheckpointError(
                f"checkpoint {path} was made with other training settings ({'; '.join(diffs)}); "
                "resume with the same arguments"
            )
        ckpt.check_meta(self.meta)
        ckpt.load_into(self.model)
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        self.scaler.load_state_dict(ckpt.scaler)
        torch.set_rng_state(ckpt.torch_rng.cpu())
        if ckpt.cuda_rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt.cuda_rng])
        self.generator.set_state(ckpt.data_rng.cpu())
        self.step = ckpt.step

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

    ``model`` maps ``tokens[batch, pos]`` to ``logits[batch, pos, d_vocab]`` and has a ``.cfg``
    (e.g. :class:`minigpt.model.GPT`). ``checkpoint.pt`` and ``metrics.jsonl`` go to
    ``out_dir`` (``None``: nowhere); ``resume`` continues from its checkpoint, which without
    it is never overwritten. ``device``: the model's by default. ``progress``: a progress bar
    on a terminal. ``callback(step, record, model)`` runs after every step; ``meta`` (plain
    data, e.g. the tokenizer's name) is saved in the checkpoint, and a resume must match it.

    Raises :class:`TrainingDiverged` when the loss becomes NaN or inf (nothing is saved for
    it) and :class:`~minigpt.checkpoint.CheckpointError` for a resume without a usable
    checkpoint, one of another model or settings, or a new run over an old checkpoint.
    """
    run = TrainRun(model, data, cfg, out_dir=out_dir, device=device, meta=meta)
    try:
        run.start(resume)
    except BaseException:
        run.close()  # releases the run folder's lock
        raise
    stop = threading.Event()
    bar = run.progress_bar(progress)
    bar.set_description(f"training in {run.precision}")  # what precision="auto" chose, on screen
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

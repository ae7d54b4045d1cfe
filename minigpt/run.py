"""The state of one training run, used by :func:`minigpt.train.train`.

:class:`TrainRun` owns everything a run carries from step to step (optimizer, learning
rate schedule, gradient scaler, the data generator, the step count, the metrics file)
and knows how to save all of it to a checkpoint and load it back, so that a resumed run
takes exactly the steps the uninterrupted one would have taken.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

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
from minigpt.perf import precision_for, step_profiler, summary_writer
from minigpt.train_config import TrainConfig


class TrainRun:
    """Optimizer, schedule, data position and files of a run (see :func:`minigpt.train.train`)."""

    def __init__(self, model, data: TokenData, cfg: TrainConfig, *, out_dir, device, meta):
        from minigpt.train import lm_loss, lr_at, param_groups

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

    def result(self, status: str):
        from minigpt.train import TrainResult

        return TrainResult(status, self.step, self.history, self.out_dir)


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")

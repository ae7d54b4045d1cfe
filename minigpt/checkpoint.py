"""Training checkpoints: written atomically, loaded safely, checked against the run.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers,
strings, lists, dicts), so it loads with ``torch.load(..., weights_only=True)``, which
cannot run code hidden in a file. It is written to a temporary file in the same folder
and then renamed over the old one: a crash mid-write never leaves a half-written
checkpoint, and the last good one survives.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch

from minigpt.config import GPTConfig
from minigpt.files import atomic_write, atomic_write_text, check_format
from minigpt.model import GPT

FORMAT = "minigpt-train"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to a different model or run."""


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)``, atomically (see :func:`minigpt.files.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint written by :func:`save_atomic`, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    check_format(
        state,
        path,
        kind="minigpt training checkpoint",
        format=FORMAT,
        version=VERSION,
        error=CheckpointError,
    )
    return state


def check_model_config(state: dict, cfg: GPTConfig, path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` naming every field where the checkpoint's model differs."""
    saved = state.get("model_config", {})
    wanted = asdict(cfg)
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs model {v!r}"
        for k, v in wanted.items()
        if saved.get(k) != v
    ]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} was made for another model config ({'; '.join(diffs)}). "
            "Use a different output folder, or the config it was trained with."
        )


def model_from_checkpoint(path: str | os.PathLike, device="cpu"):
    """The :class:`minigpt.model.GPT` stored in a checkpoint (strict key and shape check)."""
    state = load_checkpoint(path, map_location=device)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"], strict=True)
    return model.to(device)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (one JSON object per line)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        raise CheckpointError(f"metrics file {path} does not exist")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    keep = [line for line in _lines(path) if json.loads(line)["step"] <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _lines(path: Path) -> Iterator[str]:
    return (line for line in path.read_text().splitlines() if line.strip())

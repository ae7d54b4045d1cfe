"""Training checkpoints: written atomically, loaded safely, checked against the run.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers,
strings, lists, dicts), so it loads with ``torch.load(..., weights_only=True)``, which
cannot run code hidden in a file. It is written to a temporary file in the same folder
and then renamed over the old one: a crash mid-write never leaves a half-written
checkpoint, and the last good one survives. It carries a SHA-256 of its own content
(:func:`minigpt.files.digest`), checked on every load: a checkpoint with one changed byte
is refused, never used.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from minigpt.config import GPTConfig
from minigpt.files import atomic_write, atomic_write_text, check_format, digest, first_line
from minigpt.model import GPT

FORMAT = "minigpt-train"
VERSION = 2  # 2: carries a checksum of its content
CHECKSUM = "sha256"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to a different model or run."""


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` with a checksum of ``obj`` added, atomically.

    The bytes are made in memory first, so a full disk shows up as an ``OSError`` that
    says so (see :func:`minigpt.files.atomic_write`), not as an error deep inside torch.
    """
    state = {**obj, CHECKSUM: digest({k: v for k, v in obj.items() if k != CHECKSUM})}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """A checkpoint written by :func:`save_atomic`, loaded with ``weights_only=True``.

    Raises :class:`CheckpointError`, naming the file, for a missing, unreadable, foreign
    or corrupt one (its checksum does not match): nothing of such a file is used.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; this is something else
            raise CheckpointError(
                f"checkpoint {path} cannot be read: it is not a file written by torch.save"
            ) from None
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data; minigpt loads only "
            "those (code hidden in a file cannot run), so it was not loaded"
        ) from None
    except Exception as err:  # a truncated or foreign file: say which one
        raise CheckpointError(f"checkpoint {path} cannot be read: {first_line(err)}") from None
    check_format(
        state,
        path,
        kind="minigpt training checkpoint",
        format=FORMAT,
        version=VERSION,
        error=CheckpointError,
    )
    stored = state.pop(CHECKSUM, None)
    if stored != digest(state):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content does not match the checksum stored in "
            "it (a changed byte: a bad disk, copy or edit). Nothing was loaded; delete it, or "
            "replace it with a good copy."
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
    """The records of a ``metrics.jsonl`` file (one JSON object per line).

    A last line cut short (a crash while it was written) is dropped with a warning; a bad
    line anywhere else is a :class:`CheckpointError` naming the file and the line.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_NAME
    if not path.is_file():
        raise CheckpointError(f"metrics file {path} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a record with a step")
        except ValueError as err:
            if number == len(lines):
                warnings.warn(
                    f"{path}: dropped its last line, cut short ({err})",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            raise CheckpointError(
                f"metrics file {path}, line {number}, is not a JSON record: {err}"
            ) from None
        records.append(record)
    return records


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop records after ``last_step`` (a run that died after its last checkpoint), and a
    last line cut short."""
    if not path.is_file():
        return
    keep = [json.dumps(r) for r in read_metrics(path) if r["step"] <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))

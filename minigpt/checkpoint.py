"""Training checkpoints: written atomically, loaded safely, checked against the run.

A checkpoint is one ``torch.save`` file holding plain data only (tensors, numbers,
strings, lists, dicts), so it loads with ``torch.load(..., weights_only=True)``, which
cannot run code hidden in a file. It is written to a temporary file in the same folder
and then renamed over the old one: a crash mid-write never leaves a half-written
checkpoint, and the last good one survives. It carries a SHA-256 of its own content
(:func:`minigpt.files.digest`), checked on every load: a checkpoint with one changed byte
is refused, never used.

This module is the only one that knows the checkpoint's keys: training writes a
:class:`Checkpoint` (:meth:`Checkpoint.save`), and everything that reads one, to resume a run,
to generate text or to check a cached model, gets it from :func:`read_checkpoint`, which also
checks that its tensors fit its model config before a model is built from them.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
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
DATA_KEY = "data_record"  # the entry of a checkpoint's meta that says what data it trained on


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


@dataclass
class Checkpoint:
    """What a checkpoint holds, read by :func:`read_checkpoint` and written by :meth:`save`.

    Every checkpoint has a model (its config and its tensors); one written by training also
    has the rest of the run (``train_config`` ... ``data_rng``), so that it can be resumed.
    """

    model_config: GPTConfig
    model: dict[str, torch.Tensor]  # the model's state_dict
    step: int = 0  # optimizer steps taken
    meta: dict = field(default_factory=dict)  # plain data about the run: tokenizer, corpus, ...
    train_config: dict | None = None  # the TrainConfig's fields
    optimizer: dict | None = None
    scheduler: dict | None = None
    scaler: dict | None = None
    torch_rng: torch.Tensor | None = None  # torch's global generator
    cuda_rng: list[torch.Tensor] = field(default_factory=list)  # one per CUDA device
    data_rng: torch.Tensor | None = None  # the generator of the data order
    path: Path | None = None  # where it was read from

    def save(self, path: str | os.PathLike) -> Path:
        """Write it to ``path`` atomically, with its checksum (:func:`save_atomic`)."""
        rng = {"torch": self.torch_rng, "cuda": self.cuda_rng, "data": self.data_rng}
        state = {
            "format": FORMAT,
            "version": VERSION,
            "step": self.step,
            "model_config": asdict(self.model_config),
            "train_config": self.train_config,
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
            "rng": rng,
            "meta": self.meta,
        }
        return save_atomic(state, path)

    def check_model_config(self, cfg: GPTConfig) -> None:
        """Raise :class:`CheckpointError` naming every field where its model's config differs."""
        saved, wanted = asdict(self.model_config), asdict(cfg)
        diffs = [
            f"{k}: checkpoint {saved.get(k)!r} vs model {v!r}"
            for k, v in wanted.items()
            if saved.get(k) != v
        ]
        if diffs:
            raise CheckpointError(
                f"checkpoint {self.path} was made for another model config ({'; '.join(diffs)}). "
                "Use a different output folder, or the config it was trained with."
            )

    def check_meta(self, meta: dict) -> None:
        """Raise :class:`CheckpointError` naming every entry of ``meta`` (the corpus, the
        tokenizer, ...) that it records with another value; for changed token data, the
        corpus files whose content changed (:func:`data_record`)."""
        changed = [
            f"{k}: {self.meta[k]!r} vs {v!r}"
            for k, v in meta.items()
            if k != DATA_KEY and self.meta.get(k, v) != v
        ]
        if changed:
            raise CheckpointError(
                f"checkpoint {self.path} was trained on other data ({'; '.join(changed)}); "
                "resume with the same corpus and tokenizer"
            )
        if DATA_KEY in meta and self.meta.get(DATA_KEY, meta[DATA_KEY]) != meta[DATA_KEY]:
            where = self.meta.get("data", meta.get("data"))
            raise CheckpointError(
                f"checkpoint {self.path} was trained on other data: "
                f"{_data_change(self.meta[DATA_KEY], meta[DATA_KEY], where)}. Resume on the "
                "data it was trained on, or start a new run in another folder"
            )

    def load_into(self, model: torch.nn.Module) -> torch.nn.Module:
        """Copy its tensors into ``model``, after checking that every name and shape fits."""
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in self.model]
        foreign = [k for k in self.model if k not in wanted]
        misfit = [
            f"{k} {_shape(v)} vs {tuple(wanted[k].shape)}"
            for k, v in self.model.items()
            if k in wanted and _shape(v) != tuple(wanted[k].shape)
        ]
        problems = [
            f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
            for label, names in (("missing", missing), ("foreign", foreign), ("shape", misfit))
            if names
        ]
        if problems:
            raise CheckpointError(
                f"checkpoint {self.path}: its tensors do not fit its model config "
                f"({'; '.join(problems)}); it is damaged or was written by another program. "
                "Nothing was loaded."
            )
        model.load_state_dict(self.model, strict=True)
        return model

    def build_model(self, device="cpu") -> GPT:
        """The :class:`minigpt.model.GPT` it holds, on ``device``."""
        return self.load_into(GPT(self.model_config)).to(device)

    def require_training_state(self) -> None:
        """Raise :class:`CheckpointError` unless it holds a whole run (it can be resumed)."""
        parts = ("train_config", "optimizer", "scheduler", "scaler", "torch_rng", "data_rng")
        absent = [name for name in parts if getattr(self, name) is None]
        if absent:
            raise CheckpointError(
                f"checkpoint {self.path} holds a model but not the state of its training run "
                f"(no {', '.join(absent)}), so it cannot be resumed"
            )


def data_record(provenance: dict) -> dict:
    """What a checkpoint records of the data it trains on, from a
    :class:`~minigpt.data.TokenData`'s ``provenance``: the SHA-256 of the token ids and of each
    file of a local corpus (``{}`` when nothing is known, e.g. ids made in memory)."""
    if not provenance.get("sha256"):
        return {}
    return {"tokens_sha256": provenance["sha256"], "files": dict(provenance.get("files") or {})}


def _data_change(then: dict, now: dict, corpus) -> str:
    """Which files of ``corpus`` changed between two :func:`data_record` s, in words."""
    before, after = then.get("files") or {}, now.get("files") or {}
    root = Path(str(corpus)) if corpus is not None else Path()
    here = (lambda name: root / name) if root.is_dir() else (lambda name: root)
    changes = [
        f"{here(name)} changed since (sha256 {before[name][:12]} then, {after[name][:12]} now)"
        for name in sorted(before.keys() & after.keys())
        if before[name] != after[name]
    ]
    changes += [f"{here(name)} is gone" for name in sorted(before.keys() - after.keys())]
    changes += [f"{here(name)} is new" for name in sorted(after.keys() - before.keys())]
    if not changes:  # a hub dataset, or the same files read another way
        old, new = then.get("tokens_sha256", "?")[:12], now.get("tokens_sha256", "?")[:12]
        changes = [f"the token ids of {corpus!r} differ (sha256 {old} then, {new} now)"]
    return "; ".join(changes)


def _shape(value) -> tuple | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> Checkpoint:
    """The :class:`Checkpoint` in a file: loaded once, its checksum and its layout checked.

    Raises :class:`CheckpointError`, naming the file, for one that :func:`load_checkpoint`
    refuses, or that has no usable model config, no tensors or a step that is not a count.
    """
    path = Path(path)
    state = load_checkpoint(path, map_location=map_location)
    config, tensors, step = state.get("model_config"), state.get("model"), state.get("step", 0)
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} has no model config, so it cannot be used")
    try:
        model_config = GPTConfig(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} has a model config minigpt cannot use: {first_line(err)}"
        ) from None
    if not isinstance(tensors, dict) or not tensors:
        raise CheckpointError(f"checkpoint {path} holds no model tensors, so it cannot be used")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"checkpoint {path} has step={step!r}; it must be an integer >= 0")
    rng = state.get("rng") if isinstance(state.get("rng"), dict) else {}  # else: not resumable
    return Checkpoint(
        model_config=model_config,
        model=tensors,
        step=step,
        meta=state.get("meta") or {},
        train_config=state.get("train_config"),
        optimizer=state.get("optimizer"),
        scheduler=state.get("scheduler"),
        scaler=state.get("scaler"),
        torch_rng=rng.get("torch"),
        cuda_rng=list(rng.get("cuda") or []),
        data_rng=rng.get("data"),
        path=path,
    )


def model_from_checkpoint(path: str | os.PathLike, device="cpu") -> GPT:
    """The :class:`minigpt.model.GPT` stored in a checkpoint (every name and shape checked)."""
    return read_checkpoint(path, map_location=device).build_model(device)


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

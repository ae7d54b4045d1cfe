"""Pick the device every chapter runs on: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import os

import torch

DEVICE_ENV = "MINIGPT_DEVICE"


def best_device() -> torch.device:
    """The fastest device here, unless ``$MINIGPT_DEVICE`` names one (``cpu``, ``cuda``, ``mps``)."""
    forced = os.environ.get(DEVICE_ENV)
    if forced:
        return resolve_device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Turn ``"auto"``/``None``/a name into a usable :class:`torch.device`, or explain why not."""
    if device is None or str(device) == "auto":
        return best_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use 'cpu'")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device={device!r}: MPS is not available on this machine; use 'cpu'")
    if dev.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"device={device!r}: minigpt runs on 'cpu', 'cuda' or 'mps'")
    return dev

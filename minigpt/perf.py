"""Speed and observation helpers for training: mixed precision, the profiler, TensorBoard."""

from __future__ import annotations

from pathlib import Path

import torch


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

"""Small trained models that chapters can ask for without retraining them every time.

:func:`shakespeare_model` gives the ``tiny`` preset trained on Shakespeare. The first call
trains it (about two minutes on two CPU cores) into
``cache_dir()/checkpoints/shakespeare-tiny``; later calls load it. A run that was cut
short is resumed, a checkpoint of an older preset or tokenizer is trained again, and a
file lock makes processes that ask at the same time train it only once.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from minigpt.assets import cache_dir
from minigpt.checkpoint import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
)
from minigpt.device import resolve_device
from minigpt.files import FileLock
from minigpt.presets import RunPlan, plan_run
from minigpt.train import train

SHAKESPEARE_PRESET = "tiny"


def shakespeare_run_dir() -> Path:
    """The folder holding the tiny Shakespeare model's ``checkpoint.pt`` and ``metrics.jsonl``."""
    return cache_dir() / "checkpoints" / "shakespeare-tiny"


@contextlib.contextmanager
def _one_thread():
    """Train the tiny model on one CPU thread.

    For a model this small, a second thread buys little on an idle machine and costs a lot
    (2-3x slower, measured) when the cores are shared, as they are when chapters run in
    parallel; one thread also gives the same model whatever the number of cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _checkpoint_status(path: Path, plan: RunPlan) -> str:
    """``"missing"``, ``"finished"``, ``"partial"`` (resumable) or ``"stale"`` (another setup)."""
    if not path.is_file():
        return "missing"
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return "stale"
    same = (
        state["model_config"] == asdict(plan.model)
        and state.get("meta") == plan.meta
        and not plan.train.differences(state["train_config"])
        and state["train_config"]["max_steps"] == plan.train.max_steps
    )
    if not same:
        return "stale"
    return "finished" if state["step"] >= plan.train.max_steps else "partial"


def shakespeare_model(device: str | torch.device | None = None, *, progress: bool = False):
    """The ``tiny`` preset trained on Shakespeare: ``(GPT in eval mode, BPETokenizer)``.

    Args:
        device: where the model goes (and trains, if it must): ``None``/``"auto"`` for the
            best device here, or a name such as ``"cpu"``.
        progress: show the training progress bar (on a terminal) if it has to train.
    """
    device = resolve_device(device)
    plan = plan_run(SHAKESPEARE_PRESET)
    folder = shakespeare_run_dir()
    path = folder / CHECKPOINT_NAME
    with FileLock(folder.with_name(folder.name + ".lock")):
        status = _checkpoint_status(path, plan)
        if status == "stale":  # made by an older preset or tokenizer: this cache is ours
            shutil.rmtree(folder)
        if status != "finished":
            model, data = plan.materialize()
            with _one_thread():
                result = train(
                    model,
                    data,
                    plan.train,
                    out_dir=folder,
                    resume=status == "partial",
                    device=device,
                    progress=progress,
                    meta=plan.meta,
                )
            if result.status != "finished":
                raise KeyboardInterrupt(
                    f"training of the tiny Shakespeare model stopped at step {result.step}; "
                    "call shakespeare_model() again to resume it"
                )
        model = model_from_checkpoint(path, device=device)
    return model.eval(), plan.tokenizer


def shakespeare_metrics_path() -> Path:
    """``metrics.jsonl`` of the tiny Shakespeare run (exists once it has been trained)."""
    return shakespeare_run_dir() / METRICS_NAME

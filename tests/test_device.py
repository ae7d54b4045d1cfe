"""The device every chapter runs on (minigpt.device): CUDA, then MPS, then the CPU, unless
``$MINIGPT_DEVICE`` or an argument names one; a name that cannot be used is a clear error."""

from __future__ import annotations

import pytest
import torch

from minigpt.device import DEVICE_ENV, best_device, resolve_device


def only(monkeypatch, cuda: bool, mps: bool) -> None:
    """Pretend this machine has (or lacks) CUDA and MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_best_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    only(monkeypatch, cuda, mps)
    assert best_device() == torch.device(expected)
    assert resolve_device(None) == resolve_device("auto") == torch.device(expected)


def test_the_environment_variable_forces_a_device(monkeypatch):
    only(monkeypatch, cuda=True, mps=False)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert best_device() == torch.device("cpu") and resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match="device='tpu' is not a device name"):
        best_device()
    monkeypatch.setenv(DEVICE_ENV, "")  # empty: as if unset
    assert best_device() == torch.device("cuda")


def test_names_and_devices_pass_through(monkeypatch):
    only(monkeypatch, cuda=True, mps=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # checked, not opened


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tpu", r"device='tpu' is not a device name; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ("cuda", r"device='cuda': CUDA is not available on this machine; use 'cpu'"),
        ("cuda:0", r"device='cuda:0': CUDA is not available"),
        ("mps", r"device='mps': MPS is not available on this machine; use 'cpu'"),
        ("meta", r"device='meta': minigpt runs on 'cpu', 'cuda' or 'mps'"),
    ],
)
def test_a_device_that_cannot_be_used_is_named(monkeypatch, name, message):
    only(monkeypatch, cuda=False, mps=False)
    with pytest.raises(ValueError, match=message):
        resolve_device(name)

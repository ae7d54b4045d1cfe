"""minigpt.precision: bf16 where the hardware has it, float32 where it does not."""

import warnings

import pytest
import torch

from minigpt import precision
from minigpt.precision import Bf16Support, bf16_support, describe, resolve_precision
from minigpt.train import precision_for


@pytest.fixture
def fresh_support():
    precision._support.cache_clear()
    yield
    precision._support.cache_clear()


def test_a_cpu_is_measured_and_the_reason_says_what_was_found(fresh_support):
    support = bf16_support("cpu")
    assert support.speedup is not None and support.speedup > 0
    assert support.native == (support.speedup >= precision.NATIVE_SPEEDUP)
    assert "a bf16 product ran" in support.reason
    assert bf16_support(torch.device("cpu")) is support  # measured once per process


def test_auto_is_float32_on_a_cpu_and_explicit_choices_are_kept():
    assert resolve_precision("cpu", "auto") == "float32"
    assert resolve_precision("cpu", "float32") == "float32"
    assert precision_for(torch.device("cpu"), "auto") == (None, False)
    assert precision_for(torch.device("cpu"), "bfloat16") == (torch.bfloat16, False)
    with pytest.raises(ValueError, match="precision='bf17' is not one of auto"):
        resolve_precision("cpu", "bf17")


def test_bf16_on_a_cpu_without_it_warns_with_the_measured_cost(monkeypatch):
    slow = Bf16Support(False, "CPU without amx_bf16/avx512_bf16; a bf16 product ran 0.01x", 0.01)
    monkeypatch.setattr(precision, "_support", lambda device_type, index: slow)
    with pytest.warns(UserWarning, match="emulated.*about 100x slower"):
        assert resolve_precision("cpu", "bfloat16") == "bfloat16"
    fast = Bf16Support(True, "CPU flags amx_bf16", 2.0)
    monkeypatch.setattr(precision, "_support", lambda device_type, index: fast)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("cpu", "bfloat16") == "bfloat16"


@pytest.mark.parametrize(("capability", "auto"), [((8, 0), "bfloat16"), ((7, 5), "float16")])
def test_a_gpu_is_native_from_capability_8(monkeypatch, fresh_support, capability, auto):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)
    support = bf16_support(torch.device("cuda", 0))
    assert support.native == (capability >= (8, 0))
    assert f"capability {capability[0]}.{capability[1]}" in support.reason
    assert resolve_precision(torch.device("cuda", 0), "auto") == auto


def test_describe_says_what_auto_chose_and_why():
    line = describe("cpu", "auto")
    assert line.startswith("float32 (chosen by auto; bf16 ")
    assert "a bf16 product ran" in line

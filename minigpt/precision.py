"""Which precision to compute in: bfloat16 where the hardware multiplies it natively, float32
where it does not.

bfloat16 halves the bytes of every weight and activation, and on hardware with bf16 matrix
units (NVIDIA GPUs from capability 8.0, Intel CPUs with AMX) its products run several times
faster than float32's. On a CPU without them the same product is emulated and can be two
orders of magnitude *slower*. So the hardware is asked, not assumed: :func:`bf16_support`
reads the GPU's capability, or on a CPU times one small bf16 product against float32 (a few
milliseconds, once per process). :func:`resolve_precision` turns ``auto`` into bf16 only on
a GPU where that says native (see there why not on a CPU); asking for ``bfloat16``
explicitly always works, and on a CPU without native bf16 it warns with the measured cost.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GEMM_SIZE = 256  # the side of the square product timed on a CPU: ~1 ms in float32
NATIVE_SPEEDUP = 1.0  # bf16 counts as native on a CPU when its product is at least this fast
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of bf16 instructions


@dataclass(frozen=True)
class Bf16Support:
    """Whether a device multiplies bf16 natively, and what that was decided from.

    ``speedup`` is bf16's measured matrix-product rate over float32's (CPUs only; ``None``
    on a GPU, where the capability decides). ``reason`` says it in words for the screen.
    """

    native: bool
    reason: str
    speedup: float | None = None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measured_bf16_speedup(n: int = GEMM_SIZE, repeats: int = 10) -> float:
    """bf16 over float32 matrix-product rate of one core of this CPU, from ``n x n``
    products: the best of ``repeats`` each, taken in turns, so that load from other
    processes hits both alike. One thread, because the question is the instruction set's
    (and a second thread that another process holds would stall float32's product alone)."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    fp32 = bf16 = float("inf")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i in range(repeats + 1):  # the first round allocates and picks kernels: not counted
            t32, t16 = _seconds(lambda: a @ b), _seconds(lambda: a16 @ b16)
            if i:
                fp32, bf16 = min(fp32, t32), min(bf16, t16)
    finally:
        torch.set_num_threads(threads)
    return fp32 / bf16


@functools.cache
def _support(device_type: str, index: int | None) -> Bf16Support:
    if device_type == "cuda":
        major, minor = torch.cuda.get_device_capability(index)
        native = (major, minor) >= (8, 0)
        return Bf16Support(native, f"CUDA capability {major}.{minor} (bf16 native from 8.0)")
    if device_type != "cpu":
        return Bf16Support(False, f"{device_type}: bf16 not known to be native; float32")
    flags = sorted(set(CPU_BF16_FLAGS) & cpu_flags())
    speedup = measured_bf16_speedup()
    native = speedup >= NATIVE_SPEEDUP
    has = f"CPU flags {', '.join(flags)}" if flags else f"CPU without {'/'.join(CPU_BF16_FLAGS)}"
    return Bf16Support(native, f"{has}; a bf16 product ran {speedup:.2f}x float32's", speedup)


def bf16_support(device: torch.device | str) -> Bf16Support:
    """Whether ``device`` multiplies bf16 natively (measured once per process on a CPU)."""
    device = torch.device(device)
    index = device.index if device.type != "cuda" or device.index is not None else None
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    return _support(device.type, index)


def resolve_precision(device: torch.device | str, precision: str) -> str:
    """``float32``, ``bfloat16`` or ``float16`` for a device and one of :data:`PRECISIONS`.

    ``auto`` is bf16 on a GPU that multiplies it natively, float16 on an older CUDA GPU (with
    a gradient scaler in training), and float32 on a CPU, even one with native bf16: measured
    on an AMX CPU, bf16 did not speed up the book's small models (their time goes to the loss
    and elementwise work, and a one-token decode's matrix-vector products are no faster in
    bf16), and float32 keeps a run's numbers the same on every CPU. An explicit ``bfloat16``
    is kept, with a warning on a CPU where it is slower than float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if precision == "auto":
        if device.type != "cuda":
            return "float32"
        return "bfloat16" if bf16_support(device).native else "float16"
    if precision == "bfloat16" and device.type == "cpu":
        support = bf16_support(device)
        if not support.native:
            warnings.warn(
                f"bfloat16 on this CPU is emulated: {support.reason} (about "
                f"{1 / support.speedup:.0f}x slower); use precision='float32' or 'auto'",
                stacklevel=1,  # this line's warning, shown once per process
            )
    return precision


def generation_precision(device: torch.device | str, precision: str) -> str:
    """``float32`` or ``bfloat16``: the dtype of a model's weights for generating.

    ``auto`` is bf16 on a GPU with native bf16 (a decode step reads every weight once, so half
    the bytes is close to twice the tokens per second) and float32 elsewhere, a CPU included
    (there a one-token decode's matrix-vector products measured no faster in bf16).
    """
    if precision == "auto":
        native = torch.device(device).type == "cuda" and bf16_support(device).native
        return "bfloat16" if native else "float32"
    if precision == "float16":
        raise ValueError("precision='float16' is for training on older GPUs; generate in "
                         "float32 or bfloat16")  # fmt: skip
    return resolve_precision(device, precision)


def describe(device: torch.device | str, precision: str, chosen: str | None = None) -> str:
    """One line for the screen: what ``precision`` became on ``device`` (``chosen``, by
    default :func:`resolve_precision`'s answer), and why."""
    chosen = chosen or resolve_precision(device, precision)
    support = bf16_support(device)
    how = "chosen by auto" if precision == "auto" else "asked for"
    native = "native" if support.native else "not native"
    return f"{chosen} ({how}; bf16 {native} on {torch.device(device).type}: {support.reason})"

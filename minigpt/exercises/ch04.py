"""Checks for the exercises of chapter 04 (the MLP).

Each checker runs the reader's function, compares it with the reference (GPT-2's own
activations where a cache is given) and, when it is wrong, compares it with the usual
wrong versions to say what the mistake most likely is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from minigpt.compare import compare_tensors
from minigpt.exercises.diagnose import close, matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch04 as solutions
from minigpt.mlp import gelu_new

GELU_ATOL = 1e-5  # the exact GELU is up to 4.7e-4 away from GPT-2's: far outside this
MLP_ATOL, MLP_RTOL = 1e-4, 1e-3  # the book's tolerances for activations


def _no_cubic(x: Tensor) -> Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * x))


# The usual wrong GELUs, each with what to tell the reader who wrote it.
_WRONG_GELUS: list[tuple[Callable[[Tensor], Tensor], str]] = [
    (
        F.gelu,
        "that is the exact GELU, x * Phi(x) with erf (torch's default); GPT-2 uses the tanh "
        "approximation 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))",
    ),
    (torch.relu, "that is ReLU; GELU is smooth, and slightly negative just below 0"),
    (_no_cubic, "the cubic term is missing: tanh(sqrt(2/pi) * (x + 0.044715 * x**3))"),
    (
        lambda x: x * torch.sigmoid(1.702 * x),
        "that is the sigmoid approximation x * sigmoid(1.702 x); GPT-2 uses the tanh one",
    ),
]


def _diagnose(got: Tensor, candidates: list[tuple[Tensor, str]], atol: float) -> str | None:
    return matching_mistake(got, candidates, close(atol))


def _gelu_failure(where: str, got: Tensor, x: Tensor, expected: Tensor) -> AssertionError:
    cause = _diagnose(got, [(f(x), m) for f, m in _WRONG_GELUS], GELU_ATOL)
    if cause is None:
        err = (got - expected).abs()
        i = int(err.flatten().argmax())
        cause = (
            f"largest error {err.max():.3g} at x = {x.flatten()[i]:.4g} (yours "
            f"{got.flatten()[i]:.6g}, GPT-2's {expected.flatten()[i]:.6g}); expected "
            "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x**3)))"
        )
    return AssertionError(f"gelu is wrong {where}: {cause}")


@exercise(solutions.gelu)
def check_gelu(gelu: Callable, cache: Mapping[str, Tensor] | None = None, layer: int = 0) -> None:
    """Check ``gelu(x)`` against GPT-2's tanh GELU, to ``GELU_ATOL``.

    First on a grid of x from -6 to 6; then, with ``cache`` (the reference's activations),
    on GPT-2's own numbers: ``gelu(blocks.{layer}.mlp.hook_pre)`` must give
    ``blocks.{layer}.mlp.hook_post``.
    """
    x = torch.linspace(-6, 6, 1201)
    got = gelu(x)
    if not isinstance(got, Tensor) or got.shape != x.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"gelu(x) must return a tensor of x's shape {tuple(x.shape)}: {shape}")
    if not torch.allclose(got, gelu_new(x), atol=GELU_ATOL, rtol=0):
        raise _gelu_failure("on x in [-6, 6]", got, x, gelu_new(x))
    if cache is not None:
        pre, post = cache[f"blocks.{layer}.mlp.hook_pre"], cache[f"blocks.{layer}.mlp.hook_post"]
        got = gelu(pre)
        if not torch.allclose(got, post, atol=GELU_ATOL, rtol=0):
            raise _gelu_failure(f"on blocks.{layer}.mlp.hook_pre", got, pre, post)
        print(
            f"Correct: gelu(blocks.{layer}.mlp.hook_pre) gives the reference's "
            f"blocks.{layer}.mlp.hook_post (atol {GELU_ATOL:g}), and it is GPT-2's GELU on [-6, 6]."
        )
    else:
        print(f"Correct: that is GPT-2's GELU on [-6, 6] (atol {GELU_ATOL:g}).")


def _mlp_weights(params: Mapping[str, Tensor], layer: int) -> tuple[Tensor, ...]:
    p = f"blocks.{layer}.mlp."
    return tuple(params[p + name].detach() for name in ("W_in", "b_in", "W_out", "b_out"))


@exercise(solutions.mlp_forward)
def check_mlp(
    mlp: Callable, cache: Mapping[str, Tensor], params: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``mlp(x, W_in, b_in, W_out, b_out) -> [batch, pos, d_model]`` on the reference.

    ``cache`` holds the reference's activations, ``params`` its parameters under
    TransformerLens's names (``bridge.tl_parameters()``). With layer ``layer``'s weights and
    its input ``blocks.{layer}.ln2.hook_out``:

    * the output must be ``blocks.{layer}.hook_mlp_out``;
    * called with ``W_out`` = identity and ``b_out`` = 0, ``mlp`` returns its hidden layer,
      which must be ``blocks.{layer}.mlp.hook_post`` (the GELU of ``hook_pre``);
    * called on ``hook_pre`` itself with both matrices the identity and both biases 0, it
      returns its GELU alone, which tells a wrong GELU from a wrong ``x @ W_in + b_in``.

    A wrong output is compared with the usual mistakes (exact GELU, missing bias, ...).

    Tolerance: atol 1e-4, rtol 1e-3, as for every activation in the book.
    """
    W_in, b_in, W_out, b_out = _mlp_weights(params, layer)
    d_model, d_mlp = W_in.shape
    name = f"blocks.{layer}"
    x = cache[f"{name}.ln2.hook_out"]
    pre, post, out = (
        cache[f"{name}.{h}"] for h in ("mlp.hook_pre", "mlp.hook_post", "hook_mlp_out")
    )
    with torch.no_grad():
        try:
            got = mlp(x, W_in, b_in, W_out, b_out)
        except RuntimeError as err:
            raise AssertionError(
                f"the shapes do not fit ({str(err).splitlines()[0]}). W_in is "
                f"[d_model, d_mlp] = {list(W_in.shape)} and W_out is [d_mlp, d_model] = "
                f"{list(W_out.shape)}, so the MLP is x @ W_in, then @ W_out: no transpose "
                "(torch.nn.Linear stores its weight the other way round, [out, in])"
            ) from None
        eye_mlp = torch.eye(d_mlp, dtype=x.dtype, device=x.device)
        zeros_mlp = torch.zeros(d_mlp, dtype=x.dtype, device=x.device)
        got_post = mlp(x, W_in, b_in, eye_mlp, zeros_mlp)
        got_gelu = mlp(pre, eye_mlp, zeros_mlp, eye_mlp, zeros_mlp)

    if tuple(got.shape) != tuple(out.shape):
        raise AssertionError(
            f"expected shape [batch, pos, d_model] = {list(out.shape)}, got {list(got.shape)}"
        )
    row = compare_tensors(f"{name}.hook_mlp_out", got, out, MLP_ATOL, MLP_RTOL)
    if not row.passed:
        weights = (W_in, b_in, W_out, b_out)
        cause = _why_the_output_is_wrong(got, got_post, got_gelu, x, weights, cache, name)
        raise AssertionError(f"{row.describe()}. Likely cause: {cause}")
    hidden = compare_tensors(f"{name}.mlp.hook_post", got_post, post, MLP_ATOL, MLP_RTOL)
    if not hidden.passed:
        # W_out is small, so a hidden layer that is slightly off can still give an output
        # within tolerance: the exact GELU does, with GPT-2's weights.
        cause = _diagnose(got_gelu, [(f(pre), m) for f, m in _WRONG_GELUS], MLP_ATOL)
        raise AssertionError(
            f"the output is within tolerance, but with W_out = identity and b_out = 0 your "
            f"function does not return the hidden layer: {hidden.describe()}. Likely cause: "
            f"{cause or 'x @ W_in + b_in, or the GELU of it'}"
        )
    print(
        f"Correct: your MLP gives the reference's {name}.mlp.hook_post and {name}.hook_mlp_out "
        f"(atol {MLP_ATOL:g}, rtol {MLP_RTOL:g})."
    )


def _why_the_output_is_wrong(got, got_post, got_gelu, x, weights, cache, name) -> str:
    """The likely cause of a wrong MLP output: a known mistake, else the first step at fault
    (found from the reader's hidden layer and GELU, computed with identity matrices)."""
    W_in, b_in, W_out, b_out = weights
    pre, post, out = (
        cache[f"{name}.{h}"] for h in ("mlp.hook_pre", "mlp.hook_post", "hook_mlp_out")
    )
    wrong_gelus = [(f(pre) @ W_out + b_out, m) for f, m in _WRONG_GELUS]
    cause = _diagnose(
        got,
        [
            *wrong_gelus,
            (
                gelu_new(x @ W_in) @ W_out + b_out,
                "b_in is missing: the hidden layer is gelu(x @ W_in + b_in)",
            ),
            (post @ W_out, "b_out is missing: the output is post @ W_out + b_out"),
            (gelu_new(x @ W_in) @ W_out, "both biases are missing: + b_in, + b_out"),
            (gelu_new(out), "a GELU after W_out: the output is linear in the hidden layer"),
        ],
        MLP_ATOL,
    )
    if cause is None:
        hidden = compare_tensors(f"{name}.mlp.hook_post", got_post, post, MLP_ATOL, MLP_RTOL)
        if hidden.passed:
            cause = (
                f"your hidden layer is {name}.mlp.hook_post, so the last step "
                "(post @ W_out + b_out) is at fault"
            )
        elif torch.allclose(got_gelu, post, atol=MLP_ATOL, rtol=MLP_RTOL):
            cause = (
                f"your GELU turns {name}.mlp.hook_pre into hook_post, so x @ W_in + b_in "
                f"is not {name}.mlp.hook_pre"
            )
        else:
            cause = (
                "called with W_out = identity and b_out = 0, your function should return "
                f"the hidden layer, but {hidden.describe()}: look at the GELU and at "
                "what comes after it"
            )
    return cause

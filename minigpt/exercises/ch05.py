"""Checks for the exercises of chapter 05 (LayerNorm and the whole model)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from minigpt.analysis import parameter_count
from minigpt.attention import Attention
from minigpt.compare import compare_tensors
from minigpt.config import GPTConfig
from minigpt.exercises.diagnose import close, matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch05 as solutions
from minigpt.formats.gpt2_weights import load_tl_parameters
from minigpt.layernorm import LayerNorm
from minigpt.mlp import MLP

LN_ATOL, LN_RTOL = 1e-5, 1e-4  # float32 LayerNorms agree to ~1e-6; the usual slips miss by more
BLOCK_ATOL, BLOCK_RTOL = 1e-4, 1e-3  # the book's tolerances for activations


def _diagnose(got: Tensor, candidates: list[tuple[Tensor, str]], atol: float, rtol: float):
    return matching_mistake(got, candidates, close(atol, rtol))


def _wrong_normalizations(x: Tensor, eps: float) -> list[tuple[Tensor, str]]:
    """What the usual slips give before the gain and the shift."""
    centred = x - x.mean(-1, keepdim=True)
    var = centred.pow(2).mean(-1, keepdim=True)
    return [
        (
            centred / (centred.var(-1, unbiased=True, keepdim=True) + eps).sqrt(),
            "the unbiased variance (divide by d_model - 1, as x.var() and x.std() do by "
            "default); LayerNorm uses the biased one: the mean of the squares, over d_model",
        ),
        (
            centred / (var.sqrt() + eps),
            f"eps added to the standard deviation; it goes inside the square root, added to "
            f"the variance: sqrt(var + eps), eps = {eps:g}",
        ),
        (centred / var.sqrt(), f"eps is missing: divide by sqrt(var + eps), eps = {eps:g}"),
        (
            x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt(),
            "the mean is not subtracted (that is RMSNorm): centre x first",
        ),
        (
            centred / (var + eps),
            "divided by the variance; divide by its square root, sqrt(var + eps)",
        ),
    ]


@exercise(solutions.layer_norm)
def check_layer_norm(
    layer_norm: Callable, cache: Mapping[str, Tensor], params: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``layer_norm(x, w, b, eps) -> [batch, pos, d_model]`` against the reference's
    first LayerNorm of block ``layer``.

    ``cache`` holds the reference's activations and ``params`` its parameters under
    TransformerLens's names. The input is ``blocks.{layer}.hook_resid_pre``, with the gain
    and shift ``blocks.{layer}.ln1.w``, ``.b`` and ``eps = 1e-5``. Called with gain 1 and
    shift 0, ``layer_norm`` returns the normalized vector, which must be ``ln1.hook_normalized``;
    the divisor it implies (centred x / normalized) must be ``ln1.hook_scale``; the full output
    must be ``ln1.hook_out``. Tolerance: atol 1e-5, rtol 1e-4.
    """
    name = f"blocks.{layer}.ln1"
    x = cache[f"blocks.{layer}.hook_resid_pre"]
    w, b = params[f"{name}.w"].detach(), params[f"{name}.b"].detach()
    eps = 1e-5
    ones, zeros = torch.ones_like(w), torch.zeros_like(b)
    with torch.no_grad():
        got = layer_norm(x, w, b, eps)
        got_norm = layer_norm(x, ones, zeros, eps)
    expected = cache[f"{name}.hook_out"]
    normalized, scale = cache[f"{name}.hook_normalized"], cache[f"{name}.hook_scale"]
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(x.shape):
        shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"expected the shape of x, {list(x.shape)}, got {shape}")

    row = compare_tensors(f"{name}.hook_normalized", got_norm, normalized, LN_ATOL, LN_RTOL)
    if not row.passed:
        swapped = (torch.ones_like(x), "w and b are swapped: w is the gain, b the shift")
        cause = _diagnose(got_norm, [*_wrong_normalizations(x, eps), swapped], LN_ATOL, LN_RTOL)
        raise AssertionError(
            f"called with gain 1 and shift 0: {row.describe()}. Likely cause: "
            f"{cause or 'expected (x - mean) / sqrt(biased variance + eps), over the last axis'}"
        )
    centred = x - x.mean(-1, keepdim=True)
    implied = (centred * got_norm).sum(-1, keepdim=True) / got_norm.pow(2).sum(-1, keepdim=True)
    row = compare_tensors(f"{name}.hook_scale", implied, scale, LN_ATOL, LN_RTOL)
    if not row.passed:
        raise AssertionError(f"the divisor your normalization implies is off: {row.describe()}")
    row = compare_tensors(f"{name}.hook_out", got, expected, LN_ATOL, LN_RTOL)
    if not row.passed:
        cause = _diagnose(
            got,
            [
                (normalized, "the gain and the shift are missing: normalized * w + b"),
                (normalized * w, "the shift is missing: normalized * w + b"),
                (normalized + b, "the gain is missing: normalized * w + b"),
            ],
            LN_ATOL,
            LN_RTOL,
        )
        raise AssertionError(
            f"the normalized vector ({name}.hook_normalized) is right but the output is not: "
            f"{row.describe()}. Likely cause: {cause or 'the last step is normalized * w + b'}"
        )
    print(
        f"Correct: your LayerNorm gives the reference's {name}.hook_scale, hook_normalized "
        f"and hook_out (atol {LN_ATOL:g}, rtol {LN_RTOL:g})."
    )


class _Spy(torch.nn.Module):
    """Wraps one part of a block and records what it was called with."""

    def __init__(self, part: torch.nn.Module, label: str):
        super().__init__()
        self.part, self.label, self.inputs = part, label, []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x)
        return self.part(x)


def _block_parts(params: Mapping[str, Tensor], layer: int):
    """ln1, attn, ln2 and mlp of block ``layer``, with its weights; the shapes are read off
    the weights (``W_Q[n_heads, d_model, d_head]``, ``W_in[d_model, d_mlp]``)."""
    n_heads, d_model, d_head = params[f"blocks.{layer}.attn.W_Q"].shape
    d_mlp = params[f"blocks.{layer}.mlp.W_in"].shape[1]
    cfg = GPTConfig(
        d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, n_layers=layer + 1
    )
    parts = {"ln1": LayerNorm(cfg), "attn": Attention(cfg, layer=layer), "ln2": LayerNorm(cfg)}
    parts["mlp"] = MLP(cfg)
    for label, part in parts.items():
        load_tl_parameters(part, dict(params), prefix=f"blocks.{layer}.{label}.")
    return parts


@exercise(solutions.block_forward)
def check_block(
    block: Callable,
    cache: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    layer: int = 0,
) -> None:
    """Check ``block(resid_pre, ln1, attn, ln2, mlp) -> resid_post`` on the reference.

    The four parts are minigpt's modules with block ``layer``'s weights from ``params``
    (TransformerLens names), each called on one tensor. The checker records what each part
    is called with: ``ln2``'s input must be ``blocks.{layer}.hook_resid_mid`` and the output
    ``hook_resid_post``, to atol 1e-4, rtol 1e-3; the order of the calls tells pre-LN from
    post-LN and a reused LayerNorm.
    """
    p = f"blocks.{layer}"
    x = cache[f"{p}.hook_resid_pre"]
    mid, post = cache[f"{p}.hook_resid_mid"], cache[f"{p}.hook_resid_post"]
    parts = {k: v.to(x.device) for k, v in _block_parts(params, layer).items()}
    spies = {label: _Spy(part, label) for label, part in parts.items()}
    with torch.no_grad():
        got = block(x, spies["ln1"], spies["attn"], spies["ln2"], spies["mlp"])
        attn_out, mlp_out = cache[f"{p}.hook_attn_out"], cache[f"{p}.hook_mlp_out"]
        ln1, ln2, attn, mlp = parts["ln1"], parts["ln2"], parts["attn"], parts["mlp"]
        post_ln_mid = ln1(x + attn(x))
        post_ln = ln2(post_ln_mid + mlp(post_ln_mid))
        calls = {label: len(spy.inputs) for label, spy in spies.items()}

    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(x.shape):
        shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"expected resid_post of shape {list(x.shape)}, got {shape}")
    row = compare_tensors(f"{p}.hook_resid_post", got, post, BLOCK_ATOL, BLOCK_RTOL)
    if row.passed and calls == {"ln1": 1, "attn": 1, "ln2": 1, "mlp": 1}:
        print(
            f"Correct: your block gives the reference's {p}.hook_resid_mid (what ln2 reads) "
            f"and {p}.hook_resid_post (atol {BLOCK_ATOL:g}, rtol {BLOCK_RTOL:g})."
        )
        return
    where = f"{row.describe()}; calls: {calls}"
    if calls["ln1"] >= 2 and calls["ln2"] == 0:
        cause = "ln1 is used twice: the MLP reads ln2(resid_mid), with ln2's own gain and shift"
    elif calls["ln2"] >= 2 and calls["ln1"] == 0:
        cause = "ln2 is used twice: attention reads ln1(resid_pre)"
    elif torch.allclose(got, post_ln, atol=BLOCK_ATOL, rtol=BLOCK_RTOL) or (
        spies["attn"].inputs and torch.equal(spies["attn"].inputs[0], x)
    ):
        cause = (
            "that is the post-LN order (LayerNorm after the addition, as in the original "
            "Transformer); GPT-2 is pre-LN: resid_pre + attn(ln1(resid_pre)), then "
            "resid_mid + mlp(ln2(resid_mid))"
        )
    elif any(calls[k] != 1 for k in calls):
        cause = f"each part should be called once, in the order ln1, attn, ln2, mlp: {calls}"
    elif not torch.allclose(spies["ln2"].inputs[0], mid, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
        got_mid = spies["ln2"].inputs[0]
        mid_row = compare_tensors(f"{p}.hook_resid_mid", got_mid, mid, BLOCK_ATOL, BLOCK_RTOL)
        where = mid_row.describe()
        if torch.allclose(got_mid, attn_out, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
            cause = "the first residual is missing: resid_mid = resid_pre + attn(ln1(resid_pre))"
        else:
            cause = "resid_mid = resid_pre + attn(ln1(resid_pre)) is what ln2 should read"
    elif torch.allclose(got, mlp_out, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
        cause = "the second residual is missing: resid_post = resid_mid + mlp(ln2(resid_mid))"
    elif torch.allclose(got, mid, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
        cause = "the MLP's output is not added: resid_post = resid_mid + mlp(ln2(resid_mid))"
    else:
        cause = "resid_mid is right, so look at resid_post = resid_mid + mlp(ln2(resid_mid))"
    raise AssertionError(f"{where}. Likely cause: {cause}")


@exercise(solutions.count_parameters)
def check_parameter_count(count_parameters: Callable) -> None:
    """Check ``count_parameters(cfg) -> int``: the parameters of a GPT-2-style model with the
    unembedding tied to the embedding (no extra weights, no output bias), as in GPT-2."""
    configs = [
        GPTConfig.gpt2_small(),
        GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=200, n_layers=3, n_ctx=32, d_vocab=1000),
    ]
    for cfg in configs:
        expected = sum(parameter_count(cfg, tied_unembed=True).values())
        got = int(count_parameters(cfg))
        if got == expected + cfg.d_model * cfg.d_vocab + cfg.d_vocab:
            raise AssertionError(
                f"{cfg}: you counted W_U and b_U; GPT-2 reuses W_E as the unembedding"
            )
        if got != expected:
            raise AssertionError(
                f"for {cfg}: got {got:,}, expected {expected:,} (off by {got - expected:,})"
            )
    print("Correct: 124,439,808 for GPT-2 small, and right for another shape too.")

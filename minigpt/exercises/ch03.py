"""Checks for the exercises of chapter 03 (attention).

The steps of one attention layer, each checked against the reference's hooks of one layer
(``cache`` is what ``ref.bridge.run_with_cache`` returns, or any mapping with the same names;
``params`` the reference's parameters under TransformerLens's names): :func:`check_qkv`
(``hook_q``, ``hook_k``, ``hook_v``), :func:`check_attn_scores` (``hook_attn_scores``),
:func:`check_causal_mask` (``hook_attn_scores`` again, masked), :func:`check_softmax`
(``hook_pattern``), :func:`check_weighted_values` (``hook_z``) and :func:`check_attn_out`
(``hook_attn_out``). :func:`check_attn_layer` checks the reader's steps assembled into a whole
layer, hook by hook; :func:`check_cached_step` one step with a key/value cache against the
rows of the full pass. :func:`check_previous_token_head` checks a head whose queries and keys
are set by hand.

Each checker runs the reader's function, compares it with the hook at a stated tolerance, and
on a mismatch raises an ``AssertionError`` that says what differs and, when the answer matches
a typical mistake (no scaling, the diagonal masked, the softmax over the wrong axis ...), names
that mistake.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from minigpt.compare import compare_tensors
from minigpt.exercises.diagnose import close, matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch03 as solutions

# A reader's masked score may be any number this low: its weight exp(-1e4) is 0 in float32.
# (Not minigpt.compare.MASKED, the far lower line below which two sentinels count as equal.)
ZERO_WEIGHT_SCORE = -1e4


def _hook(cache: Mapping[str, Tensor], layer: int, name: str) -> Tensor:
    return cache[f"blocks.{layer}.attn.{name}"].detach().float().cpu()


def _as_tensor(got: object, what: str) -> Tensor:
    if not isinstance(got, Tensor):
        raise AssertionError(f"{what} should return a torch.Tensor, got {type(got).__name__}")
    return got.detach().float().cpu()


def _close(a: Tensor, b: Tensor, where: Tensor | None = None, tol: float = 1e-4) -> bool:
    if a.shape != b.shape:
        return False
    if where is not None:
        a, b = a[..., where], b[..., where]
    return bool(torch.allclose(a, b, atol=tol, rtol=tol))


def _worst(got: Tensor, expected: Tensor, where: Tensor, axes: tuple[str, ...]) -> str:
    """'off by 0.31 at head 3, query 7, key 2 (yours 1.2, the hook's 0.89)'."""
    diff = (got - expected).abs().masked_fill(~where.expand_as(got), 0).nan_to_num(nan=math.inf)
    index = torch.unravel_index(diff.argmax(), diff.shape)
    at = ", ".join(f"{name} {int(i)}" for name, i in zip(axes, index) if name != "batch")
    return (
        f"off by {diff.max().item():.3g} at {at} "
        f"(yours {got[index].item():.4g}, the hook's {expected[index].item():.4g})"
    )


def _raw_scores(q: Tensor, k: Tensor) -> Tensor:
    """Scaled scores before any mask: [batch, n_heads, query_pos, key_pos]."""
    return torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])


def _causal(n_q: int, n_k: int) -> Tensor:
    """True where query i may see key j (j <= i)."""
    return torch.ones(n_q, n_k, dtype=torch.bool).tril()


_SCORE_AXES = ("batch", "head", "query", "key")


ACT_ATOL, ACT_RTOL = 1e-4, 1e-3  # the book's tolerances for activations
_QKV = ("q", "k", "v")


def _weights(params: Mapping[str, Tensor], layer: int, names: str) -> list[Tensor]:
    return [params[f"blocks.{layer}.attn.{n}"].detach() for n in names.split()]


def _project(x: Tensor, W: Tensor, b: Tensor) -> Tensor:
    return torch.einsum("bpm,hmd->bphd", x, W) + b


def _shape_cause(shape: tuple, batch: int, pos: int, heads: int, width: int, what: str) -> str:
    """Why a tensor meant to be ``[batch, pos, heads, width]`` has ``shape``."""
    if shape == (batch, heads, pos, width):
        return (
            "the head axis is second: [batch, n_heads, pos, d_head] is the layout minigpt "
            f"keeps inside Attention, but {what} is [batch, pos, n_heads, d_head] (name the "
            "output axes in that order)"
        )
    if shape == (batch, pos, width, heads):
        return "n_heads and d_head are swapped: the head axis comes before d_head"
    if shape == (batch, pos, heads * width):
        return "the heads are not split: keep n_heads and d_head as two axes"
    return f"{what} is [batch, pos, n_heads, d_head]"


@exercise(solutions.qkv)
def check_qkv(
    qkv: Callable, cache: Mapping[str, Tensor], params: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``qkv(x, W_Q, b_Q, W_K, b_K, W_V, b_V) -> (q, k, v)``, each ``[batch, pos,
    n_heads, d_head]``, for ``W[n_heads, d_model, d_head]`` and ``b[n_heads, d_head]``.

    The input is the reference's ``blocks.{layer}.ln1.hook_out`` with layer ``layer``'s
    weights from ``params`` (TransformerLens names); ``q``, ``k`` and ``v`` must be
    ``hook_q``, ``hook_k`` and ``hook_v``, to atol 1e-4 and rtol 1e-3. A wrong one is
    compared with the usual mistakes: a missing bias, the three returned in another order,
    another projection's weights, a head axis moved by a plain ``reshape``.
    """
    x = cache[f"blocks.{layer}.ln1.hook_out"].detach()
    W_Q, b_Q, W_K, b_K, W_V, b_V = _weights(params, layer, "W_Q b_Q W_K b_K W_V b_V")
    Ws, bs = (W_Q, W_K, W_V), (b_Q, b_K, b_V)
    expected = [cache[f"blocks.{layer}.attn.hook_{n}"].detach() for n in _QKV]
    n_heads, d_model, d_head = W_Q.shape
    batch, pos = x.shape[:2]
    with torch.no_grad():
        try:
            got = qkv(x.clone(), W_Q, b_Q, W_K, b_K, W_V, b_V)
        except RuntimeError as err:
            raise AssertionError(
                f"the shapes do not fit ({str(err).splitlines()[0]}). W_Q is [n_heads, "
                f"d_model, d_head] = {list(W_Q.shape)} (not transposed): contract x's "
                "d_model with W_Q's middle axis, for every head at once, e.g. einsum('batch "
                "pos d_model, n_heads d_model d_head -> batch pos n_heads d_head')"
            ) from None
    if not isinstance(got, tuple | list) or len(got) != 3:
        raise AssertionError(f"qkv should return the three tensors q, k, v; got {got!r:.60}")
    for name, t, want in zip(_QKV, got, expected):
        if not isinstance(t, Tensor) or tuple(t.shape) != tuple(want.shape):
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            cause = _shape_cause(shape, batch, pos, n_heads, d_head, f"hook_{name}")
            raise AssertionError(
                f"{name} should be [batch, pos, n_heads, d_head] = {list(want.shape)}, got "
                f"{list(shape) if isinstance(shape, tuple) else shape}. Likely cause: {cause}"
            )
    same = close(ACT_ATOL, ACT_RTOL)
    for i, (name, t, want) in enumerate(zip(_QKV, got, expected)):
        hook = f"blocks.{layer}.attn.hook_{name}"
        row = compare_tensors(hook, t.detach(), want, ACT_ATOL, ACT_RTOL)
        if row.passed:
            continue
        W, b = Ws[i], bs[i]
        big = name.upper()
        mistakes = [
            (want - b, f"b_{big} is missing: {name} = x @ W_{big} + b_{big}"),
            *[
                (
                    expected[j],
                    f"the three come back in the wrong order: your {name} is the reference's "
                    f"{_QKV[j]}; return q, k, v, in that order",
                )
                for j in range(3)
                if j != i
            ],
            *[
                (
                    _project(x, Ws[j], b),
                    f"{name} was projected with W_{_QKV[j].upper()}; it uses W_{big}",
                )
                for j in range(3)
                if j != i
            ],
            (
                (x @ W.reshape(d_model, n_heads * d_head)).reshape(batch, pos, n_heads, d_head) + b,
                f"W_{big}.reshape(d_model, n_heads * d_head) mixes heads into d_model: W_{big} "
                f"is [n_heads, d_model, d_head], so bring d_model first "
                "(W.permute(1, 0, 2)) before flattening, or use einsum",
            ),
        ]
        cause = matching_mistake(t.detach(), mistakes, same) or (
            f"{name}[b, p, h] = x[b, p] @ W_{big}[h] + b_{big}[h]"
        )
        raise AssertionError(f"{row.describe()}. Likely cause: {cause}")
    print(
        f"Correct: your q, k and v are the reference's blocks.{layer}.attn.hook_q, hook_k "
        f"and hook_v (atol {ACT_ATOL:g}, rtol {ACT_RTOL:g})."
    )


@exercise(solutions.attn_scores)
def check_attn_scores(attn_scores: Callable, cache: Mapping[str, Tensor], layer: int = 0) -> None:
    """Check ``attn_scores(q, k) -> scores[batch, n_heads, query_pos, key_pos]``.

    ``q`` and ``k`` are the reference's ``hook_q`` and ``hook_k`` (``[batch, pos, n_heads,
    d_head]``); the result is compared with ``hook_attn_scores`` to within 1e-4 (absolute and
    relative) on the entries a query may see (key <= query). The reference has already masked
    the others (with ``torch.finfo(float32).min``, the next step), so they are not compared.
    """
    q, k = _hook(cache, layer, "hook_q"), _hook(cache, layer, "hook_k")
    expected = _hook(cache, layer, "hook_attn_scores")
    batch, pos, n_heads, d_head = q.shape
    got = _as_tensor(attn_scores(q.clone(), k.clone()), "attn_scores")
    if tuple(got.shape) != tuple(expected.shape):
        if tuple(got.shape) == (batch, pos, pos):
            cause = "the heads were summed over: keep n_heads in the einsum's output"
        elif tuple(got.shape) == (batch, pos, pos, n_heads):
            cause = "the axes are in the wrong order: n_heads goes second"
        else:
            cause = "every head gets its own [query_pos, key_pos] table"
        raise AssertionError(
            f"expected shape (batch, n_heads, query_pos, key_pos) = {tuple(expected.shape)}, "
            f"got {tuple(got.shape)}. Likely cause: {cause}."
        )
    seen = _causal(pos, pos)
    raw = _raw_scores(q, k)
    if _close(got, raw, seen):
        print(
            f"Correct: q.k / sqrt(d_head) matches blocks.{layer}.attn.hook_attn_scores "
            "within 1e-4 on every key a query may see."
        )
        return
    if _close(got, raw * math.sqrt(d_head), seen):
        cause = f"the scores are not scaled: divide q.k by sqrt(d_head) = {math.sqrt(d_head):g}"
    elif _close(got, raw / math.sqrt(d_head), seen):
        cause = (
            f"the scores are divided by d_head = {d_head}; divide by sqrt(d_head) = "
            f"{math.sqrt(d_head):g} instead"
        )
    elif _close(got, raw.transpose(-1, -2), seen):
        cause = (
            "queries and keys are swapped: scores[..., i, j] is query i dotted with key j "
            "(put the query axis before the key axis in the einsum's output)"
        )
    elif _close(got, raw.sum(1, keepdim=True).expand_as(raw), seen):
        cause = "every head got the sum over heads: keep n_heads apart in the einsum"
    else:
        cause = "check which axes the einsum sums over (d_head only) and the scale"
    raise AssertionError(
        f"your scores differ from blocks.{layer}.attn.hook_attn_scores: "
        f"{_worst(got, expected, seen, _SCORE_AXES)}. Likely cause: {cause}."
    )


@exercise(solutions.causal_mask)
def check_causal_mask(causal_mask: Callable, cache: Mapping[str, Tensor], layer: int = 0) -> None:
    """Check ``causal_mask(scores) -> masked_scores``, both ``[batch, n_heads, query_pos,
    key_pos]``: every score of a key after its query replaced by a huge negative number.

    The input is the layer's unmasked scores (``hook_q . hook_k / sqrt(d_head)``). The result
    must equal ``hook_attn_scores`` to within 1e-4 where key <= query, and be at most -1e4
    (``-inf`` or ``torch.finfo(dtype).min`` are the usual choices; TransformerLens stores the
    latter) where key > query.
    """
    q, k = _hook(cache, layer, "hook_q"), _hook(cache, layer, "hook_k")
    expected = _hook(cache, layer, "hook_attn_scores")
    raw = _raw_scores(q, k)
    pos = raw.shape[-1]
    got = _as_tensor(causal_mask(raw.clone()), "causal_mask")
    if got.shape != raw.shape:
        raise AssertionError(
            f"expected the shape of the scores, {tuple(raw.shape)}, got {tuple(got.shape)}: "
            "masking changes values, not shapes"
        )
    if torch.isnan(got).any():
        raise AssertionError(
            "the masked scores contain NaN. Likely cause: multiplying by an -inf mask "
            "(0 * -inf is NaN): use scores.masked_fill(future, -inf) instead"
        )
    seen = _causal(pos, pos)
    future = ~seen
    diagonal = torch.eye(pos, dtype=torch.bool)
    masked = got <= ZERO_WEIGHT_SCORE
    kept = _close(got, raw, seen & ~diagonal) and _close(got, raw, diagonal)
    if masked[..., future].all() and not masked[..., seen].any() and _close(got, raw, seen):
        value = got[..., future].max().item()
        print(
            f"Correct: keys after the query are masked (with {value:.4g}; the hook stores "
            f"{expected[..., future].max().item():.4g}), and the other scores match "
            f"blocks.{layer}.attn.hook_attn_scores within 1e-4."
        )
        return
    if _close(got, raw):
        cause = (
            "nothing was masked: a query still sees the keys after it; fill the entries "
            "with key > query (torch.ones(n, n).triu(1), as bool) with -inf"
        )
    elif (
        masked[..., diagonal].all()
        and masked[..., future].all()
        and _close(got, raw, seen & ~diagonal)
    ):
        cause = (
            "the diagonal is masked too (triu(0), or tril(-1) as the allowed set): a query "
            "may attend to its own position; mask only key > query, triu(diagonal=1)"
        )
    elif masked[..., seen].all() and not masked[..., future & ~diagonal].any():
        cause = (
            "the mask is inverted: the past is hidden and the future kept; the allowed "
            "entries are the lower triangle (tril), the masked ones the strict upper (triu(1))"
        )
    elif _close(got[..., future], torch.zeros_like(got[..., future])) and _close(got, raw, seen):
        cause = (
            "the future scores were set to 0, which the softmax still gives weight "
            "exp(0) / sum: fill them with -inf or torch.finfo(scores.dtype).min instead"
        )
    elif not masked[..., future].all() and kept:
        worst = got.masked_fill(~future, -math.inf).max().item()
        cause = (
            f"a masked score is only {worst:.3g}: use -inf or torch.finfo(dtype).min, so "
            "that its weight after the softmax is exactly 0"
        )
    else:
        cause = "mask exactly the entries with key > query, and leave the others unchanged"
    which = (masked != future).nonzero()
    example = ""
    if len(which):
        _, head, i, j = (int(t) for t in which[0])
        state = "masked" if masked[0, head, i, j] else "not masked"
        example = f" For example head {head}, query {i}, key {j} is {state}."
    raise AssertionError(
        f"your masked scores differ from blocks.{layer}.attn.hook_attn_scores.{example} "
        f"Likely cause: {cause}."
    )


@exercise(solutions.softmax_pattern)
def check_softmax(softmax: Callable, cache: Mapping[str, Tensor], layer: int = 0) -> None:
    """Check ``softmax(masked_scores) -> pattern``, both ``[batch, n_heads, query_pos,
    key_pos]``, on the reference's ``hook_attn_scores``; compared with ``hook_pattern`` to
    within 1e-5 (absolute)."""
    scores = _hook(cache, layer, "hook_attn_scores")
    expected = _hook(cache, layer, "hook_pattern")
    got = _as_tensor(softmax(scores.clone()), "softmax")
    if got.shape != expected.shape:
        raise AssertionError(
            f"expected shape (batch, n_heads, query_pos, key_pos) = {tuple(expected.shape)}, "
            f"got {tuple(got.shape)}: a softmax keeps the shape of its input"
        )
    everywhere = torch.ones(expected.shape[-1], dtype=torch.bool)
    if _close(got, expected, tol=1e-5):
        print(
            f"Correct: the pattern matches blocks.{layer}.attn.hook_pattern within 1e-5; "
            "each query's weights are >= 0 and sum to 1."
        )
        return
    if torch.isnan(got).any():
        cause = "NaN in the pattern: a row with no finite score, or exp() overflowing"
    elif _close(got, scores.softmax(-2), tol=1e-5):
        cause = (
            "the softmax runs over the query axis (dim=-2), so each key's column sums to 1; "
            "normalise each query's row: softmax(dim=-1)"
        )
    elif _close(got, scores.softmax(1), tol=1e-5):
        cause = "the softmax runs over the heads (dim=1); use the key axis, dim=-1"
    elif _close(got, scores.exp(), tol=1e-5):
        cause = "exp() without dividing by the row's sum: each row must sum to 1"
    elif not torch.allclose(got.sum(-1), torch.ones(()), atol=1e-4):
        cause = "the rows do not sum to 1: softmax over the last axis (keys)"
    else:
        cause = "apply torch.softmax(scores, dim=-1) to the masked scores as they are"
    raise AssertionError(
        f"your pattern differs from blocks.{layer}.attn.hook_pattern: "
        f"{_worst(got, expected, everywhere, _SCORE_AXES)}. Likely cause: {cause}."
    )


@exercise(solutions.weighted_values)
def check_weighted_values(
    weighted_values: Callable, cache: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``weighted_values(pattern, v) -> z[batch, query_pos, n_heads, d_head]`` for
    ``pattern[batch, n_heads, query_pos, key_pos]`` (``hook_pattern``) and ``v[batch, key_pos,
    n_heads, d_head]`` (``hook_v``); compared with ``hook_z`` to within 1e-4 (absolute and
    relative)."""
    pattern, v = _hook(cache, layer, "hook_pattern"), _hook(cache, layer, "hook_v")
    expected = _hook(cache, layer, "hook_z")
    batch, pos, n_heads, d_head = v.shape
    got = _as_tensor(weighted_values(pattern.clone(), v.clone()), "weighted_values")
    if got.shape != expected.shape:
        if tuple(got.shape) == (batch, n_heads, pos, d_head):
            cause = (
                "the axes come out as [batch, n_heads, pos, d_head]; hook_z is [batch, pos, "
                "n_heads, d_head]: write the einsum's output in that order"
            )
        elif tuple(got.shape) == (batch, pos, d_head):
            cause = "the heads were summed over: keep n_heads in the einsum's output"
        else:
            cause = "sum over the key axis only"
        raise AssertionError(
            f"expected shape (batch, pos, n_heads, d_head) = {tuple(expected.shape)}, "
            f"got {tuple(got.shape)}. Likely cause: {cause}."
        )
    everywhere = torch.ones(d_head, dtype=torch.bool)
    if _close(got, expected):
        print(f"Correct: z matches blocks.{layer}.attn.hook_z within 1e-4.")
        return
    transposed = torch.einsum("bhkq,bkhd->bqhd", pattern, v)
    if _close(got, transposed):
        cause = (
            "the pattern is transposed: z at query i is the sum over keys j of "
            "pattern[..., i, j] * v[j]"
        )
    elif _close(got, v):
        cause = "z is v itself: weight the values by the pattern"
    elif _close(got, v.sum(1, keepdim=True).expand_as(v)):
        cause = "the values are summed without the pattern's weights"
    else:
        cause = "z[b, i, h] = sum over j of pattern[b, h, i, j] * v[b, j, h]"
    raise AssertionError(
        f"your z differs from blocks.{layer}.attn.hook_z: "
        f"{_worst(got, expected, everywhere, ('batch', 'pos', 'head', 'd_head'))}. "
        f"Likely cause: {cause}."
    )


@exercise(solutions.attn_out)
def check_attn_out(
    attn_out: Callable, cache: Mapping[str, Tensor], params: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``attn_out(z, W_O, b_O) -> [batch, pos, d_model]`` for ``z[batch, pos, n_heads,
    d_head]`` (the reference's ``hook_z``), ``W_O[n_heads, d_head, d_model]`` and
    ``b_O[d_model]``: the result must be ``blocks.{layer}.hook_attn_out``, to atol 1e-4 and
    rtol 1e-3. A wrong one is compared with the usual mistakes: a missing ``b_O``, ``b_O``
    added once per head, the heads averaged or left unsummed.
    """
    z = cache[f"blocks.{layer}.attn.hook_z"].detach()
    W_O, b_O = _weights(params, layer, "W_O b_O")
    expected = cache[f"blocks.{layer}.hook_attn_out"].detach()
    n_heads = W_O.shape[0]
    with torch.no_grad():
        try:
            got = attn_out(z.clone(), W_O, b_O)
        except RuntimeError as err:
            raise AssertionError(
                f"the shapes do not fit ({str(err).splitlines()[0]}). z is [batch, pos, "
                f"n_heads, d_head] = {list(z.shape)} and W_O is [n_heads, d_head, d_model] = "
                f"{list(W_O.shape)}: contract both n_heads and d_head, e.g. einsum('batch pos "
                "n_heads d_head, n_heads d_head d_model -> batch pos d_model')"
            ) from None
    got = _as_tensor(got, "attn_out")
    per_head = torch.einsum("bphd,hdm->bphm", z, W_O)
    if tuple(got.shape) != tuple(expected.shape):
        if tuple(got.shape) == tuple(per_head.shape):
            cause = (
                "the heads are not summed: each head's z @ W_O[h] is one [batch, pos, "
                "d_model] term, and the layer's output is their sum (leave n_heads out of "
                "the einsum's output)"
            )
        else:
            cause = "the output is [batch, pos, d_model], like the residual stream"
        raise AssertionError(
            f"expected [batch, pos, d_model] = {list(expected.shape)}, got "
            f"{list(got.shape)}. Likely cause: {cause}"
        )
    name = f"blocks.{layer}.hook_attn_out"
    row = compare_tensors(name, got, expected, ACT_ATOL, ACT_RTOL)
    if not row.passed:
        summed = per_head.sum(2)
        cause = (
            matching_mistake(
                got,
                [
                    (summed, "b_O is missing: the output is the sum over heads, plus b_O"),
                    (
                        summed + n_heads * b_O,
                        f"b_O is added once per head ({n_heads} times): the heads share one "
                        "bias, added once after the sum over heads",
                    ),
                    (
                        summed / n_heads + b_O,
                        "the heads are averaged: their outputs add up, so sum over n_heads",
                    ),
                ],
                close(ACT_ATOL, ACT_RTOL),
            )
            or "out[b, p] = sum over h of z[b, p, h] @ W_O[h], plus b_O"
        )
        raise AssertionError(f"{row.describe()}. Likely cause: {cause}")
    print(f"Correct: your output is the reference's {name} (atol {ACT_ATOL:g}, rtol {ACT_RTOL:g}).")


# The six steps of a layer, in order, with the arguments each takes (by what they are).
_STEPS = {
    "qkv": ("x", "W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V"),
    "attn_scores": ("q", "k"),
    "causal_mask": ("the scores",),
    "softmax_pattern": ("the masked scores",),
    "weighted_values": ("the pattern", "v"),
    "attn_out": ("z", "W_O", "b_O"),
}
_OUTPUT = {
    "attn_scores": "the scores",
    "causal_mask": "the masked scores",
    "softmax_pattern": "the pattern",
    "weighted_values": "z",
}


class _WatchedSteps:
    """The reader's six steps, each recording its arguments and result on each call."""

    def __init__(self, steps: object):
        self.calls: dict[str, list[tuple[tuple, object]]] = {}
        for name in _STEPS:
            fn = getattr(steps, name, None)
            if not callable(fn):
                raise AssertionError(
                    f"steps.{name} is missing: steps holds your six functions, {', '.join(_STEPS)}"
                )
            setattr(self, name, self._watch(name, fn))

    def _watch(self, name: str, fn: Callable) -> Callable:
        def watched(*args, **kwargs):
            out = fn(*args, **kwargs)
            self.calls.setdefault(name, []).append(((*args, *kwargs.values()), out))
            return out

        return watched


@exercise(solutions.attn_layer)
def check_attn_layer(
    attn_layer: Callable,
    cache: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    steps: object,
    layer: int = 1,
) -> None:
    """Check ``attn_layer(x, params, layer, steps) -> [batch, pos, d_model]``: the whole
    attention layer ``layer`` assembled from the reader's six steps (``steps.qkv``,
    ``steps.attn_scores``, ``steps.causal_mask``, ``steps.softmax_pattern``,
    ``steps.weighted_values``, ``steps.attn_out``).

    The input is the reference's ``blocks.{layer}.ln1.hook_out`` (pick a layer other than 0,
    so that weights taken from the wrong layer show). The steps are handed in watched, and
    what each returns is compared in order with ``hook_q``, ``hook_k``, ``hook_v``,
    ``hook_attn_scores`` (before the mask on the entries a query may see, then masked: at
    most -1e4 above the diagonal), ``hook_pattern``, ``hook_z`` and ``hook_attn_out``, to
    atol 1e-4 and rtol 1e-3 (1e-5 absolute for the pattern, as in :func:`check_softmax`).
    The first that differs is named, with what the step was given when that is not what it
    takes (another layer's weights, the scores before the mask, k for v, ...).
    """
    L = layer
    p = f"blocks.{L}.attn."
    params = {k: v.detach() for k, v in params.items()}
    x = cache[f"blocks.{L}.ln1.hook_out"].detach().clone()
    hooks = {n: cache[p + f"hook_{n}"].detach() for n in ("q", "k", "v", "attn_scores")}
    hooks["pattern"], hooks["z"] = cache[p + "hook_pattern"], cache[p + "hook_z"]
    expected_out = cache[f"blocks.{L}.hook_attn_out"].detach()
    watched = _WatchedSteps(steps)
    with torch.no_grad():
        got = attn_layer(x, params, L, watched)

    labels = {id(x): "x"}
    known = [(x, "x")]  # for a copy of a known tensor (.detach(), .to(device)): by value
    for name, t in params.items():
        if name.startswith("blocks.") and ".attn." in name:
            i, short = name.split(".")[1], name.rsplit(".", 1)[-1]
            labels[id(t)] = short if int(i) == L else f"blocks.{i}'s {short}"
            known.append((t, labels[id(t)]))

    def label(t: object) -> str:
        if id(t) in labels:
            return labels[id(t)]
        for other, name in known:
            if isinstance(t, Tensor) and t.shape == other.shape and torch.equal(t, other):
                return name
        return "another tensor"

    def step(name: str) -> tuple[tuple, object]:
        calls = watched.calls.get(name)
        if not calls:
            raise AssertionError(
                f"your attn_layer never called steps.{name}: the layer is {', then '.join(_STEPS)}"
            )
        args, out = calls[0]
        if name in _OUTPUT:
            labels[id(out)] = _OUTPUT[name]
            known.append((out, _OUTPUT[name]))
        elif name == "qkv" and isinstance(out, tuple | list):
            labels.update({id(t): n for t, n in zip(out, _QKV)})
            known.extend((t, n) for t, n in zip(out, _QKV))
        return args, out

    def given(name: str, args: tuple) -> str:
        """What was wrong with the arguments of step ``name``, or '' if nothing."""
        got_labels = tuple(label(a) for a in args)
        if got_labels == _STEPS[name]:
            return ""
        return (
            f"steps.{name} was given ({', '.join(got_labels)}); it takes "
            f"({', '.join(_STEPS[name])})"
        )

    def fail(row_or_text, name: str, args: tuple, otherwise: str) -> AssertionError:
        where = row_or_text if isinstance(row_or_text, str) else row_or_text.describe()
        return AssertionError(
            f"the first hook that differs is {where}. Likely cause: "
            f"{given(name, args) or otherwise}"
        )

    args, out = step("qkv")
    if not isinstance(out, tuple | list) or len(out) != 3:
        raise AssertionError(f"steps.qkv returned {type(out).__name__}, not (q, k, v)")
    for name, t in zip(_QKV, out):
        row = compare_tensors(p + f"hook_{name}", _as_tensor(t, "qkv"), hooks[name])
        if not row.passed:
            raise fail(row, "qkv", args, f"qkv(x, W_Q, b_Q, W_K, b_K, W_V, b_V) of layer {L}")
    q, k = hooks["q"], hooks["k"]
    pos = q.shape[1]
    seen = _causal(pos, pos).to(q.device)

    def agree(got: Tensor, expected: Tensor) -> bool:  # where a query may see the key
        if got.shape != expected.shape:
            return False
        where = seen.cpu()
        return torch.allclose(got[..., where], expected[..., where], atol=ACT_ATOL, rtol=ACT_RTOL)

    args, scores = step("attn_scores")
    scores = _as_tensor(scores, "attn_scores")
    raw = _raw_scores(q.float().cpu(), k.float().cpu())
    if not agree(scores, raw):
        where = f"{p}hook_attn_scores (before the mask, where key <= query)"
        raise fail(where, "attn_scores", args, "the scores are q . k / sqrt(d_head)")

    if "causal_mask" not in watched.calls:
        raise AssertionError(
            f"the first hook that differs is {p}hook_attn_scores: the scores are never "
            "masked. Likely cause: steps.causal_mask is not called; the softmax reads "
            "causal_mask(scores)"
        )
    args, masked = step("causal_mask")
    masked = _as_tensor(masked, "causal_mask")
    future = ~seen.cpu()
    if not (agree(masked, raw) and (masked[..., future] <= ZERO_WEIGHT_SCORE).all()):
        where = f"{p}hook_attn_scores (masked)"
        raise fail(where, "causal_mask", args, "causal_mask(scores) of this layer's scores")

    args, pattern = step("softmax_pattern")
    row = compare_tensors(
        p + "hook_pattern", _as_tensor(pattern, "softmax"), hooks["pattern"], 1e-5, 0
    )
    if not row.passed:
        raise fail(row, "softmax_pattern", args, "the pattern is softmax_pattern(masked scores)")

    args, z = step("weighted_values")
    row = compare_tensors(p + "hook_z", _as_tensor(z, "weighted_values"), hooks["z"])
    if not row.passed:
        raise fail(row, "weighted_values", args, "z is weighted_values(pattern, v)")

    args, out = step("attn_out")
    name = f"blocks.{L}.hook_attn_out"
    row = compare_tensors(name, _as_tensor(out, "attn_out"), expected_out)
    if not row.passed:
        raise fail(row, "attn_out", args, f"attn_out(z, W_O, b_O) of layer {L}")
    if not isinstance(got, Tensor) or got is not out and not close(ACT_ATOL, ACT_RTOL)(got, out):
        raise AssertionError(
            f"every step is right, but attn_layer returns {label(got)}, not what steps.attn_out "
            f"returned ({name})"
        )
    print(
        f"Correct: your layer gives the reference's {p}hook_q, hook_k, hook_v, "
        f"hook_attn_scores, hook_pattern, hook_z and blocks.{L}.hook_attn_out "
        f"(atol {ACT_ATOL:g}, rtol {ACT_RTOL:g})."
    )


def _attend_one(q: Tensor, k: Tensor, v: Tensor, W_O: Tensor, b_O: Tensor, keys: Tensor):
    """One query's attention output over the keys where ``keys`` (bool, ``[key_pos]``) is
    True: what a step gives when it lets its query see only those keys."""
    scores = _raw_scores(q, k).masked_fill(~keys.to(q.device), -math.inf)
    z = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1).nan_to_num(0.0), v)
    return torch.einsum("bphd,hdm->bpm", z, W_O) + b_O


@exercise(solutions.cached_step)
def check_cached_step(
    cached_step: Callable, cache: Mapping[str, Tensor], params: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``cached_step(x_new, k_past, v_past, params, layer) -> (out, k, v)``: one position
    of attention layer ``layer`` with a key/value cache.

    For each position t of the reference's input ``blocks.{layer}.ln1.hook_out``, in order,
    the step gets ``x[:, t:t+1]`` and the cache of the positions before it, ``hook_k[:, :t]``
    and ``hook_v[:, :t]`` (``[batch, t, n_heads, d_head]``; empty at t = 0). Its output must
    be row t of the full forward, ``blocks.{layer}.hook_attn_out[:, t:t+1]``, and the cache it
    returns ``hook_k[:, :t+1]`` and ``hook_v[:, :t+1]``: atol 1e-4, rtol 1e-3. A wrong row is
    compared with what the usual mistakes give: attending before appending the new key and
    value, and a causal mask applied to the one query, so that it sees only the first
    position or only itself.
    """
    x = cache[f"blocks.{layer}.ln1.hook_out"].detach()
    K, V, Q = (cache[f"blocks.{layer}.attn.hook_{n}"].detach() for n in ("k", "v", "q"))
    full = cache[f"blocks.{layer}.hook_attn_out"].detach()
    W_O, b_O = _weights(params, layer, "W_O b_O")
    params = {k: v.detach() for k, v in params.items()}
    same = close(ACT_ATOL, ACT_RTOL)
    pos = x.shape[1]

    def mistakes_at(t: int) -> list[tuple[Tensor, str]]:
        """What the usual mistakes give at position t."""
        q_t, k_t, v_t = Q[:, t : t + 1], K[:, : t + 1], V[:, : t + 1]
        only = torch.zeros(t + 1, dtype=torch.bool)
        first, itself = only.clone(), only.clone()
        first[0], itself[t] = True, True
        return [
            (
                _attend_one(q_t, K[:, :t], V[:, :t], W_O, b_O, torch.ones(t, dtype=torch.bool)),
                "the new key and value are not in the cache when the query attends: "
                "append them first (torch.cat along pos), then attend over all t + 1 keys; "
                "the new position sees itself",
            ),
            (
                _attend_one(q_t, k_t, v_t, W_O, b_O, first),
                "the causal mask is applied to the one new query as if it were position "
                "0, so it sees only the first key; it is the last position, with every "
                "cached key in its past: no mask",
            ),
            (
                _attend_one(q_t, k_t, v_t, W_O, b_O, itself),
                "the query sees only itself: its own key is the last of t + 1, and all "
                "the cached ones are in its past too; no mask",
            ),
        ]

    for t in range(pos):
        with torch.no_grad():
            got = cached_step(
                x[:, t : t + 1].clone(), K[:, :t].clone(), V[:, :t].clone(), params, layer
            )
        if not isinstance(got, tuple | list) or len(got) != 3:
            raise AssertionError(
                "cached_step should return three things: the new position's output and the "
                f"cache with its key and value appended; got {type(got).__name__}"
            )
        out, k, v = (_as_tensor(g, "cached_step") for g in got)
        expected = full[:, t : t + 1]
        row = compare_tensors(
            f"blocks.{layer}.hook_attn_out[:, {t}:{t + 1}]", out, expected, ACT_ATOL, ACT_RTOL
        )
        if not row.passed:
            hints = [hint for wrong, hint in mistakes_at(t) if same(out, wrong)]
            if len(hints) > 1:  # with a short cache two mistakes agree: look at the last step
                last = pos - 1
                with torch.no_grad():
                    got = cached_step(x[:, last:], K[:, :last], V[:, :last], params, layer)
                hints = [h for wrong, h in mistakes_at(last) if same(got[0], wrong)] or hints
            cause = (
                hints[0]
                if hints
                else (
                    "the new query attends, with no mask, over the cached keys and its own, and "
                    "its z goes through W_O and b_O like every row's"
                )
            )
            raise AssertionError(
                f"at position {t} (a cache of {t}), your step's output differs from row {t} "
                f"of the full forward: {row.describe()}. Likely cause: {cause}"
            )
        for name, got_c, want, past in (("k", k, K, K[:, :t]), ("v", v, V, V[:, :t])):
            want = want[:, : t + 1]
            if same(got_c, want):
                continue
            new = want[:, t:]
            if same(got_c, past):
                cause = f"the {name} it returns is the old cache: append the new position's {name}"
            elif same(got_c, torch.cat([new, past], dim=1)):
                cause = f"the new {name} is put first: it belongs after the cached ones (dim=1)"
            else:
                cause = (
                    f"the {name} returned should be the cache with the new {name} appended, "
                    f"[batch, past + 1, n_heads, d_head] = {list(want.shape)}"
                )
            raise AssertionError(
                f"at position {t}, the output is right but the cache is not "
                f"(hook_{name}[:, :{t + 1}], shape {list(got_c.shape)}): {cause}"
            )
    print(
        f"Correct: step by step over all {pos} positions, your cached step gives the rows of "
        f"blocks.{layer}.hook_attn_out and grows the cache into hook_k and hook_v "
        f"(atol {ACT_ATOL:g}, rtol {ACT_RTOL:g})."
    )


def head_pattern(W_Q: Tensor, W_K: Tensor, n: int | None = None) -> Tensor:
    """The pattern ``[query_pos, key_pos]`` of one head whose residual stream at position i is
    the one-hot vector of i: queries ``eye(n) @ W_Q``, keys ``eye(n) @ W_K`` (no scaling), a
    causal mask, a softmax. ``W_Q`` and ``W_K`` are ``[n, d_head]``."""
    n = W_Q.shape[0] if n is None else n
    positions = torch.eye(n)  # row i: the one-hot vector of position i
    scores = (positions @ W_Q.float()) @ (positions @ W_K.float()).T
    return scores.masked_fill(~_causal(n, n), -math.inf).softmax(-1)


def check_previous_token_head(
    W_Q: Tensor, W_K: Tensor, offset: int = 1, min_weight: float = 0.9
) -> None:
    """Check that one-hot positions through ``W_Q`` and ``W_K`` (``[n, d_head]``, see
    :func:`head_pattern`) give a head in which every query i >= offset puts at least
    ``min_weight`` of its weight on key ``i - offset``."""
    W_Q, W_K = _as_tensor(W_Q, "W_Q"), _as_tensor(W_K, "W_K")
    if W_Q.ndim != 2 or W_Q.shape != W_K.shape:
        raise AssertionError(
            f"W_Q and W_K should both be [n_positions, d_head], got {tuple(W_Q.shape)} and "
            f"{tuple(W_K.shape)}"
        )
    n = W_Q.shape[0]
    pattern = head_pattern(W_Q, W_K)
    rows = torch.arange(offset, n)
    target = pattern[rows, rows - offset]
    if (target >= min_weight).all():
        print(
            f"Correct: every query i >= {offset} puts at least {target.min().item():.4f} of "
            f"its weight on key i - {offset}."
        )
        return
    best_unmasked = (W_Q @ W_K.T).argmax(-1)  # the key each query would pick, unmasked
    later = rows[(target < min_weight) & (best_unmasked[rows] > rows)]
    i = int(later[0]) if len(later) else int(rows[target.argmin()])
    favourite = int(pattern[i].argmax())
    if len(later):
        best = int(best_unmasked[i])
        cause = (
            f"the query at {i} matches the key at {best}, a later position that the "
            "causal mask hides: shift the other way"
        )
    elif favourite == i:
        cause = "the query at i matches the key at i: shift W_Q (or W_K) by one position"
    elif (pattern[rows, rows - offset] > pattern[rows].max(-1).values - 1e-6).all():
        cause = (
            "the right key wins, but not by enough: scale W_Q up (the softmax sharpens as "
            "the gap between scores grows)"
        )
    else:
        cause = f"the query at i should match the key at i - {offset} alone"
    raise AssertionError(
        f"query {i} puts {pattern[i, i - offset].item():.3f} of its weight on key {i - offset} "
        f"(at least {min_weight} wanted) and most on key {favourite}. Likely cause: {cause}."
    )

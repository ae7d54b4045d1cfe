"""Compare our activations with the reference's, hook by hook.

Every chapter ends its build with the same move: run our module and the reference on
the same input, then put the two sets of activations side by side::

    logits, ours = model.run_with_cache(tokens)
    _, theirs = ref.bridge.run_with_cache(tokens)
    compare(ours, theirs, names=["hook_embed", "blocks.0.attn.hook_pattern"])

The result renders as a table in a notebook and ``.assert_ok()`` fails on the first hook
that disagrees, naming the position (and head) where the error is largest.

Agreement means ``|ours - ref| <= atol + rtol * |ref|`` element-wise, the rule of
``torch.testing.assert_close``. Entries that both sides mask with a huge negative number
(``-inf`` or ``torch.finfo.min``, as attention scores are masked) count as equal.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

MASKED = -1e30  # scores at or below this are "masked out", whichever sentinel was used

# The names of each axis, by the hook's last component, for error messages.
_AXES = {
    "hook_q": ("batch", "pos", "head", "d_head"),
    "hook_k": ("batch", "pos", "head", "d_head"),
    "hook_v": ("batch", "pos", "head", "d_head"),
    "hook_z": ("batch", "pos", "head", "d_head"),
    "hook_attn_scores": ("batch", "head", "query_pos", "key_pos"),
    "hook_pattern": ("batch", "head", "query_pos", "key_pos"),
    "hook_pre": ("batch", "pos", "d_mlp"),
    "hook_post": ("batch", "pos", "d_mlp"),
    "hook_scale": ("batch", "pos", "1"),
    "hook_unembed": ("batch", "pos", "d_vocab"),
}
_DEFAULT_AXES = ("batch", "pos", "d_model")


def axis_names(hook: str, ndim: int) -> tuple[str, ...]:
    """Names for the axes of the activation at ``hook`` (``dim0, dim1, ...`` if unknown)."""
    axes = _AXES.get(hook.rsplit(".", 1)[-1], _DEFAULT_AXES)
    return axes if len(axes) == ndim else tuple(f"dim{i}" for i in range(ndim))


@dataclass(frozen=True)
class HookComparison:
    """How one hook's activations compare."""

    name: str
    shape: tuple[int, ...]
    max_abs: float  # max |ours - ref|
    max_rel: float  # max |ours - ref| / max(|ref|, atol)
    passed: bool
    worst: tuple[int, ...]  # index where |ours - ref| most exceeds (or nears) its tolerance
    axes: tuple[str, ...]
    ours_at_worst: float
    ref_at_worst: float
    problem: str = ""  # set when the two could not be compared at all (shape, missing)

    def location(self) -> str:
        """``"batch 0, pos 3, head 5, d_head 12"``: where the largest error sits."""
        return ", ".join(f"{axis} {i}" for axis, i in zip(self.axes, self.worst, strict=True))

    def describe(self) -> str:
        if self.problem:
            return f"{self.name}: {self.problem}"
        return (
            f"{self.name} {list(self.shape)}: max abs error {self.max_abs:.3g}, "
            f"max rel error {self.max_rel:.3g}; worst at {self.location()} "
            f"(ours {self.ours_at_worst:.6g}, reference {self.ref_at_worst:.6g})"
        )


def compare_tensors(
    name: str, ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-4, rtol: float = 1e-3
) -> HookComparison:
    """Compare one pair of tensors (``ref`` is the reference)."""
    if tuple(ours.shape) != tuple(ref.shape):
        return HookComparison(
            name,
            tuple(ref.shape),
            math.inf,
            math.inf,
            False,
            (),
            (),
            math.nan,
            math.nan,
            problem=f"shape {list(ours.shape)} differs from the reference's {list(ref.shape)}",
        )
    a = ours.detach().to("cpu", torch.float64)
    b = ref.detach().to("cpu", torch.float64)
    same = (a == b) | ((a <= MASKED) & (b <= MASKED))
    diff = torch.where(same, torch.zeros_like(a), (a - b).abs())
    diff = torch.nan_to_num(diff, nan=math.inf)  # a NaN on one side only is never close
    b_abs = torch.where(same, torch.zeros_like(b), b.abs())
    excess = diff / (atol + rtol * b_abs)  # > 1 where the tolerance is broken
    if a.numel() == 0:
        return HookComparison(name, tuple(ref.shape), 0.0, 0.0, True, (), (), 0.0, 0.0)
    flat = int(excess.flatten().argmax())
    worst = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), a.shape))
    return HookComparison(
        name=name,
        shape=tuple(ref.shape),
        max_abs=float(diff.max()),
        max_rel=float((diff / b_abs.clamp_min(atol)).max()),
        passed=bool((excess <= 1).all()),
        worst=worst,
        axes=axis_names(name, a.ndim),
        ours_at_worst=float(a[worst]),
        ref_at_worst=float(b[worst]),
    )


class Comparison:
    """The hook-by-hook comparison of two sets of activations."""

    def __init__(self, rows: list[HookComparison], atol: float, rtol: float):
        self.rows = rows
        self.atol = atol
        self.rtol = rtol

    @property
    def passed(self) -> bool:
        return all(row.passed for row in self.rows)

    @property
    def failures(self) -> list[HookComparison]:
        return [row for row in self.rows if not row.passed]

    def __getitem__(self, name: str) -> HookComparison:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no hook {name!r} in this comparison")

    def __len__(self) -> int:
        return len(self.rows)

    def assert_ok(self) -> Comparison:
        """Raise ``AssertionError`` naming the first hook that disagrees, and where."""
        for row in self.rows:
            if not row.passed:
                raise AssertionError(
                    f"{row.describe()}; tolerance atol={self.atol:g}, rtol={self.rtol:g}. "
                    f"{len(self.failures)} of {len(self.rows)} hooks disagree."
                )
        return self

    def verdict(self) -> str:
        tol = f"atol={self.atol:g}, rtol={self.rtol:g}"
        n = len(self.rows)
        if self.passed:
            if n == 1:
                return f"The hook {self.rows[0].name} agrees with the reference ({tol})."
            return f"All {n} hooks agree with the reference ({tol})."
        names = ", ".join(row.name for row in self.failures)
        if n == 1:
            return f"The hook {names} DISAGREES with the reference ({tol})."
        return f"{len(self.failures)} of {n} hooks DISAGREE ({tol}): {names}"

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [4])
        lines = [f"{'hook':<{width}}  {'shape':<20} {'max abs':>9} {'max rel':>9}  ok"]
        for r in self.rows:
            ok = "yes" if r.passed else "NO  " + (r.problem or f"worst at {r.location()}")
            lines.append(
                f"{r.name:<{width}}  {str(list(r.shape)):<20} {r.max_abs:>9.2e} {r.max_rel:>9.2e}  {ok}"
            )
        return "\n".join([*lines, self.verdict()])

    def __repr__(self) -> str:
        return f"Comparison({len(self.rows)} hooks, passed={self.passed})"

    def _repr_html_(self) -> str:
        head = "".join(
            f"<th style='text-align:left;padding:2px 8px'>{h}</th>"
            for h in ("hook", "shape", "max abs error", "max rel error", "agrees")
        )
        body = []
        for r in self.rows:
            mark = (
                "<span style='color:#1b7f3b'>&#10004;</span>"
                if r.passed
                else f"<span style='color:#b00020'>&#10008; {html.escape(r.problem or 'worst at ' + r.location())}</span>"
            )
            body.append(
                f"<tr><td style='padding:2px 8px'><code>{html.escape(r.name)}</code></td>"
                f"<td style='padding:2px 8px;white-space:nowrap'>{list(r.shape)}</td>"
                f"<td style='padding:2px 8px'>{r.max_abs:.2e}</td>"
                f"<td style='padding:2px 8px'>{r.max_rel:.2e}</td><td style='padding:2px 8px'>{mark}</td></tr>"
            )
        colour = "#1b7f3b" if self.passed else "#b00020"
        return (
            f"<table style='border-collapse:collapse;font-size:0.9em'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            f"<p style='color:{colour};font-weight:bold'>{html.escape(self.verdict())}</p>"
        )


def compare(
    ours: Mapping[str, torch.Tensor] | Any,
    reference: Mapping[str, torch.Tensor] | Any,  # also TransformerLens's ActivationCache
    names: Iterable[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Comparison:
    """Compare activations hook by hook.

    Args:
        ours: our activations by TransformerLens hook name (e.g. ``model.run_with_cache``).
        reference: the reference's (a dict, or TransformerLens's ``ActivationCache``).
        names: the hooks to compare, in order; default: every hook in ``ours``.
        atol, rtol: the tolerance, as in ``torch.testing.assert_close``.
    """
    if atol < 0 or rtol < 0:
        raise ValueError(f"atol={atol} and rtol={rtol} must both be >= 0")
    names = list(ours.keys()) if names is None else list(names)
    if names and not all(hasattr(acts, "__getitem__") for acts in (ours, reference)):
        raise TypeError("ours and reference must map hook names to tensors")
    if not names:
        raise ValueError("names is empty: nothing to compare")
    rows = []
    for name in names:
        if name not in ours or name not in reference:
            side = "ours" if name not in ours else "the reference's"
            nan = math.nan
            rows.append(
                HookComparison(
                    name,
                    (),
                    nan,
                    nan,
                    False,
                    (),
                    (),
                    nan,
                    nan,
                    problem=f"missing from {side} activations",
                )
            )
            continue
        rows.append(compare_tensors(name, ours[name], reference[name], atol=atol, rtol=rtol))
    return Comparison(rows, atol=atol, rtol=rtol)


def assert_hooks_close(
    ours: Mapping[str, torch.Tensor] | Any,
    reference: Mapping[str, torch.Tensor] | Any,
    names: Iterable[str] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Comparison:
    """:func:`compare`, then raise on the first hook that disagrees."""
    return compare(ours, reference, names, atol=atol, rtol=rtol).assert_ok()


def reference_activations(
    bridge, tokens: torch.Tensor, names: Iterable[str] | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the reference bridge and keep the activations at ``names`` (all if ``None``)."""
    order = None if names is None else list(dict.fromkeys(names))
    wanted = None if order is None else set(order)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(
            tokens, names_filter=None if wanted is None else (lambda n: n in wanted)
        )
    acts = {name: cache[name] for name in (order if order is not None else cache.keys())}
    return logits, acts

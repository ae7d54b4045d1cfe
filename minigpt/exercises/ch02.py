"""Checks for the exercises of chapter 02 (embeddings).

:func:`check_embed` runs the reader's ``embed(tokens, W_E, W_pos)`` twice: first on a small
made-up case where every known mistake gives a different answer (so it can say which
mistake it sees), then on GPT-2's own weights, against the reference's hooks
``hook_embed``, ``hook_pos_embed`` and ``blocks.0.hook_resid_pre``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.exercises.diagnose import matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch02 as solutions

ATOL = 1e-5  # look-ups and one addition: float32 gives the same bits; allow for a device
PROMPT = "The cat sat on the mat. The cat"

# Known mistakes, as the function a reader might write, with the likely cause to report.
EMBED_MISTAKES = [
    (
        lambda tokens, W_E, W_pos: W_E[tokens],
        "positions forgotten: the result is the token embedding alone; add W_pos[p] at position p",
    ),
    (
        lambda tokens, W_E, W_pos: W_pos[: tokens.shape[1]].expand(*tokens.shape, -1),
        "the result is the positional embedding alone; add the token embedding W_E[tokens]",
    ),
    (
        lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[tokens],
        "the token id was used as the position (W_pos[tokens]); a token's position is "
        "where it stands in the row, 0, 1, 2, ...: W_pos[:pos]",
    ),
    (
        lambda tokens, W_E, W_pos: W_E.T[tokens] + W_pos[: tokens.shape[1]],
        "W_E.T was used: W_E is [d_vocab, d_model], one ROW per token, so the lookup is "
        "W_E[tokens] (W_E.T is the unembedding's shape, [d_model, d_vocab])",
    ),
    (
        lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[: tokens.shape[1]].flip(0),
        "positions reversed: the first token gets position 0, W_pos[0]",
    ),
    (
        lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[1 : tokens.shape[1] + 1],
        "positions off by one: they start at 0, not 1",
    ),
    (
        lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[: tokens.shape[0]][:, None],
        "the batch index was used as the position (axes transposed): position p is the "
        "index along the pos axis, tokens.shape[1], the same for every row",
    ),
    (
        lambda tokens, W_E, W_pos: W_E[tokens] * W_pos[: tokens.shape[1]],
        "the two embeddings were multiplied; GPT-2 adds them",
    ),
]


def _run(embed: Callable, tokens, W_E, W_pos, where: str) -> torch.Tensor:
    try:
        got = embed(tokens, W_E, W_pos)
    except (IndexError, RuntimeError) as err:
        raise AssertionError(
            f"on {where} your function raised {type(err).__name__}: {err}. Likely cause: "
            "an index past the end of a matrix. W_E is [d_vocab, d_model], indexed by token "
            "id; W_pos is [n_ctx, d_model], indexed by position 0 .. pos-1 (not by token "
            "id, and not W_E.T)"
        ) from err
    if got is None:
        raise AssertionError("your function returns nothing (a missing `return`)")
    expected_shape = (*tokens.shape, W_E.shape[1])
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != expected_shape:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(
            f"on {where} expected a tensor of shape (batch, pos, d_model) = "
            f"{expected_shape}, got {shape}"
        )
    return got


def _diagnosis(got, tokens, W_E, W_pos) -> str:
    def same(got, wrong) -> bool:
        try:
            return torch.allclose(got, wrong(tokens, W_E, W_pos), atol=ATOL)
        except (IndexError, RuntimeError):  # this mistake is not possible on this case
            return False

    return matching_mistake(got, EMBED_MISTAKES, same) or ""


def _first_wrong(got, expected) -> str:
    bad = ((got - expected).abs() > ATOL).any(-1).nonzero()
    b, p = bad[0].tolist()
    diff = (got[b, p] - expected[b, p]).abs().max().item()
    return f"batch row {b}, position {p} is the first that differs (by up to {diff:.3g})"


def _check_small(embed: Callable, seed: int) -> None:
    """A made-up case: d_vocab = n_ctx = d_model = 16, so W_E.T and W_pos[tokens] run too."""
    gen = torch.Generator().manual_seed(seed)
    W_E = torch.randn(16, 16, generator=gen)
    W_pos = torch.randn(16, 16, generator=gen)
    tokens = torch.randint(0, 16, (3, 7), generator=gen)
    where = "a small made-up case (tokens [3, 7], W_E [16, 16], W_pos [16, 16])"
    got = _run(embed, tokens, W_E, W_pos, where)
    expected = W_E[tokens] + W_pos[:7]
    if not torch.allclose(got, expected, atol=ATOL):
        cause = _diagnosis(got, tokens, W_E, W_pos)
        raise AssertionError(
            f"on {where} the result is not W_E[tokens] + W_pos[:pos]: "
            f"{_first_wrong(got, expected)}. "
            + (
                f"Likely cause: {cause}."
                if cause
                else "Position p of every row should be W_E[tokens[b, p]] + W_pos[p]."
            )
        )


def _check_reference(embed: Callable, ref, prompt: str) -> int:
    """GPT-2's weights and the reference's hooks; returns the number of positions."""
    params = ref.bridge.tl_parameters()
    W_E, W_pos = params["embed.W_E"].detach(), params["pos_embed.W_pos"].detach()
    tokens = ref.to_tokens(prompt)
    names = ("hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre")
    with torch.no_grad():
        _, cache = ref.bridge.run_with_cache(tokens, names_filter=lambda n: n in names)
        got = _run(embed, tokens, W_E, W_pos, f"GPT-2's weights and the tokens of {prompt!r}")
    hook_embed, resid_pre = cache["hook_embed"], cache["blocks.0.hook_resid_pre"]
    if torch.allclose(got, resid_pre, atol=ATOL):
        return tokens.shape[1]
    if torch.allclose(got, hook_embed, atol=ATOL):
        cause = "it equals hook_embed: positions forgotten; add hook_pos_embed (W_pos[p])"
    else:
        cause = _diagnosis(got, tokens, W_E, W_pos) or (
            "compare your token part with hook_embed and your positional part with "
            "hook_pos_embed, position by position"
        )
    raise AssertionError(
        f"against blocks.0.hook_resid_pre (hook_embed + hook_pos_embed) for {prompt!r}: "
        f"{_first_wrong(got, resid_pre)}. Likely cause: {cause}."
    )


@exercise(solutions.embed_tokens)
def check_embed(embed: Callable, ref, prompt: str = PROMPT, seed: int = 0) -> None:
    """Check ``embed(tokens, W_E, W_pos) -> resid[batch, pos, d_model]``, the token
    embedding plus the positional embedding of positions ``0 .. pos-1``, first on a small
    made-up case, then against ``ref``'s hooks with GPT-2's ``W_E`` and ``W_pos``."""
    _check_small(embed, seed)
    n = _check_reference(embed, ref, prompt)
    print(
        f"Correct: on {n} positions your embedding equals the reference's "
        f"blocks.0.hook_resid_pre = hook_embed + hook_pos_embed (to {ATOL:g})."
    )

"""Checks for the exercises of chapter 08 (looking inside a trained model)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch08 as solutions
from minigpt.interp import (
    composition_score,
    first_token_stripe,
    head_ablation_hook,
    induction_stripe,
)


def _hand_made_patterns(seq: int, gen: torch.Generator) -> torch.Tensor:
    """[batch 2, n_heads 3, 2 seq, 2 seq]: an induction head, a uniform head, a random one."""
    n = 2 * seq
    causal = torch.ones(n, n).tril()
    induction = torch.zeros(n, n)
    induction[0, 0] = 1
    induction[torch.arange(1, seq), torch.arange(seq - 1)] = 1
    induction[torch.arange(seq, n), torch.arange(1, seq + 1)] = 1
    uniform = causal / causal.sum(-1, keepdim=True)
    noise = torch.rand(2, n, n, generator=gen) * causal
    noise = noise / noise.sum(-1, keepdim=True)
    heads = [induction.expand(2, n, n), uniform.expand(2, n, n), noise]
    return torch.stack(heads, dim=1)


@exercise(solutions.induction_score)
def check_induction_score(induction_score: Callable, seq: int = 6) -> None:
    """Check ``induction_score(pattern) -> [n_heads]`` for ``pattern[batch, n_heads, 2 seq, 2 seq]``."""
    pattern = _hand_made_patterns(seq, torch.Generator().manual_seed(0))
    got = torch.as_tensor(induction_score(pattern))
    if tuple(got.shape) != (3,):
        raise AssertionError(f"expected one score per head, shape (3,), got {tuple(got.shape)}")
    if abs(float(got[0]) - 1.0) > 1e-6:
        raise AssertionError(
            f"a perfect induction head should score 1, got {float(got[0]):.4f}: in the second "
            "half, look at key i - seq + 1 (the token after the previous occurrence)"
        )
    torch.testing.assert_close(
        got.float(),
        induction_stripe(pattern),
        atol=1e-6,
        rtol=0,
        msg="average over the batch and over the queries of the second half only",
    )
    print("Correct: that is the induction score (1 for a perfect induction head).")


@exercise(solutions.ov_top_tokens)
def check_ov_top_tokens(ov_top_tokens: Callable, seed: int = 0) -> None:
    """Check ``ov_top_tokens(W_E, W_V, W_O, W_U, k) -> [d_vocab, k]``: for each source token, the
    ``k`` output tokens whose logits its OV circuit ``W_E W_V W_O W_U`` raises most."""
    gen = torch.Generator().manual_seed(seed)
    d_vocab, d_model, d_head = 30, 12, 4
    W_E = torch.randn(d_vocab, d_model, generator=gen)
    W_V = torch.randn(d_model, d_head, generator=gen)
    W_O = torch.randn(d_head, d_model, generator=gen)
    W_U = torch.randn(d_model, d_vocab, generator=gen)
    got = torch.as_tensor(ov_top_tokens(W_E, W_V, W_O, W_U, 3))
    if tuple(got.shape) != (d_vocab, 3):
        raise AssertionError(
            f"expected shape (d_vocab, k) = ({d_vocab}, 3), got {tuple(got.shape)}"
        )
    circuit = W_E @ W_V @ W_O @ W_U
    if torch.equal(got, circuit.T.topk(3, dim=-1).indices):
        raise AssertionError("rows are source tokens, columns output tokens: take topk over dim=-1")
    if not torch.equal(got, circuit.topk(3, dim=-1).indices):
        raise AssertionError("the top tokens differ from topk(W_E @ W_V @ W_O @ W_U, k, dim=-1)")
    print("Correct: the OV circuit's top output tokens for every source token.")


@exercise(solutions.ablate_head)
def check_ablate_head(ablate_head: Callable, seed: int = 0) -> None:
    """Check ``ablate_head(z, head) -> z`` (a hook body for ``hook_z``): zero one head's output."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 5, 4, 3, generator=gen)
    before = z.clone()
    got = ablate_head(z.clone(), 2)
    if got is None:
        raise AssertionError(
            "return the (changed) z: a TransformerLens hook returns the activation"
        )
    if tuple(got.shape) != tuple(z.shape):
        raise AssertionError(f"keep the shape {tuple(z.shape)}, got {tuple(got.shape)}")
    expected = head_ablation_hook(2)(before)
    if not torch.equal(got, expected):
        if got[:, :, 2].abs().max() > 0:
            raise AssertionError(
                "head 2 is not zero: set z[:, :, head] (the head axis is the third)"
            )
        raise AssertionError("only head 2 should change; the other heads must be left as they were")
    print("Correct: that hook zero-ablates one head.")


@exercise(solutions.first_token_score)
def check_first_token_score(first_token_score: Callable, seq: int = 6) -> None:
    """Check ``first_token_score(pattern) -> [n_heads]``: the mean attention from each query
    ``i >= 1`` to key 0, for ``pattern[batch, n_heads, query_pos, key_pos]``."""
    n = 2 * seq
    sink = torch.zeros(n, n)
    sink[:, 0] = 1.0
    pattern = _hand_made_patterns(seq, torch.Generator().manual_seed(1))
    pattern = torch.cat([sink.expand(2, 1, n, n), pattern], dim=1)
    got = torch.as_tensor(first_token_score(pattern))
    if tuple(got.shape) != (4,):
        raise AssertionError(f"expected one score per head, shape (4,), got {tuple(got.shape)}")
    if abs(float(got[0]) - 1.0) > 1e-6:
        raise AssertionError(
            f"a head that always attends to position 0 should score 1, got {float(got[0]):.4f}: "
            "read pattern[..., 0], the first key"
        )
    expected = first_token_stripe(pattern)
    with_query_0 = pattern[:, :, :, 0].mean(dim=(0, 2))
    if torch.allclose(got.float(), with_query_0, atol=1e-6) and not torch.allclose(
        with_query_0, expected, atol=1e-6
    ):
        raise AssertionError(
            "leave out query 0: it can attend only to itself, so it says nothing about the head"
        )
    torch.testing.assert_close(
        got.float(), expected, atol=1e-6, rtol=0, msg="average over the batch and queries 1 .."
    )
    print("Correct: that is the first-token (attention sink) score.")


@exercise(solutions.composition_score)
def check_composition_score(score: Callable, seed: int = 0) -> None:
    """Check ``score(W_A, W_B) -> float``: ``||W_A W_B||_F / (||W_A||_F ||W_B||_F)``."""
    gen = torch.Generator().manual_seed(seed)
    d = 8
    a, b = torch.zeros(d, d), torch.zeros(d, d)
    a[:, :4] = torch.randn(d, 4, generator=gen)  # writes into directions 0-3
    b[4:] = torch.randn(4, d, generator=gen)  # reads only directions 4-7
    got = float(score(a, b))
    if abs(got) > 1e-6:
        raise AssertionError(
            f"W_A writes only where W_B does not read, so the score must be 0, got {got:.4f}: "
            "multiply W_A @ W_B (the output of A is the input of B)"
        )
    W_A = torch.randn(d, 3, generator=gen) @ torch.randn(3, d, generator=gen)
    W_B = torch.randn(d, 3, generator=gen) @ torch.randn(3, d, generator=gen)
    got, expected = float(score(W_A, W_B)), composition_score(W_A, W_B)
    unnormalised = float(torch.linalg.matrix_norm(W_A @ W_B))
    if abs(got - unnormalised) < 1e-4 * unnormalised:
        raise AssertionError("divide by ||W_A||_F ||W_B||_F, so that the score is at most 1")
    if abs(got - expected) > 1e-5:
        spectral = float(torch.linalg.matrix_norm(W_A @ W_B, ord=2))
        hint = " (that is the spectral norm: use the Frobenius norm)" if spectral > got else ""
        raise AssertionError(f"expected {expected:.5f}, got {got:.5f}{hint}")
    print("Correct: that is the composition score.")

import pytest
import torch

from minigpt.exercises.ch08 import (
    check_ablate_head,
    check_composition_score,
    check_first_token_score,
    check_induction_score,
    check_ov_top_tokens,
)


def score(pattern, offset=1, halves=True):
    seq = pattern.shape[-1] // 2
    i = torch.arange(seq if halves else 1, 2 * seq)
    return pattern[:, :, i, i - seq + offset].mean((0, 2))


def top(W_E, W_V, W_O, W_U, k, transpose=False):
    circuit = W_E @ W_V @ W_O @ W_U
    return (circuit.T if transpose else circuit).topk(k, dim=-1).indices


def ablate(z, head, axis=2):
    z = z.clone()
    z.select(axis, head).zero_()
    return z


def first(pattern, include_query_0=False):
    return pattern[:, :, 0 if include_query_0 else 1 :, 0].mean((0, 2))


def composition(W_A, W_B, normalise=True, ord="fro"):
    norm = torch.linalg.matrix_norm
    product = norm(W_A @ W_B, ord=ord)
    return product / (norm(W_A) * norm(W_B)) if normalise else product


def test_accepts_right_answers(capsys):
    check_induction_score(score)
    check_ov_top_tokens(top)
    check_ablate_head(ablate)
    check_first_token_score(first)
    check_composition_score(composition)
    assert capsys.readouterr().out.count("Correct") == 5


def test_rejects_wrong_answers():
    with pytest.raises(AssertionError, match="i - seq \\+ 1"):
        check_induction_score(lambda p: score(p, offset=0))
    with pytest.raises(AssertionError, match="dim=-1"):
        check_ov_top_tokens(lambda *a: top(*a, transpose=True))
    with pytest.raises(AssertionError, match="third"):
        check_ablate_head(lambda z, h: ablate(z, h, axis=1))
    with pytest.raises(AssertionError, match="return"):
        check_ablate_head(lambda z, h: None)
    with pytest.raises(AssertionError, match="query 0"):
        check_first_token_score(lambda p: first(p, include_query_0=True))
    with pytest.raises(AssertionError, match="first key"):
        check_first_token_score(lambda p: p[:, :, 1:, 1].mean((0, 2)))
    with pytest.raises(AssertionError, match="divide"):
        check_composition_score(lambda a, b: composition(a, b, normalise=False))
    with pytest.raises(AssertionError, match="W_A @ W_B"):
        check_composition_score(lambda a, b: composition(a, b.T))
    with pytest.raises(AssertionError, match="spectral"):
        check_composition_score(lambda a, b: composition(a, b, ord=2))

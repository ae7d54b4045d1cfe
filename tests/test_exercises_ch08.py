import pytest
import torch

from minigpt.exercises import ch08
from minigpt.exercises.ch08 import (
    check_ablate_head,
    check_composition_score,
    check_first_token_score,
    check_induction_score,
    check_k_composition,
    check_ov_top_tokens,
    check_patch_hook,
    check_positional_qk,
    check_previous_token_score,
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


def previous(pattern, offset=-1, from_query=1, reduce=torch.mean):
    n = pattern.shape[-1]
    queries = torch.arange(from_query, n)
    return reduce(pattern[:, :, queries, queries + offset], dim=(0, 2))


def test_previous_token_score_accepts_right_answers(capsys):
    check_previous_token_score(previous)
    check_previous_token_score(lambda p: p.diagonal(-1, -2, -1).mean((0, 2)))
    torch.manual_seed(0)
    layer = torch.rand(3, 4, 9, 9).tril()
    layer = layer / layer.sum(-1, keepdim=True)
    cache = {"blocks.0.attn.hook_pattern": layer, "blocks.1.attn.hook_pattern": layer.flip(1)}
    check_previous_token_score(previous, cache)
    out = capsys.readouterr().out
    assert out.count("Correct") == 3 and "on the model's 2 layers" in out


@pytest.mark.parametrize(
    ("wrong", "diagnosis"),
    [
        (lambda p: previous(p, offset=0, from_query=0), "main diagonal"),
        (lambda p: p.diagonal(1, -2, -1).mean((0, 2)), "key i \\+ 1"),
        (lambda p: previous(p, from_query=0), "query 0 is counted"),
        (lambda p: previous(p, reduce=torch.sum), "that is a sum"),
        (lambda p: previous(p, offset=-2, from_query=2), "pattern\\[:, :, i, i - 1\\]"),
        (lambda p: p.diagonal(-1, -2, -1).mean((1, 2)), "one score per head"),
    ],
)
def test_previous_token_score_diagnoses(wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_previous_token_score(wrong)


def test_previous_token_score_is_checked_on_the_models_patterns():
    """Right on the hand-made heads, wrong on a layer of the model: the layer is named."""

    def only_on_hand_made(p):
        return previous(p) if p.shape[0] == 2 else previous(p) + 0.01

    with pytest.raises(AssertionError, match="on the model's layer 0"):
        check_previous_token_score(
            only_on_hand_made, {"blocks.0.attn.hook_pattern": torch.eye(5).expand(3, 2, 5, 5)}
        )


def patch(activation, hook, clean_cache, position, where=None, copy=True):
    patched = activation.clone() if copy else activation
    where = (slice(None), position) if where is None else where(position)
    patched[where] = clean_cache[hook.name][where]
    return patched


def patch_in_place_returning_nothing(activation, hook, clean_cache, position):
    """Right too: TransformerLens keeps an activation changed in place when a hook returns None."""
    activation[:, position] = clean_cache[hook.name][:, position]


def patch_into_the_clean_cache(activation, hook, clean_cache, position):
    clean = clean_cache[hook.name]  # not a copy: the clean cache itself
    clean[:, :position] = activation[:, :position]
    clean[:, position + 1 :] = activation[:, position + 1 :]
    return clean


def test_patch_hook_accepts_right_answers(capsys):
    check_patch_hook(patch)
    check_patch_hook(lambda *a, **k: patch(*a, **k, copy=False))
    check_patch_hook(patch_in_place_returning_nothing)
    assert capsys.readouterr().out.count("Correct") == 3


@pytest.mark.parametrize(
    ("wrong", "diagnosis"),
    [
        (lambda a, hook, clean_cache, position: clean_cache[hook.name], "every position"),
        (patch_into_the_clean_cache, "changed the clean cache"),
        (lambda *a, **k: patch(*a, **k).clone() * 0 + a[0], "nothing changed"),
        (lambda *a, **k: patch(*a, **k, where=lambda p: p), "batch row 4"),
        (lambda *a, **k: patch(*a, **k, where=lambda p: (slice(None), slice(p, None))), "after"),
        (lambda *a, **k: patch(*a, **k, where=lambda p: (slice(None), p + 1)), "position 5 is"),
        (lambda *a, **k: patch(*a, **k, where=lambda p: (slice(None), p - 1)), "position 3 is"),
        (lambda a, *rest, **k: a[:, 0], "return it whole"),
    ],
)
def test_patch_hook_diagnoses(wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_patch_hook(wrong)


def circuit(W_pos, W_Q, W_K, ln_w, centre=True, gain=True, scale=True, swap=False, mask=None):
    P = W_pos - W_pos.mean(-1, keepdim=True) if centre else W_pos
    g = ln_w[:, None] if gain else 1.0
    q, k = P @ (W_Q * g), P @ (W_K * g)
    scores = k @ q.T if swap else q @ k.T
    scores = scores / W_Q.shape[-1] ** 0.5 if scale else scores
    if mask is not None:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), mask)
    return scores


def test_positional_qk_accepts_right_answers(capsys):
    check_positional_qk(circuit)
    model = ch08._tiny_model(1)
    check_positional_qk(circuit, model, layer=1, head=2)
    assert capsys.readouterr().out.count("Correct") == 2


@pytest.mark.parametrize(
    ("kind", "diagnosis"),
    [
        (dict(centre=False), "not centred"),
        (dict(gain=False), "gain is missing"),
        (dict(scale=False), "sqrt\\(d_head\\)"),
        (dict(swap=True), "swapped"),
        (dict(mask=0.0), "masked"),
        (dict(mask=float("-inf")), "masked"),
    ],
)
def test_positional_qk_diagnoses(kind, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_positional_qk(lambda *w: circuit(*w, **kind))


def test_positional_qk_names_a_product_whose_shapes_do_not_fit():
    def no_transpose(W_pos, W_Q, W_K, ln_w):
        return (W_pos @ W_Q) @ (W_pos @ W_K)

    with pytest.raises(AssertionError, match="shapes do not fit"):
        check_positional_qk(no_transpose)


def test_positional_qk_is_checked_on_the_given_head():
    model = ch08._tiny_model(1)

    def right_on_layer_0_only(W_pos, W_Q, W_K, ln_w):
        wrong = torch.equal(W_Q, model.blocks[1].attn.W_Q[2])
        return circuit(W_pos, W_Q, W_K, ln_w) + (1.0 if wrong else 0.0)

    with pytest.raises(AssertionError, match="on head 1.2"):
        check_positional_qk(right_on_layer_0_only, model, layer=1, head=2)


def k_comp(W_V, W_O, W_Q, W_K, kind="K", norm=torch.linalg.matrix_norm, normalise=True):
    ov, qk = W_V @ W_O, W_Q @ W_K.T
    product = ov @ (qk.T if kind == "K" else qk)
    if kind == "reversed":
        product = qk.T @ ov
    score = norm(product)
    return float(
        score / (torch.linalg.matrix_norm(ov) * torch.linalg.matrix_norm(qk))
        if normalise
        else score
    )


def test_k_composition_accepts_right_answers(capsys):
    check_k_composition(k_comp)
    check_k_composition(lambda W_V, W_O, W_Q, W_K: composition(W_V @ W_O, W_K @ W_Q.T))
    check_k_composition(k_comp, ch08._tiny_model(2))
    assert capsys.readouterr().out.count("Correct") == 3


@pytest.mark.parametrize(
    ("kind", "diagnosis"),
    [
        (dict(kind="Q"), "Q-composition"),
        (dict(kind="reversed"), "wrong way round"),
        (dict(normalise=False), "divide by"),
        (dict(norm=lambda m: torch.linalg.matrix_norm(m, ord=2)), "spectral"),
    ],
)
def test_k_composition_diagnoses(kind, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_k_composition(lambda *w: k_comp(*w, **kind))


def test_k_composition_names_the_four_norms_and_wrong_shapes():
    norm = torch.linalg.matrix_norm

    def four(W_V, W_O, W_Q, W_K):
        product = norm(W_V @ W_O @ W_K @ W_Q.T)
        return float(product / (norm(W_V) * norm(W_O) * norm(W_Q) * norm(W_K)))

    with pytest.raises(AssertionError, match="norms of the two products"):
        check_k_composition(four)
    with pytest.raises(AssertionError, match="shapes do not fit"):
        check_k_composition(lambda W_V, W_O, W_Q, W_K: float(norm(W_O @ W_V @ W_K @ W_Q.T)))


def test_k_composition_is_checked_on_the_models_heads():
    """Right on the hand-made heads, wrong on the model's: the pair is named."""
    model = ch08._tiny_model(2)

    def wrong_on_the_model(W_V, W_O, W_Q, W_K):
        on_the_model = W_O.shape == (model.cfg.d_head, model.cfg.d_model)
        return k_comp(W_V, W_O + 1.0 if on_the_model else W_O, W_Q, W_K)

    with pytest.raises(AssertionError, match="on heads 0.0 -> 1.0"):
        check_k_composition(wrong_on_the_model, model)

import math
from types import SimpleNamespace

import einops
import pytest
import torch

from minigpt.attention import Attention
from minigpt.config import GPTConfig
from minigpt.exercises.ch03 import (
    check_attn_layer,
    check_attn_out,
    check_attn_scores,
    check_cached_step,
    check_causal_mask,
    check_previous_token_head,
    check_qkv,
    check_softmax,
    check_weighted_values,
)


@pytest.fixture(scope="module")
def cache():
    """Layer 0's hooks as TransformerLens names them, from minigpt's own Attention (which
    masks with torch.finfo(float32).min, as the reference does)."""
    cfg = GPTConfig(d_model=24, n_heads=3, d_head=8, d_mlp=96, n_layers=1, n_ctx=16, d_vocab=10)
    gen = torch.Generator().manual_seed(0)
    attn = Attention(cfg, impl="einsum")
    acts = {}
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        attn(torch.randn(2, 7, 24, generator=gen), acts=acts)
    return {f"blocks.0.attn.{name}": t for name, t in acts.items()}


def scores(q, k, scale=1.0, transpose=False):
    spec = "b k h d, b q h d -> b h q k" if transpose else "b q h d, b k h d -> b h q k"
    return einops.einsum(q, k, spec) / math.sqrt(q.shape[-1]) * scale


def mask(s, fill=-math.inf, diagonal=1, invert=False):
    n = s.shape[-1]
    hidden = torch.ones(n, n, dtype=torch.bool).triu(diagonal)
    return s.masked_fill(~hidden if invert else hidden, fill)


def weighted(pattern, v, spec="b h q k, b k h d -> b q h d"):
    return einops.einsum(pattern, v, spec)


def test_accepts_right_answers(cache, capsys):
    check_attn_scores(scores, cache)
    check_attn_scores(lambda q, k: mask(scores(q, k)), cache)  # masked already: fine
    check_causal_mask(mask, cache)
    check_causal_mask(lambda s: mask(s, torch.finfo(s.dtype).min), cache)
    check_softmax(lambda s: s.softmax(-1), cache)
    check_weighted_values(weighted, cache)
    W_K = torch.eye(6)
    check_previous_token_head(20 * W_K.roll(-1, 1), W_K)
    check_previous_token_head(20 * W_K.roll(-2, 1), W_K, offset=2)
    assert capsys.readouterr().out.count("Correct") == 8


def test_the_reference_convention_is_the_most_negative_float(cache):
    s = cache["blocks.0.attn.hook_attn_scores"]
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)
    assert (s[..., future] == torch.finfo(s.dtype).min).all()


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda q, k: scores(q, k, scale=math.sqrt(q.shape[-1])), "not scaled"),
        (lambda q, k: scores(q, k, scale=1 / math.sqrt(q.shape[-1])), "divided by d_head"),
        (lambda q, k: scores(q, k, transpose=True), "swapped"),
        (lambda q, k: einops.einsum(q, k, "b q h d, b k h d -> b q k"), "summed over"),
        (lambda q, k: einops.einsum(q, k, "b q h d, b k h d -> b q k h"), "wrong order"),
    ],
)
def test_scores_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_attn_scores(wrong, cache)


def test_scores_failure_names_the_position(cache):
    def off(q, k):
        s = scores(q, k)
        s[0, 2, 5, 3] += 1
        return s

    with pytest.raises(AssertionError, match="head 2, query 5, key 3"):
        check_attn_scores(off, cache)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda s: s, "nothing was masked"),
        (lambda s: mask(s, diagonal=0), "diagonal is masked"),
        (lambda s: mask(s, invert=True), "inverted"),
        (lambda s: mask(s, fill=0.0), "set to 0"),
        (lambda s: mask(s, fill=-5.0), "only -5"),
        (lambda s: s + torch.ones_like(s).triu(1) * -math.inf, "NaN"),  # 0 * -inf = NaN
    ],
)
def test_mask_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_causal_mask(wrong, cache)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda s: s.softmax(-2), "query axis"),
        (lambda s: s.softmax(1), "over the heads"),
        (lambda s: s.exp(), "without dividing"),
        (lambda s: s.softmax(-1) * 2, "sum to 1"),
    ],
)
def test_softmax_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_softmax(wrong, cache)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda p, v: weighted(p, v, "b h k q, b k h d -> b q h d"), "transposed"),
        (lambda p, v: weighted(p, v, "b h q k, b k h d -> b h q d"), "n_heads, pos"),
        (lambda p, v: weighted(p, v, "b h q k, b k h d -> b q d"), "summed over"),
        (lambda p, v: v, "z is v itself"),
    ],
)
def test_weighted_values_diagnoses(cache, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_weighted_values(wrong, cache)


def test_previous_token_head_diagnoses():
    W_K = torch.eye(6)
    with pytest.raises(AssertionError, match="matches the key at i"):
        check_previous_token_head(20 * W_K, W_K)
    with pytest.raises(AssertionError, match="later position"):
        check_previous_token_head(20 * W_K.roll(1, 1), W_K)
    with pytest.raises(AssertionError, match="not by enough"):
        check_previous_token_head(0.5 * W_K.roll(-1, 1), W_K)
    with pytest.raises(AssertionError, match=r"\[n_positions, d_head\]"):
        check_previous_token_head(W_K, W_K[:, :3])


@pytest.fixture(scope="module")
def layers():
    """Two attention layers as TransformerLens names their hooks and parameters: for each,
    its input (``ln1.hook_out``), every hook and its output, from minigpt's own Attention
    with random weights and biases (none zero)."""
    cfg = GPTConfig(d_model=24, n_heads=3, d_head=8, d_mlp=96, n_layers=2, n_ctx=16, d_vocab=10)
    gen = torch.Generator().manual_seed(1)
    cache, params = {}, {}
    for layer in range(2):
        attn = Attention(cfg, layer=layer, impl="einsum")
        acts = {}
        with torch.no_grad():
            for p in attn.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            x = torch.randn(2, 7, 24, generator=gen)
            cache[f"blocks.{layer}.hook_attn_out"] = attn(x, acts=acts)
        cache[f"blocks.{layer}.ln1.hook_out"] = x
        cache.update({f"blocks.{layer}.attn.{name}": t for name, t in acts.items()})
        params.update({f"blocks.{layer}.attn.{n}": p.detach() for n, p in attn.named_parameters()})
    return cache, params


PROJECT = "b p m, h m d -> b p h d"


def qkv(x, W_Q, b_Q, W_K, b_K, W_V, b_V):
    return tuple(einops.einsum(x, W, PROJECT) + b for W, b in ((W_Q, b_Q), (W_K, b_K), (W_V, b_V)))


def attn_out(z, W_O, b_O):
    return einops.einsum(z, W_O, "b p h d, h d m -> b p m") + b_O


def test_qkv_and_attn_out_accept_right_answers(layers, capsys):
    check_qkv(qkv, *layers)
    check_qkv(qkv, *layers, layer=1)

    def with_matmul(x, W_Q, b_Q, W_K, b_K, W_V, b_V):  # heads as a batch axis of matmul
        return tuple(
            (x[:, None] @ W + b[:, None]).transpose(1, 2)
            for W, b in ((W_Q, b_Q), (W_K, b_K), (W_V, b_V))
        )

    check_qkv(with_matmul, *layers)
    check_attn_out(attn_out, *layers)
    check_attn_out(lambda z, W_O, b_O: z.flatten(2) @ W_O.flatten(0, 1) + b_O, *layers)
    assert capsys.readouterr().out.count("Correct") == 5


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda x, WQ, bQ, WK, bK, WV, bV: qkv(x, WQ, 0 * bQ, WK, bK, WV, bV), "b_Q is missing"),
        (lambda x, WQ, bQ, WK, bK, WV, bV: qkv(x, WQ, bQ, WK, bK, WV, 0 * bV), "b_V is missing"),
        (lambda *a: qkv(*a)[::-1], "wrong order: your q is the reference's v"),
        (
            lambda x, WQ, bQ, WK, bK, WV, bV: qkv(x, WQ, bQ, WQ, bK, WV, bV),
            "k was projected with W_Q",
        ),
        (
            lambda x, WQ, bQ, WK, bK, WV, bV: tuple(
                (x @ W.reshape(24, 24)).reshape(2, 7, 3, 8) + b
                for W, b in ((WQ, bQ), (WK, bK), (WV, bV))
            ),
            r"reshape\(d_model, n_heads \* d_head\) mixes heads",
        ),
        (
            lambda x, *w: tuple(einops.einsum(x, W, "b p m, h d m -> b p h d") for W in w[::2]),
            "shapes do not fit.*not transposed",
        ),
        (
            lambda x, *w: tuple(einops.einsum(x, W, "b p m, h m d -> b h p d") for W in w[::2]),
            "head axis is second",
        ),
        (
            lambda x, *w: tuple(einops.einsum(x, W, "b p m, h m d -> b p d h") for W in w[::2]),
            "n_heads and d_head are swapped",
        ),
    ],
)
def test_qkv_diagnoses(layers, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_qkv(wrong, *layers)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda z, W_O, b_O: attn_out(z, W_O, 0 * b_O), "b_O is missing"),
        (
            lambda z, W_O, b_O: einops.einsum(z, W_O, "b p h d, h d m -> b p h m").add(b_O).sum(2),
            "once per head",
        ),
        (
            lambda z, W_O, b_O: einops.einsum(z, W_O, "b p h d, h d m -> b p h m") + b_O,
            "not summed",
        ),
        (
            lambda z, W_O, b_O: einops.einsum(z, W_O, "b p h d, h d m -> b p h m").mean(2) + b_O,
            "averaged",
        ),
        (lambda z, W_O, b_O: einops.einsum(z, W_O, "b p h d, h m d -> b p m"), "shapes do not fit"),
        (lambda z, W_O, b_O: attn_out(z, W_O, b_O) * 1.01, "hook_attn_out"),
    ],
)
def test_attn_out_diagnoses(layers, wrong, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_attn_out(wrong, *layers)


def step(x_new, k_past, v_past, params, layer, *, append=True, mask=None, order="after"):
    """One cached step of attention, with one of the usual slips switched on."""
    p = f"blocks.{layer}.attn."
    W = [params[p + n] for n in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")]
    q, k_new, v_new = qkv(x_new, *W)
    pair = [k_past, k_new] if order == "after" else [k_new, k_past]
    k, v = (
        torch.cat(pair, dim=1),
        torch.cat([v_past, v_new] if order == "after" else [v_new, v_past], dim=1),
    )
    k_att, v_att = (k, v) if append else (k_past, v_past)
    s = scores(q, k_att)
    if mask == "causal":  # the square mask's logic on a [1, past + 1] row
        s = mask_fn(s)
    elif mask == "itself":
        s = s.masked_fill(torch.arange(s.shape[-1]) != s.shape[-1] - 1, -math.inf)
    z = weighted(s.softmax(-1), v_att)
    out = attn_out(z, params[p + "W_O"], params[p + "b_O"])
    return out, k, v


def mask_fn(s):
    n_q, n_k = s.shape[-2:]
    return s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1), -math.inf)


def test_cached_step_accepts_right_answers(layers, capsys):
    check_cached_step(step, *layers)
    check_cached_step(step, *layers, layer=1)
    assert capsys.readouterr().out.count("Correct") == 2


@pytest.mark.parametrize(
    "slip, diagnosis",
    [
        ({"append": False}, "position 0.*not in the cache when the query attends"),
        ({"mask": "causal"}, "position 1.*as if it were position 0"),
        ({"mask": "itself"}, "position 1.*sees only itself"),
        ({"order": "before"}, "position 1.*the new k is put first"),
    ],
)
def test_cached_step_diagnoses(layers, slip, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_cached_step(lambda *args: step(*args, **slip), *layers)


def test_cached_step_that_keeps_the_old_cache(layers):
    def old_cache(x_new, k_past, v_past, params, layer):
        out, _, _ = step(x_new, k_past, v_past, params, layer)
        return out, k_past, v_past

    with pytest.raises(AssertionError, match="old cache: append"):
        check_cached_step(old_cache, *layers)


STEPS = SimpleNamespace(
    qkv=qkv,
    attn_scores=scores,
    causal_mask=mask,
    softmax_pattern=lambda s: s.softmax(-1),
    weighted_values=weighted,
    attn_out=attn_out,
)


def layer_by_steps(x, params, layer, steps, *, weights_of=None, slip=None):
    """The whole layer from its six steps, with one of the usual slips switched on."""
    p = f"blocks.{layer if weights_of is None else weights_of}.attn."
    q, k, v = steps.qkv(x, *(params[p + n] for n in ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")))
    s = steps.attn_scores(k, q) if slip == "k, q" else steps.attn_scores(q, k)
    masked = s if slip == "no mask" else steps.causal_mask(s)
    pattern = steps.softmax_pattern(s if slip == "unmasked softmax" else masked)
    z = steps.weighted_values(pattern, k if slip == "k for v" else v)
    W_O = params[f"blocks.{0 if slip == 'W_O of layer 0' else layer}.attn.W_O"]
    out = steps.attn_out(z, W_O, params[p + "b_O"])
    return z if slip == "returns z" else out


def test_attn_layer_accepts_right_answers(layers, capsys):
    check_attn_layer(layer_by_steps, *layers, STEPS)
    check_attn_layer(layer_by_steps, *layers, STEPS, layer=0)

    def with_copies(x, params, layer, steps):  # weights copied on the way: still named
        return layer_by_steps(x, {k: v.clone() for k, v in params.items()}, layer, steps)

    check_attn_layer(with_copies, *layers, STEPS)
    assert capsys.readouterr().out.count("Correct") == 3


@pytest.mark.parametrize(
    "slip, diagnosis",
    [
        ({"weights_of": 0}, "blocks.1.attn.hook_q.*given \\(x, blocks.0's W_Q, blocks.0's b_Q"),
        ({"slip": "k, q"}, "hook_attn_scores \\(before the mask.*given \\(k, q\\)"),
        ({"slip": "no mask"}, "hook_attn_scores: the scores are never masked"),
        ({"slip": "unmasked softmax"}, "hook_pattern.*given \\(the scores\\)"),
        ({"slip": "k for v"}, "hook_z.*given \\(the pattern, k\\); it takes \\(the pattern, v\\)"),
        ({"slip": "W_O of layer 0"}, "blocks.1.hook_attn_out.*given \\(z, blocks.0's W_O, b_O\\)"),
        ({"slip": "returns z"}, "returns z"),
    ],
)
def test_attn_layer_diagnoses(layers, slip, diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_attn_layer(lambda *args: layer_by_steps(*args, **slip), *layers, STEPS)


def test_attn_layer_needs_all_six_steps(layers):
    with pytest.raises(AssertionError, match="steps.attn_scores is missing"):
        check_attn_layer(layer_by_steps, *layers, SimpleNamespace(qkv=qkv))

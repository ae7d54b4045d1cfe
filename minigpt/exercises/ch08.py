"""Checks for the exercises of chapter 08 (looking inside a trained model)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import torch

from minigpt.config import GPTConfig
from minigpt.exercises.diagnose import close, matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch08 as solutions
from minigpt.interp import (
    composition_score,
    composition_scores,
    first_token_stripe,
    head_ablation_hook,
    induction_stripe,
    previous_token_stripe,
)
from minigpt.interp import positional_qk as interp_positional_qk
from minigpt.model import GPT


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


def _previous_token_mistakes(pattern: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """The scores that the usual wrong previous-token scores give, each with its diagnosis."""
    n = pattern.shape[-1]
    queries = torch.arange(n, device=pattern.device)
    return [
        (
            pattern.diagonal(dim1=-2, dim2=-1).mean(dim=(0, 2)),
            "that is the main diagonal, each query's attention to itself (the current-token "
            "score); the previous token is the key one below it, i - 1: "
            "pattern.diagonal(offset=-1, dim1=-2, dim2=-1)",
        ),
        (
            pattern.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=(0, 2)),
            "key i + 1 is the next token, which the causal mask hides (its weight is always 0): "
            "the previous token is key i - 1",
        ),
        (
            pattern[:, :, queries, queries - 1].mean(dim=(0, 2)),
            "query 0 is counted: it has no previous token (key -1 wraps around to the last key, "
            "which it cannot see). Average over the queries 1 .. q - 1 only",
        ),
        (
            pattern.diagonal(offset=-1, dim1=-2, dim2=-1).sum(dim=(0, 2)),
            "that is a sum; the score is the mean over the batch and the queries",
        ),
    ]


def _check_previous_token_on(got: torch.Tensor, pattern: torch.Tensor, where: str) -> None:
    expected = previous_token_stripe(pattern).float()
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(
            f"expected one score per head, shape {tuple(expected.shape)}, got "
            f"{tuple(got.shape)}: average over the batch (dim 0) and the queries (dim 2)"
        )
    got = got.float().to(expected.device)
    if torch.allclose(got, expected, atol=1e-6, rtol=0):
        return
    mistakes = [(m.float(), hint) for m, hint in _previous_token_mistakes(pattern)]
    cause = matching_mistake(got, mistakes, close(1e-6)) or (
        "the mean of pattern[:, :, i, i - 1] over the batch and the queries i >= 1"
    )
    raise AssertionError(
        f"{where}: expected {[round(v, 4) for v in expected.tolist()]}, got "
        f"{[round(v, 4) for v in got.tolist()]}. Likely cause: {cause}"
    )


def _layer_patterns(cache: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """``blocks.0.attn.hook_pattern``, ``blocks.1.attn.hook_pattern``, ... of ``cache``."""
    patterns = []
    while f"blocks.{len(patterns)}.attn.hook_pattern" in cache:
        patterns.append(cache[f"blocks.{len(patterns)}.attn.hook_pattern"])
    return patterns


@exercise(solutions.previous_token_score)
def check_previous_token_score(
    previous_token_score: Callable, cache: Mapping[str, torch.Tensor] | None = None, seq: int = 6
) -> None:
    """Check ``previous_token_score(pattern) -> [n_heads]``: the mean attention from each query
    ``i >= 1`` to key ``i - 1``, for ``pattern[batch, n_heads, query_pos, key_pos]``.

    On hand-made heads (a perfect previous-token head, which must score 1, a current-token
    head, which must score 0, an induction head, a uniform one and a random one), then on
    every ``blocks.L.attn.hook_pattern`` of ``cache`` (the chapter's model's activations),
    against :func:`minigpt.interp.previous_token_stripe`, to 1e-6.
    """
    n = 2 * seq
    previous = torch.zeros(n, n)
    previous[0, 0] = 1.0  # query 0 can only attend to itself
    previous[torch.arange(1, n), torch.arange(n - 1)] = 1.0
    current = torch.eye(n)
    heads = torch.stack([previous, current]).expand(2, 2, n, n)
    pattern = torch.cat([heads, _hand_made_patterns(seq, torch.Generator().manual_seed(2))], 1)
    with torch.no_grad():
        got = torch.as_tensor(previous_token_score(pattern))
    _check_previous_token_on(got, pattern, "on hand-made heads (a previous-token head first)")
    patterns = [] if cache is None else _layer_patterns(cache)
    for layer, layer_pattern in enumerate(patterns):
        with torch.no_grad():
            got = torch.as_tensor(previous_token_score(layer_pattern))
        _check_previous_token_on(got, layer_pattern, f"on the model's layer {layer}")
    on = f" and on the model's {len(patterns)} layers" if patterns else ""
    print(
        "Correct: that is the previous-token score (1 for a previous-token head, 0 for a "
        f"current-token head), on hand-made heads{on}."
    )


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


class _HookPoint:
    """What a TransformerLens hook receives as ``hook``: here only its ``name``."""

    def __init__(self, name: str):
        self.name = name


def _toy_forward(tokens: torch.Tensor, weights: dict, hooks=(), cache: dict | None = None):
    """A small hand-built model with TransformerLens's hook points and calls.

    Each hook in ``hooks`` (``[(name, fn)]``) is called as ``fn(activation, hook=...)``;
    what it returns replaces the activation, and ``None`` keeps the activation it was given
    (changed in place, if it was). ``cache`` receives every activation, as
    ``run_with_cache`` does. One attention-like layer (each position averages the values of
    the positions up to it, two heads) and one MLP-like layer.
    """
    hooks = dict(hooks)

    def point(name: str, x: torch.Tensor) -> torch.Tensor:
        if name in hooks:
            out = hooks[name](x, hook=_HookPoint(name))
            x = x if out is None else out
        if cache is not None:
            cache[name] = x
        return x

    batch, n = tokens.shape
    x = point("blocks.0.hook_resid_pre", weights["W_E"][tokens] + weights["W_pos"][:n])
    causal = torch.ones(n, n).tril()
    mixing = causal / causal.sum(-1, keepdim=True)  # [pos, pos]
    values = (mixing @ (x @ weights["W_V"])).view(batch, n, 2, -1)  # [batch, pos, heads, d_head]
    z = point("blocks.0.attn.hook_z", values)
    x = point("blocks.1.hook_resid_pre", x + z.flatten(2) @ weights["W_O"])
    x = x + torch.tanh(x @ weights["W_in"]) @ weights["W_out"]
    return x @ weights["W_U"]


def _toy_run(seed: int):
    """The hand-built model's weights, a clean and a corrupted input (they differ at one
    position), and the clean run's cache."""
    gen = torch.Generator().manual_seed(seed)
    d_model, n_ctx, d_vocab = 8, 7, 11
    shapes = {
        "W_E": (d_vocab, d_model),
        "W_pos": (n_ctx, d_model),
        "W_V": (d_model, d_model),
        "W_O": (d_model, d_model),
        "W_in": (d_model, 16),
        "W_out": (16, d_model),
        "W_U": (d_model, d_vocab),
    }
    weights = {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    clean = torch.randint(0, d_vocab, (5, n_ctx), generator=gen)
    corrupted = clean.clone()
    corrupted[:, 2] = (clean[:, 2] + 1) % d_vocab
    clean_cache: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        _toy_forward(clean, weights, cache=clean_cache)
    return weights, clean, corrupted, clean_cache


def _patch_mistakes(corrupted: torch.Tensor, clean: torch.Tensor, position: int) -> list:
    """What the usual wrong patches make of one activation, each with its diagnosis."""

    def patched(where) -> torch.Tensor:
        out = corrupted.clone()
        out[where] = clean[where]
        return out

    n = corrupted.shape[1]
    mistakes = [
        (
            clean,
            "every position is patched: only [:, position] comes from the clean run, the other "
            "positions keep the corrupted run's values",
        ),
        (
            corrupted,
            "nothing changed: what a hook returns replaces the activation, so return the "
            "patched tensor (a hook that returns None keeps the activation as it was given)",
        ),
        (
            patched((slice(None), slice(position, None))),
            "the positions after `position` are patched too: only [:, position]",
        ),
    ]
    if position < corrupted.shape[0]:
        mistakes.append(
            (
                patched(position),
                f"batch row {position} is patched: the position is the second axis, "
                "activation[:, position]",
            )
        )
    for other in (position - 1, position + 1):
        if 0 <= other < n:
            mistakes.append(
                (
                    patched((slice(None), other)),
                    f"position {other} is patched instead of {position}: [:, position]",
                )
            )
    return mistakes


@exercise(solutions.patch_hook)
def check_patch_hook(patch_hook: Callable, seed: int = 0) -> None:
    """Check ``patch_hook(activation, hook, clean_cache, position) -> activation``.

    On a small hand-built model that calls its hooks as TransformerLens does
    (``fn(activation, hook=...)``, the return value replacing the activation), the corrupted
    input is run with ``functools.partial(patch_hook, clean_cache=..., position=p)`` on
    ``blocks.L.hook_resid_pre`` (``[batch, pos, d_model]``) and on ``blocks.0.attn.hook_z``
    (``[batch, pos, n_heads, d_head]``), for several ``p``. The activation the model goes on
    with must be the corrupted run's with position ``p`` taken from the clean run (exactly:
    nothing is computed), and every run must leave the clean cache as it was.
    """
    weights, clean, corrupted, clean_cache = _toy_run(seed)
    kept = {name: act.clone() for name, act in clean_cache.items()}
    # after the first layer, every position from the corrupted one on differs between the runs
    names = ("blocks.1.hook_resid_pre", "blocks.0.attn.hook_z", "blocks.0.hook_resid_pre")
    for name in names:
        for position in (4, 2, corrupted.shape[1] - 1, 0):
            patched_cache: dict[str, torch.Tensor] = {}
            unpatched: dict[str, torch.Tensor] = {}
            hook = functools.partial(patch_hook, clean_cache=clean_cache, position=position)
            with torch.no_grad():
                _toy_forward(corrupted, weights, cache=unpatched)
                try:
                    _toy_forward(corrupted, weights, [(name, hook)], cache=patched_cache)
                except RuntimeError:
                    # a patched activation of the wrong shape breaks the layers after it
                    if name not in patched_cache:
                        raise
                    if patched_cache[name].shape == unpatched[name].shape:
                        raise
            for other, act in clean_cache.items():
                if not torch.equal(act, kept[other]):
                    raise AssertionError(
                        f"patching {name} at position {position} changed the clean cache "
                        f"({other}): write into the activation, or into a copy of it "
                        "(.clone()), never into clean_cache's tensors, which every later "
                        "patch reads"
                    )
            got, before = patched_cache[name], unpatched[name]
            expected = before.clone()
            expected[:, position] = clean_cache[name][:, position]
            if tuple(got.shape) != tuple(expected.shape):
                raise AssertionError(
                    f"on {name} the hook returned shape {tuple(got.shape)}; the activation "
                    f"is {tuple(expected.shape)}: return it whole, with one position patched"
                )
            if not torch.equal(got, expected):
                mistakes = _patch_mistakes(before, clean_cache[name], position)
                cause = matching_mistake(got, mistakes, close(0.0)) or (
                    "the result should be the activation with [:, position] replaced by "
                    "clean_cache[hook.name][:, position]"
                )
                raise AssertionError(f"on {name} at position {position}: {cause}")
    print(
        f"Correct: your hook patches one position of each of {len(names)} activations with the "
        "clean run's, and leaves the clean cache as it was."
    )


POSITIONAL_ATOL, POSITIONAL_RTOL = 1e-5, 1e-4  # float32 products of a few matrices


def _positional_mistakes(W_pos, W_Q, W_K, ln_w) -> list[tuple[torch.Tensor, str]]:
    """The circuits that the usual wrong positional QK circuits give, with their diagnoses."""
    centred = W_pos - W_pos.mean(-1, keepdim=True)
    scale = W_Q.shape[-1] ** 0.5
    q, k = centred @ (W_Q * ln_w[:, None]), centred @ (W_K * ln_w[:, None])
    raw_q, raw_k = W_pos @ (W_Q * ln_w[:, None]), W_pos @ (W_K * ln_w[:, None])
    n = W_pos.shape[0]
    future = torch.ones(n, n, dtype=torch.bool, device=W_pos.device).triu(1)
    masked = (
        "the keys after each query are masked: return the whole [n_ctx, n_ctx] circuit (the "
        "chapter masks them only to plot it)"
    )
    return [
        (
            k @ q.T / scale,
            "rows and columns are swapped: entry [i, j] is what a query at position i gives a "
            "key at position j, (W_pos W_Q)[i] . (W_pos W_K)[j]: q @ k.T",
        ),
        (
            raw_q @ raw_k.T / scale,
            "W_pos is not centred: LayerNorm first subtracts each row's mean over d_model, so "
            "use W_pos - W_pos.mean(-1, keepdim=True)",
        ),
        (
            (centred @ W_Q) @ (centred @ W_K).T / scale,
            "ln1's gain is missing: LayerNorm multiplies by ln_w before W_Q and W_K read the "
            "stream, so fold it in, W_Q * ln_w[:, None] (and the same for W_K)",
        ),
        (
            q @ k.T,
            "the scores are not divided by sqrt(d_head), as the attention scores are",
        ),
        *(((q @ k.T / scale).masked_fill(future, fill), masked) for fill in (0.0, float("-inf"))),
    ]


def _tiny_model(seed: int) -> GPT:
    """A GPT with random weights, a LayerNorm gain far from 1 and positions whose embeddings
    have a mean far from 0, so that each step of the circuit shows."""
    cfg = GPTConfig(d_model=12, n_heads=3, d_head=4, d_mlp=12, n_layers=2, n_ctx=7, d_vocab=10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(cfg)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5)
            model.pos_embed.W_pos += 1.0
    return model


def _check_positional_on(positional_qk: Callable, model, layer: int, head: int, where: str) -> None:
    attn, ln1 = model.blocks[layer].attn, model.blocks[layer].ln1
    weights = (model.pos_embed.W_pos, attn.W_Q[head], attn.W_K[head], ln1.w)
    with torch.no_grad():
        weights = tuple(w.detach() for w in weights)
        expected = interp_positional_qk(model, layer, head)
        try:
            got = torch.as_tensor(positional_qk(*weights))
        except RuntimeError as err:
            raise AssertionError(
                f"{where}: the shapes do not fit ({str(err).splitlines()[0]}). W_pos W_Q and "
                "W_pos W_K are both [n_ctx, d_head]: the scores are (W_pos W_Q) @ (W_pos W_K).T, "
                "W_Q W_K^T with the transpose on W_K"
            ) from None
    if tuple(got.shape) != tuple(expected.shape):
        raise AssertionError(
            f"{where}: expected [n_ctx, n_ctx] = {list(expected.shape)}, got {list(got.shape)}"
        )
    got = got.to(expected.device, expected.dtype)
    if torch.allclose(got, expected, atol=POSITIONAL_ATOL, rtol=POSITIONAL_RTOL):
        return
    cause = matching_mistake(
        got, _positional_mistakes(*weights), close(POSITIONAL_ATOL, POSITIONAL_RTOL)
    ) or (
        "centre W_pos, fold ln_w into W_Q and W_K, then (W_pos W_Q) @ (W_pos W_K).T / sqrt(d_head)"
    )
    err = (got - expected).abs().max()
    raise AssertionError(
        f"{where}: differs from minigpt.interp.positional_qk by up to {err:.3g}. "
        f"Likely cause: {cause}"
    )


@exercise(solutions.positional_qk)
def check_positional_qk(
    positional_qk: Callable, model=None, layer: int = 0, head: int = 0, seed: int = 0
) -> None:
    """Check ``positional_qk(W_pos, W_Q, W_K, ln_w) -> [n_ctx, n_ctx]`` for one head.

    Against :func:`minigpt.interp.positional_qk` (W_pos centred, ln1's gain folded into W_Q
    and W_K, divided by ``sqrt(d_head)``), to atol 1e-5 and rtol 1e-4: on every head of the
    first layer of a small random GPT whose LayerNorm gains and mean positional embedding are far from 1 and
    0, then on head ``head`` of layer ``layer`` of ``model`` when it is given.
    """
    tiny = _tiny_model(seed)
    for h in range(tiny.cfg.n_heads):
        _check_positional_on(positional_qk, tiny, 0, h, f"on head 0.{h} of a random GPT")
    if model is not None:
        _check_positional_on(positional_qk, model, layer, head, f"on head {layer}.{head}")
    on = f" and on head {layer}.{head} of the model" if model is not None else ""
    print(
        f"Correct: your circuit equals minigpt.interp.positional_qk on a random GPT{on} "
        f"(atol {POSITIONAL_ATOL:g}, rtol {POSITIONAL_RTOL:g})."
    )


K_COMPOSITION_ATOL = 1e-5  # scores lie in [0, 1]


def _k_mistakes(W_V, W_O, W_Q, W_K) -> list[tuple[float, str]]:
    """The scores that the usual wrong K-compositions give, each with its diagnosis."""
    norm = torch.linalg.matrix_norm
    ov, qk = W_V @ W_O, W_Q @ W_K.T
    return [
        (
            composition_score(ov, qk),
            "that is Q-composition, W_OV W_QK: B's queries reading A's output. B's keys read it "
            "through W_K, so K-composition is W_OV (W_QK)^T = W_OV W_K W_Q^T",
        ),
        (
            composition_score(qk.T, ov),
            "the product is the wrong way round: A writes first, so W_OV comes first, "
            "W_OV @ W_QK.T",
        ),
        (
            float(norm(ov @ qk.T)),
            "divide by ||W_OV||_F ||W_QK||_F, so that the score is at most 1",
        ),
        (
            float(norm(ov @ qk.T) / (norm(W_V) * norm(W_O) * norm(W_Q) * norm(W_K))),
            "normalise by the norms of the two products, ||W_OV||_F ||W_QK||_F, not of the four "
            "matrices",
        ),
        (
            float(norm(ov @ qk.T, ord=2) / (norm(ov) * norm(qk))),
            "that is the spectral norm of the product: the score uses the Frobenius norm",
        ),
    ]


def _check_k_composition_on(
    k_composition: Callable, weights: tuple, expected: float, where: str
) -> None:
    try:
        with torch.no_grad():
            got = float(k_composition(*weights))
    except RuntimeError as err:
        raise AssertionError(
            f"{where}: the shapes do not fit ({str(err).splitlines()[0]}). W_OV = W_V @ W_O and "
            "W_QK = W_Q @ W_K.T are both [d_model, d_model]"
        ) from None
    if abs(got - expected) <= K_COMPOSITION_ATOL:
        return
    mistakes = _k_mistakes(*weights)
    cause = matching_mistake(got, mistakes, lambda a, b: abs(a - b) <= K_COMPOSITION_ATOL) or (
        "||W_OV W_QK^T||_F / (||W_OV||_F ||W_QK||_F) with W_OV = W_V W_O, W_QK = W_Q W_K^T"
    )
    raise AssertionError(f"{where}: expected {expected:.5f}, got {got:.5f}. Likely cause: {cause}")


def _folded_heads(model, layer_a: int = 0, layer_b: int = 1):
    """Every pair's ``(W_V, W_O, W_Q, W_K)`` treated as ``composition_scores`` treats them:
    ln1's gains folded in, head A's output centred. ``{(a, b): weights}``."""
    a_attn, b_attn = model.blocks[layer_a].attn, model.blocks[layer_b].attn
    g_a, g_b = model.blocks[layer_a].ln1.w[:, None], model.blocks[layer_b].ln1.w[:, None]
    n = model.cfg.n_heads
    pairs = {}
    for a in range(n):
        W_O = a_attn.W_O[a]
        for b in range(n):
            pairs[a, b] = tuple(
                w.detach()
                for w in (
                    a_attn.W_V[a] * g_a,
                    W_O - W_O.mean(-1, keepdim=True),
                    b_attn.W_Q[b] * g_b,
                    b_attn.W_K[b] * g_b,
                )
            )
    return pairs


@exercise(solutions.k_composition)
def check_k_composition(k_composition: Callable, model=None, seed: int = 0) -> None:
    """Check ``k_composition(W_V, W_O, W_Q, W_K) -> float``: the K-composition of a layer-0
    head (``W_V``, ``W_O``) into a layer-1 head (``W_Q``, ``W_K``),
    ``||W_OV W_QK^T||_F / (||W_OV||_F ||W_QK||_F)``, to 1e-5.

    First a head that writes only where the reader's keys do not read, while its queries
    do (K-composition 0, Q-composition not); then random heads, against
    :func:`minigpt.interp.composition_score`; then, with ``model``, every pair of its
    layer-0 and layer-1 heads, the matrices treated as ``composition_scores`` treats them,
    against ``composition_scores(model, "K")``.
    """
    gen = torch.Generator().manual_seed(seed)
    d_model, d_head = 8, 2
    W_V = torch.randn(d_model, d_head, generator=gen)
    W_O = torch.zeros(d_head, d_model)
    W_O[:, :4] = torch.randn(d_head, 4, generator=gen)  # head A writes into directions 0-3
    W_Q = torch.zeros(d_model, d_head)
    W_Q[:4] = torch.randn(4, d_head, generator=gen)  # B's queries read directions 0-3
    W_K = torch.zeros(d_model, d_head)
    W_K[4:] = torch.randn(4, d_head, generator=gen)  # B's keys read only directions 4-7
    _check_k_composition_on(
        k_composition, (W_V, W_O, W_Q, W_K), 0.0, "head A writes where B's keys do not read"
    )
    for trial in range(3):
        weights = tuple(
            torch.randn(shape, generator=gen)
            for shape in (
                (d_model, d_head),
                (d_head, d_model),
                (d_model, d_head),
                (d_model, d_head),
            )
        )
        W_V, W_O, W_Q, W_K = weights
        expected = composition_score(W_V @ W_O, (W_Q @ W_K.T).T)
        _check_k_composition_on(
            k_composition, weights, expected, f"on random heads ({trial + 1} of 3)"
        )
    on = ""
    if model is not None:
        with torch.no_grad():
            expected = composition_scores(model, "K")
        for (a, b), weights in _folded_heads(model).items():
            _check_k_composition_on(
                k_composition, weights, float(expected[a, b]), f"on heads 0.{a} -> 1.{b}"
            )
        on = f" and on the model's {len(expected.flatten())} pairs of heads"
    print(f"Correct: that is the K-composition score, on hand-made heads{on}.")

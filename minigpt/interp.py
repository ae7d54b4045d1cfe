"""Looking inside a trained model: induction and previous-token scores, circuits, ablation, patching.

* **Scores.** A block of random tokens repeated twice, ``tokens[batch, 2 * seq]`` with
  ``tokens[:, seq:] == tokens[:, :seq]``, is a clean probe. In the second copy, position ``i``
  holds the token last seen at ``i - seq``; an **induction head** attends from ``i`` to the
  token after that one, ``i - seq + 1``, and copies it. :func:`induction_scores` is the mean
  attention each head pays along that stripe; :func:`previous_token_scores` the mean
  attention from ``i`` to ``i - 1``; :func:`copy_losses` the next-token loss on each copy.
* **Circuits**, read off the weights alone (Elhage et al., 2021): a head's OV circuit
  ``W_E W_V W_O W_U`` (which output token each source token promotes), the positional QK
  circuit ``W_pos W_Q W_K^T W_pos^T``, and the K-composition of a layer-1 head with a
  layer-0 head.
* **Ablation and patching** run through TransformerLens hooks on a ``TransformerBridge``
  (any object with ``run_with_hooks``): :func:`head_ablation_hook`, :func:`ablation_hooks`
  (several heads at once) and :func:`patch_head_hook`.
* **The field's other tools**: per-head direct logit attribution (:func:`head_logit_attribution`),
  detector scores computed inside a hook (:func:`detector_hook`), composition scores
  (:func:`composition_scores`, with :func:`composition_baseline`), and the OV circuit's
  copying score from its eigenvalues (:func:`copying_score`) and singular values
  (:func:`ov_singular_values`).

Every function that runs a model takes anything with ``run_with_cache(tokens)`` returning
``(logits, cache)`` with TransformerLens's hook names: :class:`minigpt.model.GPT` or the bridge.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "ablation_hooks",
    "composition_baseline",
    "composition_score",
    "composition_scores",
    "copy_losses",
    "copying_score",
    "current_token_stripe",
    "detector_hook",
    "first_token_stripe",
    "head_ablation_hook",
    "head_logit_attribution",
    "induction_scores",
    "induction_stripe",
    "k_composition_qk",
    "logit_difference",
    "ov_circuit",
    "ov_singular_values",
    "patch_head_hook",
    "positional_qk",
    "previous_token_scores",
    "previous_token_stripe",
    "repeated_tokens",
    "token_losses",
]


def repeated_tokens(
    batch: int, seq: int, d_vocab: int, generator: torch.Generator, low: int = 0
) -> Int[Tensor, "batch pos"]:
    """``batch`` blocks of ``seq`` distinct random ids in ``[low, d_vocab)``, each repeated twice.

    Ids within a block are distinct, so in the second copy the previous occurrence of every
    token is exactly ``seq`` positions back. Example: ``seq=3`` might give ``[7, 2, 9, 7, 2, 9]``.
    """
    if not 0 <= low < d_vocab or seq > d_vocab - low:
        raise ValueError(f"need seq={seq} distinct ids in [low={low}, d_vocab={d_vocab})")
    order = torch.rand(batch, d_vocab - low, generator=generator).argsort(dim=1)
    block = order[:, :seq] + low
    return torch.cat([block, block], dim=1)


def _check_repeated(tokens: Tensor) -> int:
    if tokens.ndim != 2 or tokens.shape[1] % 2 or tokens.shape[1] < 4:
        raise ValueError(
            f"tokens must be [batch, 2 * seq] with seq >= 2, got shape {tuple(tokens.shape)}"
        )
    seq = tokens.shape[1] // 2
    if not torch.equal(tokens[:, :seq], tokens[:, seq:]):
        raise ValueError(
            "tokens must be a block repeated twice: tokens[:, seq:] == tokens[:, :seq]"
        )
    return seq


def induction_stripe(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, " n_heads"]:
    """Mean attention from each query ``i`` of the second half to key ``i - seq + 1``.

    ``pattern`` is one layer's attention on a block repeated twice (``query_pos = 2 * seq``).
    A perfect induction head scores 1; a head spreading its weight evenly over the ``i + 1``
    keys it can see scores ``mean over i in [seq, 2 seq) of 1 / (i + 1)``.
    """
    seq = pattern.shape[-2] // 2
    queries = torch.arange(seq, 2 * seq, device=pattern.device)
    return pattern[:, :, queries, queries - seq + 1].mean(dim=(0, 2))


def current_token_stripe(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, " n_heads"]:
    """Mean attention from each query ``i`` to itself (the diagonal): 1 for a current-token head."""
    return pattern.diagonal(dim1=-2, dim2=-1).mean(dim=(0, 2))


def first_token_stripe(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, " n_heads"]:
    """Mean attention from each query ``i >= 1`` to key 0: 1 for a head that rests on the
    first token (an *attention sink*). Query 0 is left out: it can see nothing else."""
    return pattern[:, :, 1:, 0].mean(dim=(0, 2))


def previous_token_stripe(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, " n_heads"]:
    """Mean attention from each query ``i >= 1`` to key ``i - 1``: 1 for a previous-token head."""
    queries = torch.arange(1, pattern.shape[-2], device=pattern.device)
    return pattern[:, :, queries, queries - 1].mean(dim=(0, 2))


def token_losses(
    logits: Float[Tensor, "batch logit_pos d_vocab"], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos_minus_1"]:
    """The next-token loss at each position: entry ``p`` is the loss of predicting ``tokens[:, p + 1]``.

    ``logits`` are the model's on ``tokens`` (or on ``tokens[:, :-1]``).
    """
    import torch.nn.functional as F

    logits = logits[:, : tokens.shape[1] - 1]
    losses = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    return losses.view(tokens.shape[0], -1)


def copy_losses(
    logits: Float[Tensor, "batch logit_pos d_vocab"], tokens: Int[Tensor, "batch pos"]
) -> tuple[float, float]:
    """Mean next-token loss on the two copies of ``tokens``, a block repeated twice.

    ``logits`` are the model's on ``tokens`` (or on ``tokens[:, :-1]``). The first number is
    the loss of predicting ids ``1 .. seq - 1`` (the first copy, unpredictable for random
    ids), the second of predicting ids ``seq .. 2 seq - 1`` (the repeated copy). The second
    includes id ``seq``, the first token of the repeated copy: it follows the *last* token
    of the first copy, which never came before it, so copying cannot predict it, and the
    repeated-copy loss has a floor of about ``ln(d_vocab) / seq`` above zero.
    """
    seq = _check_repeated(tokens)
    losses = token_losses(logits, tokens)
    return float(losses[:, : seq - 1].mean()), float(losses[:, seq - 1 :].mean())


def _patterns(model, tokens: Tensor) -> list[Tensor]:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    return [cache[f"blocks.{i}.attn.hook_pattern"] for i in range(model.cfg.n_layers)]


def induction_scores(model, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "n_layers n_heads"]:
    """Each head's :func:`induction_stripe` on ``tokens``, a block repeated twice ``[batch, 2 * seq]``."""
    _check_repeated(tokens)
    return torch.stack([induction_stripe(p) for p in _patterns(model, tokens)])


def previous_token_scores(
    model, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "n_layers n_heads"]:
    """Each head's :func:`previous_token_stripe` on ``tokens`` (any ``[batch, pos]``)."""
    return torch.stack([previous_token_stripe(p) for p in _patterns(model, tokens)])


def detector_hook(stripe, scores: dict[str, Tensor]):
    """A hook on ``blocks.L.attn.hook_pattern`` that stores ``stripe(pattern)`` in ``scores``.

    ``stripe`` is one of this module's ``*_stripe`` functions (or any
    ``pattern[batch, n_heads, q, k] -> [n_heads]``); ``scores[hook.name]`` receives its
    value during the forward pass and the pattern itself is left unchanged. This is how
    TransformerLens users compute head detectors: ``bridge.run_with_hooks(tokens,
    fwd_hooks=[(lambda name: name.endswith("hook_pattern"), detector_hook(f, out))])``.
    """

    def hook(pattern: Float[Tensor, "batch n_heads query_pos key_pos"], hook):
        scores[hook.name] = stripe(pattern.detach())

    return hook


# -- circuits, from the weights ----------------------------------------------------------


def _attn(model, layer: int):
    return model.blocks[layer].attn


def ov_circuit(model, layer: int, head: int) -> Float[Tensor, "d_vocab_in d_vocab_out"]:
    """``W_E W_V W_O W_U``: the logits a head adds when it attends to each source token.

    Row ``s`` is what attending to token ``s`` writes, read straight through the
    unembedding; a copying head has its largest entry of row ``s`` at column ``s``. The
    LayerNorms' gains are folded in (``ln1.w`` before ``W_V``, ``ln_final.w`` before
    ``W_U``); their per-position scales and the biases are left out, as in Elhage et al.
    """
    attn, ln1 = _attn(model, layer), model.blocks[layer].ln1
    W_E = model.embed.W_E
    W_V = attn.W_V[head] * ln1.w[:, None]  # [d_model, d_head]
    W_O = attn.W_O[head]  # [d_head, d_model]
    W_U = model.unembed.W_U * model.ln_final.w[:, None]  # [d_model, d_vocab]
    return ((W_E - W_E.mean(-1, keepdim=True)) @ W_V) @ (W_O @ W_U)


def positional_qk(model, layer: int, head: int) -> Float[Tensor, "query_pos key_pos"]:
    """``W_pos W_Q W_K^T W_pos^T / sqrt(d_head)``: the attention score from positions alone."""
    attn, ln1 = _attn(model, layer), model.blocks[layer].ln1
    W_pos = model.pos_embed.W_pos
    W_pos = W_pos - W_pos.mean(-1, keepdim=True)
    q = W_pos @ (attn.W_Q[head] * ln1.w[:, None])
    k = W_pos @ (attn.W_K[head] * ln1.w[:, None])
    return q @ k.T / attn.W_Q.shape[-1] ** 0.5


def _ov(model, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
    """``W_V W_O`` of one head, LayerNorm gain folded in, its output centred (as the next
    LayerNorm centres it)."""
    attn = _attn(model, layer)
    W_V = attn.W_V[head] * model.blocks[layer].ln1.w[:, None]
    W_O = attn.W_O[head]
    return W_V @ (W_O - W_O.mean(-1, keepdim=True))


def _qk(model, layer: int, head: int) -> Float[Tensor, "d_model d_model"]:
    """``W_Q W_K^T / sqrt(d_head)`` of one head, LayerNorm gain folded in on both sides."""
    attn, g = _attn(model, layer), model.blocks[layer].ln1.w[:, None]
    return (attn.W_Q[head] * g) @ (attn.W_K[head] * g).T / attn.W_Q.shape[-1] ** 0.5


def ov_singular_values(model, layer: int, head: int) -> Float[Tensor, " d_model"]:
    """Singular values of the head's ``W_V W_O`` (``[d_model, d_model]``), largest first.

    The product has rank at most ``d_head``: every value after the first ``d_head`` is 0
    up to rounding. How fast the first ``d_head`` fall says how many directions the head
    really moves.
    """
    return torch.linalg.svdvals(_ov(model, layer, head))


def copying_score(circuit: Float[Tensor, "n n"]) -> float:
    """``sum(eigenvalues) / sum(|eigenvalues|)`` of a square circuit (Elhage et al., 2021).

    1 for a circuit whose eigenvalues are all positive (the identity: every token raises
    itself), -1 when all are negative, about 0 for a rotation or random matrix. Applied to
    :func:`ov_circuit`, a copying head scores near 1.
    """
    eig = torch.linalg.eigvals(circuit.double())
    return float(eig.sum().real / eig.abs().sum())


def composition_score(
    W_A: Float[Tensor, "d_model d_model"], W_B: Float[Tensor, "d_model d_model"]
) -> float:
    """``||W_A W_B||_F / (||W_A||_F ||W_B||_F)``: how much of ``W_A``'s output ``W_B`` reads.

    0 when ``W_A`` writes only into directions ``W_B`` ignores (orthogonal subspaces); at
    most 1, reached when both are rank 1 and aligned.
    """
    return float(
        torch.linalg.matrix_norm(W_A @ W_B)
        / (torch.linalg.matrix_norm(W_A) * torch.linalg.matrix_norm(W_B))
    )


def composition_scores(model, kind: str, layer_a: int = 0, layer_b: int = 1) -> Tensor:
    """``[n_heads of layer_a, n_heads of layer_b]``: each pair's Q-, K- or V-composition.

    Head ``a`` writes ``x W_OV^a``. ``kind="Q"``: head ``b``'s queries read it,
    ``W_OV^a W_QK^b``; ``"K"``: its keys do, ``W_OV^a (W_QK^b)^T``; ``"V"``: its values do,
    ``W_OV^a W_OV^b``. Each is scored by :func:`composition_score`.
    """
    if kind not in ("Q", "K", "V"):
        raise ValueError(f"kind must be 'Q', 'K' or 'V', got {kind!r}")
    n = model.cfg.n_heads
    out = torch.zeros(n, n)
    for a in range(n):
        ov_a = _ov(model, layer_a, a)
        for b in range(n):
            if kind == "V":
                reader = _ov(model, layer_b, b)
            else:
                qk = _qk(model, layer_b, b)
                reader = qk if kind == "Q" else qk.T
            out[a, b] = composition_score(ov_a, reader)
    return out


def composition_baseline(
    d_model: int, d_head: int, generator: torch.Generator, samples: int = 200
) -> float:
    """Mean :func:`composition_score` of two random rank-``d_head`` products of Gaussian
    matrices ``[d_model, d_head] @ [d_head, d_model]``: what unrelated heads score."""
    total = 0.0
    for _ in range(samples):
        a, b, c, d = (
            torch.randn(shape, generator=generator)
            for shape in ((d_model, d_head), (d_head, d_model)) * 2
        )
        total += composition_score(a @ b, c @ d)
    return total / samples


def k_composition_qk(
    model, prev_head: tuple[int, int], head: tuple[int, int]
) -> Float[Tensor, "d_vocab_query d_vocab_key"]:
    """Score between query token ``a`` and a key whose *previous* token is ``b``, when
    ``prev_head`` (layer 0) carries the previous token into the key of ``head`` (layer 1).

    ``(W_E W_Q) (W_E W_V' W_O' W_K)^T``: the query side reads the current token's embedding,
    the key side reads what ``prev_head`` wrote (its OV circuit applied to the embedding). An
    induction head has a large diagonal: token ``a`` looks for the position after an ``a``.
    """
    (l0, h0), (l1, h1) = prev_head, head
    W_E = model.embed.W_E
    W_E = W_E - W_E.mean(-1, keepdim=True)
    prev, attn = _attn(model, l0), _attn(model, l1)
    g0, g1 = model.blocks[l0].ln1.w[:, None], model.blocks[l1].ln1.w[:, None]
    moved = W_E @ (prev.W_V[h0] * g0) @ prev.W_O[h0]  # what prev_head writes, per token
    moved = moved - moved.mean(-1, keepdim=True)
    q = W_E @ (attn.W_Q[h1] * g1)
    k = moved @ (attn.W_K[h1] * g1)
    return q @ k.T / attn.W_Q.shape[-1] ** 0.5


# -- hooks for ablation and patching ------------------------------------------------------


def head_ablation_hook(head: int, mean: Tensor | None = None):
    """A TransformerLens hook on ``blocks.L.attn.hook_z`` that replaces one head's output.

    ``mean=None`` sets ``z[:, :, head]`` to 0 (zero-ablation); otherwise to ``mean``
    (``[pos, d_head]`` or ``[d_head]``: mean-ablation, the head's average output).
    """

    def hook(z: Float[Tensor, "batch pos n_heads d_head"], hook=None):
        z = z.clone()
        z[:, :, head] = 0.0 if mean is None else mean.to(z.dtype)
        return z

    return hook


def ablation_hooks(
    heads: list[tuple[int, int]], means: dict[str, Tensor] | None = None
) -> list[tuple[str, object]]:
    """``fwd_hooks`` that remove several heads at once, ``heads = [(layer, head), ...]``.

    ``means=None`` zero-ablates; otherwise ``means["blocks.L.attn.hook_z"]`` is a clean
    run's ``z`` (``[batch, pos, n_heads, d_head]``) and each head is replaced by its mean
    over the batch. Hooks on one activation run in turn, so every head listed is removed.
    """
    hooks = []
    for layer, head in heads:
        name = f"blocks.{layer}.attn.hook_z"
        mean = None if means is None else means[name][:, :, head].mean(0)
        hooks.append((name, head_ablation_hook(head, mean)))
    return hooks


def patch_head_hook(clean_z: Float[Tensor, "batch pos n_heads d_head"], head: int, position: int):
    """A hook on ``blocks.L.attn.hook_z`` writing the clean run's ``z`` of one head at one position."""

    def hook(z: Float[Tensor, "batch pos n_heads d_head"], hook=None):
        z = z.clone()
        z[:, position, head] = clean_z[:, position, head].to(z.dtype)
        return z

    return hook


def logit_difference(
    logits: Float[Tensor, "batch pos d_vocab"], right: Tensor, wrong: Tensor
) -> Float[Tensor, ""]:
    """Mean over the batch of ``logit[right] - logit[wrong]`` at the last position."""
    last = logits[:, -1]
    rows = torch.arange(last.shape[0], device=last.device)
    return (last[rows, right] - last[rows, wrong]).mean()


def head_logit_attribution(
    model, cache, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "n_layers n_heads batch pos_minus_1"]:
    """Each head's direct contribution to the logit of the next token, at every position.

    Head ``h`` of layer ``L`` adds ``z[:, p, h] @ W_O[h]`` to the residual stream; read
    straight through the final LayerNorm (centred, divided by the run's own
    ``ln_final.hook_scale``, times ``ln_final.w``) and ``W_U``, that is its share of
    ``logit[p, tokens[p + 1]]``. ``cache`` is the run's ``run_with_cache`` output on
    ``tokens``. The shares of all heads, of ``b_O``, the embeddings and the MLPs add up to
    the logit minus ``ln_final.b @ W_U + b_U``; the path through later layers is not counted.
    """
    target = tokens[:, 1:]  # [batch, pos - 1]
    scale = cache["ln_final.hook_scale"][:, :-1]  # [batch, pos - 1, 1]
    W_U = model.unembed.W_U * model.ln_final.w[:, None]  # [d_model, d_vocab]
    directions = W_U.T[target]  # [batch, pos - 1, d_model]
    out = []
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][:, :-1]  # [batch, pos - 1, n_heads, d_head]
        W_O = _attn(model, layer).W_O  # [n_heads, d_head, d_model]
        written = torch.einsum("bphd,hdm->hbpm", z, W_O)
        written = written - written.mean(-1, keepdim=True)
        out.append((written / scale * directions).sum(-1))  # [n_heads, batch, pos - 1]
    return torch.stack(out)

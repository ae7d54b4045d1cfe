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
  (any object with ``run_with_hooks``): :func:`head_ablation_hook` and :func:`patch_head_hook`.

Every function that runs a model takes anything with ``run_with_cache(tokens)`` returning
``(logits, cache)`` with TransformerLens's hook names: :class:`minigpt.model.GPT` or the bridge.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "copy_losses",
    "head_ablation_hook",
    "induction_scores",
    "induction_stripe",
    "k_composition_qk",
    "logit_difference",
    "ov_circuit",
    "patch_head_hook",
    "positional_qk",
    "previous_token_scores",
    "previous_token_stripe",
    "repeated_tokens",
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


def previous_token_stripe(
    pattern: Float[Tensor, "batch n_heads query_pos key_pos"],
) -> Float[Tensor, " n_heads"]:
    """Mean attention from each query ``i >= 1`` to key ``i - 1``: 1 for a previous-token head."""
    queries = torch.arange(1, pattern.shape[-2], device=pattern.device)
    return pattern[:, :, queries, queries - 1].mean(dim=(0, 2))


def copy_losses(
    logits: Float[Tensor, "batch logit_pos d_vocab"], tokens: Int[Tensor, "batch pos"]
) -> tuple[float, float]:
    """Mean next-token loss on the two copies of ``tokens``, a block repeated twice.

    ``logits`` are the model's on ``tokens`` (or on ``tokens[:, :-1]``). The first number is
    the loss of predicting ids ``1 .. seq - 1`` (the first copy, unpredictable for random
    ids), the second of predicting ids ``seq .. 2 seq - 1`` (the repeated copy).
    """
    import torch.nn.functional as F

    seq = _check_repeated(tokens)
    logits = logits[:, : tokens.shape[1] - 1]
    losses = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    losses = losses.view(tokens.shape[0], -1)
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

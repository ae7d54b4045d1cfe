"""Causal multi-head self-attention, and the key/value cache that makes generation fast.

Two implementations of the same maths, chosen by ``Attention.impl``:

* ``"einsum"``: every step written out with einops (queries, keys, scores, mask, softmax,
  weighted sum of values), so each intermediate can be looked at. Used to teach, and
  whenever activations are recorded.
* ``"sdpa"``: PyTorch's fused ``scaled_dot_product_attention``, which never materialises
  the ``[query_pos, key_pos]`` pattern. Faster and leaner; tested equal to the einsum path.
"""

from __future__ import annotations

import math

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from minigpt.config import GPTConfig
from minigpt.kv_cache import KVCache

__all__ = ["ATTN_IMPLS", "Attention", "attention_mask_for", "check_attn_impl"]

ATTN_IMPLS = ("sdpa", "einsum")
SMALL_INPUT_ROWS = 16  # batch * pos up to which the fused path projects with a batched matmul


def check_attn_impl(impl: str) -> str:
    if impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl={impl!r} is not one of {', '.join(map(repr, ATTN_IMPLS))}")
    return impl


def attention_mask_for(
    batch: int,
    past_len: int,
    new_pos: int,
    padding_mask: Int[Tensor, "batch key_pos"] | Bool[Tensor, "batch key_pos"] | None = None,
    device: torch.device | None = None,
) -> Bool[Tensor, "batch query_pos key_pos"]:
    """Which keys each query may attend to: True = allowed.

    Query ``i`` (absolute position ``past_len + i``) sees keys ``0 .. past_len + i``
    (the causal mask). With a ``padding_mask`` (1 = real token, 0 = padding) padded keys
    are hidden too; a padded query is then left to attend to itself alone, so that its
    softmax is over something (its output is meaningless and should be ignored).
    """
    key_idx = torch.arange(past_len + new_pos, device=device)
    query_idx = past_len + torch.arange(new_pos, device=device)
    causal = key_idx[None, :] <= query_idx[:, None]  # [query_pos, key_pos]
    allowed = einops.repeat(causal, "query_pos key_pos -> batch query_pos key_pos", batch=batch)
    if padding_mask is not None:
        allowed = allowed & padding_mask.bool()[:, None, :]
        allowed = allowed | (key_idx[None, :] == query_idx[:, None])
    return allowed


def _causal_mask(n_q: int, n_k: int, device: torch.device) -> Bool[Tensor, "query_pos key_pos"]:
    """The causal mask when the ``n_q`` queries are the last ``n_q`` of ``n_k`` positions."""
    return torch.ones(n_q, n_k, dtype=torch.bool, device=device).tril(n_k - n_q)


class Attention(nn.Module):
    """Multi-head causal self-attention with TransformerLens's parameters.

    ``W_Q, W_K, W_V[n_heads, d_model, d_head]``, ``b_Q, b_K, b_V[n_heads, d_head]``,
    ``W_O[n_heads, d_head, d_model]``, ``b_O[d_model]``. ``layer`` is the block's index,
    used to find this layer's slot in a :class:`KVCache`.
    """

    def __init__(self, cfg: GPTConfig, layer: int = 0, impl: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.impl = check_attn_impl(impl)
        shape_in = (cfg.n_heads, cfg.d_model, cfg.d_head)
        self.W_Q = nn.Parameter(torch.empty(shape_in))
        self.W_K = nn.Parameter(torch.empty(shape_in))
        self.W_V = nn.Parameter(torch.empty(shape_in))
        self.W_O = nn.Parameter(torch.empty(cfg.n_heads, cfg.d_head, cfg.d_model))
        self.b_Q = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head))
        self.b_K = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head))
        self.b_V = nn.Parameter(torch.zeros(cfg.n_heads, cfg.d_head))
        self.b_O = nn.Parameter(torch.zeros(cfg.d_model))
        for w in (self.W_Q, self.W_K, self.W_V):
            nn.init.normal_(w, std=cfg.init_range)
        # Writes into the residual stream: scaled like GPT-2 (see MLP.W_out).
        nn.init.normal_(self.W_O, std=cfg.init_range / math.sqrt(2 * cfg.n_layers))

    def forward(
        self,
        x: Float[Tensor, "batch pos d_model"],
        mask: Bool[Tensor, "batch pos key_pos"] | None = None,
        cache: KVCache | None = None,
        acts: dict[str, Tensor] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """Attend from every position of ``x`` to itself and the positions before it.

        Args:
            x: the (normalised) residual stream.
            mask: which keys each query may see (see :func:`attention_mask_for`); ``None``
                means the plain causal mask over ``x`` alone (no cache).
            cache: when given, this layer's new keys and values are appended to it and the
                queries attend over everything cached.
            acts: when given, receives ``hook_q``, ``hook_k``, ``hook_v``
                (``[batch, pos, n_heads, d_head]``, the new tokens only),
                ``hook_attn_scores`` and ``hook_pattern`` (``[batch, n_heads, query_pos,
                key_pos]``) and ``hook_z``. Recording always uses the einsum path.
        """
        q = self._project(x, self.W_Q, self.b_Q)
        k = self._project(x, self.W_K, self.b_K)
        v = self._project(x, self.W_V, self.b_V)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        if self.impl == "sdpa" and acts is None:
            n_q, n_k = q.shape[2], k.shape[2]
            if mask is None and n_q not in (1, n_k):
                mask = _causal_mask(n_q, n_k, q.device)[None]
            z = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=None if mask is None else mask[:, None],  # the same for every head
                # sdpa's own causal mask assumes the queries are the first n_q positions.
                is_causal=mask is None and n_q == n_k and n_q > 1,
            )
        else:
            z = self._attend_einsum(q, k, v, mask, acts)
        # z: [batch, n_heads, pos, d_head]; each head writes back through its slice of W_O.
        out = (
            einops.einsum(
                z, self.W_O, "batch n_heads pos d_head, n_heads d_head d_model -> batch pos d_model"
            )
            + self.b_O
        )
        if acts is not None:
            acts["hook_q"] = einops.rearrange(
                q, "batch n_heads pos d_head -> batch pos n_heads d_head"
            )
            new = x.shape[1]
            for name, t in (("hook_k", k), ("hook_v", v)):
                acts[name] = einops.rearrange(
                    t[:, :, -new:], "batch n_heads pos d_head -> batch pos n_heads d_head"
                )
            acts["hook_z"] = einops.rearrange(
                z, "batch n_heads pos d_head -> batch pos n_heads d_head"
            )
        return out

    def _project(
        self,
        x: Float[Tensor, "batch pos d_model"],
        W: Float[Tensor, "n_heads d_model d_head"],
        b: Float[Tensor, "n_heads d_head"],
    ) -> Float[Tensor, "batch n_heads pos d_head"]:
        if self.impl == "sdpa" and x.shape[0] * x.shape[1] <= SMALL_INPUT_ROWS:
            # A few rows (generation: one new token a step): a batched matmul over heads uses
            # W[n_heads, d_model, d_head] in place, where einsum first copies W into one
            # [d_model, n_heads * d_head] matrix; 3x faster for one token on a CPU. For many
            # rows that single large matmul wins, so einsum stays.
            return torch.matmul(x[:, None], W) + b[:, None, :]
        return (
            einops.einsum(
                x, W, "batch pos d_model, n_heads d_model d_head -> batch n_heads pos d_head"
            )
            + b[:, None, :]
        )

    def _attend_einsum(
        self,
        q: Float[Tensor, "batch n_heads query_pos d_head"],
        k: Float[Tensor, "batch n_heads key_pos d_head"],
        v: Float[Tensor, "batch n_heads key_pos d_head"],
        mask: Bool[Tensor, "batch query_pos key_pos"] | None,
        acts: dict[str, Tensor] | None,
    ) -> Float[Tensor, "batch n_heads query_pos d_head"]:
        # How well each query matches each key, scaled so the scores have unit variance
        # whatever d_head is.
        scores = einops.einsum(
            q,
            k,
            "batch n_heads query_pos d_head, batch n_heads key_pos d_head "
            "-> batch n_heads query_pos key_pos",
        ) / math.sqrt(self.cfg.d_head)
        if mask is None:
            mask = _causal_mask(q.shape[2], k.shape[2], q.device)[None, None]
        else:
            mask = mask[:, None]  # the same mask for every head
        # The most negative float rather than -inf, as TransformerLens does: exp() of it is 0.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        pattern = scores.softmax(dim=-1)
        if acts is not None:
            acts["hook_attn_scores"] = scores
            acts["hook_pattern"] = pattern
        # Each query's output is the pattern-weighted average of the values.
        return einops.einsum(
            pattern,
            v,
            "batch n_heads query_pos key_pos, batch n_heads key_pos d_head "
            "-> batch n_heads query_pos d_head",
        )

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

ATTN_IMPLS = ("sdpa", "einsum")


def check_attn_impl(impl: str) -> str:
    if impl not in ATTN_IMPLS:
        raise ValueError(f"attn_impl={impl!r} is not one of {', '.join(map(repr, ATTN_IMPLS))}")
    return impl


class KVCache:
    """Keys and values of every layer for the tokens a model has already seen.

    Generating token ``t`` only needs the new token's query, key and value: the keys and
    values of tokens ``0 .. t-1`` do not change, so they are kept here instead of being
    recomputed. Each layer holds ``[batch, n_heads, pos, d_head]`` tensors.

    Make one with ``model.new_cache(batch_size)``; pass it to ``model(tokens, cache=cache)``,
    which appends the new tokens' keys and values.

    Storage grows by doubling (up to ``n_ctx``), so appending one token at a time copies the
    cache O(log n) times rather than at every step. While gradients are being recorded it
    concatenates instead, so that no tensor autograd has saved is overwritten.
    """

    def __init__(self, n_layers: int, batch_size: int, n_ctx: int):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be at least 1")
        self.n_layers = n_layers
        self.batch_size = batch_size
        self.n_ctx = n_ctx
        # Per layer: a buffer [batch, n_heads, capacity, d_head] whose first `_lengths[i]`
        # positions are in use.
        self._keys: list[Tensor | None] = [None] * n_layers
        self._values: list[Tensor | None] = [None] * n_layers
        self._lengths = [0] * n_layers

    @property
    def length(self) -> int:
        """How many positions are cached (the same in every layer between forward passes)."""
        # The last layer is written last, so during a forward pass this is still the length
        # before the new tokens.
        return self._lengths[-1]

    def keys(self, layer: int) -> Float[Tensor, "batch n_heads key_pos d_head"] | None:
        """The cached keys of ``layer`` (``None`` while empty)."""
        n = self._lengths[layer]
        return None if n == 0 else self._keys[layer][:, :, :n]

    def values(self, layer: int) -> Float[Tensor, "batch n_heads key_pos d_head"] | None:
        """The cached values of ``layer`` (``None`` while empty)."""
        n = self._lengths[layer]
        return None if n == 0 else self._values[layer][:, :, :n]

    def update(
        self,
        layer: int,
        k: Float[Tensor, "batch n_heads new_pos d_head"],
        v: Float[Tensor, "batch n_heads new_pos d_head"],
    ) -> tuple[
        Float[Tensor, "batch n_heads key_pos d_head"], Float[Tensor, "batch n_heads key_pos d_head"]
    ]:
        """Append one layer's new keys and values; return all of that layer's keys and values."""
        if k.shape[0] != self.batch_size:
            raise ValueError(
                f"the cache holds batch_size={self.batch_size} rows, got keys for {k.shape[0]}"
            )
        old = self._lengths[layer]
        new = old + k.shape[2]
        buf_k, buf_v = self._keys[layer], self._values[layer]
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            # Functional append: autograd may hold on to the old tensors.
            if old:
                k = torch.cat([buf_k[:, :, :old], k], dim=2)
                v = torch.cat([buf_v[:, :, :old], v], dim=2)
            self._keys[layer], self._values[layer], self._lengths[layer] = k, v, new
            return k, v
        if buf_k is None or buf_k.shape[2] < new:
            doubled = 2 * (0 if buf_k is None else buf_k.shape[2])
            capacity = max(new, min(self.n_ctx, max(doubled, 32)))
            grown_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            grown_v = v.new_empty(v.shape[0], v.shape[1], capacity, v.shape[3])
            if old:
                grown_k[:, :, :old] = buf_k[:, :, :old]
                grown_v[:, :, :old] = buf_v[:, :, :old]
            buf_k, buf_v = grown_k, grown_v
            self._keys[layer], self._values[layer] = buf_k, buf_v
        buf_k[:, :, old:new] = k
        buf_v[:, :, old:new] = v
        self._lengths[layer] = new
        return buf_k[:, :, :new], buf_v[:, :, :new]

    def select(self, batch_indices: Int[Tensor, " new_batch"]) -> KVCache:
        """Keep (and reorder, or repeat) the rows ``batch_indices``, in place; returns ``self``.

        Beam search uses this to follow the surviving beams.
        """
        if batch_indices.ndim != 1 or batch_indices.numel() == 0:
            raise ValueError(
                "batch_indices must be a non-empty 1-D tensor, "
                f"got shape {tuple(batch_indices.shape)}"
            )
        lo, hi = int(batch_indices.min()), int(batch_indices.max())
        if lo < 0 or hi >= self.batch_size:
            raise ValueError(
                f"batch_indices range over [{lo}, {hi}]; valid rows are [0, {self.batch_size})"
            )
        for i in range(self.n_layers):
            if self._keys[i] is not None:
                idx = batch_indices.to(self._keys[i].device)
                self._keys[i] = self._keys[i].index_select(0, idx)
                self._values[i] = self._values[i].index_select(0, idx)
        self.batch_size = batch_indices.numel()
        return self

    def crop(self, length: int) -> KVCache:
        """Forget every position from ``length`` on, in place; returns ``self``."""
        if not 0 <= length <= self.length:
            raise ValueError(
                f"crop length={length} must be in [0, {self.length}] (the cache length)"
            )
        self._lengths = [min(n, length) for n in self._lengths]
        return self

    def __repr__(self) -> str:
        return (
            f"KVCache(n_layers={self.n_layers}, batch_size={self.batch_size}, "
            f"length={self.length}, n_ctx={self.n_ctx})"
        )


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

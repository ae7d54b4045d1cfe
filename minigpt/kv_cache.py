"""The key/value cache: what a model keeps of the tokens it has seen, so that generation
runs each new token through the model once."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


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

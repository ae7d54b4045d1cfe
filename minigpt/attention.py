"""Causal multi-head self-attention, and the key/value cache that makes generation fast.

Two implementations of the same maths, chosen by ``Attention.impl``:

* ``"einsum"``: every step written out with einops (queries, keys, scores, mask, softmax,
  weighted sum of values), so each intermediate can be looked at. Used to teach, and
  whenever activations are recorded. That step is the public function :func:`attention`,
  which takes separate queries, keys, values and an optional mask.
* ``"sdpa"``: PyTorch's fused ``scaled_dot_product_attention``, which never materialises
  the ``[query_pos, key_pos]`` pattern. Faster and leaner; tested equal to the einsum path.
"""

from __future__ import annotations

import math
from typing import no_type_check

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from minigpt.config import GPTConfig
from minigpt.kv_cache import KVCache

__all__ = ["ATTN_IMPLS", "Attention", "attention", "attention_mask_for", "check_attn_impl"]

ATTN_IMPLS = ("sdpa", "einsum")


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


def _check_attention_args(q: object, k: object, v: object, mask: object, scale: object) -> None:
    """Raise a ValueError (bad shape) or TypeError (bad type) naming the argument at fault."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if q.ndim != 4:
        raise ValueError(
            f"q must have shape [batch, n_heads, query_pos, d_head] (4 dims), got {tuple(q.shape)}"
        )
    for name, t in (("k", k), ("v", v)):
        if t.ndim != 4:
            raise ValueError(
                f"{name} must have shape [batch, n_heads, key_pos, d_head] (4 dims), "
                f"got {tuple(t.shape)}"
            )
    batch, n_heads, n_q, d_head = q.shape
    for axis, name in ((0, "batch"), (1, "n_heads"), (3, "d_head")):
        if k.shape[axis] != q.shape[axis]:
            raise ValueError(
                f"k has {name}={k.shape[axis]} but q has {name}={q.shape[axis]} "
                f"(q {tuple(q.shape)}, k {tuple(k.shape)})"
            )
    if v.shape != k.shape:
        raise ValueError(
            f"v must have the same shape as k [batch, n_heads, key_pos, d_head] = "
            f"{tuple(k.shape)}, got {tuple(v.shape)}"
        )
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if mask is None:
        return
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a torch.bool tensor (True = may attend), got {got}")
    n_k = k.shape[2]
    if mask.ndim == 3:
        names, sizes = ("batch", "query_pos", "key_pos"), (batch, n_q, n_k)
    elif mask.ndim == 2:
        names, sizes = ("query_pos", "key_pos"), (n_q, n_k)
    else:
        raise ValueError(
            f"mask must have shape [batch, query_pos, key_pos] or [query_pos, key_pos], "
            f"got {tuple(mask.shape)}"
        )
    for name, size, got in zip(names, sizes, mask.shape):
        if got not in (1, size):
            raise ValueError(
                f"mask has {name}={got} but must have {size} (or 1, to broadcast): mask "
                f"{tuple(mask.shape)} for {dict(zip(names, sizes))}"
            )


# Not run under the tests' runtime shape checker: the checks below give the same errors with
# and without it, as ValueErrors naming the argument.
@no_type_check
def attention(
    q: Float[Tensor, "batch n_heads query_pos d_head"],
    k: Float[Tensor, "batch n_heads key_pos d_head"],
    v: Float[Tensor, "batch n_heads key_pos d_head"],
    mask: Bool[Tensor, "#batch #query_pos #key_pos"]
    | Bool[Tensor, "#query_pos #key_pos"]
    | None = None,
    *,
    scale: float | None = None,
    acts: dict[str, Tensor] | None = None,
) -> Float[Tensor, "batch n_heads query_pos d_head"]:
    """Scaled dot-product attention, written out with einops: ``softmax(q k^T * scale) v``.

    The computation of :class:`Attention`'s einsum path (which calls this function), for
    queries, keys and values already split into heads. The layout is the module's own,
    ``[batch, n_heads, pos, d_head]`` (that of the :class:`KVCache` and of
    :func:`torch.nn.functional.scaled_dot_product_attention`), not the hooks'
    ``[batch, pos, n_heads, d_head]``: hook tensors go in through
    ``einops.rearrange(t, "batch pos n_heads d_head -> batch n_heads pos d_head")``.

    Args:
        q: the queries.
        k: the keys; ``key_pos`` may differ from ``query_pos`` (one new query against a
            cache of keys, say).
        v: the values, one per key.
        mask: which keys each query may attend to, True = allowed; the same for every head.
            ``[batch, query_pos, key_pos]`` or ``[query_pos, key_pos]``, any size-1 axis
            broadcast. ``None`` means every query sees every key (no causal mask: build one
            with :func:`attention_mask_for`, or ``torch.ones(n_q, n_k).tril(n_k - n_q)``).
        scale: what the scores are multiplied by before the softmax; ``None`` divides them by
            ``sqrt(d_head)``, so that they have unit variance whatever ``d_head`` is.
        acts: when given, receives ``hook_attn_scores`` (scaled, masked scores) and
            ``hook_pattern`` (the softmax), both ``[batch, n_heads, query_pos, key_pos]``.

    Returns:
        ``z[batch, n_heads, query_pos, d_head]``: each query's pattern-weighted average of the
        values.

    Masked scores are set to the most negative float rather than ``-inf``, as TransformerLens
    does, so their weight after the softmax is exactly 0. A query that may attend to **no** key
    (a fully masked row, or ``key_pos == 0``) gets ``z = 0`` and an all-zero pattern row (it
    sums to 0, not 1): an empty weighted sum. That is what PyTorch's
    ``scaled_dot_product_attention`` returns for such a row (the tests check it), rather than
    NaN (``-inf`` everywhere) or the uniform average over *all* keys (what the most negative
    float alone would give). :func:`attention_mask_for` never hides every key from a query
    (a padded query attends to itself), so the model itself never meets such a row.

    Raises:
        ValueError: a shape that does not fit, naming the argument (``q``, ``k``, ``v`` or
            ``mask``).
        TypeError: a non-float ``q``/``k``/``v``, mixed dtypes, a non-bool ``mask``.
    """
    _check_attention_args(q, k, v, mask, scale)
    # How well each query matches each key.
    scores = einops.einsum(
        q,
        k,
        "batch n_heads query_pos d_head, batch n_heads key_pos d_head "
        "-> batch n_heads query_pos key_pos",
    )
    scores = scores / math.sqrt(q.shape[-1]) if scale is None else scores * scale
    if mask is not None:
        allowed = mask[:, None] if mask.ndim == 3 else mask  # the same mask for every head
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    pattern = scores.softmax(dim=-1)
    if mask is not None:
        # A query with no key to attend to has all its scores equal, so its softmax is uniform
        # over the hidden keys; attending to nothing should give nothing: times 0 (the other
        # rows times 1, which leaves them exactly as they are).
        pattern = pattern * allowed.any(dim=-1, keepdim=True)
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
        self._fused = None  # (key, sources, (weight, bias)): see fused_qkv

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
        if self.impl == "sdpa" and acts is None:
            return self._forward_fused(x, mask, cache)
        q = self._project(x, self.W_Q, self.b_Q)
        k = self._project(x, self.W_K, self.b_K)
        v = self._project(x, self.W_V, self.b_V)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
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

    def _forward_fused(
        self,
        x: Float[Tensor, "batch pos d_model"],
        mask: Bool[Tensor, "batch pos key_pos"] | None,
        cache: KVCache | None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """The same attention in as few kernels as the maths allows: one matrix product for
        the queries, keys and values of every head, the fused ``scaled_dot_product_attention``,
        and one matrix product (with its bias) back into the residual stream."""
        batch, pos, _ = x.shape
        n_heads, d_head = self.cfg.n_heads, self.cfg.d_head
        w_qkv, b_qkv = self.fused_qkv()
        qkv = F.linear(x, w_qkv, b_qkv).view(batch, pos, 3, n_heads, d_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [batch, n_heads, pos, d_head]
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        n_k = k.shape[2]
        if mask is None and pos not in (1, n_k):
            mask = _causal_mask(pos, n_k, q.device)[None]
        z = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None else mask[:, None],  # the same for every head
            # sdpa's own causal mask assumes the queries are the first pos of n_k positions.
            is_causal=mask is None and pos == n_k and pos > 1,
        )
        z = z.transpose(1, 2).reshape(batch, pos, n_heads * d_head)
        # W_O[n_heads, d_head, d_model] is already one [n_heads * d_head, d_model] matrix.
        return F.linear(z, self.W_O.reshape(n_heads * d_head, -1).T, self.b_O)

    def fused_qkv(self) -> tuple[Float[Tensor, "qkv d_model"], Float[Tensor, " qkv"]]:
        """``W_Q, W_K, W_V`` as one ``[3 * n_heads * d_head, d_model]`` matrix (the layout of
        ``F.linear``'s weight) and ``b_Q, b_K, b_V`` as one bias: rows ``h * d_head + i`` of
        the first third are ``W_Q[h, :, i]``, then the same for keys and values.

        While gradients flow to the weights it is built afresh each call (its backward splits
        the gradient back into the three). Without gradients (generation) it is kept and
        rebuilt only when a weight changes, so that decoding reads each weight once a token.
        """
        params = (self.W_Q, self.W_K, self.W_V, self.b_Q, self.b_K, self.b_V)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return self._build_fused_qkv()
        # A weight changed if its storage or its version counter (bumped by every in-place
        # write: an optimizer step, load_state_dict, .to(dtype)) did. The sources are held,
        # so that freed storage cannot come back at the same address.
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        if self._fused is None or self._fused[0] != key:
            with torch.no_grad():
                fused = self._build_fused_qkv()
            self._fused = (key, [p.detach() for p in params], fused)
        return self._fused[2]

    def _build_fused_qkv(self) -> tuple[Tensor, Tensor]:
        w = torch.cat([self.W_Q, self.W_K, self.W_V])  # [3 * n_heads, d_model, d_head]
        w = w.transpose(1, 2).reshape(-1, self.cfg.d_model)
        b = torch.cat([self.b_Q, self.b_K, self.b_V]).reshape(-1)
        return w, b

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
        """The einsum path: :func:`attention`, with the causal mask when none is given."""
        if mask is None:
            # The new queries are the last query_pos of the key_pos positions.
            mask = _causal_mask(q.shape[2], k.shape[2], q.device)
        return attention(q, k, v, mask, acts=acts)

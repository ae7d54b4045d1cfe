"""One new token through the whole model, in as few kernels as the maths allows.

A cached decode step multiplies one vector by every weight matrix once, so it is bounded by
how fast memory can be read; what it costs beyond that is per-call overhead: module calls,
shape checks, views. :func:`decode_step` runs the same maths as :meth:`GPT.forward` with a
cache and one token per row, without the module tree: a flat list of each layer's tensors,
prepared once (:class:`DecodeWeights`) in the layout whose matrix-vector product reads
fastest, and for each layer the fewest calls (LayerNorm, one product for the queries, keys
and values, the cache append, fused attention, and products that land on the residual
stream). Tested equal to the module path.

Measured on a 2-core AMX Xeon with torch 2.13 (CONTRIBUTING.md has the numbers): a float32
product ``x @ W`` reads ``W[d_in, d_out]`` (TransformerLens's layout, so the parameters
themselves serve) faster than ``W[d_out, d_in] @ x``, while in bf16 the matrix-vector
kernel ``addmv`` on ``W[d_out, d_in]`` is the fast one (1.5-1.8x float32 at batch 1) and
``x @ W`` is slower than float32. Float32 therefore uses the parameters as they are (plus
one fused QKV matrix); other dtypes keep transposed copies, which doubles the memory their
matrices take.

The model uses this path only where it gives the same answer as the modules: one token per
row, a cache, no attention mask, nothing recorded, no gradients, the ``"sdpa"``
implementation, no PyTorch hook on a module the pass calls, and the package's own classes
(a reader's replacement for a block or an MLP is always run as written).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from minigpt.attention import Attention
from minigpt.block import TransformerBlock
from minigpt.embed import Embed, PosEmbed, Unembed
from minigpt.kv_cache import KVCache
from minigpt.layernorm import LayerNorm
from minigpt.mlp import MLP

__all__ = ["DecodeWeights", "decode_step", "fast_path_applies"]


def fast_path_applies(model: nn.Module) -> bool:
    """Whether :func:`decode_step` computes exactly what ``model``'s modules would.

    False while gradients are recorded (the path runs under ``no_grad``), when a module that the forward pass calls
    has a PyTorch hook (global hooks included), when attention is set to the einsum path,
    or when such a module is not the package's own class.
    """
    return not torch.is_grad_enabled() and _called_modules(model) is not None


def _called_modules(model: nn.Module) -> list[nn.Module] | None:
    """The modules a forward pass calls, when each is the package's own class and has no
    hook; else ``None``. (It runs at every token, so it reads the module dicts directly:
    ``model.modules()`` and attribute lookup cost several times more.)"""
    hooks = nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        return None
    top = model._modules
    called = [top["embed"], top["pos_embed"]]
    kinds = [Embed, PosEmbed]
    for block in top["blocks"]._modules.values():
        parts = block._modules
        called += (block, parts["ln1"], parts["attn"], parts["ln2"], parts["mlp"])
        kinds += _BLOCK_KINDS
    called += (top["ln_final"], top["unembed"])
    kinds += (LayerNorm, Unembed)
    for module, kind in zip(called, kinds):
        if type(module) is not kind or module._forward_hooks or module._forward_pre_hooks:
            return None
    if any(block.attn.impl != "sdpa" for block in called[2:-2:5]):
        return None
    return called


_BLOCK_KINDS = (TransformerBlock, LayerNorm, Attention, LayerNorm, MLP)


class DecodeWeights:
    """The model's tensors as :func:`decode_step` reads them, rebuilt when a weight changes.

    ``layers[i]`` is ``(ln1_w, ln1_b, W_qkv, b_qkv, W_O, b_O, ln2_w, ln2_b, W_in, b_in,
    W_out, b_out)``, each matrix in the layout of :meth:`product`. They are rebuilt when a
    module that the forward pass calls is replaced, or one of its parameters has a new
    storage (``.to(dtype)``, assigning ``.data``) or a new version (bumped by every in-place
    write: an optimizer step, ``load_state_dict``, an ablation's ``zero_()``).
    """

    def __init__(self, model: nn.Module, key: tuple | None = None):
        self.key = _key(_called_modules(model) or []) if key is None else key
        self.params = [p.detach() for p in model.parameters()]  # held: storage cannot recur
        w_u = model.unembed.W_U
        self.dtype = w_u.dtype
        # float32: x @ W on [d_in, d_out]; other dtypes: addmv on [d_out, d_in] (see above).
        self.transposed = w_u.dtype != torch.float32
        with torch.no_grad():
            self.layers = [self._layer(block) for block in model.blocks]
            self.W_U, self.b_U = self._matrix(w_u), model.unembed.b_U.detach()
        ln = model.ln_final
        self.ln_final = (ln.w.detach(), ln.b.detach())
        self.W_E, self.W_pos = model.embed.W_E.detach(), model.pos_embed.W_pos.detach()
        self.eps = model.cfg.layer_norm_eps

    def _matrix(self, w: Tensor) -> Tensor:
        """``w[d_in, d_out]`` in this dtype's fast layout."""
        return w.detach().T.contiguous() if self.transposed else w.detach()

    def _layer(self, block: TransformerBlock) -> tuple[Tensor, ...]:
        attn, mlp, cfg = block.attn, block.mlp, block.cfg
        # W_Q, W_K, W_V [n_heads, d_model, d_head] side by side: column t * n_heads * d_head
        # + h * d_head + i of W_qkv[d_model, 3 * n_heads * d_head] is head h's i-th of
        # queries (t=0), keys (t=1) or values (t=2), the layout of Attention.fused_qkv.
        w_qkv = torch.cat([attn.W_Q, attn.W_K, attn.W_V]).permute(1, 0, 2)
        w_qkv = self._matrix(w_qkv.reshape(cfg.d_model, -1).contiguous())
        b_qkv = torch.cat([attn.b_Q, attn.b_K, attn.b_V]).reshape(-1)
        w_o = attn.W_O.reshape(cfg.n_heads * cfg.d_head, cfg.d_model)
        return (
            block.ln1.w.detach(), block.ln1.b.detach(), w_qkv, b_qkv,
            self._matrix(w_o), attn.b_O.detach(), block.ln2.w.detach(), block.ln2.b.detach(),
            self._matrix(mlp.W_in), mlp.b_in.detach(), self._matrix(mlp.W_out),
            mlp.b_out.detach(),
        )  # fmt: skip

    def product(self, x: Float[Tensor, "batch d_in"], w: Tensor, b: Tensor) -> Tensor:
        """``x @ W + b`` for a matrix of this object's layout: ``[batch, d_out]``."""
        if not self.transposed:
            return torch.addmm(b, x, w)
        if x.shape[0] == 1:
            return torch.addmv(b, w, x[0])[None]
        return F.linear(x, w, b)

    @classmethod
    def of(cls, model: nn.Module, key: tuple) -> DecodeWeights:
        """The model's prepared weights for ``key`` (:func:`_key`), built on first use and
        kept on the model."""
        prepared = getattr(model, "_decode_weights", None)
        if prepared is None or prepared.key != key:
            prepared = cls(model, key)
            model._decode_weights = prepared  # a plain attribute: not a parameter or buffer
        return prepared


def _key(modules: list[nn.Module]) -> tuple:
    """What :class:`DecodeWeights` are built from: each called module, and its parameters'
    storage and version."""
    return tuple(modules) + tuple(
        (p.data_ptr(), p._version) for module in modules for p in module._parameters.values()
    )


def decode_step(
    model: nn.Module, tokens: Int[Tensor, "batch 1"], cache: KVCache
) -> Float[Tensor, "batch 1 d_vocab"] | None:
    """Logits for one new token per row, appending its keys and values to ``cache``; or
    ``None``, having done nothing, where the path does not apply (:func:`fast_path_applies`).

    The caller has checked the input (``model.check_tokens``).
    """
    modules = None if torch.is_grad_enabled() else _called_modules(model)
    if modules is None:
        return None
    prep = DecodeWeights.of(model, _key(modules))
    cfg, product, eps = model.cfg, prep.product, prep.eps
    batch, n_heads, d_head, d_model = tokens.shape[0], cfg.n_heads, cfg.d_head, cfg.d_model
    x = prep.W_E[tokens[:, 0]] + prep.W_pos[cache.length]  # [batch, d_model]
    layers = enumerate(prep.layers)
    for i, (w1, b1, w_qkv, b_qkv, w_o, b_o, w2, b2, w_in, b_in, w_out, b_out) in layers:
        h = F.layer_norm(x, (d_model,), w1, b1, eps)
        q, k, v = product(h, w_qkv, b_qkv).view(batch, 3, n_heads, 1, d_head).unbind(1)
        k, v = cache.update(i, k, v)
        z = F.scaled_dot_product_attention(q, k, v)  # one query: it may see every key
        x = product(z.view(batch, n_heads * d_head), w_o, b_o).add_(x)
        h = F.layer_norm(x, (d_model,), w2, b2, eps)
        hidden = F.gelu(product(h, w_in, b_in), approximate="tanh")
        x = product(hidden, w_out, b_out).add_(x)
    h = F.layer_norm(x, (d_model,), *prep.ln_final, eps)
    return product(h, prep.W_U, prep.b_U)[:, None]

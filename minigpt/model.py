"""The whole GPT: embeddings, a stack of transformer blocks, a final LayerNorm, unembedding.

``GPT(cfg)(tokens)`` gives logits; ``run_with_cache`` also gives every activation under
TransformerLens's hook names; ``new_cache`` + ``cache=`` runs it incrementally for
generation. The model knows no other tool's format: weights from Hugging Face or
TransformerLens, and Hugging Face folders, are read and written by
:mod:`minigpt.formats.hf_model`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn

from minigpt.attention import attention_mask_for, check_attn_impl
from minigpt.block import TransformerBlock
from minigpt.config import GPTConfig
from minigpt.decode_step import decode_step
from minigpt.embed import Embed, PosEmbed, Unembed
from minigpt.kv_cache import KVCache
from minigpt.layernorm import LayerNorm


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


class GPT(nn.Module):
    """GPT-2 with TransformerLens's parameter names (``embed.W_E``, ``blocks.0.attn.W_Q``, ...).

    Args:
        cfg: the shape of the model.
        attn_impl: ``"sdpa"`` (fused attention, the default) or ``"einsum"`` (the teaching
            path); can be changed later through ``model.attn_impl``.

    ``torch.manual_seed(s); GPT(cfg)`` is deterministic: weights start as GPT-2's
    (normal with std ``init_range``; output projections into the residual stream scaled
    by ``1/sqrt(2 * n_layers)``; LayerNorm gains 1, biases 0).
    """

    def __init__(self, cfg: GPTConfig, attn_impl: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg)
        self.pos_embed = PosEmbed(cfg)
        self.blocks = nn.ModuleList(
            TransformerBlock(cfg, layer=i, attn_impl=attn_impl) for i in range(cfg.n_layers)
        )
        self.ln_final = LayerNorm(cfg)
        self.unembed = Unembed(cfg)
        self._attn_impl = check_attn_impl(attn_impl)

    @property
    def attn_impl(self) -> str:
        return self._attn_impl

    @attn_impl.setter
    def attn_impl(self, impl: str) -> None:
        self._attn_impl = check_attn_impl(impl)
        for block in self.blocks:
            block.attn.impl = impl

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty key/value cache for ``batch_size`` sequences."""
        return KVCache(self.cfg.n_layers, batch_size, self.cfg.n_ctx)

    def forward(
        self,
        tokens: Tensor,
        cache: KVCache | None = None,
        attention_mask: Tensor | None = None,
        logits_to_keep: int = 0,
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits ``[batch, pos, d_vocab]`` for integer ``tokens[batch, pos]``.

        Args:
            tokens: token ids in ``[0, d_vocab)``. (Annotated loosely on purpose: bad input
                gets a ValueError that says what is wrong, see :meth:`check_tokens`.)
            cache: a :class:`KVCache` from :meth:`new_cache`; the tokens continue the cached
                sequences, their keys and values are appended, and only their logits return.
            attention_mask: ``[batch, cache.length + pos]``, 1 for real tokens and 0 for
                (left) padding. Padded keys are never attended to, and positions count real
                tokens only: ``(mask.cumsum(-1) - 1).clamp(min=0)``.
            logits_to_keep: when > 0, only the logits of the last ``logits_to_keep``
                positions are computed and returned (``[batch, logits_to_keep, d_vocab]``):
                generation needs the last one, and the unembedding is the largest product
                of a prompt's pass. 0 (the default) keeps them all.
        """
        if (
            not isinstance(logits_to_keep, int)
            or isinstance(logits_to_keep, bool)
            or (logits_to_keep < 0)
        ):
            raise ValueError(f"logits_to_keep={logits_to_keep!r} must be an integer >= 0")
        return self._run(tokens, cache, attention_mask, acts=None, keep=logits_to_keep)

    def run_with_cache(
        self,
        tokens: Tensor,
        cache: KVCache | None = None,
        attention_mask: Tensor | None = None,
    ) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Tensor]]:
        """Logits and every activation, keyed by TransformerLens's hook names
        (``hook_embed``, ``blocks.3.attn.hook_pattern``, ``ln_final.hook_normalized``, ...).

        Attention runs on the einsum path here, whatever ``attn_impl`` says, because the
        fused kernel never forms the pattern.
        """
        acts: dict[str, Tensor] = {}
        logits = self._run(tokens, cache, attention_mask, acts=acts)
        return logits, acts

    def check_tokens(
        self, tokens: Tensor, cache: KVCache | None = None, attention_mask: Tensor | None = None
    ) -> None:
        """Raise ValueError, naming the limit, for input this model cannot run."""
        if not isinstance(tokens, Tensor):
            raise ValueError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
        if tokens.dtype in (torch.bool, torch.uint8) or not _is_integer_dtype(tokens.dtype):
            # uint8 too: torch reads a uint8 tensor used as an index as a mask, not as ids
            raise ValueError(f"tokens must hold integer ids (torch.long), got dtype {tokens.dtype}")
        if tokens.ndim != 2:
            raise ValueError(
                f"tokens must have rank 2 [batch, pos], got shape {tuple(tokens.shape)}"
                + (" (add a batch axis: tokens[None])" if tokens.ndim == 1 else "")
            )
        batch, pos = tokens.shape
        if batch == 0 or pos == 0:
            raise ValueError(
                f"tokens must be non-empty, got shape {tuple(tokens.shape)}; give at least one "
                "token, e.g. <|endoftext|> (50256 for GPT-2) to generate from nothing"
            )
        # Reading the ids' range would split a torch.compile graph in two (the values are data,
        # not shapes); compiled, an id out of range fails in the embedding lookup instead.
        if not torch.compiler.is_compiling():
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi >= self.cfg.d_vocab:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"token id {bad} is outside the vocabulary [0, {self.cfg.d_vocab})"
                )
        past = 0
        if cache is not None:
            if cache.n_layers != self.cfg.n_layers:
                raise ValueError(
                    f"cache has {cache.n_layers} layers, the model {self.cfg.n_layers}"
                )
            if cache.batch_size != batch:
                raise ValueError(
                    f"cache holds batch_size={cache.batch_size} rows, tokens have {batch}"
                )
            past = cache.length
        if past + pos > self.cfg.n_ctx:
            raise ValueError(
                f"sequence length {past + pos} (cached {past} + new {pos}) exceeds the "
                f"context n_ctx={self.cfg.n_ctx}"
            )
        if attention_mask is not None:
            if not isinstance(attention_mask, Tensor) or attention_mask.is_floating_point():
                raise ValueError("attention_mask must be an integer or bool tensor of 0/1")
            if tuple(attention_mask.shape) != (batch, past + pos):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                    f"(batch, cache length + pos) = ({batch}, {past + pos})"
                )
            if attention_mask.dtype != torch.bool and not bool(
                ((attention_mask == 0) | (attention_mask == 1)).all()
            ):
                raise ValueError("attention_mask must hold only 0 (padding) and 1 (real token)")

    def _run(
        self,
        tokens: Tensor,
        cache: KVCache | None,
        attention_mask: Tensor | None,
        acts: dict[str, Tensor] | None,
        keep: int = 0,
    ) -> Float[Tensor, "batch pos d_vocab"]:
        self.check_tokens(tokens, cache, attention_mask)
        batch, pos = tokens.shape
        if pos == 1 and cache is not None and attention_mask is None and acts is None:
            logits = decode_step(self, tokens, cache)  # the same maths in fewer calls, or None
            if logits is not None:
                return logits
        past = 0 if cache is None else cache.length
        device = tokens.device

        if attention_mask is not None:
            # A left-padded row's first real token is position 0, whatever padding precedes it.
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -pos:]
        else:
            positions = (past + torch.arange(pos, device=device)).expand(batch, pos)
        mask = None  # without padding, attention applies the causal mask itself
        if attention_mask is not None:
            mask = attention_mask_for(batch, past, pos, attention_mask, device=device)

        embed = self.embed(tokens)
        pos_embed = self.pos_embed(positions)
        resid = embed + pos_embed  # the residual stream starts as the sum of the two
        if acts is not None:
            acts["hook_embed"] = embed
            acts["hook_pos_embed"] = pos_embed
        for i, block in enumerate(self.blocks):
            sub = {} if acts is not None else None
            resid = block(resid, mask=mask, cache=cache, acts=sub)
            if acts is not None:
                acts.update({f"blocks.{i}.{name}": t for name, t in sub.items()})
        ln_acts = {} if acts is not None else None
        if keep:
            resid = resid[:, -keep:]  # each position is normalised and unembedded on its own
        logits = self.unembed(self.ln_final(resid, acts=ln_acts))
        if acts is not None:
            acts.update({f"ln_final.{name}": t for name, t in ln_acts.items()})
            acts["hook_unembed"] = logits
        return logits

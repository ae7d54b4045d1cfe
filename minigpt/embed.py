"""Token embedding, positional embedding and unembedding: GPT-2's way in and way out.

A token id picks a row of ``W_E``; its position picks a row of ``W_pos``; their sum is the
first value of the residual stream. At the end, ``W_U`` maps the residual stream back to
one score (logit) per vocabulary entry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from minigpt.config import GPTConfig


class Embed(nn.Module):
    """Token embedding: ``W_E[d_vocab, d_model]``, one learned vector per token id."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        nn.init.normal_(self.W_E, std=cfg.init_range)

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        # Indexing is a one-hot matrix product without building the one-hot matrix.
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    """Learned positional embedding: ``W_pos[n_ctx, d_model]``, one vector per position."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model))
        nn.init.normal_(self.W_pos, std=cfg.init_range)

    def forward(self, positions: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        """``positions[b, p]`` is the position of token ``p`` of row ``b`` (0 for the first).

        Plain sequences use ``0, 1, 2, ...``; left-padded rows and continued (cached)
        sequences shift them, which is why positions are an argument, not ``arange``.
        """
        return self.W_pos[positions]


class Unembed(nn.Module):
    """Unembedding: ``W_U[d_model, d_vocab]`` and ``b_U[d_vocab]`` turn the residual stream into logits.

    GPT-2 ties ``W_U`` to ``W_E.T`` and has no bias; we keep them as separate parameters
    (as TransformerLens does) so that a model can also be trained untied.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.W_U = nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.b_U = nn.Parameter(torch.zeros(cfg.d_vocab))
        nn.init.normal_(self.W_U, std=cfg.init_range)

    def forward(
        self, resid: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_vocab"]:
        # resid @ W_U + b_U. F.linear does it in one fused call (addmm): the product lands on
        # top of the bias, which saves a whole extra pass over the large [batch, pos, d_vocab]
        # output. The contraction is "batch pos d_model, d_model d_vocab -> batch pos d_vocab".
        return F.linear(resid, self.W_U.T, self.b_U)

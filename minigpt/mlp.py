"""GPT-2's MLP: widen to ``d_mlp``, apply GELU (tanh approximation), narrow back to ``d_model``."""

from __future__ import annotations

import math

import einops
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from minigpt.config import GPTConfig


def gelu_new(x: Float[Tensor, "..."]) -> Float[Tensor, "..."]:
    """GELU as GPT-2 computes it: the tanh approximation of ``x * Phi(x)``.

    ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``. It differs from the
    exact GELU (``torch.nn.functional.gelu(x)``) by up to ~5e-4, enough to break a 1e-4
    parity check, so the approximation matters.
    """
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class MLP(nn.Module):
    """``W_in[d_model, d_mlp]``, ``b_in``, ``W_out[d_mlp, d_model]``, ``b_out``.

    Each position is processed on its own: the MLP never mixes information across positions
    (that is attention's job).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        nn.init.normal_(self.W_in, std=cfg.init_range)
        # GPT-2 scales the init of layers that write into the residual stream by
        # 1/sqrt(2 * n_layers), so the stream's variance does not grow with depth.
        nn.init.normal_(self.W_out, std=cfg.init_range / math.sqrt(2 * cfg.n_layers))

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], acts: dict[str, Tensor] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``acts``, when given, receives ``hook_pre`` and ``hook_post`` (the hidden layer
        before and after the GELU), named as in TransformerLens. Without ``acts`` the same
        maths runs in fused kernels (:meth:`forward_fused`)."""
        if acts is None:
            return self.forward_fused(x)
        pre = (
            einops.einsum(x, self.W_in, "batch pos d_model, d_model d_mlp -> batch pos d_mlp")
            + self.b_in
        )
        post = gelu_new(pre)
        if acts is not None:
            acts["hook_pre"] = pre
            acts["hook_post"] = post
        return (
            einops.einsum(post, self.W_out, "batch pos d_mlp, d_mlp d_model -> batch pos d_model")
            + self.b_out
        )

    def forward_fused(
        self, x: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch pos d_model"]:
        """:meth:`forward` in three kernels: each product lands on its bias in one call
        (``F.linear``, an addmm), and torch's tanh-approximated GELU is ``gelu_new`` in one
        pass (equal to it within 5e-7) instead of eight, forward and backward."""
        pre = F.linear(x, self.W_in.T, self.b_in)
        return F.linear(F.gelu(pre, approximate="tanh"), self.W_out.T, self.b_out)

"""LayerNorm as GPT-2 uses it: centre each position's vector, scale it to unit RMS, then
apply a learned gain ``w`` and bias ``b``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from minigpt.config import GPTConfig


class LayerNorm(nn.Module):
    """``w[d_model]`` (gain, starts at 1) and ``b[d_model]`` (bias, starts at 0)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(
        self, x: Float[Tensor, "batch pos d_model"], acts: dict[str, Tensor] | None = None
    ) -> Float[Tensor, "batch pos d_model"]:
        """``acts``, when given, receives ``hook_scale`` (``[batch, pos, 1]``, the standard
        deviation divided out) and ``hook_normalized`` (the result before ``w`` and ``b``).

        Without ``acts`` it calls PyTorch's fused ``layer_norm``, the same computation in one
        kernel (tested equal to the explicit version below).
        """
        if acts is None:
            return F.layer_norm(x, (self.cfg.d_model,), self.w, self.b, self.cfg.layer_norm_eps)
        centred = x - x.mean(dim=-1, keepdim=True)
        # The biased variance (divide by d_model, not d_model - 1), as torch's LayerNorm does.
        scale = (centred.pow(2).mean(dim=-1, keepdim=True) + self.cfg.layer_norm_eps).sqrt()
        normalized = centred / scale
        acts["hook_scale"] = scale
        acts["hook_normalized"] = normalized
        return normalized * self.w + self.b

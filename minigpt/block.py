"""One transformer block: attention then MLP, each reading a LayerNorm of the residual
stream and adding its output back to it (GPT-2's "pre-norm" layout)."""

from __future__ import annotations

from jaxtyping import Bool, Float
from torch import Tensor, nn

from minigpt.attention import Attention
from minigpt.config import GPTConfig
from minigpt.kv_cache import KVCache
from minigpt.layernorm import LayerNorm
from minigpt.mlp import MLP


def _record(acts: dict[str, Tensor] | None, prefix: str, sub: dict[str, Tensor] | None) -> None:
    if acts is not None and sub is not None:
        acts.update({f"{prefix}.{name}": t for name, t in sub.items()})


class TransformerBlock(nn.Module):
    """``ln1``, ``attn``, ``ln2``, ``mlp``, as in TransformerLens."""

    def __init__(self, cfg: GPTConfig, layer: int = 0, attn_impl: str = "sdpa"):
        super().__init__()
        self.cfg = cfg
        self.layer = layer
        self.ln1 = LayerNorm(cfg)
        self.attn = Attention(cfg, layer=layer, impl=attn_impl)
        self.ln2 = LayerNorm(cfg)
        self.mlp = MLP(cfg)

    def forward(
        self,
        resid_pre: Float[Tensor, "batch pos d_model"],
        mask: Bool[Tensor, "batch pos key_pos"] | None = None,
        cache: KVCache | None = None,
        acts: dict[str, Tensor] | None = None,
    ) -> Float[Tensor, "batch pos d_model"]:
        """``acts``, when given, receives this block's activations under TransformerLens's
        names relative to the block (``hook_resid_pre``, ``ln1.hook_normalized``,
        ``attn.hook_pattern``, ``hook_attn_out``, ``hook_resid_mid``, ``mlp.hook_post``, ...)."""
        record = acts is not None
        ln1, attn, ln2, mlp = ({} if record else None for _ in range(4))  # one dict per part

        attn_out = self.attn(self.ln1(resid_pre, acts=ln1), mask=mask, cache=cache, acts=attn)
        resid_mid = resid_pre + attn_out  # attention *adds* to the stream; it never overwrites it
        mlp_out = self.mlp(self.ln2(resid_mid, acts=ln2), acts=mlp)
        resid_post = resid_mid + mlp_out

        if acts is not None:
            acts["hook_resid_pre"] = resid_pre
            _record(acts, "ln1", ln1)
            _record(acts, "attn", attn)
            acts["hook_attn_out"] = attn_out
            acts["hook_resid_mid"] = resid_mid
            _record(acts, "ln2", ln2)
            _record(acts, "mlp", mlp)
            acts["hook_mlp_out"] = mlp_out
            acts["hook_resid_post"] = resid_post
        return resid_post

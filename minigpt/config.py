"""The one configuration object of a GPT, with TransformerLens's field names."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2-style model. Every field is checked when the config is made.

    The defaults are GPT-2 small (124M parameters).
    """

    d_model: int = 768  # width of the residual stream
    n_heads: int = 12  # attention heads per layer
    d_head: int = 64  # width of one head's query, key and value; n_heads * d_head == d_model
    d_mlp: int = 3072  # hidden width of the MLP, 4 * d_model in GPT-2
    n_layers: int = 12  # transformer blocks
    n_ctx: int = 1024  # longest sequence the positional embedding covers
    d_vocab: int = (
        50257  # tokens in the vocabulary (GPT-2: 256 bytes + 50,000 merges + <|endoftext|>)
    )
    layer_norm_eps: float = 1e-5  # added to the variance in LayerNorm, as GPT-2 does
    init_range: float = 0.02  # std of the normal init of weights, as GPT-2 does

    def __post_init__(self) -> None:
        for name in ("d_model", "n_heads", "d_head", "d_mlp", "n_layers", "n_ctx", "d_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name}={value!r} must be a positive integer")
        if self.n_heads * self.d_head != self.d_model:
            raise ValueError(
                f"GPTConfig: n_heads * d_head = {self.n_heads} * {self.d_head} = "
                f"{self.n_heads * self.d_head}, but d_model = {self.d_model}; they must be equal"
            )
        if not 0 < self.layer_norm_eps < 1:
            raise ValueError(f"GPTConfig.layer_norm_eps={self.layer_norm_eps!r} must be in (0, 1)")
        if not 0 < self.init_range < 1:
            raise ValueError(f"GPTConfig.init_range={self.init_range!r} must be in (0, 1)")

    def replace(self, **changes) -> GPTConfig:
        """A copy with some fields changed (and checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def gpt2_small(cls) -> GPTConfig:
        """GPT-2 small, the model the book rebuilds."""
        return cls()

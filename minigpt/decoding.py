"""The part of generation that talks to the model: prompt checks, the cache, the context.

:class:`Decoder` holds a batch of growing sequences and hands out the logits for the
next token of each, one step at a time. With the key/value cache each step feeds the
model only the tokens it has not seen; without it, each step re-reads everything (the
slow loop that the cache must agree with, token for token).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

CONTEXT_OVERFLOW = ("slide", "stop")


def check_prompt(
    model: torch.nn.Module,
    tokens: Tensor,
    attention_mask: Tensor | None = None,
) -> None:
    """Raise a ``ValueError`` that says what is wrong with a prompt, if anything is.

    The model checks what any input must be (:meth:`minigpt.model.GPT.check_tokens`: ids
    in its vocabulary, at most ``n_ctx`` of them, a 0/1 mask of the same shape); a prompt
    must also be padded on the left, since generation appends after the last column.
    """
    model.check_tokens(tokens, None, attention_mask)
    if attention_mask is None:
        return
    mask = attention_mask.long()
    if not (mask[:, -1] == 1).all() or (mask.diff(dim=-1) < 0).any():
        raise ValueError(
            "attention_mask must describe LEFT padding (zeros, then ones, the last column all ones): "
            "generation appends after the last column"
        )


def to_model_device(
    model: torch.nn.Module, tokens: Tensor, attention_mask: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """The prompt and its mask on the model's device, so a CPU prompt works with a GPU model."""
    device = next(model.parameters()).device
    mask = None if attention_mask is None else attention_mask.to(device)
    return tokens.to(device), mask


def check_count(name: str, value: object, low: int) -> None:
    """Raise unless ``value`` is an integer >= ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")


def token_set(name: str, ids: int | Sequence[int] | None, d_vocab: int, device) -> Tensor:
    """A tensor of the token ids ``ids`` (one id, several, or none), each checked."""
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    for t in ids:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < d_vocab:
            raise ValueError(f"{name} contains {t!r}; token ids must be integers in [0, {d_vocab})")
    return torch.tensor(ids, dtype=torch.long, device=device)


class Decoder:
    """A batch of sequences that grows one token per row per step.

    ``context_overflow`` says what happens once a sequence is longer than ``n_ctx``:
    ``"slide"`` feeds the model the last ``n_ctx`` tokens (positions counted from the
    window's start) without the cache, whose absolute positions no longer fit;
    ``"stop"`` makes :meth:`next_logits` return ``None`` once the text is ``n_ctx`` long.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"] | Bool[Tensor, "batch pos"] | None,
        use_kv_cache: bool,
        context_overflow: str = "slide",
    ):
        if context_overflow not in CONTEXT_OVERFLOW:
            raise ValueError(
                f"context_overflow={context_overflow!r} must be one of {CONTEXT_OVERFLOW}"
            )
        self.model = model
        self.n_ctx = model.cfg.n_ctx
        self.tokens = tokens
        self.mask = None if attention_mask is None else attention_mask.long()
        self.cache = model.new_cache(tokens.shape[0]) if use_kv_cache else None
        self.context_overflow = context_overflow
        self._seen = 0  # columns of self.tokens already in the cache

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def next_logits(self) -> Float[Tensor, "batch d_vocab"] | None:
        """Logits for the token after each row's last one (``None``: context full, "stop")."""
        if self.context_overflow == "stop" and self.length >= self.n_ctx:
            return None  # the text may not grow past n_ctx
        if self.length > self.n_ctx:
            self.cache = None  # sliding window from here on
            window = slice(self.length - self.n_ctx, None)
            mask = None if self.mask is None else self.mask[:, window]
            logits = self.model(self.tokens[:, window], attention_mask=mask, logits_to_keep=1)
            return logits[:, -1].float()
        if self.cache is None:
            logits = self.model(self.tokens, attention_mask=self.mask, logits_to_keep=1)
            return logits[:, -1].float()
        logits = self.model(
            self.tokens[:, self._seen :],
            cache=self.cache,
            attention_mask=self.mask,
            logits_to_keep=1,
        )
        self._seen = self.length
        return logits[:, -1].float()  # a bf16 model samples from float32 scores

    def append(self, next_tokens: Int[Tensor, " batch"]) -> None:
        """Add one token at the end of every row."""
        self.tokens = torch.cat([self.tokens, next_tokens[:, None]], dim=1)
        if self.mask is not None:
            self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)

    def select(self, rows: Int[Tensor, " new_batch"]) -> None:
        """Keep (and reorder, or repeat) these rows: beam search's survivors."""
        self.tokens = self.tokens[rows]
        if self.mask is not None:
            self.mask = self.mask[rows]
        if self.cache is not None:
            self.cache.select(rows)

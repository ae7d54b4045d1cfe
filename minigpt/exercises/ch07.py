"""Checks for the exercises of chapter 7 (sampling).

Each ``check_*`` runs the reader's function beside :mod:`minigpt.sample` on the same
input, prints a verdict when they agree and raises ``AssertionError`` saying what differs
when they do not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from minigpt.sample import generate, min_p_filter, top_p_filter


def _cases(seed: int = 0) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log(),  # the worked example of the chapter
        torch.randn(4, 50, generator=gen) * 2,  # a batch of rows, each filtered on its own
        torch.randn(1, 1000, generator=gen) * 0.1,  # nearly flat: many tokens survive
    ]


def _check_filter(fn: Callable, ours: Callable, name: str, values: list[float]) -> None:
    for logits in _cases():
        for value in values:
            got = fn(logits.clone(), value)
            want = ours(logits, value)
            if not isinstance(got, Tensor) or got.shape != logits.shape:
                shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise AssertionError(
                    f"{name}: expected a tensor of shape {tuple(logits.shape)}, got {shape}"
                )
            kept_got, kept_want = torch.isfinite(got), torch.isfinite(want)
            if not torch.equal(kept_got, kept_want):
                row = int((kept_got != kept_want).any(-1).nonzero()[0])
                raise AssertionError(
                    f"{name}({value}): row {row} keeps {int(kept_got[row].sum())} tokens, "
                    f"expected {int(kept_want[row].sum())}. Removed tokens must be -inf, kept "
                    "ones untouched; check how you treat the token that crosses the threshold."
                )
            if not torch.equal(got[kept_got], logits[kept_got]):
                raise AssertionError(f"{name}({value}): kept logits must be left unchanged")
            if (got[~kept_got] != float("-inf")).any():
                raise AssertionError(f"{name}({value}): removed tokens must be -inf (not NaN)")
    print(f"Correct: your {name} keeps exactly the tokens minigpt's does on every test case.")


def check_top_p(fn: Callable[[Tensor, float], Tensor]) -> None:
    """``fn(logits [batch, d_vocab], p) -> logits`` with tokens outside the nucleus at -inf."""
    _check_filter(fn, top_p_filter, "top_p", [0.05, 0.45, 0.6, 0.9, 0.99])


def check_min_p(fn: Callable[[Tensor, float], Tensor]) -> None:
    """``fn(logits [batch, d_vocab], min_p) -> logits`` with unlikely tokens at -inf."""
    _check_filter(fn, min_p_filter, "min_p", [0.01, 0.12, 0.35, 0.9])  # none on a boundary


class _Spy(nn.Module):
    """Wraps a model and records how many tokens each forward pass was given."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.cfg, self.fed = model, model.cfg, []

    def new_cache(self, batch_size: int):
        return self.model.new_cache(batch_size)

    def forward(self, tokens: Tensor, cache=None, attention_mask=None) -> Tensor:
        self.fed.append((tokens.shape[1], cache is not None))
        return self.model(tokens, cache=cache, attention_mask=attention_mask)


def check_greedy_with_cache(fn: Callable[[nn.Module, Tensor, int], Tensor]) -> None:
    """``fn(model, tokens, n) -> tokens + n greedy tokens``, feeding the model one new token
    per step through ``model.new_cache`` after the prompt."""
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT(GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=128, n_layers=2, n_ctx=64,
                              d_vocab=100)).eval()  # fmt: skip
    tokens = torch.tensor([[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]])
    spy = _Spy(model)
    with torch.no_grad():
        got = fn(spy, tokens, 12)
        want = generate(model, tokens, 12, temperature=0)
    if not isinstance(got, Tensor) or got.shape != want.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"expected prompt + 12 tokens, shape {tuple(want.shape)}; got {shape}")
    if not torch.equal(got, want):
        step = int((got != want).any(0).nonzero()[0]) - tokens.shape[1]
        raise AssertionError(f"your tokens differ from greedy generation from new token {step} on")
    later = spy.fed[1:]
    if not spy.fed or not spy.fed[0][1] or any(n != 1 or not cached for n, cached in later):
        raise AssertionError(
            f"the tokens are right, but the model was fed (tokens, cache used) = {spy.fed[:4]}...; "
            "pass cache=model.new_cache(batch) and, after the prompt, only the newest token"
        )
    print("Correct: greedy tokens match, and each step fed the model one token with the cache.")

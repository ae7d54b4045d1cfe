"""The one-token decode step (minigpt.decode_step): the same logits as the modules, used only
where it gives them, and rebuilt when a weight changes."""

from __future__ import annotations

import pytest
import torch

from minigpt import decode_step as ds
from minigpt.config import GPTConfig
from minigpt.mlp import MLP
from minigpt.model import GPT

CFG = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=3, n_ctx=24, d_vocab=101)


def _model(dtype=torch.float32) -> GPT:
    torch.manual_seed(0)
    model = GPT(CFG).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(dtype)


def _tokens(batch: int, pos: int = 12) -> torch.Tensor:
    return torch.randint(0, CFG.d_vocab, (batch, pos), generator=torch.Generator().manual_seed(1))


def _one_at_a_time(model: GPT, tokens: torch.Tensor, prefix: int = 4) -> torch.Tensor:
    """Logits of positions ``prefix ..`` fed one token a step through a cache."""
    cache = model.new_cache(tokens.shape[0])
    model(tokens[:, :prefix], cache=cache)
    steps = [model(tokens[:, p : p + 1], cache=cache) for p in range(prefix, tokens.shape[1])]
    return torch.cat(steps, dim=1)


class _NoOpHook:
    """A forward hook that changes nothing: with it, the model must run its modules."""

    def __call__(self, module, args, output):
        return None


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_step_equals_the_full_pass_in_float32(batch):
    model, tokens = _model(), _tokens(batch)
    with torch.no_grad():
        assert ds.fast_path_applies(model)
        stepped = _one_at_a_time(model, tokens)
        full = model(tokens)[:, 4:]
    assert model._decode_weights is not None  # the fast path ran
    # float32 rounding of the same sums in another order: 1e-5 on logits of size ~1.
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_step_in_bf16_is_as_close_to_float32_as_the_modules_in_bf16(batch):
    tokens = _tokens(batch)
    with torch.no_grad():
        truth = _model()(tokens)[:, 4:]
        model = _model(torch.bfloat16)
        fast = _one_at_a_time(model, tokens).float()
        model.blocks[0].register_forward_hook(_NoOpHook())
        modules = _one_at_a_time(model, tokens).float()
    assert model._decode_weights.transposed  # bf16 reads W[d_out, d_in] copies
    err_fast, err_modules = (fast - truth).abs().max(), (modules - truth).abs().max()
    # bf16 keeps 8 bits of mantissa: both paths round, neither may round much worse.
    assert err_fast <= 2 * err_modules + 1e-3, (err_fast, err_modules)
    assert err_fast < 0.1


def test_the_fast_path_gives_way_to_hooks_grad_and_the_einsum_path():
    model, tokens = _model(), _tokens(1)
    calls = []
    handle = model.blocks[1].mlp.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        assert not ds.fast_path_applies(model)
        _one_at_a_time(model, tokens)
    handle.remove()
    assert len(calls) == 1 + tokens.shape[1] - 4  # the prefix pass, then every step
    assert not hasattr(model, "_decode_weights")

    cache = model.new_cache(1)
    with torch.no_grad():
        model(tokens[:, :4], cache=cache)
    assert not ds.fast_path_applies(model)  # gradients are being recorded
    logits = model(tokens[:, 4:5], cache=cache)
    assert logits.grad_fn is not None

    model.attn_impl = "einsum"
    with torch.no_grad():
        assert not ds.fast_path_applies(model)
    model.attn_impl = "sdpa"
    with torch.no_grad():
        assert ds.fast_path_applies(model)


def test_a_replaced_module_runs_as_written():
    class DoubledMLP(MLP):
        def forward(self, x, acts=None):
            return 2 * super().forward(x, acts)

    model, tokens = _model(), _tokens(2)
    with torch.no_grad():
        model.blocks[2].mlp = DoubledMLP(CFG)
        assert not ds.fast_path_applies(model)
        torch.testing.assert_close(
            _one_at_a_time(model, tokens), model(tokens)[:, 4:], atol=1e-5, rtol=0
        )


def test_decode_weights_follow_weight_changes():
    model, tokens = _model(), _tokens(2)
    with torch.no_grad():
        _one_at_a_time(model, tokens)
        first = model._decode_weights
        _one_at_a_time(model, tokens)
        assert model._decode_weights is first  # kept while nothing changes
        # In place: W_Q lives in a fused copy, W_in is read as it is.
        model.blocks[0].attn.W_Q.mul_(1.5)
        model.blocks[1].mlp.W_in.add_(0.05)
        changed = _one_at_a_time(model, tokens)
        assert model._decode_weights is not first
        torch.testing.assert_close(changed, model(tokens)[:, 4:], atol=1e-5, rtol=0)
        # A new storage (load_state_dict into a fresh model keeps storage; .to does not).
        model.to(torch.float64)
        again = _one_at_a_time(model, tokens)
        assert model._decode_weights.dtype == torch.float64
        torch.testing.assert_close(again, model(tokens)[:, 4:], atol=1e-10, rtol=0)

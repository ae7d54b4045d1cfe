"""One transformer block (minigpt.block): pre-norm attention then MLP, each added to the
residual stream, with TransformerLens's hook names; against the reference GPT-2."""

from __future__ import annotations

import pytest
import torch

from minigpt.block import TransformerBlock
from minigpt.compare import assert_hooks_close
from minigpt.config import GPTConfig
from minigpt.formats.gpt2_weights import load_tl_parameters
from minigpt.kv_cache import KVCache

CFG = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64, n_layers=1, n_ctx=12, d_vocab=10)


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    block = TransformerBlock(CFG, attn_impl="einsum").eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, p in block.named_parameters():
            if name.endswith((".w", ".b")) or ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return block


def test_each_part_adds_to_the_residual_stream(block):
    x = torch.randn(2, 7, 16)
    acts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        out = block(x, acts=acts)
        plain = block(x)
        attn_out = block.attn(block.ln1(x))
        mlp_out = block.mlp(block.ln2(x + attn_out))
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=0)  # recording changes nothing
    torch.testing.assert_close(out, x + attn_out + mlp_out, atol=1e-6, rtol=0)
    assert torch.equal(acts["hook_resid_pre"], x)
    torch.testing.assert_close(acts["hook_attn_out"], attn_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(acts["hook_resid_mid"], x + attn_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(acts["hook_mlp_out"], mlp_out, atol=1e-6, rtol=0)
    assert torch.equal(acts["hook_resid_post"], out)
    for name in ("ln1.hook_scale", "ln1.hook_normalized", "attn.hook_pattern", "attn.hook_z",
                 "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post"):  # fmt: skip
        assert name in acts, name
    assert len(acts) == 17, sorted(acts)  # the 17 hooks of a TransformerLens block


def test_block_is_causal_and_runs_through_a_cache(block):
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        whole = block(x)
        changed = block(torch.cat([x[:, :5], torch.randn(1, 4, 16)], dim=1))
        cache = KVCache(n_layers=1, batch_size=1, n_ctx=12)
        pieces = [block(x[:, :5], cache=cache), block(x[:, 5:6], cache=cache)]
    torch.testing.assert_close(changed[:, :5], whole[:, :5], atol=1e-6, rtol=0)  # no peeking
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole[:, :6], atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer", [0, 11])
def test_block_matches_reference(reference, layer):
    tokens = reference.to_tokens("A block reads the residual stream and adds to it.")
    with torch.no_grad():
        _, cache = reference.bridge.run_with_cache(tokens)
    block = TransformerBlock(GPTConfig.gpt2_small(), layer=layer, attn_impl="einsum")
    load_tl_parameters(block, reference.bridge.tl_parameters(), prefix=f"blocks.{layer}.")
    acts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        out = block(cache[f"blocks.{layer}.hook_resid_pre"], acts=acts)
    assert len(acts) == 17
    theirs = {name: cache[f"blocks.{layer}.{name}"] for name in acts}
    assert_hooks_close(acts, theirs, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(out, cache[f"blocks.{layer}.hook_resid_post"], atol=1e-4, rtol=0)

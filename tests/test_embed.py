"""Token and positional embeddings and the unembedding, against the reference GPT-2."""

from __future__ import annotations

import einops
import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.embed import Embed, PosEmbed, Unembed
from minigpt.formats.gpt2_weights import load_tl_parameters

TEXT = "Embeddings turn token ids into vectors."


@pytest.fixture(scope="module")
def ref_run(reference):
    tokens = reference.to_tokens(TEXT)
    with torch.no_grad():
        _, cache = reference.bridge.run_with_cache(tokens)
    return tokens, cache, reference.bridge.tl_parameters()


def test_embed_and_pos_embed_match_reference(ref_run):
    tokens, cache, params = ref_run
    cfg = GPTConfig.gpt2_small()
    embed, pos_embed = Embed(cfg), PosEmbed(cfg)
    load_tl_parameters(embed, params, prefix="embed.")
    load_tl_parameters(pos_embed, params, prefix="pos_embed.")
    positions = torch.arange(tokens.shape[1])[None]
    with torch.no_grad():
        # A lookup: exact, no arithmetic involved.
        torch.testing.assert_close(embed(tokens), cache["hook_embed"], atol=0, rtol=0)
        torch.testing.assert_close(pos_embed(positions), cache["hook_pos_embed"], atol=0, rtol=0)


def test_unembed_matches_reference(ref_run):
    _, cache, params = ref_run
    unembed = Unembed(GPTConfig.gpt2_small())
    load_tl_parameters(unembed, params, prefix="unembed.")
    with torch.no_grad():
        logits = unembed(cache["ln_final.hook_out"])
    torch.testing.assert_close(logits, cache["hook_unembed"], atol=1e-4, rtol=0)


def test_embedding_is_a_one_hot_product():
    cfg = GPTConfig(d_model=8, n_heads=2, d_head=4, d_mlp=32, n_layers=1, n_ctx=6, d_vocab=11)
    torch.manual_seed(0)
    embed = Embed(cfg)
    tokens = torch.tensor([[3, 0, 10, 3]])
    one_hot = torch.nn.functional.one_hot(tokens, cfg.d_vocab).float()
    with torch.no_grad():
        torch.testing.assert_close(embed(tokens), one_hot @ embed.W_E, atol=1e-7, rtol=0)
        out = embed(tokens)
    assert torch.equal(out[0, 0], out[0, 3])  # the same token, the same vector: no position yet


def test_pos_embed_follows_given_positions():
    cfg = GPTConfig(d_model=8, n_heads=2, d_head=4, d_mlp=32, n_layers=1, n_ctx=6, d_vocab=11)
    pos_embed = PosEmbed(cfg)
    positions = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])  # a left-padded row, a full row
    with torch.no_grad():
        out = pos_embed(positions)
    assert torch.equal(out[0, 2:], out[1, :3])
    assert out.shape == (2, 5, 8)


def test_unembed_fused_call_equals_the_einsum():
    cfg = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64, n_layers=1, n_ctx=8, d_vocab=40)
    torch.manual_seed(0)
    unembed = Unembed(cfg)
    with torch.no_grad():
        unembed.b_U.normal_()
        resid = torch.randn(2, 5, 16)
        expected = (
            einops.einsum(
                resid, unembed.W_U, "batch pos d_model, d_model d_vocab -> batch pos d_vocab"
            )
            + unembed.b_U
        )
        torch.testing.assert_close(unembed(resid), expected, atol=1e-6, rtol=0)

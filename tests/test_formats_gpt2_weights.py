"""GPT-2 between Hugging Face's layout and ours (minigpt.formats.gpt2_weights): the one
table read both ways, every key and shape checked."""

from __future__ import annotations

import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.formats.gpt2_weights import (
    check_gpt2_config,
    config_from_hf,
    config_to_hf,
    hf_to_tl_state_dict,
    load_tl_parameters,
    tl_to_hf_state_dict,
)
from minigpt.formats.hf_model import from_hf, hf_weights_cached
from minigpt.model import GPT
from minigpt.reference import random_gpt2_hf


def _random_hf(n_layer: int, n_head: int, n_embd: int, vocab: int = 50257, n_ctx: int = 64):
    """A small random GPT2LMHeadModel drawn as the offline reference is: no LayerNorm or bias
    at its trivial value, so that a mix-up of ``w`` and ``b``, or a missing bias, fails."""
    return random_gpt2_hf(
        seed=1, n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab, n_positions=n_ctx
    ).eval()


def test_from_hf_is_strict():
    hf = _random_hf(n_layer=1, n_head=2, n_embd=16, vocab=50, n_ctx=8)
    model = from_hf(hf)
    state = dict(hf.state_dict())
    missing = {k: v for k, v in state.items() if "c_fc.bias" not in k}
    with pytest.raises(KeyError, match="h.0.mlp.c_fc.bias"):
        hf_to_tl_state_dict(missing, n_layers=1, n_heads=2)
    with pytest.raises(ValueError, match="unexpected keys.*h.0.extra"):
        hf_to_tl_state_dict({**state, "transformer.h.0.extra": torch.zeros(1)}, 1, 2)
    params = dict(model.named_parameters())
    bad = {**params, "unembed.b_U": torch.zeros(49)}
    with pytest.raises(ValueError, match=r"unembed.b_U: source shape \(49,\), model shape \(50,\)"):
        load_tl_parameters(model, bad)
    with pytest.raises(ValueError, match="missing.*ln_final.w"):
        load_tl_parameters(model, {k: v for k, v in params.items() if k != "ln_final.w"})


def test_hf_layout_is_split_into_heads_by_hand():
    hf = _random_hf(n_layer=2, n_head=2, n_embd=8, vocab=11, n_ctx=5)
    state = hf.state_dict()
    tl = hf_to_tl_state_dict(state, n_layers=2, n_heads=2)
    c_attn = state["transformer.h.1.attn.c_attn.weight"]  # [d_model, 3 * d_model]: q | k | v
    c_bias = state["transformer.h.1.attn.c_attn.bias"]
    for i, name in enumerate("QKV"):
        W, b = tl[f"blocks.1.attn.W_{name}"], tl[f"blocks.1.attn.b_{name}"]
        assert W.shape == (2, 8, 4) and b.shape == (2, 4)  # [n_heads, d_model, d_head]
        for h in range(2):
            cols = slice(8 * i + 4 * h, 8 * i + 4 * (h + 1))  # head h's columns of that third
            assert torch.equal(W[h], c_attn[:, cols]) and torch.equal(b[h], c_bias[cols])
    W_O = tl["blocks.1.attn.W_O"]
    c_proj = state["transformer.h.1.attn.c_proj.weight"]  # [d_model (heads' z), d_model]
    assert W_O.shape == (2, 4, 8) and torch.equal(W_O[1], c_proj[4:8])
    assert torch.equal(tl["unembed.W_U"], state["transformer.wte.weight"].T)  # tied
    assert torch.equal(tl["unembed.b_U"], torch.zeros(11))  # GPT-2 has no output bias
    assert torch.equal(tl["blocks.0.mlp.W_in"], state["transformer.h.0.mlp.c_fc.weight"])
    model = from_hf(hf)
    assert set(tl) == {name for name, _ in model.named_parameters()}


def test_load_tl_parameters_with_a_prefix_and_the_cache_check():
    model = from_hf(_random_hf(n_layer=1, n_head=2, n_embd=8, vocab=11, n_ctx=5))
    params = {k: v.clone() for k, v in model.named_parameters()}
    fresh = GPT(model.cfg)
    load_tl_parameters(fresh.blocks[0].mlp, params, prefix="blocks.0.mlp.")  # one part only
    assert torch.equal(fresh.blocks[0].mlp.W_in, params["blocks.0.mlp.W_in"])
    assert not torch.equal(fresh.blocks[0].attn.W_Q, params["blocks.0.attn.W_Q"])
    with pytest.raises(ValueError, match=r"no parameter name starts with prefix='blocks.7.'"):
        load_tl_parameters(fresh.blocks[0].mlp, params, prefix="blocks.7.")
    with pytest.raises(ValueError, match=r"key mismatch under 'blocks.0.'"):
        load_tl_parameters(fresh.blocks[0].mlp, params, prefix="blocks.0.")
    assert hf_weights_cached("minigpt-tests/no-such-model") is False  # the local cache only


def test_tl_and_hf_layouts_are_inverse():
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=2, n_ctx=32,
                          d_vocab=101))  # fmt: skip
    with torch.no_grad():
        model.unembed.W_U.normal_()  # an own unembedding, as a trained model has
    params = dict(model.named_parameters())
    hf_state = tl_to_hf_state_dict(params, 4)
    assert hf_state["transformer.h.1.attn.c_attn.weight"].shape == (64, 3 * 64)
    back = hf_to_tl_state_dict(hf_state, n_layers=2, n_heads=4)
    assert back.keys() == params.keys()
    for name, p in params.items():
        assert torch.equal(back[name], p), name
    with torch.no_grad():
        model.unembed.b_U.fill_(0.5)
    with pytest.raises(ValueError, match="unembed.b_U is not zero"):
        tl_to_hf_state_dict(dict(model.named_parameters()), 4)
    with pytest.raises(ValueError, match="no place for.*blocks.0.extra"):
        tl_to_hf_state_dict(
            {**hf_to_tl_state_dict(hf_state, 2, 4), "blocks.0.extra": torch.ones(1)}, 4
        )
    with pytest.raises(KeyError, match="blocks.1.mlp.b_out"):
        tl_to_hf_state_dict({k: v for k, v in back.items() if k != "blocks.1.mlp.b_out"}, 4)


def test_config_from_hf_maps_every_field():
    from transformers import GPT2Config

    hf = GPT2Config(n_embd=48, n_head=6, n_layer=3, n_positions=40, vocab_size=99,
                    layer_norm_epsilon=1e-6, initializer_range=0.03)  # fmt: skip
    assert config_from_hf(hf) == GPTConfig(
        d_model=48, n_heads=6, d_head=8, d_mlp=4 * 48, n_layers=3, n_ctx=40, d_vocab=99,
        layer_norm_eps=1e-6, init_range=0.03,
    )  # fmt: skip
    hf.n_inner = 100  # an explicit MLP width wins over 4 * d_model
    assert config_from_hf(hf).d_mlp == 100
    assert config_from_hf(GPT2Config()) == GPTConfig.gpt2_small()


def test_config_to_hf_is_the_inverse():
    cfg = GPTConfig(d_model=48, n_heads=6, d_head=8, d_mlp=100, n_layers=3, n_ctx=40, d_vocab=99,
                    layer_norm_eps=1e-6, init_range=0.03)  # fmt: skip
    hf = config_to_hf(cfg, tied=False, eot_id=98)
    assert config_from_hf(hf) == cfg
    assert (hf.tie_word_embeddings, hf.bos_token_id, hf.eos_token_id) == (False, 98, 98)
    assert hf.activation_function == "gelu_new" and hf.resid_pdrop == 0.0
    check_gpt2_config(hf)
    hf.activation_function = "gelu"
    with pytest.raises(ValueError, match="activation_function='gelu'"):
        check_gpt2_config(hf, where="x.json")

"""The one configuration object of a GPT (minigpt.config): GPT-2 small's defaults, every field
checked when a config is made (or changed), and the mapping from Hugging Face's GPT2Config."""

from __future__ import annotations

import dataclasses

import pytest

from minigpt.config import GPTConfig


def test_defaults_are_gpt2_small():
    cfg = GPTConfig.gpt2_small()
    assert cfg == GPTConfig()
    assert (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (768, 12, 64, 3072)
    assert (cfg.n_layers, cfg.n_ctx, cfg.d_vocab) == (12, 1024, 50257)
    assert (cfg.layer_norm_eps, cfg.init_range) == (1e-5, 0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_layers": 0}, r"GPTConfig.n_layers=0 must be a positive integer"),
        ({"d_vocab": -5}, r"GPTConfig.d_vocab=-5 must be a positive integer"),
        ({"d_mlp": True}, r"GPTConfig.d_mlp=True must be a positive integer"),
        (
            {"n_heads": 5},
            r"n_heads \* d_head = 5 \* 64 = 320, but d_model = 768; they must be equal",
        ),
        ({"layer_norm_eps": 0.0}, r"GPTConfig.layer_norm_eps=0.0 must be in \(0, 1\)"),
        ({"init_range": 1.5}, r"GPTConfig.init_range=1.5 must be in \(0, 1\)"),
    ],
)
def test_a_bad_field_is_named(changes, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**changes)
    with pytest.raises(ValueError, match=message):  # replace checks again
        GPTConfig().replace(**changes)


def test_replace_is_a_changed_copy():
    cfg = GPTConfig()
    small = cfg.replace(d_model=64, n_heads=4, d_head=16)
    assert (small.d_model, small.n_heads, small.d_head, small.d_mlp) == (64, 4, 16, 3072)
    assert cfg == GPTConfig()  # the original is unchanged


def test_from_hf_maps_every_field():
    from transformers import GPT2Config

    hf = GPT2Config(n_embd=48, n_head=6, n_layer=3, n_positions=40, vocab_size=99,
                    layer_norm_epsilon=1e-6, initializer_range=0.03)  # fmt: skip
    assert GPTConfig.from_hf(hf) == GPTConfig(
        d_model=48, n_heads=6, d_head=8, d_mlp=4 * 48, n_layers=3, n_ctx=40, d_vocab=99,
        layer_norm_eps=1e-6, init_range=0.03,
    )  # fmt: skip
    hf.n_inner = 100  # an explicit MLP width wins over 4 * d_model
    assert GPTConfig.from_hf(hf).d_mlp == 100
    assert GPTConfig.from_hf(GPT2Config()) == GPTConfig.gpt2_small()

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

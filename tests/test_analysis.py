"""Parameter counts, residual decomposition, direct logit attribution, logit lens."""

from __future__ import annotations

import torch

from minigpt.analysis import (
    direct_logit_attribution,
    logit_lens,
    parameter_count,
    residual_components,
)
from minigpt.config import GPTConfig
from minigpt.model import GPT


def test_parameter_count_gpt2_small():
    cfg = GPTConfig.gpt2_small()
    assert sum(parameter_count(cfg, tied_unembed=True).values()) == 124_439_808  # GPT-2 small
    model = GPT(cfg.replace(n_layers=2))
    assert sum(parameter_count(model.cfg).values()) == sum(p.numel() for p in model.parameters())


def test_decomposition_sums_to_the_real_thing():
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=3, n_ctx=16, d_vocab=50)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("ln_final") or name.endswith("b_U"):
                p.add_(0.3 * torch.randn_like(p))
        tokens = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
        logits, acts = model.run_with_cache(tokens)
        comps, labels = residual_components(acts, cfg.n_layers)
        dla, dla_labels = direct_logit_attribution(model, acts)
        lens = logit_lens(model, acts)
    assert labels == ["embed", "pos_embed", "0_attn", "0_mlp", "1_attn", "1_mlp", "2_attn", "2_mlp"]
    torch.testing.assert_close(comps.sum(0), acts["blocks.2.hook_resid_post"], atol=1e-5, rtol=0)
    assert dla_labels[-1] == "bias" and dla.shape == (9, 2, 10, 50)
    torch.testing.assert_close(dla.sum(0), logits, atol=1e-4, rtol=0)
    assert lens.shape == (4, 2, 10, 50)
    torch.testing.assert_close(lens[-1], logits, atol=1e-5, rtol=0)
    assert not torch.allclose(lens[0], logits, atol=1e-3)  # layer 0 is not the answer yet

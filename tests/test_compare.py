"""The comparison helper must find disagreements, locate them, and never flag agreement wrongly."""

from __future__ import annotations

import pytest
import torch

from minigpt.compare import assert_hooks_close, compare, compare_tensors, reference_activations

HOOKS = [
    "hook_embed",
    "blocks.1.attn.hook_q",
    "blocks.1.attn.hook_attn_scores",
    "blocks.1.attn.hook_pattern",
]


@pytest.fixture(scope="module")
def reference_acts(reference):
    tokens = reference.to_tokens("The comparison helper must catch this.")
    _, acts = reference_activations(reference.bridge, tokens, HOOKS)
    return acts


def test_identical_activations_agree_and_render(reference_acts):
    ours = {name: t.clone() for name, t in reference_acts.items()}
    result = compare(ours, reference_acts)
    assert result.passed and len(result) == len(HOOKS)
    assert [row.name for row in result.rows] == HOOKS
    assert "All 4 hooks agree" in result._repr_html_() and "All 4 hooks agree" in str(result)


def test_injected_error_is_caught_and_located(reference_acts):
    ours = {name: t.clone() for name, t in reference_acts.items()}
    ours["blocks.1.attn.hook_q"][0, 3, 7, 11] += 0.05
    result = compare(ours, reference_acts)
    assert not result.passed
    assert [row.name for row in result.failures] == ["blocks.1.attn.hook_q"]
    row = result["blocks.1.attn.hook_q"]
    assert row.worst == (0, 3, 7, 11)
    assert row.location() == "batch 0, pos 3, head 7, d_head 11"
    assert row.max_abs == pytest.approx(0.05, rel=1e-4)
    with pytest.raises(AssertionError, match=r"blocks\.1\.attn\.hook_q .*pos 3, head 7"):
        result.assert_ok()


def test_error_in_attention_pattern_names_query_key_and_head(reference_acts):
    ours = {name: t.clone() for name, t in reference_acts.items()}
    ours["blocks.1.attn.hook_pattern"][0, 5, 4, 2] += 1e-3
    with pytest.raises(AssertionError, match="head 5, query_pos 4, key_pos 2"):
        assert_hooks_close(ours, reference_acts)


def test_masking_sentinels_are_equal_but_nan_is_not():
    ref = torch.tensor([[1.0, torch.finfo(torch.float32).min], [0.5, 2.0]])
    ours = torch.tensor([[1.0, float("-inf")], [0.5, 2.0]])
    assert compare_tensors("blocks.0.attn.hook_attn_scores", ours, ref).passed
    ours[1, 1] = float("nan")
    row = compare_tensors("x", ours, ref)
    assert not row.passed and row.worst == (1, 1)


def test_tolerance_edges_follow_assert_close_rule():
    ref = torch.tensor([10.0], dtype=torch.float64)
    limit = 1e-4 + 1e-3 * 10.0  # atol + rtol * |ref|
    assert compare_tensors("x", ref + 0.99 * limit, ref).passed
    assert not compare_tensors("x", ref + 1.01 * limit, ref).passed


def test_shape_mismatch_and_missing_hooks_fail_clearly(reference_acts):
    ours = {"hook_embed": reference_acts["hook_embed"][:, :-1]}
    result = compare(ours, reference_acts, names=["hook_embed", "blocks.1.attn.hook_q"])
    assert "differs from the reference's" in result["hook_embed"].problem
    assert "missing from ours" in result["blocks.1.attn.hook_q"].problem
    with pytest.raises(AssertionError, match="hook_embed: shape"):
        result.assert_ok()
    with pytest.raises(ValueError, match="atol"):
        compare(ours, reference_acts, atol=-1)


def test_accepts_transformer_lens_activation_cache(reference):
    tokens = reference.to_tokens("An ActivationCache works as the reference side.")
    _, cache = reference.bridge.run_with_cache(tokens)
    ours = {"hook_embed": cache["hook_embed"].clone()}
    assert compare(ours, cache).passed


def test_verdict_names_a_single_hook_in_the_singular():
    ref = {"logits": torch.zeros(2, 3)}
    assert (
        compare({"logits": torch.zeros(2, 3)}, ref)
        .verdict()
        .startswith("The hook logits agrees with the reference")
    )
    bad = compare({"logits": torch.ones(2, 3)}, ref).verdict()
    assert bad.startswith("The hook logits DISAGREES") and "1 of 1" not in bad

"""minigpt.interp: the scores are exact on hand-made attention patterns; circuits and hooks."""

import math

import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.interp import (
    ablation_hooks,
    composition_baseline,
    composition_score,
    composition_scores,
    copy_losses,
    copying_score,
    current_token_stripe,
    detector_hook,
    first_token_stripe,
    head_ablation_hook,
    head_logit_attribution,
    induction_scores,
    induction_stripe,
    k_composition_qk,
    logit_difference,
    ov_circuit,
    ov_singular_values,
    patch_head_hook,
    positional_qk,
    previous_token_scores,
    previous_token_stripe,
    repeated_tokens,
    token_losses,
)
from minigpt.model import GPT

SEQ = 5


def induction_pattern(seq: int) -> torch.Tensor:
    """[2 seq, 2 seq]: the second half attends to the token after the previous occurrence."""
    n = 2 * seq
    pattern = torch.zeros(n, n)
    pattern[0, 0] = 1.0
    for i in range(1, seq):
        pattern[i, i - 1] = 1.0  # the first half: previous token (anything causal would do)
    for i in range(seq, n):
        pattern[i, i - seq + 1] = 1.0
    return pattern


def uniform_pattern(n: int) -> torch.Tensor:
    return torch.ones(n, n).tril() / torch.arange(1, n + 1)[:, None]


class FakeModel:
    """Anything with run_with_cache and cfg.n_layers: here it returns hand-made patterns."""

    def __init__(self, patterns):
        self.patterns = patterns  # [n_layers] of [batch, n_heads, q, k]
        self.cfg = GPTConfig(n_layers=len(patterns), d_model=8, n_heads=2, d_head=4)

    def run_with_cache(self, tokens):
        return None, {f"blocks.{i}.attn.hook_pattern": p for i, p in enumerate(self.patterns)}


def test_a_perfect_induction_head_scores_exactly_one_and_uniform_what_the_maths_says():
    n = 2 * SEQ
    heads = torch.stack([induction_pattern(SEQ), uniform_pattern(n)])[None].expand(3, 2, n, n)
    tokens = repeated_tokens(3, SEQ, 50, torch.Generator().manual_seed(0))
    scores = induction_scores(FakeModel([heads, heads.flip(1)]), tokens)
    uniform = sum(1 / (i + 1) for i in range(SEQ, 2 * SEQ)) / SEQ  # (H_2seq - H_seq) / seq
    expected = torch.tensor([[1.0, uniform], [uniform, 1.0]])
    torch.testing.assert_close(scores, expected, atol=1e-7, rtol=0)


def test_previous_token_score_is_one_on_the_subdiagonal_and_harmonic_on_uniform():
    n = 7
    sub = torch.zeros(n, n)
    sub[0, 0] = 1
    sub[torch.arange(1, n), torch.arange(n - 1)] = 1
    scores = previous_token_stripe(torch.stack([sub, uniform_pattern(n)])[None])
    uniform = sum(1 / (i + 1) for i in range(1, n)) / (n - 1)
    torch.testing.assert_close(scores, torch.tensor([1.0, uniform]), atol=1e-7, rtol=0)
    # an induction head is no previous-token head: only its first-half rows hit the stripe
    got = previous_token_stripe(induction_pattern(SEQ)[None, None])
    assert float(got) == pytest.approx((SEQ - 1) / (2 * SEQ - 1))


def test_induction_stripe_ignores_the_first_half_and_off_stripe_weight():
    pattern = induction_pattern(SEQ)
    pattern[:SEQ] = uniform_pattern(2 * SEQ)[:SEQ]  # the first half does not count
    assert float(induction_stripe(pattern[None, None])) == 1.0
    shifted = torch.zeros(2 * SEQ, 2 * SEQ)
    shifted[torch.arange(SEQ, 2 * SEQ), torch.arange(0, SEQ)] = 1.0  # the repeated token itself
    assert float(induction_stripe(shifted[None, None])) == 0.0


def test_copy_losses_split_the_two_copies_exactly():
    d_vocab = 50
    tokens = repeated_tokens(3, SEQ, d_vocab, torch.Generator().manual_seed(1))
    logits = torch.zeros(3, 2 * SEQ, d_vocab)  # uniform everywhere: ln(d_vocab) on both
    first, repeated = copy_losses(logits, tokens)
    assert first == pytest.approx(math.log(d_vocab), abs=1e-6)
    assert repeated == pytest.approx(math.log(d_vocab), abs=1e-6)
    # certain of the right next token from position seq - 1 on: the repeated copy costs ~0
    logits[:, SEQ - 1 : -1].scatter_(-1, tokens[:, SEQ:, None], 100.0)
    first, repeated = copy_losses(logits, tokens)
    assert first == pytest.approx(math.log(d_vocab), abs=1e-6) and repeated < 1e-30
    # the logits of tokens[:, :-1] (no prediction past the end) give the same numbers
    assert copy_losses(logits[:, :-1], tokens) == (first, repeated)
    broken = tokens.clone()
    broken[:, -1] = (broken[:, -1] + 1) % d_vocab  # the second copy no longer repeats
    with pytest.raises(ValueError, match="repeated twice"):
        copy_losses(logits, broken)


def test_repeated_tokens_and_the_check_on_them():
    tokens = repeated_tokens(4, 6, 30, torch.Generator().manual_seed(1), low=10)
    assert tokens.shape == (4, 12) and torch.equal(tokens[:, :6], tokens[:, 6:])
    assert int(tokens.min()) >= 10 and int(tokens.max()) < 30
    assert all(len(set(row[:6].tolist())) == 6 for row in tokens)  # distinct within a block
    model = FakeModel([torch.zeros(4, 2, 12, 12)])
    with pytest.raises(ValueError, match="repeated twice"):
        induction_scores(model, torch.arange(12).view(1, 12))
    with pytest.raises(ValueError, match="2 \\* seq"):
        induction_scores(model, torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="distinct ids"):
        repeated_tokens(1, 8, 5, torch.Generator())


@pytest.fixture(scope="module")
def small():
    cfg = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=2, n_ctx=12, d_vocab=20)
    torch.manual_seed(0)
    return GPT(cfg).eval()


def test_scores_of_a_real_model_match_its_cached_patterns(small):
    tokens = repeated_tokens(2, 6, 20, torch.Generator().manual_seed(2))
    _, acts = small.run_with_cache(tokens)
    scores = induction_scores(small, tokens)
    assert scores.shape == (2, 2)
    torch.testing.assert_close(scores[1], induction_stripe(acts["blocks.1.attn.hook_pattern"]))
    assert previous_token_scores(small, tokens).shape == (2, 2)


def test_circuits_are_the_products_of_the_weights(small):
    with torch.no_grad():
        ov = ov_circuit(small, 1, 0)
        qk = positional_qk(small, 0, 1)
        kc = k_composition_qk(small, (0, 1), (1, 0))
    assert ov.shape == (20, 20) and qk.shape == (12, 12) and kc.shape == (20, 20)
    # with unit LayerNorm gains, the OV circuit is exactly centred W_E W_V W_O W_U
    W_E = small.embed.W_E - small.embed.W_E.mean(-1, keepdim=True)
    a = small.blocks[1].attn
    expected = W_E @ a.W_V[0] @ a.W_O[0] @ small.unembed.W_U
    torch.testing.assert_close(ov, expected.detach(), atol=1e-6, rtol=1e-5)


def test_hooks_ablate_and_patch_one_head():
    z = torch.randn(2, 4, 3, 5)
    zeroed = head_ablation_hook(1)(z)
    assert zeroed[:, :, 1].abs().max() == 0 and torch.equal(zeroed[:, :, [0, 2]], z[:, :, [0, 2]])
    mean = z[:, :, 1].mean(0)
    meaned = head_ablation_hook(1, mean)(z)
    assert torch.equal(meaned[0, :, 1], mean) and torch.equal(z, z.clone())  # z left as it was
    clean = torch.randn(2, 4, 3, 5)
    patched = patch_head_hook(clean, head=2, position=3)(z)
    assert torch.equal(patched[:, 3, 2], clean[:, 3, 2])
    patched[:, 3, 2] = z[:, 3, 2]
    assert torch.equal(patched, z)
    logits = torch.zeros(2, 3, 4)
    logits[:, -1, 1] = 2.0
    assert float(logit_difference(logits, torch.tensor([1, 1]), torch.tensor([0, 3]))) == 2.0


def test_current_and_first_token_stripes_on_hand_made_heads():
    n = 6
    eye, sink = torch.eye(n), torch.zeros(n, n)
    sink[:, 0] = 1.0
    heads = torch.stack([eye, sink, uniform_pattern(n)])[None]
    torch.testing.assert_close(
        current_token_stripe(heads),
        torch.tensor([1.0, 1 / n, sum(1 / (i + 1) for i in range(n)) / n]),
    )
    # query 0 is left out of the first-token score: it can attend nowhere else
    uniform = sum(1 / (i + 1) for i in range(1, n)) / (n - 1)
    torch.testing.assert_close(first_token_stripe(heads), torch.tensor([0.0, 1.0, uniform]))


class Named:
    def __init__(self, name):
        self.name = name


def test_a_detector_inside_a_hook_equals_the_packages_scores(small):
    tokens = repeated_tokens(3, 6, 20, torch.Generator().manual_seed(4))
    _, acts = small.run_with_cache(tokens)
    found = {}
    for layer in range(2):
        name = f"blocks.{layer}.attn.hook_pattern"
        pattern = acts[name]
        assert detector_hook(previous_token_stripe, found)(pattern, Named(name)) is None
    got = torch.stack([found[f"blocks.{i}.attn.hook_pattern"] for i in range(2)])
    torch.testing.assert_close(got, previous_token_scores(small, tokens), atol=0, rtol=0)


def test_token_losses_are_the_per_position_cross_entropy():
    tokens = torch.tensor([[0, 1, 2]])
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 1] = 50.0  # certain of the right token at position 0 only
    losses = token_losses(logits, tokens)
    assert losses.shape == (1, 2) and float(losses[0, 0]) < 1e-10
    assert float(losses[0, 1]) == pytest.approx(math.log(4))


def test_copying_score_of_identity_minus_identity_and_a_rotation():
    assert copying_score(torch.eye(5)) == pytest.approx(1.0)
    assert copying_score(-2 * torch.eye(5)) == pytest.approx(-1.0)
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues +i and -i
    assert copying_score(rotation) == pytest.approx(0.0, abs=1e-12)
    assert copying_score(torch.diag(torch.tensor([3.0, -1.0]))) == pytest.approx(0.5)


def test_composition_score_is_zero_for_orthogonal_subspaces_and_one_when_aligned():
    d = 6
    a, b = torch.zeros(d, d), torch.zeros(d, d)
    a[:, :3] = torch.randn(d, 3)  # writes into directions 0-2 only
    b[3:] = torch.randn(3, d)  # reads directions 3-5 only
    assert composition_score(a, b) == 0.0
    u, v = torch.randn(d, 1), torch.randn(d, 1)
    assert composition_score(u @ v.T, v @ u.T) == pytest.approx(1.0, rel=1e-5)
    baseline = composition_baseline(64, 16, torch.Generator().manual_seed(0), samples=20)
    assert 0.05 < baseline < 0.3


def test_composition_scores_read_the_right_matrices(small):
    with torch.no_grad():
        scores = {kind: composition_scores(small, kind) for kind in "QKV"}
        a0, a1 = small.blocks[0].attn, small.blocks[1].attn
        W_O = a0.W_O[1] - a0.W_O[1].mean(-1, keepdim=True)
        ov = a0.W_V[1] @ W_O  # unit LayerNorm gains
        k = composition_score(ov, (a1.W_Q[0] @ a1.W_K[0].T / 8**0.5).T)
    assert all(s.shape == (2, 2) for s in scores.values())
    assert float(scores["K"][1, 0]) == pytest.approx(k, rel=1e-5)
    assert not torch.allclose(scores["Q"], scores["K"])
    with pytest.raises(ValueError, match="kind"):
        composition_scores(small, "O")


def test_ov_singular_values_have_rank_d_head(small):
    with torch.no_grad():
        values = ov_singular_values(small, 0, 0)
    assert values.shape == (16,) and float(values[7]) > 1e-4
    assert float(values[8:].max()) < 1e-5 * float(values[0])  # rank d_head = 8


def test_joint_ablation_hooks_remove_every_head_listed():
    z = torch.randn(2, 3, 4, 5)
    hooks = ablation_hooks([(0, 1), (0, 3), (1, 2)])
    assert [name for name, _ in hooks] == ["blocks.0.attn.hook_z"] * 2 + ["blocks.1.attn.hook_z"]
    out = z
    for _, hook in hooks[:2]:
        out = hook(out)
    assert out[:, :, [1, 3]].abs().max() == 0 and torch.equal(out[:, :, [0, 2]], z[:, :, [0, 2]])
    means = {"blocks.0.attn.hook_z": z, "blocks.1.attn.hook_z": z}
    meaned = ablation_hooks([(0, 2)], means)[0][1](z)
    torch.testing.assert_close(meaned[1, :, 2], z[:, :, 2].mean(0))


def test_head_logit_attributions_add_up_to_the_attention_output(small):
    """Heads plus b_O give hook_attn_out's share; every part together gives the logit."""
    tokens = repeated_tokens(2, 6, 20, torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits, acts = small.run_with_cache(tokens)
        dla = head_logit_attribution(small, acts, tokens)
        W_U = small.unembed.W_U * small.ln_final.w[:, None]
        direction = W_U.T[tokens[:, 1:]]
        scale = acts["ln_final.hook_scale"][:, :-1]

        def share(x):  # [batch, pos, d_model] -> the next token's logit it gives
            x = x[:, :-1]
            return ((x - x.mean(-1, keepdim=True)) / scale * direction).sum(-1)

        b_O = small.blocks[1].attn.b_O.expand_as(acts["blocks.1.hook_attn_out"])
        torch.testing.assert_close(
            dla[1].sum(0) + share(b_O), share(acts["blocks.1.hook_attn_out"]), atol=1e-5, rtol=1e-4
        )
        whole = share(acts["blocks.1.hook_resid_post"])
        bias = small.ln_final.b @ small.unembed.W_U + small.unembed.b_U
        right = logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
        torch.testing.assert_close(whole, right - bias[tokens[:, 1:]], atol=1e-5, rtol=1e-4)
    assert dla.shape == (2, 2, 2, 11)


def test_the_attention_view_has_one_heatmap_and_one_button_per_head():
    from minigpt.notebook import ATTENTION_VIEW, attention_view

    patterns = {"0.0": torch.eye(3), "1.2": uniform_pattern(3)}
    fig = attention_view(patterns, ["a", "b", "c"], "title")
    assert fig.layout.meta == ATTENTION_VIEW
    assert [trace.visible for trace in fig.data] == [True, False]
    assert fig.data[1].z[2] == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert list(fig.data[0].x) == ["0: a", "1: b", "2: c"]
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["head 0.0", "head 1.2"]
    assert buttons[1].args[0]["visible"] == [False, True]
    assert "key %{x}" in fig.data[0].hovertemplate

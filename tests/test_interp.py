"""minigpt.interp: the scores are exact on hand-made attention patterns; circuits and hooks."""

import math

import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.interp import (
    copy_losses,
    head_ablation_hook,
    induction_scores,
    induction_stripe,
    k_composition_qk,
    logit_difference,
    ov_circuit,
    patch_head_hook,
    positional_qk,
    previous_token_scores,
    previous_token_stripe,
    repeated_tokens,
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

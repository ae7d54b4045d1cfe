"""The whole GPT (minigpt.model): parity with Hugging Face and TransformerLens, left padding,
bad input, its initialisation and the pretrained path."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.assets import hub_reachable
from minigpt.compare import assert_hooks_close
from minigpt.config import GPTConfig
from minigpt.formats.hf_model import from_bridge, from_hf, from_pretrained, hf_weights_cached
from minigpt.model import GPT
from minigpt.reference import _boot_bridge, gpt2_hf_tokenizer, random_gpt2_hf

ATOL = 1e-4  # float32 on CPU; the maths is the same, only summation order may differ


def _random_hf(n_layer: int, n_head: int, n_embd: int, vocab: int = 50257, n_ctx: int = 64):
    """A small random GPT2LMHeadModel drawn as the offline reference is: no LayerNorm or bias
    at its trivial value, so that a mix-up of ``w`` and ``b``, or a missing bias, fails."""
    return random_gpt2_hf(
        seed=1, n_layer=n_layer, n_head=n_head, n_embd=n_embd, vocab_size=vocab, n_positions=n_ctx
    ).eval()


@pytest.fixture(scope="module")
def odd_shape():
    """A non-GPT-2 shape (3 layers, 6 heads of width 8, d_mlp 192) with its bridge."""
    hf = _random_hf(n_layer=3, n_head=6, n_embd=48)
    bridge = _boot_bridge(hf, gpt2_hf_tokenizer(), torch.device("cpu"))
    return hf, bridge


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=2, n_ctx=24, d_vocab=101)
    model = GPT(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or ".b_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_odd_shape_every_hook_matches_bridge(odd_shape):
    hf, bridge = odd_shape
    model = from_hf(hf)
    assert model.cfg.n_layers == 3 and model.cfg.n_heads == 6 and model.cfg.d_head == 8
    tokens = torch.tensor([[50256, 464, 3290, 318, 257, 922, 11, 290, 340, 13]])
    with torch.no_grad():
        ref_logits, ref_cache = bridge.run_with_cache(tokens)
        logits, acts = model.run_with_cache(tokens)
    assert len(acts) == 2 + 3 * 17 + 3, sorted(acts)
    assert_hooks_close(acts, {k: ref_cache[k] for k in acts}, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=1e-5, rtol=0)


def test_from_bridge_equals_from_hf(odd_shape):
    hf, bridge = odd_shape
    a, b = from_hf(hf), from_bridge(bridge)
    for (name, p), (name_b, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert name == name_b
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


def test_gpt2_small_matches_reference(reference):
    model = from_bridge(reference.bridge)
    assert model.cfg == GPTConfig.gpt2_small()
    tokens = reference.to_tokens("The quick brown fox jumps over the lazy dog.")
    with torch.no_grad():
        ref_logits, ref_cache = reference.bridge.run_with_cache(tokens)
        logits, acts = model.run_with_cache(tokens)
        hf_logits = reference.hf_model(tokens).logits
        fused = model(tokens)
    assert_hooks_close(acts, {k: ref_cache[k] for k in acts}, atol=ATOL, rtol=1e-3)
    torch.testing.assert_close(logits, hf_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(fused, hf_logits, atol=ATOL, rtol=0)


PRETRAINED_REACHABLE = hf_weights_cached("gpt2") or hub_reachable()


@pytest.mark.pretrained
@pytest.mark.skipif(
    not PRETRAINED_REACHABLE,
    reason="the real GPT-2 weights are neither in the Hugging Face cache nor downloadable here",
)
def test_pretrained_hello_world_loss():
    """TransformerLens's known figure: GPT-2 small's loss on "Hello world!" with BOS."""
    model = from_pretrained("gpt2")
    tokens = torch.tensor([[50256, 15496, 995, 0]])  # <|endoftext|>Hello world!
    with torch.no_grad():
        logits = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], tokens[0, 1:])
    assert abs(loss.item() - 5.331856) < 1e-4


@pytest.mark.skipif(PRETRAINED_REACHABLE, reason="the real weights are reachable here")
def test_from_pretrained_fails_fast_offline():
    import time

    start = time.perf_counter()
    with pytest.raises(OSError, match="'gpt2' are not in the Hugging Face cache"):
        from_pretrained("gpt2")
    assert time.perf_counter() - start < 10
    with pytest.raises(ValueError, match="name='gpt3'"):
        from_pretrained("gpt3")


def test_sdpa_equals_einsum(small):
    tokens = torch.randint(0, 101, (3, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        small.attn_impl = "einsum"
        slow = small(tokens)
        small.attn_impl = "sdpa"
        fast = small(tokens)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)


@pytest.mark.parametrize("impl", ["sdpa", "einsum"])
def test_left_padding_matches_each_row_alone(small, impl):
    """Rows of different lengths, left-padded, give each row's own logits at its real
    positions: in one pass, and continued token by token through the cache."""
    small.attn_impl = impl
    gen = torch.Generator().manual_seed(2)
    rows = [torch.randint(0, 101, (n,), generator=gen) for n in (7, 3, 5)]
    more = torch.randint(0, 101, (3, 4), generator=gen)  # continuations, one per row
    width = max(len(r) for r in rows)
    tokens = torch.zeros(3, width, dtype=torch.long)  # pad id 0: must not matter
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
    with torch.no_grad():
        batched = small(tokens, attention_mask=mask)
        cache = small.new_cache(3)
        prompt = small(tokens, cache=cache, attention_mask=mask)
        steps = []
        for t in range(more.shape[1]):
            mask = torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], dim=1)
            steps.append(small(more[:, t : t + 1], cache=cache, attention_mask=mask))
        for i, r in enumerate(rows):
            alone = small(torch.cat([r, more[i]])[None])
            torch.testing.assert_close(
                batched[i, width - len(r) :], alone[0, : len(r)], atol=1e-5, rtol=0
            )
            torch.testing.assert_close(
                prompt[i, width - len(r) :], alone[0, : len(r)], atol=1e-5, rtol=0
            )
            got = torch.cat([s[i] for s in steps])
            torch.testing.assert_close(got, alone[0, len(r) :], atol=1e-5, rtol=0)
    small.attn_impl = "sdpa"
    assert torch.isfinite(batched).all()  # padded queries too: no NaN from an empty softmax


def test_bad_input_errors_name_the_limit(small):
    ok = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="n_ctx=24"):
        small(torch.zeros(1, 25, dtype=torch.long))
    cache = small.new_cache(1)
    small(torch.zeros(1, 20, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"cached 20 \+ new 5.*n_ctx=24"):
        small(torch.zeros(1, 5, dtype=torch.long), cache=cache)
    assert cache.length == 20  # a refused call leaves the cache alone
    with pytest.raises(ValueError, match=r"token id 101 is outside the vocabulary \[0, 101\)"):
        small(torch.tensor([[1, 101]]))
    with pytest.raises(ValueError, match=r"token id -1 .* \[0, 101\)"):
        small(torch.tensor([[-1, 5]]))
    with pytest.raises(ValueError, match="dtype torch.float32"):
        small(ok.float())
    with pytest.raises(ValueError, match=r"rank 2 .* shape \(4,\).*tokens\[None\]"):
        small(ok[0])
    with pytest.raises(ValueError, match=r"rank 2 .* shape \(1, 1, 4\)"):
        small(ok[None])
    with pytest.raises(ValueError, match=r"expected .* = \(1, 4\)"):
        small(ok, attention_mask=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_size=2 rows, tokens have 1"):
        small(ok, cache=small.new_cache(2))
    with pytest.raises(ValueError, match="attn_impl='flash'"):
        small.attn_impl = "flash"


def test_init_is_seeded_and_gpt2_like():
    cfg = GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=8, n_ctx=32, d_vocab=500)
    torch.manual_seed(5)
    a = GPT(cfg)
    torch.manual_seed(5)
    b = GPT(cfg)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert abs(a.embed.W_E.std().item() - 0.02) < 0.002
    scaled = 0.02 / math.sqrt(2 * 8)
    assert abs(a.blocks[0].mlp.W_out.std().item() - scaled) < 0.1 * scaled
    assert abs(a.blocks[0].attn.W_O.std().item() - scaled) < 0.1 * scaled
    assert torch.equal(a.blocks[0].ln1.w, torch.ones(64)) and not a.blocks[0].attn.b_Q.any()


def test_logits_to_keep_computes_only_the_last_positions(small):
    tokens = torch.randint(0, small.cfg.d_vocab, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = small(tokens)
        for keep in (1, 3, 9, 20):  # more than pos keeps every position
            got = small(tokens, logits_to_keep=keep)
            assert got.shape == (2, min(keep, 9), small.cfg.d_vocab)
            torch.testing.assert_close(got, full[:, -keep:], atol=1e-6, rtol=0)
        cache = small.new_cache(2)
        small(tokens[:, :5], cache=cache, logits_to_keep=1)
        torch.testing.assert_close(
            small(tokens[:, 5:], cache=cache, logits_to_keep=2), full[:, -2:], atol=1e-5, rtol=0
        )
    for bad in (-1, True):  # a float gets the same error, but the tests' type checker is first
        with pytest.raises(ValueError, match=f"logits_to_keep={bad!r} must be an integer >= 0"):
            small(tokens, logits_to_keep=bad)

"""Sampling (minigpt.sample): each transform against hand-derived cases and against its own
claimed distribution (seeded draws), then the generation loop (padding, penalties, stops,
streaming) against itself, against Hugging Face and against the TransformerLens bridge."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from tiny_gpt import EOS, prompts

from minigpt.sample import (
    Sampler,
    apply_frequency_presence_penalty,
    apply_repetition_penalty,
    apply_temperature,
    generate,
    greedy,
    min_p_filter,
    sample_token,
    stream,
    token_counts,
    top_k_filter,
    top_p_filter,
)

PROBS = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
LOGITS = PROBS.log()


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


# --- the transforms, on cases worked out by hand -------------------------------------


@pytest.mark.parametrize(
    ("p", "expected"), [(0.5, [0]), (0.7, [0, 1]), (0.81, [0, 1, 2]), (1.0, [0, 1, 2, 3])]
)
def test_top_p_keeps_the_smallest_nucleus(p, expected):
    assert kept(top_p_filter(LOGITS, p)) == expected


def test_top_p_works_in_vocabulary_order_not_sorted_order():
    shuffled = LOGITS[:, [2, 0, 3, 1]]  # probabilities 0.15, 0.5, 0.05, 0.3
    assert kept(top_p_filter(shuffled, 0.7)) == [1, 3]


@pytest.mark.parametrize(("k", "expected"), [(1, [0]), (3, [0, 1, 2]), (10, [0, 1, 2, 3])])
def test_top_k_keeps_the_k_best(k, expected):
    assert kept(top_k_filter(LOGITS, k)) == expected


def test_top_k_keeps_ties_with_the_kth():
    assert kept(top_k_filter(torch.tensor([[1.0, 3.0, 1.0, 0.0]]), 2)) == [0, 1, 2]


def test_min_p_scales_with_the_top_probability():
    # threshold 0.2 * 0.5 = 0.1: 0.15 stays, 0.05 goes
    assert kept(min_p_filter(LOGITS, 0.2)) == [0, 1, 2]
    assert kept(min_p_filter(LOGITS, 0.0)) == [0, 1, 2, 3]
    assert kept(min_p_filter(LOGITS, 1.0)) == [0]


def test_filters_leave_kept_logits_untouched():
    for filtered in (top_k_filter(LOGITS, 2), top_p_filter(LOGITS, 0.7), min_p_filter(LOGITS, 0.5)):
        assert torch.equal(filtered[:, :2], LOGITS[:, :2])


def test_temperature_divides_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    torch.testing.assert_close(apply_temperature(logits, 0.5), torch.tensor([[4.0, -2.0, 1.0]]))
    assert torch.equal(apply_temperature(logits, 1.0), logits)


def test_greedy_is_argmax_with_first_index_on_ties():
    assert greedy(torch.tensor([[0.0, 2.0, 2.0], [5.0, 1.0, 0.0]])).tolist() == [1, 0]


def test_token_counts_skip_padding():
    tokens = torch.tensor([[0, 0, 2, 2, 3]])
    mask = torch.tensor([[0, 0, 1, 1, 1]])
    assert token_counts(tokens, 5).tolist() == [[2, 0, 2, 1, 0]]
    assert token_counts(tokens, 5, mask).tolist() == [[0, 0, 2, 1, 0]]


def test_repetition_penalty_lowers_seen_tokens_both_signs():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    counts = torch.tensor([[1, 3, 0, 0]])
    out = apply_repetition_penalty(logits, counts, 2.0)
    assert out.tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_frequency_and_presence_penalties():
    logits = torch.zeros(1, 3)
    counts = torch.tensor([[0, 1, 4]])
    out = apply_frequency_presence_penalty(logits, counts, frequency=0.5, presence=1.0)
    torch.testing.assert_close(out, torch.tensor([[0.0, -1.5, -3.0]]))


# --- each sampler draws from exactly the distribution it claims -----------------------

DRAWS = 40_000
BASE = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0]])  # 8 tokens, all distinct


def frequencies(logits: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    draws = sample_token(logits.expand(DRAWS, -1), generator=gen)
    return torch.bincount(draws, minlength=logits.shape[-1]).double() / DRAWS


def renormalised(probs: torch.Tensor, keep: list[int]) -> torch.Tensor:
    out = torch.zeros_like(probs)
    out[keep] = probs[keep] / probs[keep].sum()
    return out


BASE_P = BASE[0].double().softmax(-1)
CASES = {
    # expected distributions computed directly from the definitions, not by the code under test
    "temperature 0.5": (lambda x: apply_temperature(x, 0.5), (BASE[0].double() / 0.5).softmax(-1)),
    "temperature 2": (lambda x: apply_temperature(x, 2.0), (BASE[0].double() / 2.0).softmax(-1)),
    "top-k 3": (lambda x: top_k_filter(x, 3), renormalised(BASE_P, [0, 1, 2])),
    # cumulative mass of the sorted probabilities: .405, .650, .799, .889, .944, ...
    "top-p 0.85": (lambda x: top_p_filter(x, 0.85), renormalised(BASE_P, [0, 1, 2, 3])),
    "min-p 0.3": (lambda x: min_p_filter(x, 0.3), renormalised(BASE_P, [0, 1, 2])),
}


@pytest.mark.parametrize("case", CASES)
def test_sampling_frequencies_match_the_filtered_distribution(case):
    transform, expected = CASES[case]
    freq = frequencies(transform(BASE))
    # Removed tokens are never drawn; the others are within 4.5 standard errors of their
    # probability (fixed seed, so this is deterministic; 4.5 sigma ~ 1 in 150,000 per token).
    assert torch.all(freq[expected == 0] == 0), f"{case}: a filtered token was drawn: {freq}"
    tol = 4.5 * torch.sqrt(expected * (1 - expected) / DRAWS) + 1e-12
    assert torch.all((freq - expected).abs() <= tol), f"{case}: {freq} vs {expected}"
    # ... and this tolerance is tight enough to tell the claim from the unfiltered softmax.
    assert torch.any((freq - BASE_P).abs() > tol), f"{case}: test cannot tell it from softmax"


def test_top_p_mass_is_checked_by_hand():
    cumulative = BASE_P.sort(descending=True).values.cumsum(0)
    assert cumulative[2] < 0.85 <= cumulative[3]  # so top-p 0.85 keeps exactly 4 tokens


def test_sampling_is_reproducible_with_a_seed():
    assert torch.equal(frequencies(BASE, seed=3), frequencies(BASE, seed=3))
    assert not torch.equal(frequencies(BASE, seed=3), frequencies(BASE, seed=4))


@pytest.mark.parametrize(
    ("knobs", "match"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": -0.1}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"frequency_penalty": math.inf}, "frequency_penalty"),
    ],
)
def test_bad_sampler_settings_name_the_argument(knobs, match):
    with pytest.raises(ValueError, match=match):
        Sampler(**knobs)


# --- the generation loop, on a small random GPT -------------------------------------


def test_greedy_equals_hugging_face(tiny):
    model, hf = tiny
    tokens = prompts()
    ours = generate(model, tokens, 30, temperature=0)
    theirs = hf.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=30,
                         do_sample=False, pad_token_id=EOS, eos_token_id=None)  # fmt: skip
    assert torch.equal(ours, theirs)


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny):
    model, _ = tiny
    tokens = prompts()
    a, b, c = (
        generate(model, tokens, 20, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_tiny_temperature_is_greedy(tiny):
    model, _ = tiny
    tokens = prompts()
    assert torch.equal(
        generate(model, tokens, 15, temperature=1e-4), generate(model, tokens, 15, temperature=0)
    )


def test_stream_yields_the_same_tokens_as_generate(tiny):
    model, _ = tiny
    tokens = prompts()
    steps = list(stream(model, tokens, 12, generator=torch.Generator().manual_seed(3)))
    full = generate(model, tokens, 12, generator=torch.Generator().manual_seed(3))
    assert len(steps) == 12 and all(s.shape == (3,) for s in steps)
    assert torch.equal(torch.stack(steps, dim=1), full[:, 6:])


def test_left_padded_batch_equals_each_prompt_alone(tiny):
    model, _ = tiny
    rows = [prompts(1, n, seed=n)[0] for n in (2, 7, 4)]
    width = max(len(r) for r in rows)
    pad = 0  # any id: padded positions are masked out
    tokens = torch.stack([torch.cat([torch.full((width - len(r),), pad), r]) for r in rows])
    mask = torch.stack([torch.arange(width) >= width - len(r) for r in rows]).long()
    for cache in (True, False):
        batch = generate(model, tokens, 20, temperature=0, attention_mask=mask, use_kv_cache=cache)
        for i, row in enumerate(rows):
            alone = generate(model, row[None], 20, temperature=0)
            assert torch.equal(batch[i, width - len(row) :], alone[0]), f"row {i}, cache={cache}"


def test_penalties_change_what_is_generated(tiny):
    model, _ = tiny
    tokens = prompts(1)
    plain = generate(model, tokens, 30, temperature=0)
    assert len(set(plain[0, 6:].tolist())) < 30  # greedy repeats itself here
    penalised = generate(model, tokens, 30, temperature=0, presence_penalty=100.0)
    new = penalised[0, 6:].tolist()
    assert len(set(new)) == 30, "a presence penalty of 100 must forbid every repeat"
    assert not set(new) & set(tokens[0].tolist()), "the prompt's tokens count as present too"


def test_stop_tokens_end_each_row_and_pad_the_rest(tiny):
    model, _ = tiny
    tokens = prompts()
    free = generate(model, tokens, 20, temperature=0)
    stop = int(free[0, 6 + 4])  # the 5th token row 0 generates
    out = generate(model, tokens, 20, temperature=0, stop_tokens=[stop], pad_token_id=EOS)
    first = (free[0, 6:] == stop).nonzero()[0].item()
    assert torch.equal(out[0, : 6 + first + 1], free[0, : 6 + first + 1])
    assert (out[0, 6 + first + 1 :] == EOS).all()
    for i in range(3):  # every row is the free run up to (and with) its first stop token
        hits = (free[i, 6:] == stop).nonzero().flatten()
        end = 6 + (int(hits[0]) + 1 if len(hits) else 20)
        assert torch.equal(out[i, :end], free[i, :end])


def test_stop_strings_end_generation_once_the_text_contains_them(tiny):
    model, _ = tiny
    tokens = prompts(1)
    decode = lambda ids: "".join(f"<{i}>" for i in ids)
    free = generate(model, tokens, 20, temperature=0)
    target = decode(free[0, 6 + 5 : 6 + 7].tolist())  # two tokens in a row, steps 6 and 7
    out = generate(model, tokens, 20, temperature=0, stop_strings=[target], decode=decode)
    assert target in decode(out[0, 6:].tolist())
    assert target not in decode(out[0, 6:-1].tolist()), "must stop at the token completing it"
    with pytest.raises(ValueError, match="decode"):
        generate(model, tokens, 5, stop_strings=["x"])


# --- GPT-2 small: ours == Hugging Face == TransformerLens, 50 greedy tokens ------------


def agree_until_near_tie(ours, theirs, hf_model, prompt_len, name, margin=1e-4):
    """Token-for-token equality; a split is forgiven only at a near-tie of the top two
    logits (< ``margin`` apart in Hugging Face's logits), where float rounding decides."""
    if torch.equal(ours, theirs):
        return
    diff = (ours != theirs).nonzero()
    row, col = (int(v) for v in diff[0])
    with torch.no_grad():
        top2 = hf_model(ours[row : row + 1, :col]).logits[0, -1].topk(2).values
    gap = float(top2[0] - top2[1])
    assert gap < margin, (
        f"{name}: row {row} differs at new token {col - prompt_len} (gap {gap:.3g})"
    )


@pytest.mark.slow
def test_gpt2_small_greedy_equals_hugging_face_and_bridge(reference):
    from minigpt.formats.hf_model import from_hf

    texts = ["The quick brown fox jumps over", "In the beginning God created the",
             "Once upon a time there was a"]  # fmt: skip
    rows = [reference.to_tokens(t)[0] for t in texts]
    n = min(len(r) for r in rows)
    tokens = torch.stack([r[:n] for r in rows])
    model = from_hf(reference.hf_model).eval()
    ours = generate(model, tokens, 50, temperature=0)
    assert ours.shape == (3, n + 50)
    hf = reference.hf_model.generate(tokens, attention_mask=torch.ones_like(tokens),
                                     max_new_tokens=50, do_sample=False, pad_token_id=50256,
                                     eos_token_id=None)  # fmt: skip
    bridge = reference.bridge.generate(tokens, max_new_tokens=50, do_sample=False,
                                       stop_at_eos=False, verbose=False, return_type="tokens")  # fmt: skip
    agree_until_near_tie(ours, hf, reference.hf_model, n, "Hugging Face")
    agree_until_near_tie(ours, bridge, reference.hf_model, n, "TransformerLens bridge")
    if not reference.pretrained:  # seeded random weights: these prompts have no near-ties
        assert torch.equal(ours, hf) and torch.equal(ours, bridge)


def test_stream_leaves_the_callers_grad_mode_alone(tiny):
    model, _ = tiny
    with torch.enable_grad():
        steps = stream(model, prompts(1), 3)
        next(steps)
        assert torch.is_grad_enabled(), "grad mode leaked out of the generator"
        steps.close()


def test_stream_refuses_a_sampler_that_is_not_a_sampler(tiny):
    model, _ = tiny
    with pytest.raises(TypeError, match="Sampler"):  # the tests' runtime type checker
        next(stream(model, prompts(1), 3, sampler="greedy"))
    # What a reader calling it in a notebook sees, without that checker (see test_tokenizer):
    with pytest.raises(TypeError, match=r"sampler must be a minigpt\.sample\.Sampler, got str"):
        next(inspect.unwrap(stream)(model, prompts(1), 3, sampler="greedy"))


def test_generate_is_the_prompt_plus_the_streamed_columns(tiny):
    model, _ = tiny
    tokens = prompts()
    steps = list(stream(model, tokens, 9, Sampler(temperature=0)))
    assert len(steps) == 9
    expected = torch.cat([tokens, torch.stack(steps, dim=1)], dim=1)
    assert torch.equal(generate(model, tokens, 9, temperature=0), expected)
    assert torch.equal(generate(model, tokens, 0, temperature=0), tokens)  # nothing to add

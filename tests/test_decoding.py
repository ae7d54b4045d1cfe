"""The part of generation that talks to the model (minigpt.decoding): prompt checks, and the
Decoder's cache (which must agree with the slow loop token for token) and context overflow."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import prompts

from minigpt.decoding import Decoder, check_count, check_prompt, token_set
from minigpt.sample import generate


@pytest.mark.parametrize("impl", ["sdpa", "einsum"])
def test_cached_generation_equals_uncached(tiny, impl):
    model, _ = tiny
    model.attn_impl = impl
    try:
        tokens = prompts()
        for knobs in ({"temperature": 0}, {"temperature": 0.8, "top_k": 20, "top_p": 0.9}):
            runs = [
                generate(
                    model,
                    tokens,
                    25,
                    use_kv_cache=cache,
                    generator=torch.Generator().manual_seed(7),
                    **knobs,
                )  # fmt: skip
                for cache in (True, False)
            ]
            assert runs[0].shape == (3, 31)
            assert torch.equal(runs[0], runs[1]), f"cache changed the tokens with {knobs}"
    finally:
        model.attn_impl = "sdpa"


def test_context_overflow_slides_or_stops(tiny):
    model, _ = tiny  # n_ctx = 48
    tokens = prompts(2, 44)
    slid = generate(model, tokens, 10, temperature=0)
    assert slid.shape == (2, 54)
    assert torch.equal(slid, generate(model, tokens, 10, temperature=0, use_kv_cache=False))
    # after the window is full, each step is the greedy token of the last 48 tokens
    window = slid[:, -1 - 48 : -1]
    assert torch.equal(model(window)[:, -1].argmax(-1), slid[:, -1])
    stopped = generate(model, tokens, 10, temperature=0, context_overflow="stop")
    assert stopped.shape == (2, 48)
    assert torch.equal(stopped, slid[:, :48])


@pytest.mark.parametrize(
    ("tokens", "kwargs", "match"),
    [
        (torch.zeros(1, 0, dtype=torch.long), {}, "empty"),
        (torch.zeros(1, 49, dtype=torch.long), {}, "n_ctx"),
        (torch.zeros(1, 3), {}, "integer"),
        (torch.tensor([[1, 97]]), {}, "vocabulary"),
        (torch.tensor([1, 2]), {}, r"\[batch, pos\]"),
        (torch.tensor([[1, 2]]), {"attention_mask": torch.tensor([[1, 0]])}, "LEFT padding"),
        (torch.tensor([[1, 2]]), {"stop_tokens": [200]}, "stop_tokens"),
        (torch.tensor([[1, 2]]), {"context_overflow": "wrap"}, "context_overflow"),
        (torch.tensor([[1, 2]]), {"top_p": 2.0}, "top_p"),
    ],
)
def test_bad_input_is_a_clear_error(tiny, tokens, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny[0], tokens, 5, **kwargs)


def test_check_prompt_refuses_right_padding(tiny):
    model, _ = tiny
    tokens = torch.tensor([[5, 6, 7], [8, 9, 10]])
    check_prompt(model, tokens, torch.tensor([[0, 1, 1], [1, 1, 1]]))  # left padding: fine
    check_prompt(model, tokens)
    for mask in ([[1, 1, 0], [1, 1, 1]], [[1, 0, 1], [1, 1, 1]], [[0, 0, 0], [1, 1, 1]]):
        with pytest.raises(ValueError, match="attention_mask must describe LEFT padding"):
            check_prompt(model, tokens, torch.tensor(mask))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bool, torch.float32])
def test_check_prompt_refuses_tokens_that_are_not_ids_naming_the_dtype(tiny, dtype):
    # uint8 too: torch would read a uint8 tensor used as an index as a mask, not as ids
    model, _ = tiny
    with pytest.raises(ValueError, match=rf"integer ids \(torch.long\), got dtype {dtype}"):
        check_prompt(model, torch.ones(1, 3, dtype=dtype))
    check_prompt(model, torch.ones(1, 3, dtype=torch.int32))  # any other integer type is fine


def test_counts_and_token_sets_name_the_argument():
    check_count("num_beams", 1, low=1)
    for bad in (0, -1, 1.0, True, "2"):
        with pytest.raises(ValueError, match=rf"num_beams={bad!r} must be an integer >= 1"):
            check_count("num_beams", bad, low=1)
    assert token_set("stop_tokens", None, 10, "cpu").tolist() == []
    assert token_set("stop_tokens", 3, 10, "cpu").tolist() == [3]
    assert token_set("stop_tokens", [0, 9], 10, "cpu").tolist() == [0, 9]
    for bad in (10, -1, True):
        with pytest.raises(ValueError, match=rf"stop_tokens contains {bad!r}; .* \[0, 10\)"):
            token_set("stop_tokens", [1, bad], 10, "cpu")


def test_decoder_steps_with_and_without_the_cache_agree_with_the_model(tiny):
    model, _ = tiny
    tokens = prompts(2, 5)
    cached = Decoder(model, tokens, None, use_kv_cache=True)
    plain = Decoder(model, tokens, None, use_kv_cache=False)
    assert cached.cache is not None and plain.cache is None and cached.length == 5
    with torch.no_grad():
        for step in range(4):
            a, b = cached.next_logits(), plain.next_logits()
            assert a.shape == (2, 97)
            torch.testing.assert_close(a, model(cached.tokens)[:, -1], atol=1e-5, rtol=0)
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
            for decoder in (cached, plain):
                decoder.append(a.argmax(-1))
            assert cached.length == plain.length == 6 + step
            assert cached.cache.length == 5 + step  # the cache holds what the model has seen
        cached.select(torch.tensor([1, 1, 0]))  # beam search: keep, repeat and reorder rows
        assert cached.tokens.shape == (3, 9) and cached.cache.batch_size == 3
        torch.testing.assert_close(
            cached.next_logits(), model(plain.tokens[[1, 1, 0]])[:, -1], atol=1e-5, rtol=0
        )
    with pytest.raises(ValueError, match="context_overflow='wrap'"):
        Decoder(model, tokens, None, use_kv_cache=True, context_overflow="wrap")

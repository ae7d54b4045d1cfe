"""Beam search (minigpt.beam) against Hugging Face's, on a small random GPT and on GPT-2 small."""

from __future__ import annotations

import pytest
import torch
from tiny_gpt import EOS, prompts

from minigpt.beam import beam_search
from minigpt.sample import generate


@pytest.mark.parametrize(
    "settings",
    [
        {"length_penalty": 1.0, "early_stopping": False},
        {"length_penalty": 0.0, "early_stopping": True},
        {"length_penalty": 2.0, "early_stopping": "never"},
        {"length_penalty": -1.0, "early_stopping": False},
    ],
)
def test_beam_search_equals_hugging_face(tiny, settings):
    model, hf = tiny
    tokens = prompts(4, 5, seed=2)
    ours, scores = beam_search(model, tokens, 4, 14, eos_token_id=EOS, num_return_sequences=3,
                               return_scores=True, **settings)  # fmt: skip
    out = hf.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=14,
                      num_beams=4, do_sample=False, num_return_sequences=3, pad_token_id=EOS,
                      eos_token_id=EOS, return_dict_in_generate=True, output_scores=True,
                      **settings)  # fmt: skip
    assert torch.equal(ours, out.sequences)
    torch.testing.assert_close(scores, out.sequences_scores, atol=1e-4, rtol=1e-4)
    if settings["length_penalty"] <= 1:  # short endings are competitive: the cases exercise
        assert (ours[:, 5:-1] == EOS).any()  # beams that end early, not only full-length ones


def test_beam_search_with_one_beam_is_greedy(tiny):
    model, _ = tiny
    tokens = prompts()
    greedy_run = generate(model, tokens, 10, temperature=0)
    assert torch.equal(beam_search(model, tokens, 1, 10), greedy_run)


def test_beam_search_trace_and_cache(tiny):
    model, _ = tiny
    tokens = prompts(2)
    trace = []
    cached = beam_search(model, tokens, 3, 8, trace=trace)
    assert torch.equal(cached, beam_search(model, tokens, 3, 8, use_kv_cache=False))
    assert len(trace) == 8 and trace[0].kept.shape == (2, 3) and trace[0].token.shape == (2, 6)
    # at step 0 every candidate comes from beam 0: the beams start identical
    assert (trace[0].parent == 0).all()
    with pytest.raises(ValueError, match="num_return_sequences"):
        beam_search(model, tokens, 2, 5, num_return_sequences=3)


@pytest.mark.slow
def test_gpt2_small_beam_search_equals_hugging_face(reference):
    from minigpt.formats.hf_model import from_hf

    tokens = reference.to_tokens("The meaning of life is")
    model = from_hf(reference.hf_model).eval()
    ours = beam_search(model, tokens, 3, 10, eos_token_id=50256)
    theirs = reference.hf_model.generate(tokens, attention_mask=torch.ones_like(tokens),
                                         max_new_tokens=10, num_beams=3, do_sample=False,
                                         pad_token_id=50256, eos_token_id=50256)  # fmt: skip
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_beams": 0}, r"num_beams=0 must be an integer >= 1"),
        ({"max_new_tokens": 0}, r"max_new_tokens=0 must be an integer >= 1"),
        ({"num_return_sequences": 0}, r"num_return_sequences=0 must be in \[1, 2\]"),
        ({"length_penalty": float("nan")}, r"length_penalty=nan must be a finite number"),
        ({"early_stopping": "soon"}, r"early_stopping='soon' must be True, False or 'never'"),
        (
            {"eos_token_id": 97},
            r"eos_token_id contains 97; token ids must be integers in \[0, 97\)",
        ),
        ({"attention_mask": torch.tensor([[1, 1, 1, 1, 1, 0]])}, "LEFT padding"),
    ],
)
def test_bad_arguments_name_themselves(tiny, kwargs, match):
    settings = {"num_beams": 2, "max_new_tokens": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        beam_search(tiny[0], prompts(1), settings.pop("num_beams"), settings.pop("max_new_tokens"),
                    **settings)  # fmt: skip


def test_a_prompt_that_fills_the_context_is_refused(tiny):
    model, _ = tiny  # n_ctx = 48
    with pytest.raises(ValueError, match=r"the prompt \(48 tokens\) already fills n_ctx=48"):
        beam_search(model, prompts(1, 48), 2, 5)
    out = beam_search(model, prompts(1, 45), 2, 10)  # room for 3: stops at n_ctx
    assert out.shape == (1, 48)

"""The chapter-7 check functions accept right answers and reject wrong ones."""

from __future__ import annotations

import math

import pytest
import torch

from minigpt.exercises import ch07
from minigpt.exercises.ch07 import (
    check_beam_step,
    check_greedy_with_cache,
    check_min_p,
    check_nucleus_probs,
    check_sample_loop,
    check_top_p,
)


def top_p_right(logits, p):
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    before = probs.cumsum(-1) - probs
    drop = (before >= p).scatter(-1, order, before >= p)
    return logits.masked_fill(drop, -math.inf)


def top_p_off_by_one(logits, p):  # drops the token that crosses p: keeps too few
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    drop = probs.cumsum(-1) > p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)


def min_p_right(logits, min_p):
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, -math.inf)


def min_p_absolute(logits, min_p):  # a fixed threshold, not relative to the top token
    return logits.masked_fill(logits.softmax(-1) < min_p, -math.inf)


def test_top_p_check(capsys):
    check_top_p(top_p_right)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="keeps"):
        check_top_p(top_p_off_by_one)
    with pytest.raises(AssertionError, match="shape"):
        check_top_p(lambda logits, p: logits[0])


def test_min_p_check(capsys):
    check_min_p(min_p_right)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="min_p"):
        check_min_p(min_p_absolute)
    with pytest.raises(AssertionError, match="unchanged"):
        check_min_p(lambda logits, m: min_p_right(logits, m) * 2)


def greedy_cached(model, tokens, n):
    cache = model.new_cache(tokens.shape[0])
    logits = model(tokens, cache=cache)
    out = tokens
    for _ in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
        logits = model(nxt, cache=cache)
    return out


def greedy_uncached(model, tokens, n):
    for _ in range(n):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def test_greedy_with_cache_check(capsys):
    check_greedy_with_cache(greedy_cached)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="cache"):
        check_greedy_with_cache(greedy_uncached)  # right tokens, but no cache
    with pytest.raises(AssertionError, match="differ"):
        check_greedy_with_cache(lambda m, t, n: greedy_cached(m, t, n).flip(0))


def nucleus_probs(logits, temperature, p):
    logits = logits / temperature
    return top_p_right(logits, p).softmax(-1)


WRONG_NUCLEI = {
    "filtering before temperature": lambda lg, t, p: (top_p_right(lg, p) / t).softmax(-1),
    "not renormalised": lambda lg, t, p: (lg / t).softmax(-1) * (top_p_right(lg / t, p) > -1e30),
    "cross p belongs to the nucleus": lambda lg, t, p: top_p_off_by_one(lg / t, p).softmax(-1),
    "one token past": lambda lg, t, p: keep_one_more(lg / t, p).softmax(-1),
    "multiplies": lambda lg, t, p: top_p_right(lg * t, p).softmax(-1),
    "not the filtered logits": lambda lg, t, p: top_p_right(lg / t, p),
    "shape": lambda lg, t, p: lg[0],
}


def keep_one_more(logits, p):  # drops a token only once the mass above the previous one reaches p
    probs, order = logits.softmax(-1).sort(dim=-1, descending=True)
    before = probs.cumsum(-1) - probs
    drop = torch.zeros_like(before, dtype=torch.bool)
    drop[..., 1:] = before[..., :-1] >= p
    return logits.masked_fill(drop.scatter(-1, order, drop), -math.inf)


def test_nucleus_probs_check(capsys):
    check_nucleus_probs(nucleus_probs)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("diagnosis", WRONG_NUCLEI)
def test_nucleus_probs_check_rejects(diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_nucleus_probs(WRONG_NUCLEI[diagnosis])


def beam_step(log_probs, beam_scores):
    batch, num_beams, d_vocab = log_probs.shape
    total = log_probs + beam_scores[..., None]
    score, index = total.reshape(batch, -1).topk(2 * num_beams, dim=-1)
    return score, index // d_vocab, index % d_vocab


def per_beam(log_probs, beam_scores):  # the best two tokens of each beam
    batch, num_beams, d_vocab = log_probs.shape
    score, token = (log_probs + beam_scores[..., None]).topk(2, dim=-1)
    parent = torch.arange(num_beams)[None, :, None].expand(batch, -1, 2)
    score, order = score.reshape(batch, -1).sort(dim=-1, descending=True)
    return (
        score,
        parent.reshape(batch, -1).gather(1, order),
        token.reshape(batch, -1).gather(1, order),
    )


def swapped_index(log_probs, beam_scores):  # right scores, index decoded as [vocab, beams]
    score, parent, token = beam_step(log_probs, beam_scores)
    index = parent * log_probs.shape[-1] + token
    return score, index % log_probs.shape[1], index // log_probs.shape[1]


WRONG_BEAM_STEPS = {
    "add each beam's running score": lambda lp, s: beam_step(lp, torch.zeros_like(s)),
    "per beam": per_beam,
    "parent = i // d_vocab": lambda lp, s: swapped_index(lp, s),
    "best first": lambda lp, s: tuple(x.flip(-1) for x in beam_step(lp, s)),
    "tuple": lambda lp, s: beam_step(lp, s)[0],
    "shape": lambda lp, s: tuple(x[:, :2] for x in beam_step(lp, s)),
}


def test_beam_step_check(capsys):
    check_beam_step(beam_step)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("diagnosis", WRONG_BEAM_STEPS)
def test_beam_step_check_rejects(diagnosis):
    with pytest.raises(AssertionError, match=diagnosis):
        check_beam_step(WRONG_BEAM_STEPS[diagnosis])


def sample_loop(model, tokens, n_new, temperature=1.0, top_k=None, generator=None,
                stop_token=None, *, flaw=""):  # fmt: skip
    """The sampling loop, or (``flaw``) a reader's loop with one typical mistake."""
    for _ in range(n_new):
        logits = model(tokens)[:, 0 if flaw == "first position" else -1]
        if flaw == "temperature multiplies":
            logits = logits * temperature
        elif flaw != "temperature after softmax":
            logits = logits / temperature
        if top_k is not None:
            kept = top_k + 1 if flaw == "k + 1" else top_k
            values, index = logits.topk(kept, dim=-1)  # keeps exactly k (no ties here)
            fill = 0.0 if flaw == "masked with 0" else -math.inf
            logits = torch.full_like(logits, fill).scatter(-1, index, values)
        probs = logits.softmax(-1)
        if flaw == "temperature after softmax":
            probs = probs / temperature
        if flaw == "argmax":
            token = probs.argmax(-1, keepdim=True)
        else:
            token = torch.multinomial(probs[0], 1, generator=generator)[None]  # 1-d probs
        if flaw == "no generator":
            token = torch.multinomial(probs, 1)
        if flaw == "stops before appending" and token.item() == stop_token:
            break
        tokens = torch.cat([tokens, token], dim=1)
        if flaw != "never stops" and token.item() == stop_token:
            break
    return tokens


def sample_loop_cached(model, tokens, n_new, temperature=1.0, top_k=None, generator=None,
                       stop_token=None):  # fmt: skip
    """The same loop, reading one new token a step through the KV cache."""
    cache = model.new_cache(1)
    logits = model(tokens, cache=cache)[:, -1]
    for _ in range(n_new):
        logits = logits / temperature
        if top_k is not None:
            logits = logits.masked_fill(logits < logits.topk(top_k).values[:, -1:], -math.inf)
        token = torch.multinomial(logits.softmax(-1), 1, generator=generator)
        tokens = torch.cat([tokens, token], dim=1)
        if token.item() == stop_token:
            break
        logits = model(token, cache=cache)[:, -1]
    return tokens


@pytest.mark.usefixtures("one_thread")  # a micro model: threads only cost here
@pytest.mark.parametrize("right", [sample_loop, sample_loop_cached])
def test_sample_loop_check_accepts_right_answers(capsys, right):
    assert check_sample_loop(right) is right
    assert "Correct: your loop draws minigpt's tokens" in capsys.readouterr().out


@pytest.mark.usefixtures("one_thread")
def test_sample_loop_check_with_a_model_and_prompt_of_the_chapter(capsys):
    check_sample_loop(sample_loop, ch07._peaked_model(), torch.tensor([[7, 3]]))
    assert "in 6 seeded runs" in capsys.readouterr().out


WRONG_SAMPLE_LOOPS = {
    "temperature after softmax": "by the temperature after the softmax",
    "temperature multiplies": "multiplied the logits by the temperature",
    "k + 1": "keeps k \\+ 1 tokens",
    "masked with 0": "set the logits outside the top k to 0",
    "first position": "first position's logits",
    "never stops": "went on after the stop token",
    "stops before appending": "stopped before appending the stop token",
    "argmax": "took the argmax",
    "no generator": "pass generator=generator",
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("flaw", WRONG_SAMPLE_LOOPS)
def test_sample_loop_check_names_typical_mistakes(flaw):
    def wrong(model, tokens, n_new, temperature, top_k, generator, stop_token):
        return sample_loop(model, tokens, n_new, temperature, top_k, generator, stop_token,
                           flaw=flaw)  # fmt: skip

    with pytest.raises(AssertionError, match=WRONG_SAMPLE_LOOPS[flaw]):
        check_sample_loop(wrong)


@pytest.mark.usefixtures("one_thread")
def test_sample_loop_check_rejects_what_is_not_a_continuation():
    with pytest.raises(AssertionError, match=r"one row \[1, pos \+ new\]"):
        check_sample_loop(lambda model, tokens, *args: sample_loop(model, tokens, *args)[0])
    with pytest.raises(AssertionError, match="start with the prompt"):
        check_sample_loop(lambda model, tokens, *args: sample_loop(model, tokens, *args).flip(1))
    with pytest.raises(AssertionError, match="differ from minigpt's seeded draws"):
        check_sample_loop(lambda m, t, n, *args: sample_loop(m, t, n + 1, *args))


@pytest.mark.usefixtures("one_thread")
def test_sample_loop_check_says_a_stub_is_not_written(capsys):
    def sample_loop(model, tokens, n_new, temperature=1.0, top_k=None, generator=None,
                    stop_token=None):  # fmt: skip
        raise NotImplementedError  # your code here

    assert check_sample_loop(sample_loop) is check_sample_loop.solution
    assert "Correct: the solution's loop draws" in capsys.readouterr().out

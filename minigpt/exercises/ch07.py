"""Checks for the exercises of chapter 7 (sampling).

Each ``check_*`` runs the reader's function beside :mod:`minigpt.sample` on the same
input, prints a verdict when they agree and raises ``AssertionError`` saying what differs
when they do not.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable

import torch
from torch import Tensor, nn

from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch07 as solutions
from minigpt.sample import Sampler, generate, min_p_filter, top_p_filter


def _cases(seed: int = 0) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log(),  # the worked example of the chapter
        torch.randn(4, 50, generator=gen) * 2,  # a batch of rows, each filtered on its own
        torch.randn(1, 1000, generator=gen) * 0.1,  # nearly flat: many tokens survive
    ]


def _check_filter(fn: Callable, ours: Callable, name: str, values: list[float]) -> None:
    for logits in _cases():
        for value in values:
            got = fn(logits.clone(), value)
            want = ours(logits, value)
            if not isinstance(got, Tensor) or got.shape != logits.shape:
                shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise AssertionError(
                    f"{name}: expected a tensor of shape {tuple(logits.shape)}, got {shape}"
                )
            kept_got, kept_want = torch.isfinite(got), torch.isfinite(want)
            if not torch.equal(kept_got, kept_want):
                row = int((kept_got != kept_want).any(-1).nonzero()[0])
                raise AssertionError(
                    f"{name}({value}): row {row} keeps {int(kept_got[row].sum())} tokens, "
                    f"expected {int(kept_want[row].sum())}. Removed tokens must be -inf, kept "
                    "ones untouched; check how you treat the token that crosses the threshold."
                )
            if not torch.equal(got[kept_got], logits[kept_got]):
                raise AssertionError(f"{name}({value}): kept logits must be left unchanged")
            if (got[~kept_got] != float("-inf")).any():
                raise AssertionError(f"{name}({value}): removed tokens must be -inf (not NaN)")
    print(f"Correct: your {name} keeps exactly the tokens minigpt's does on every test case.")


def check_top_p(fn: Callable[[Tensor, float], Tensor]) -> None:
    """``fn(logits [batch, d_vocab], p) -> logits`` with tokens outside the nucleus at -inf."""
    _check_filter(fn, top_p_filter, "top_p", [0.05, 0.45, 0.6, 0.9, 0.99])


def check_min_p(fn: Callable[[Tensor, float], Tensor]) -> None:
    """``fn(logits [batch, d_vocab], min_p) -> logits`` with unlikely tokens at -inf."""
    _check_filter(fn, min_p_filter, "min_p", [0.01, 0.12, 0.35, 0.9])  # none on a boundary


def _nucleus_cases(seed: int = 0) -> list[tuple[Tensor, float, float]]:
    gen = torch.Generator().manual_seed(seed)
    wide = torch.randn(4, 50, generator=gen) * 2  # a batch of rows, each filtered on its own
    return [
        (torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log(), 1.0, 0.7),  # the chapter's example
        (wide, 0.5, 0.6),  # sharper: the nucleus shrinks
        (wide, 2.0, 0.6),  # flatter: it grows
        (wide, 1.3, 0.93),
    ]


def _nucleus_mistakes(logits: Tensor, t: float, p: float) -> dict[str, Tensor]:
    """What typical mistakes return, each with the diagnosis that names it."""
    scaled = logits / t
    kept = torch.isfinite(top_p_filter(scaled, p))
    probs, order = scaled.softmax(-1).sort(dim=-1, descending=True)
    fewer = probs.cumsum(-1) > p + 1e-6  # also drops the token that crosses p
    fewer[..., 0] = False
    more = (probs.cumsum(-1) - probs).roll(1, -1) >= p  # keeps one token past it
    more[..., :2] = False
    return {
        "filtering before temperature: divide the logits by the temperature first, then "
        "choose the nucleus on the tempered distribution (Hugging Face's order)": (
            (top_p_filter(logits, p) / t).softmax(-1)
        ),
        "not renormalised: after zeroing the tokens outside the nucleus, divide by the "
        "kept mass (or take the softmax of the filtered logits) so the probabilities sum "
        "to 1": scaled.softmax(-1) * kept,
        "off by one at the boundary: the token whose probability makes the running sum "
        "cross p belongs to the nucleus (keep a token when the mass ranked above it is "
        "still below p)": scaled.masked_fill(fewer.scatter(-1, order, fewer), -math.inf).softmax(
            -1
        ),
        "off by one at the boundary: you keep one token past the one that crosses p (drop "
        "a token as soon as the mass ranked above it reaches p)": (
            scaled.masked_fill(more.scatter(-1, order, more), -math.inf).softmax(-1)
        ),
        "temperature multiplies the logits: divide them by it (T < 1 sharpens)": (
            top_p_filter(logits * t, p).softmax(-1)
        ),
    }


@exercise(solutions.nucleus_probs)
def check_nucleus_probs(fn: Callable[[Tensor, float, float], Tensor]) -> None:
    """``fn(logits [batch, d_vocab], temperature, p) -> probs [batch, d_vocab]``.

    The distribution the next token is drawn from: the logits divided by ``temperature``,
    then only the nucleus kept (the fewest most likely tokens whose probabilities reach
    ``p``; the top token always), renormalised to sum to 1. Compared with
    ``softmax(Sampler(temperature=t, top_p=p).process(logits))`` from :mod:`minigpt.sample`
    (tolerance 1e-5).
    """
    for logits, t, p in _nucleus_cases():
        want = Sampler(temperature=t, top_p=p).process(logits, None).softmax(-1)
        got = fn(logits.clone(), t, p)
        where = f"temperature={t}, p={p}, logits {tuple(logits.shape)}"
        if not isinstance(got, Tensor) or got.shape != logits.shape:
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise AssertionError(
                f"expected probabilities of shape {tuple(logits.shape)}, got {shape}"
            )
        got = got.detach().float()
        if not torch.isfinite(got).all() or (got < 0).any():
            raise AssertionError(
                f"({where}) your values include -inf or negatives: return probabilities "
                "(the softmax of the filtered logits), not the filtered logits"
            )
        if torch.allclose(got, want, atol=1e-5):
            continue
        for cause, wrong in _nucleus_mistakes(logits, t, p).items():
            if torch.allclose(got, wrong, atol=1e-5):
                raise AssertionError(f"({where}) likely cause: {cause}")
        row = int((got - want).abs().amax(-1).argmax())
        raise AssertionError(
            f"({where}) row {row}: you keep {int((got[row] > 0).sum())} tokens, minigpt keeps "
            f"{int((want[row] > 0).sum())}; largest difference "
            f"{float((got - want).abs().max()):.3g}"
        )
    print("Correct: temperature, then the nucleus, renormalised: as minigpt.sample.Sampler.")


# -- the sampling loop: the reader's loop against generate's seeded draws, token for token


def _peaked_model() -> nn.Module:
    """A small random GPT whose unembedding is scaled up 20 times, so that its next-token
    distributions are peaked (logits of standard deviation about 2.5, not 0.12): on a
    flat distribution temperature and top-k would hardly change which tokens are drawn."""
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT(GPTConfig(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=32,
                              d_vocab=64)).eval()  # fmt: skip
    with torch.no_grad():
        model.unembed.W_U.mul_(20)
    return model


def _drawn(
    model: nn.Module,
    tokens: Tensor,
    n_new: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator,
    stop_token: int | None,
    flaw: str = "",
) -> Tensor:
    """The sampling loop, right (``flaw=""``) or with one known mistake: what a reader's loop
    gives when it goes wrong in that one way."""
    for _ in range(n_new):
        logits = model(tokens)[:, 0 if flaw == "first position" else -1]
        if flaw == "temperature multiplies":
            logits = logits * temperature
        elif flaw != "temperature after softmax":
            logits = logits / temperature
        if top_k is not None:
            kept = top_k + (flaw == "k + 1")
            kth_best = logits.topk(min(kept, logits.shape[-1]), dim=-1).values[:, -1:]
            fill = 0.0 if flaw == "masked with 0" else -math.inf
            logits = logits.masked_fill(logits < kth_best, fill)
        probs = logits.softmax(dim=-1)
        if flaw == "temperature after softmax":
            probs = probs / temperature
        if flaw == "argmax":
            next_token = probs.argmax(-1, keepdim=True)
        else:
            next_token = torch.multinomial(probs, 1, generator=generator)
        stop = stop_token is not None and int(next_token) == stop_token
        if stop and flaw == "stops before appending":
            break
        tokens = torch.cat([tokens, next_token], dim=1)
        if stop and flaw != "never stops":
            break
    return tokens


SAMPLE_LOOP_MISTAKES = {
    "temperature after softmax": (
        "you divided the probabilities by the temperature after the softmax; the draw "
        "renormalises them, so that changes nothing (your tokens are those of temperature 1): "
        "divide the logits by the temperature, then take the softmax"
    ),
    "temperature multiplies": (
        "you multiplied the logits by the temperature: divide them by it (T < 1 sharpens)"
    ),
    "k + 1": (
        "your top-k keeps k + 1 tokens: keep the k highest logits (those not below the k-th "
        "highest, logits.topk(k).values[:, -1:])"
    ),
    "masked with 0": (
        "you set the logits outside the top k to 0: a logit of 0 still has probability "
        "e^0 / Z > 0, so those tokens can be drawn; set them to -inf (probability exactly 0)"
    ),
    "first position": (
        "you used the first position's logits, model(tokens)[:, 0]: the scores for the token "
        "after the last one are at the last position, model(tokens)[:, -1]"
    ),
    "never stops": (
        "the run went on after the stop token was drawn: end the loop once you have appended it"
    ),
    "stops before appending": (
        "you stopped before appending the stop token: minigpt keeps it, as the last token "
        "of the output (append, then stop)"
    ),
    "argmax": "you took the argmax (greedy): draw with torch.multinomial(probs, 1, generator=...)",
}


def _can_show(flaw: str, top_k: int | None, stop_token: int | None) -> bool:
    """Whether a run with these settings can show this mistake at all."""
    if flaw in ("k + 1", "masked with 0"):
        return top_k is not None
    if flaw in ("never stops", "stops before appending"):
        return stop_token is not None
    return True


# (temperature, top_k, seed, n_new, with a stop token): the runs each model is checked on
SAMPLE_LOOP_RUNS = [(0.7, None, 1, 12, False), (1.5, 5, 2, 12, False), (1.0, 20, 3, 20, True)]


def _stop_token(model: nn.Module, tokens: Tensor, n_new: int, temperature, top_k, seed) -> int:
    """A token that the seeded run draws for the first time at its 6th new token or later
    (else its last token): with it as the stop token, the run ends where it is first drawn,
    the draws before being the same."""
    free = _sampled(model, tokens, n_new, temperature, top_k, seed, None)
    new = free[0, tokens.shape[1] :].tolist()
    later = [t for i, t in enumerate(new) if i >= 5 and t not in new[:i]]
    return later[0] if later else new[-1]


def _generator(model: nn.Module, seed: int) -> torch.Generator:
    return torch.Generator(next(model.parameters()).device).manual_seed(seed)


def _sampled(model, tokens, n_new, temperature, top_k, seed, stop_token) -> Tensor:
    """minigpt's own seeded draws: generate, reading the whole text at each step."""
    return generate(model, tokens, n_new, temperature=temperature, top_k=top_k,
                    generator=_generator(model, seed), stop_tokens=stop_token,
                    use_kv_cache=False)  # fmt: skip


@exercise(solutions.sample_loop)
def check_sample_loop(
    fn: Callable, model: nn.Module | None = None, tokens: Tensor | None = None
) -> None:
    """``fn(model, tokens [1, pos], n_new, temperature, top_k, generator, stop_token)
    -> tokens [1, pos + up to n_new]``, checked token for token against
    :func:`minigpt.sample.generate` with a generator of the same seed.

    Three runs (:data:`SAMPLE_LOOP_RUNS`): temperature 0.7 alone; temperature 1.5 with
    top_k=5; top_k=20 with a stop token that the run draws (first after 5 new tokens where it
    can, :func:`_stop_token`). Each is made on ``model`` with the prompt ``tokens`` (when
    given), then on a small random GPT with peaked distributions. The tokens must be equal,
    with no tolerance: ``torch.multinomial`` (on the CPU) draws one token as the largest of each
    probability divided by its own random number, so probabilities that differ by float
    rounding give another token only at a near-tie. A run
    that differs is compared with the same run made with each mistake of
    :data:`SAMPLE_LOOP_MISTAKES`, to name it, and made a second time, to see whether it
    follows the generator.
    """
    models = [(model, tokens)] if model is not None else []
    models.append((_peaked_model(), torch.tensor([[1, 2, 3, 4, 5]])))
    ends = []
    for net, prompt in models:
        prompt = prompt.to(next(net.parameters()).device)
        for temperature, top_k, seed, n_new, stops in SAMPLE_LOOP_RUNS:
            stop = _stop_token(net, prompt, n_new, temperature, top_k, seed) if stops else None
            args = (n_new, temperature, top_k)
            where = f"temperature={temperature}, top_k={top_k}, stop_token={stop}, seed {seed}"
            with torch.no_grad():
                want = _sampled(net, prompt, *args, seed, stop)
                got = fn(net, prompt.clone(), *args, _generator(net, seed), stop)
            if not isinstance(got, Tensor) or got.ndim != 2 or got.shape[0] != 1:
                shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
                raise AssertionError(
                    f"({where}) return the tokens as one row [1, pos + new]; got {shape}"
                )
            got = got.to(want.device)
            if not torch.equal(got[:, : prompt.shape[1]], prompt):
                raise AssertionError(
                    f"({where}) the output must start with the prompt, then the new tokens"
                )
            if torch.equal(got, want):
                ends.append(want.shape[1] - prompt.shape[1])
                continue
            with torch.no_grad():
                for flaw, hint in SAMPLE_LOOP_MISTAKES.items():
                    if not _can_show(flaw, top_k, stop):
                        continue
                    wrong = _drawn(net, prompt, *args, _generator(net, seed), stop, flaw)
                    if torch.equal(wrong, got) and not torch.equal(wrong, want):
                        raise AssertionError(f"({where}) likely cause: {hint}")
                again = fn(net, prompt.clone(), *args, _generator(net, seed), stop)
            if not torch.equal(again.to(got.device), got):
                raise AssertionError(
                    f"({where}) two calls with generators of the same seed drew different "
                    "tokens: pass generator=generator to torch.multinomial (without it torch "
                    "draws from its global generator)"
                )
            new_got, new_want = got[0, prompt.shape[1] :], want[0, prompt.shape[1] :]
            first = next(
                (i for i, (a, b) in enumerate(zip(new_got.tolist(), new_want.tolist())) if a != b),
                min(len(new_got), len(new_want)),
            )
            raise AssertionError(
                f"({where}) your new tokens {new_got.tolist()} differ from minigpt's seeded "
                f"draws {new_want.tolist()} from new token {first} on"
            )
    rest = (
        f"in {len(ends)} seeded runs ({', '.join(map(str, ends))} new tokens; the runs with a "
        "stop token ended on it)."
    )
    # A page's output shows 79 columns, "the solution's" included when it stood in for yours.
    print("Correct: your loop draws minigpt's tokens, token for token,")
    print(textwrap.fill(rest, width=79))


def _beam_step_cases() -> list[tuple[Tensor, Tensor, str]]:
    """(log_probs [batch, beams, vocab], beam scores [batch, beams], where) to test on."""
    gen = torch.Generator().manual_seed(0)
    log_probs = (torch.randn(2, 3, 20, generator=gen) * 2).log_softmax(-1)
    scores = torch.tensor([[-0.5, -6.0, -7.0], [-1.0, -1.2, -1.5]])  # row 0: one beam leads
    cases = [(log_probs, scores, "random log-probs, 2 prompts x 3 beams, 20 tokens")]
    return cases + _beam_search_steps()


def _beam_search_steps(num_beams: int = 3, n_steps: int = 4):
    """The inputs of every step of minigpt.beam.beam_search on a small random GPT."""
    from minigpt.beam import DEAD, beam_search
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = GPT(GPTConfig(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=16,
                              d_vocab=50)).eval()  # fmt: skip
    prompt = torch.tensor([[1, 2, 3, 4]])
    trace = []
    with torch.no_grad():
        beam_search(model, prompt, num_beams=num_beams, max_new_tokens=n_steps, trace=trace)
    seqs = [[] for _ in range(num_beams)]
    scores = torch.full((1, num_beams), DEAD)
    scores[0, 0] = 0.0  # at the start the beams are copies: only the first may propose
    cases = []
    for t, step in enumerate(trace):
        rows = torch.tensor([[*prompt[0].tolist(), *s] for s in seqs])
        with torch.no_grad():
            log_probs = model(rows)[:, -1].log_softmax(-1)[None]
        cases.append((log_probs, scores, f"step {t} of minigpt's beam_search, {num_beams} beams"))
        cand = [seqs[int(b)] + [int(tok)] for b, tok in zip(step.parent[0], step.token[0])]
        seqs = [cand[int(k)] for k in step.kept[0]]
        scores = step.score[:, step.kept[0]]
    return cases


def _top_candidates(total: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    batch, beams, vocab = total.shape
    score, index = total.reshape(batch, -1).topk(n, dim=-1)
    return score, index // vocab, index % vocab


@exercise(solutions.beam_step)
def check_beam_step(fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]) -> None:
    """``fn(log_probs [batch, num_beams, d_vocab], beam_scores [batch, num_beams])
    -> (score, parent, token)``, each ``[batch, 2 * num_beams]``, best first.

    Each candidate is one beam followed by one token; its score is the beam's running
    log-probability plus the token's log-probability. The best ``2 * num_beams`` are
    chosen over all beams and tokens together. Checked against the candidates that
    :func:`minigpt.beam.beam_search` itself ranked, step by step, on a small random GPT.
    """
    for log_probs, scores, where in _beam_step_cases():
        batch, beams, vocab = log_probs.shape
        n = 2 * beams
        want = _top_candidates(log_probs + scores[..., None], n)
        got = fn(log_probs.clone(), scores.clone())
        if not (isinstance(got, tuple | list) and len(got) == 3):
            raise AssertionError("return a tuple (score, parent, token)")
        for name, value in zip(("score", "parent", "token"), got):
            if not isinstance(value, Tensor) or value.shape != (batch, n):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise AssertionError(f"({where}) {name} must have shape {(batch, n)}, got {shape}")
        score, parent, token = (g.detach() for g in got)
        pairs_got = parent.long() * vocab + token.long()
        pairs_want = want[1] * vocab + want[2]
        if torch.allclose(score.float(), want[0], atol=1e-4) and torch.equal(pairs_got, pairs_want):
            continue
        forgot = _top_candidates(log_probs, n)[0]
        per_beam = (log_probs + scores[..., None]).topk(n // beams, dim=-1).values
        per_beam = per_beam.reshape(batch, -1).sort(dim=-1, descending=True).values
        if torch.allclose(score.float(), forgot, atol=1e-4) and not torch.allclose(forgot, want[0]):
            cause = (
                "the scores are the token log-probs alone: add each beam's running score, "
                "log_probs + beam_scores[..., None], before ranking"
            )
        elif torch.allclose(score.float(), per_beam, atol=1e-4):
            cause = (
                f"you pick {n // beams} candidates per beam; rank all num_beams * d_vocab "
                "candidates together (flatten the beam and token axes, then topk), so a "
                "strong beam may supply them all"
            )
        elif torch.allclose(score.float(), want[0], atol=1e-4):
            cause = (
                "the scores are right but parent/token are not: for an index i into the "
                "flattened [num_beams * d_vocab] candidates, parent = i // d_vocab and "
                "token = i % d_vocab"
            )
        elif torch.allclose(score.float().sort(-1, descending=True).values, want[0], atol=1e-4):
            cause = "the right candidates in the wrong order: return them best first"
        else:
            cause = f"expected scores {want[0][0].tolist()} (first prompt), got {score[0].tolist()}"
        raise AssertionError(f"({where}) {cause}")
    print(
        "Correct: your candidates equal those minigpt.beam.beam_search ranks at every step "
        "(best 2 * num_beams over all beams and tokens)."
    )


class _Spy(nn.Module):
    """Wraps a model and records how many tokens each forward pass was given."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.cfg, self.fed = model, model.cfg, []

    def new_cache(self, batch_size: int):
        return self.model.new_cache(batch_size)

    def forward(self, tokens: Tensor, cache=None, attention_mask=None) -> Tensor:
        self.fed.append((tokens.shape[1], cache is not None))
        return self.model(tokens, cache=cache, attention_mask=attention_mask)


@exercise(solutions.greedy)
def check_greedy_with_cache(fn: Callable[[nn.Module, Tensor, int], Tensor]) -> None:
    """``fn(model, tokens, n) -> tokens + n greedy tokens``, feeding the model one new token
    per step through ``model.new_cache`` after the prompt."""
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT(GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=128, n_layers=2, n_ctx=64,
                              d_vocab=100)).eval()  # fmt: skip
    tokens = torch.tensor([[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]])
    spy = _Spy(model)
    with torch.no_grad():
        got = fn(spy, tokens, 12)
        want = generate(model, tokens, 12, temperature=0)
    if not isinstance(got, Tensor) or got.shape != want.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"expected prompt + 12 tokens, shape {tuple(want.shape)}; got {shape}")
    if not torch.equal(got, want):
        step = int((got != want).any(0).nonzero()[0]) - tokens.shape[1]
        raise AssertionError(f"your tokens differ from greedy generation from new token {step} on")
    later = spy.fed[1:]
    if not spy.fed or not spy.fed[0][1] or any(n != 1 or not cached for n, cached in later):
        raise AssertionError(
            f"the tokens are right, but the model was fed (tokens, cache used) = {spy.fed[:4]}...; "
            "pass cache=model.new_cache(batch) and, after the prompt, only the newest token"
        )
    print("Correct: greedy tokens match, and each step fed the model one token with the cache.")

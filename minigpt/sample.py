"""From next-token logits to text: the sampling transforms and the generation loop.

A language model gives, at every position, one score (logit) per vocabulary entry for
the token that comes next. Generating text is a loop: run the model, turn the last
position's logits into one token, append it, repeat. Everything that makes samplers
differ happens in the middle step, and each knob is one small pure function here:

* penalties for tokens already in the text (:func:`apply_repetition_penalty`,
  :func:`apply_frequency_presence_penalty`),
* :func:`apply_temperature` (sharpen or flatten the distribution),
* filters that keep only the plausible tokens (:func:`top_k_filter`,
  :func:`top_p_filter`, :func:`min_p_filter`; a removed token's logit becomes ``-inf``),
* the choice itself: :func:`greedy` (``temperature=0``) or :func:`sample_token`.

They run in that order, the order Hugging Face ``generate`` uses. :func:`generate` and
:func:`stream` run the loop with the model's key/value cache, carrying one :class:`Sampler`
(every knob, checked once); beam search lives in :mod:`minigpt.beam`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from minigpt.decoding import Decoder, check_count, check_prompt, to_model_device, token_set

# ---------------------------------------------------------------------------------------
# The transforms: logits [batch, d_vocab] in, logits (or token ids) out.
# ---------------------------------------------------------------------------------------


def greedy(logits: Float[Tensor, "batch d_vocab"]) -> Int[Tensor, " batch"]:
    """The most likely token of each row (the first one on a tie, as ``argmax`` does)."""
    return logits.argmax(dim=-1)


def apply_temperature(
    logits: Float[Tensor, "batch d_vocab"], temperature: float
) -> Float[Tensor, "batch d_vocab"]:
    """Divide the logits by ``temperature`` > 0: below 1 sharpens, above 1 flattens.

    ``softmax(logits / T)``: as T -> 0 all the mass goes to the argmax (so ``generate``
    treats ``temperature=0`` as greedy); as T -> infinity the distribution turns uniform.
    """
    if (
        not (isinstance(temperature, (int, float)) and math.isfinite(temperature))
        or temperature <= 0
    ):
        raise ValueError(
            f"temperature={temperature!r} must be a finite number > 0 (use 0 for greedy)"
        )
    return logits / temperature


def top_k_filter(logits: Float[Tensor, "batch d_vocab"], k: int) -> Float[Tensor, "batch d_vocab"]:
    """Keep the ``k`` highest logits of each row (and any tied with the k-th); the rest -> -inf."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"top_k={k!r} must be an integer >= 1")
    if k >= logits.shape[-1]:
        return logits
    kth_best = logits.topk(k, dim=-1).values[..., -1:]  # [batch, 1]
    return logits.masked_fill(logits < kth_best, -math.inf)


def top_p_filter(
    logits: Float[Tensor, "batch d_vocab"], p: float
) -> Float[Tensor, "batch d_vocab"]:
    """Nucleus filtering: keep the fewest most-likely tokens whose probabilities sum to >= ``p``.

    Example: probabilities [0.5, 0.3, 0.15, 0.05] with p=0.7 keep the first two (0.5 < 0.7,
    0.5 + 0.3 >= 0.7); with p=0.5 only the first. The most likely token is always kept.
    """
    if not (isinstance(p, (int, float)) and 0 < p <= 1):
        raise ValueError(f"top_p={p!r} must be in (0, 1]")
    if p == 1:
        return logits  # keep everything (a cumulative sum can round to just under 1)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above
    drop_sorted = mass_before >= p  # the set already reached p without this token
    drop_sorted[..., 0] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def min_p_filter(
    logits: Float[Tensor, "batch d_vocab"], min_p: float
) -> Float[Tensor, "batch d_vocab"]:
    """Keep tokens whose probability is at least ``min_p`` times the top token's probability.

    Unlike top-p, the cut scales with the model's confidence: a confident step keeps few
    tokens, a flat one keeps many. ``min_p=0`` keeps everything.
    """
    if not (isinstance(min_p, (int, float)) and 0 <= min_p <= 1):
        raise ValueError(f"min_p={min_p!r} must be in [0, 1]")
    if min_p == 0:
        return logits
    log_probs = logits.log_softmax(dim=-1)
    threshold = log_probs.max(dim=-1, keepdim=True).values + math.log(min_p)
    return logits.masked_fill(log_probs < threshold, -math.inf)


def token_counts(
    tokens: Int[Tensor, "batch pos"],
    d_vocab: int,
    attention_mask: Tensor | None = None,  # [batch, pos] of 0/1, checked by check_prompt
) -> Int[Tensor, "batch d_vocab"]:
    """How often each vocabulary entry occurs in each row (padding, where mask is 0, not counted)."""
    weights = torch.ones_like(tokens) if attention_mask is None else attention_mask.long()
    counts = torch.zeros(tokens.shape[0], d_vocab, dtype=torch.long, device=tokens.device)
    return counts.scatter_add_(1, tokens, weights)


def apply_repetition_penalty(
    logits: Float[Tensor, "batch d_vocab"], counts: Int[Tensor, "batch d_vocab"], penalty: float
) -> Float[Tensor, "batch d_vocab"]:
    """Make tokens that already occur less likely (CTRL's rule, Hugging Face's too).

    A seen token's logit is divided by ``penalty`` if positive and multiplied by it if
    negative, so ``penalty > 1`` always lowers it; ``penalty=1`` changes nothing.
    """
    if not (isinstance(penalty, (int, float)) and math.isfinite(penalty)) or penalty <= 0:
        raise ValueError(f"repetition_penalty={penalty!r} must be a finite number > 0")
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(counts > 0, penalised, logits)


def apply_frequency_presence_penalty(
    logits: Float[Tensor, "batch d_vocab"],
    counts: Int[Tensor, "batch d_vocab"],
    frequency: float = 0.0,
    presence: float = 0.0,
) -> Float[Tensor, "batch d_vocab"]:
    """Subtract ``frequency * count + presence * [count > 0]`` from each logit (OpenAI's rule).

    The frequency penalty grows with every repeat; the presence penalty is paid once.
    """
    for name, value in (("frequency_penalty", frequency), ("presence_penalty", presence)):
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"{name}={value!r} must be a finite number")
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def sample_token(
    logits: Float[Tensor, "batch d_vocab"], generator: torch.Generator | None = None
) -> Int[Tensor, " batch"]:
    """Draw one token per row from ``softmax(logits)``; ``-inf`` entries are never drawn.

    The draw happens on the generator's device, so a seeded CPU generator gives the same
    tokens whether the model runs on the CPU or a GPU.
    """
    probs = logits.softmax(dim=-1)
    if generator is not None and generator.device != probs.device:
        draws = torch.multinomial(probs.to(generator.device), num_samples=1, generator=generator)
        return draws.squeeze(-1).to(probs.device)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@dataclass(frozen=True)
class Sampler:
    """Every knob of the sampler, checked once, applied in Hugging Face's order.

    ``temperature=0`` means greedy (the filters then change nothing, penalties still apply).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def __post_init__(self) -> None:
        t = self.temperature
        if not (isinstance(t, (int, float)) and math.isfinite(t)) or t < 0:
            raise ValueError(f"temperature={t!r} must be a finite number >= 0 (0 is greedy)")
        probe, counts = torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.long)
        apply_repetition_penalty(probe, counts, self.repetition_penalty)  # each raises on a bad
        apply_frequency_presence_penalty(
            probe, counts, self.frequency_penalty, self.presence_penalty
        )
        self.process(probe, None)  # value, so a mistake fails here rather than mid-generation

    @property
    def needs_counts(self) -> bool:
        return bool(self.repetition_penalty != 1 or self.frequency_penalty or self.presence_penalty)

    def process(
        self, logits: Float[Tensor, "batch d_vocab"], counts: Int[Tensor, "batch d_vocab"] | None
    ) -> Float[Tensor, "batch d_vocab"]:
        """Penalties, temperature and filters: the logits the next token is drawn from."""
        logits = logits.float()
        if counts is not None and self.repetition_penalty != 1:
            logits = apply_repetition_penalty(logits, counts, self.repetition_penalty)
        if counts is not None and (self.frequency_penalty or self.presence_penalty):
            logits = apply_frequency_presence_penalty(
                logits, counts, self.frequency_penalty, self.presence_penalty
            )
        if self.temperature > 0:
            logits = apply_temperature(logits, self.temperature)
        if self.top_k is not None:
            logits = top_k_filter(logits, self.top_k)
        if self.top_p is not None:
            logits = top_p_filter(logits, self.top_p)
        if self.min_p is not None:
            logits = min_p_filter(logits, self.min_p)
        return logits

    def choose(
        self, logits: Float[Tensor, "batch d_vocab"], generator: torch.Generator | None = None
    ) -> Int[Tensor, " batch"]:
        """The next token of each row, from already processed logits."""
        return greedy(logits) if self.temperature == 0 else sample_token(logits, generator)


# ---------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------


SAMPLER_KNOBS = tuple(Sampler.__dataclass_fields__)  # temperature, top_k, ... presence_penalty


def stream(
    model: torch.nn.Module,
    tokens: Tensor,  # Int[Tensor, "batch pos"], checked by check_prompt with a clear message
    max_new_tokens: int,
    sampler: Sampler | None = None,
    *,
    stop_tokens: int | Sequence[int] | None = None,
    stop_strings: Sequence[str] | None = None,
    decode: Callable[[list[int]], str] | None = None,
    attention_mask: Tensor | None = None,  # [batch, pos] of 0/1, checked by check_prompt
    pad_token_id: int | None = None,
    use_kv_cache: bool = True,
    context_overflow: str = "slide",
    generator: torch.Generator | None = None,
) -> Iterator[Int[Tensor, " batch"]]:
    """Like :func:`generate`, but yield each step's new tokens (one per row) as they come.

    ``sampler`` holds every knob of the choice of token (default: ``Sampler()``, plain
    sampling at temperature 1); the other arguments are those of :func:`generate`. Rows
    that have stopped yield ``pad_token_id``; the stream ends when every row has stopped
    or after ``max_new_tokens`` steps.
    """
    sampler = Sampler() if sampler is None else sampler
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a minigpt.sample.Sampler, got {type(sampler).__name__}")
    check_prompt(model, tokens, attention_mask)
    tokens, attention_mask = to_model_device(model, tokens, attention_mask)
    check_count("max_new_tokens", max_new_tokens, low=0)
    stops = token_set("stop_tokens", stop_tokens, model.cfg.d_vocab, tokens.device)
    if stop_strings and decode is None:
        raise ValueError("stop_strings needs decode= (a function from token ids to text)")
    if pad_token_id is None:
        pad_token_id = int(stops[0]) if len(stops) else 0
    decoder = Decoder(model, tokens, attention_mask, use_kv_cache, context_overflow)
    counts = (
        token_counts(tokens, model.cfg.d_vocab, attention_mask) if sampler.needs_counts else None
    )
    running = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    new_tokens: list[list[int]] = [[] for _ in range(tokens.shape[0])]
    for _ in range(max_new_tokens):
        with torch.no_grad():  # not around the yield: the caller's grad mode stays its own
            logits = decoder.next_logits()
            if logits is None:  # context full and context_overflow="stop"
                return
            next_tokens = sampler.choose(sampler.process(logits, counts), generator)
            next_tokens = torch.where(
                running, next_tokens, torch.full_like(next_tokens, pad_token_id)
            )
            if counts is not None:
                counts.scatter_add_(1, next_tokens[:, None], running[:, None].long())
            decoder.append(next_tokens)
        hit = torch.isin(next_tokens, stops) if len(stops) else torch.zeros_like(running)
        if stop_strings:
            for row in running.nonzero().flatten().tolist():
                new_tokens[row].append(int(next_tokens[row]))
                text = decode(new_tokens[row])
                hit[row] |= any(s in text for s in stop_strings)
        running &= ~hit
        yield next_tokens
        if not running.any():
            return


def generate(
    model: torch.nn.Module,
    tokens: Tensor,  # Int[Tensor, "batch pos"], checked by check_prompt with a clear message
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_kv_cache: bool = True,
    generator: torch.Generator | None = None,
    **options,
) -> Int[Tensor, "batch new_pos"]:
    """Extend each prompt by up to ``max_new_tokens`` tokens; returns prompt + new tokens.

    Args:
        model: a :class:`minigpt.model.GPT` (anything with its call/cache interface).
        tokens: prompt ids ``[batch, pos]``, at least one token each; for prompts of
            different lengths, pad on the left and pass ``attention_mask`` (1 = real token).
        temperature: 0 is greedy; otherwise logits are divided by it before sampling.
        top_k, top_p: keep the k most likely tokens / the smallest nucleus of mass p.
        use_kv_cache: reuse keys and values of earlier positions (same tokens, faster).
        generator: a seeded ``torch.Generator`` makes sampling reproducible.
        **options: the other knobs of :class:`Sampler` (``min_p``, ``repetition_penalty``,
            ``frequency_penalty``, ``presence_penalty``), which build the sampler with the
            three above; and the arguments of :func:`stream`: ``stop_tokens`` (ids that end
            a row, kept in the output), ``stop_strings`` with ``decode`` (a row ends once its
            new text contains one); ``pad_token_id`` (fills rows that ended early; default
            the first stop token, else 0); ``attention_mask``; ``context_overflow``: what
            happens when the text outgrows the model's ``n_ctx``: ``"slide"`` (default;
            each further step reads only the last ``n_ctx`` tokens, positions counted from
            the window's start, recomputed without the cache) or ``"stop"`` (the text never
            grows past ``n_ctx``). A longer prompt is an error.

    Every row is generated as if alone: left padding never changes a row's tokens.
    """
    knobs = {k: options.pop(k) for k in SAMPLER_KNOBS if k in options}
    sampler = Sampler(temperature=temperature, top_k=top_k, top_p=top_p, **knobs)
    steps = stream(model, tokens, max_new_tokens, sampler, use_kv_cache=use_kv_cache,
                   generator=generator, **options)  # fmt: skip
    columns = [step[:, None] for step in steps]  # on the model's device
    prompt = tokens.to(columns[0].device) if columns else tokens
    return torch.cat([prompt, *columns], dim=1)


__all__ = [
    "Sampler", "apply_frequency_presence_penalty", "apply_repetition_penalty", "apply_temperature",
    "generate", "greedy", "min_p_filter", "sample_token", "stream", "token_counts",
    "top_k_filter", "top_p_filter",
]  # fmt: skip

"""Beam search: keep the ``num_beams`` most likely continuations instead of one.

Greedy decoding commits to the best token at every step; a sequence whose first token is
second-best but whose later tokens are very likely is lost. Beam search keeps
``num_beams`` partial sequences ("beams"). At each step every beam proposes every token;
of the ``num_beams * d_vocab`` candidates, scored by total log-probability, the best
``num_beams`` that did not just end become the next beams. A candidate that ends (an end
token, or the length limit) joins the finished list with score
``log_prob / new_length ** length_penalty``; ``length_penalty > 0`` favours longer endings.

The bookkeeping follows Hugging Face's ``generate(num_beams=...)`` step for step (two
candidates per beam for each end token, its early-stopping rule), so the two agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from minigpt.decoding import Decoder, check_count, check_prompt, to_model_device, token_set

DEAD = -1.0e9  # the score of a beam that must never be chosen


@dataclass(frozen=True)
class BeamStep:
    """One step of beam search, for drawing the search tree (``[batch, n]`` tensors).

    ``candidates``: the ``n = 2 * num_beams`` best continuations considered (parent beam,
    token, total log-prob, whether they ended there); ``kept``: which candidates became
    the next beams, in the new beams' order.
    """

    parent: Int[Tensor, "batch n"]
    token: Int[Tensor, "batch n"]
    score: Float[Tensor, "batch n"]
    ended: Bool[Tensor, "batch n"]
    kept: Int[Tensor, "batch num_beams"]


# beam_search runs past 80 lines with its signature and docstring (34 of them); the body is one
# loop over steps whose parts share six tensors, and it reads best whole, step by step.
def beam_search(
    model: torch.nn.Module,
    tokens: Tensor,  # Int[Tensor, "batch pos"], checked by check_prompt with a clear message
    num_beams: int,
    max_new_tokens: int,
    *,
    length_penalty: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    early_stopping: bool | str = False,
    num_return_sequences: int = 1,
    pad_token_id: int | None = None,
    attention_mask: Tensor | None = None,  # [batch, pos] of 0/1, checked by check_prompt
    use_kv_cache: bool = True,
    trace: list[BeamStep] | None = None,
    return_scores: bool = False,
) -> Int[Tensor, "out_batch out_pos"] | tuple[Int[Tensor, "out_batch out_pos"], Tensor]:
    """The ``num_return_sequences`` best-scoring continuations of each prompt.

    Args:
        num_beams: beams kept per prompt (1 is greedy decoding).
        max_new_tokens: the most tokens added; fewer if the model's ``n_ctx`` is reached.
        length_penalty: finished scores are ``log_prob / length ** length_penalty``.
        eos_token_id: token(s) that end a beam (kept in the output).
        early_stopping: ``False`` (Hugging Face's default heuristic: stop once no running
            beam can beat the worst finished one at its current length), ``True`` (stop as
            soon as ``num_beams`` beams have finished) or ``"never"``.
        pad_token_id: fills sequences that ended early (default: the first end token, else 0).
        attention_mask: for left-padded prompts, as in :func:`minigpt.sample.generate`.
        trace: a list to which one :class:`BeamStep` per step is appended.
        return_scores: also return each sequence's final (length-penalised) score.

    Returns ``[batch * num_return_sequences, pos + new]`` token ids, rows grouped by prompt.
    """
    check_prompt(model, tokens, attention_mask)
    tokens, attention_mask = to_model_device(model, tokens, attention_mask)
    _check_knobs(num_beams, max_new_tokens, num_return_sequences, length_penalty, early_stopping)
    eos = token_set("eos_token_id", eos_token_id, model.cfg.d_vocab, tokens.device)
    if pad_token_id is None:
        pad_token_id = int(eos[0]) if len(eos) else 0

    batch, prompt_len = tokens.shape
    steps = min(max_new_tokens, model.cfg.n_ctx - prompt_len)
    if steps < 1:
        raise ValueError(f"the prompt ({prompt_len} tokens) already fills n_ctx={model.cfg.n_ctx}")
    n_cand = max(2, 1 + len(eos)) * num_beams  # enough that num_beams survive if some end
    dev = tokens.device
    flat = tokens.repeat_interleave(num_beams, dim=0)  # [batch * num_beams, pos]
    mask = None if attention_mask is None else attention_mask.repeat_interleave(num_beams, dim=0)
    decoder = Decoder(model, flat, mask, use_kv_cache, context_overflow="stop")

    running = torch.zeros(batch, num_beams, 0, dtype=torch.long, device=dev)  # new tokens only
    running_score = torch.full((batch, num_beams), DEAD, device=dev)
    running_score[:, 0] = 0.0  # all beams start identical: let only the first propose
    done = _Finished.empty(batch, num_beams, steps, pad_token_id, dev)
    improvable = torch.ones(batch, dtype=torch.bool, device=dev)  # can any prompt still improve?
    top_beams = torch.arange(n_cand, device=dev) < num_beams
    offsets = torch.arange(batch, device=dev)[:, None] * num_beams

    with torch.no_grad():
        for t in range(steps):
            log_probs = decoder.next_logits().float().log_softmax(dim=-1)  # [batch * beams, vocab]
            d_vocab = log_probs.shape[-1]
            total = log_probs.view(batch, num_beams, d_vocab) + running_score[..., None]
            cand_score, cand_index = total.view(batch, -1).topk(n_cand, dim=-1)
            parent, token = cand_index // d_vocab, cand_index % d_vocab
            cand_seq = torch.cat([_gather(running, parent), token[..., None]], dim=-1)
            ended = torch.isin(token, eos) | (t + 1 == steps)

            # The next beams: the best candidates that did not end.
            alive_score = cand_score + DEAD * ended.float()
            kept = alive_score.topk(num_beams, dim=-1).indices
            running, running_score = _gather(cand_seq, kept), _gather(alive_score, kept)
            if trace is not None:
                trace.append(BeamStep(parent, token, cand_score, ended, kept))

            # The finished list: merge in the top num_beams candidates that ended here.
            new_len = t + 1
            new_score = cand_score / new_len**length_penalty
            accept = ended & top_beams & improvable[:, None]
            if early_stopping is True:
                accept &= ~done.flag.all(dim=-1, keepdim=True)
            done.merge(cand_seq, torch.where(accept, new_score, new_score + DEAD), accept)

            # Carry the cache over to the surviving beams, then add their new tokens.
            decoder.select((_gather(parent, kept) + offsets).flatten())
            decoder.append(running[..., -1].flatten())

            hypothetical = steps if (early_stopping == "never" and length_penalty > 0) else new_len
            best_running = running_score[:, 0] / hypothetical**length_penalty
            worst_done = torch.where(done.flag.all(dim=-1), done.score.min(dim=-1).values, DEAD)
            improvable &= best_running > worst_done
            if early_stopping is True and done.flag.all():
                break
            if not improvable.any() or ended.all():
                break

    n_ret = num_return_sequences
    out_len = int(done.length[:, :n_ret].max())
    new = done.seq[:, :n_ret, :out_len].reshape(batch * n_ret, out_len)
    result = torch.cat([tokens.repeat_interleave(n_ret, dim=0), new], dim=1)
    return (result, done.score[:, :n_ret].flatten()) if return_scores else result


def _check_knobs(num_beams, max_new_tokens, num_return_sequences, length_penalty, early_stopping):
    """ValueError naming the first of :func:`beam_search`'s settings out of its range."""
    check_count("num_beams", num_beams, low=1)
    check_count("max_new_tokens", max_new_tokens, low=1)
    if not isinstance(num_return_sequences, int) or not 1 <= num_return_sequences <= num_beams:
        raise ValueError(
            f"num_return_sequences={num_return_sequences!r} must be in [1, {num_beams}]"
        )
    if not (isinstance(length_penalty, (int, float)) and math.isfinite(length_penalty)):
        raise ValueError(f"length_penalty={length_penalty!r} must be a finite number")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping={early_stopping!r} must be True, False or 'never'")


@dataclass
class _Finished:
    """The ``num_beams`` best finished sequences of each prompt so far, padded to ``steps``."""

    seq: Tensor  # [batch, beams, steps] new tokens, padded
    score: Tensor  # [batch, beams] length-penalised scores (DEAD: an empty slot)
    length: Tensor  # [batch, beams] new tokens in each
    flag: Tensor  # [batch, beams] whether the slot holds a finished sequence
    pad: int

    @classmethod
    def empty(cls, batch: int, num_beams: int, steps: int, pad: int, dev) -> _Finished:
        return cls(
            seq=torch.full((batch, num_beams, steps), pad, dtype=torch.long, device=dev),
            score=torch.full((batch, num_beams), DEAD, device=dev),
            length=torch.zeros(batch, num_beams, dtype=torch.long, device=dev),
            flag=torch.zeros(batch, num_beams, dtype=torch.bool, device=dev),
            pad=pad,
        )

    def merge(self, cand_seq: Tensor, cand_score: Tensor, accept: Tensor) -> None:
        """Keep the best ``num_beams`` of the finished ones and the candidates ``accept`` lets
        in (``cand_score`` is already DEAD where it does not)."""
        batch, n_cand, new_len = cand_seq.shape
        padded = torch.full((batch, n_cand, self.seq.shape[-1]), self.pad, dtype=torch.long,
                            device=cand_seq.device)  # fmt: skip
        padded[..., :new_len] = cand_seq
        merged = torch.cat([self.score, cand_score], dim=1)
        best = merged.topk(self.score.shape[1], dim=-1).indices
        lengths = torch.full_like(accept, new_len, dtype=torch.long)
        self.seq = _gather(torch.cat([self.seq, padded], dim=1), best)
        self.score = _gather(merged, best)
        self.length = _gather(torch.cat([self.length, lengths], dim=1), best)
        self.flag = _gather(torch.cat([self.flag, accept], dim=1), best)


def _gather(values: Tensor, index: Int[Tensor, "batch k"]) -> Tensor:
    """``values[b, index[b, j], ...]`` for every prompt ``b`` and pick ``j``."""
    expanded = index.view(*index.shape, *([1] * (values.ndim - 2))).expand(
        *index.shape, *values.shape[2:]
    )
    return values.gather(1, expanded)

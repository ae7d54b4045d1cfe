"""The solutions of chapter 07's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell
shows its source.
"""

import torch


def nucleus_probs(logits, temperature, p):
    """logits[batch, d_vocab] -> probs[batch, d_vocab]: tempered, cut to the
    nucleus of mass p, renormalised."""
    probs = (logits / temperature).softmax(-1)
    ranked, order = probs.sort(dim=-1, descending=True)
    above = ranked.cumsum(-1) - ranked  # the mass ranked above each token
    keep_ranked = above < p  # the top token has 0 above it: always kept
    keep = keep_ranked.scatter(-1, order, keep_ranked)  # vocabulary order
    kept = probs * keep
    return kept / kept.sum(-1, keepdim=True)


def sample_loop(
    model,
    tokens,
    n_new,
    temperature=1.0,
    top_k=None,
    generator=None,
    stop_token=None,
):
    """tokens[1, pos] -> tokens[1, pos + up to n_new]: drawn with temperature
    and top-k; the run ends after stop_token, once it is drawn."""
    for _ in range(n_new):
        logits = model(tokens)[:, -1]  # [1, d_vocab]: the last position
        logits = logits / temperature  # before the softmax
        if top_k is not None:
            kth_best = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth_best, float("-inf"))
        probs = logits.softmax(dim=-1)
        next_token = torch.multinomial(probs, 1, generator=generator)
        tokens = torch.cat([tokens, next_token], dim=1)  # [1, pos + 1]
        if next_token.item() == stop_token:
            break  # the stop token stays in the text
    return tokens


def beam_step(log_probs, beam_scores):
    """log_probs[batch, num_beams, d_vocab], beam_scores[batch, num_beams] ->
    (score, parent, token), each [batch, 2 * num_beams], best first."""
    batch, num_beams, d_vocab = log_probs.shape
    total = log_probs + beam_scores[..., None]  # every beam, every token
    score, index = total.reshape(batch, -1).topk(2 * num_beams, dim=-1)
    return score, index // d_vocab, index % d_vocab  # parent beam, token


def greedy(model, tokens, n):
    """tokens[batch, pos] -> tokens[batch, pos + n], greedy, KV cache."""
    cache = model.new_cache(tokens.shape[0])
    logits = model(tokens, cache=cache)  # the whole prompt, once
    for _ in range(n):
        next_token = logits[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_token], dim=1)
        # one new token; its keys join the cache
        logits = model(next_token, cache=cache)
    return tokens

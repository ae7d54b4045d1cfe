"""The solutions of chapter 03's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell shows
its source.
"""

import math

import einops
import torch


def attn_scores(q, k):
    dots = einops.einsum(
        q,
        k,
        "batch query_pos n_heads d_head, batch key_pos n_heads d_head"
        " -> batch n_heads query_pos key_pos",
    )
    return dots / math.sqrt(q.shape[-1])


def causal_mask(scores):
    n_q, n_k = scores.shape[-2:]
    future = torch.ones(n_q, n_k, dtype=torch.bool, device=scores.device)
    future = future.triu(diagonal=1)  # True where key_pos > query_pos
    return scores.masked_fill(future, torch.finfo(scores.dtype).min)


def softmax_pattern(masked):
    return masked.softmax(dim=-1)  # the last axis: keys


def weighted_values(pattern, v):
    return einops.einsum(
        pattern,
        v,
        "batch n_heads query_pos key_pos, batch key_pos n_heads d_head"
        " -> batch query_pos n_heads d_head",
    )


def qkv(x, W_Q, b_Q, W_K, b_K, W_V, b_V):
    """x[batch, pos, d_model], W[n_heads, d_model, d_head], b[n_heads, d_head]
    -> q, k, v, each [batch, pos, n_heads, d_head]: x @ W + b, every head."""
    project = (
        "batch pos d_model, n_heads d_model d_head -> batch pos n_heads d_head"
    )
    q = einops.einsum(x, W_Q, project) + b_Q  # b[n_heads, d_head] broadcasts
    k = einops.einsum(x, W_K, project) + b_K
    v = einops.einsum(x, W_V, project) + b_V
    return q, k, v


def attn_out(z, W_O, b_O):
    """z[batch, pos, n_heads, d_head], W_O[n_heads, d_head, d_model],
    b_O[d_model] -> [batch, pos, d_model]: every head through W_O, summed,
    plus b_O."""
    # n_heads and d_head are both summed over: the heads' outputs add up
    write = (
        "batch pos n_heads d_head, n_heads d_head d_model -> batch pos d_model"
    )
    return einops.einsum(z, W_O, write) + b_O  # one bias for the whole layer


def cached_step(x_new, k_past, v_past, params, layer):
    """x_new[batch, 1, d_model], the new position's input, and the cache of
    the positions before it, k_past and v_past[batch, past, n_heads, d_head]
    -> the new position's output [batch, 1, d_model] and the cache with its
    key and value appended, k and v[batch, past + 1, n_heads, d_head]."""
    p = f"blocks.{layer}.attn."
    names = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")
    q, k_new, v_new = qkv(x_new, *(params[p + name] for name in names))
    # append first: the new position attends to itself too
    k = torch.cat([k_past, k_new], dim=1)
    v = torch.cat([v_past, v_new], dim=1)
    # the one query is the last position: every key is in its past, no mask
    pattern = softmax_pattern(attn_scores(q, k))
    z = weighted_values(pattern, v)
    return attn_out(z, params[p + "W_O"], params[p + "b_O"]), k, v


def attn_layer(x, params, layer, steps):
    """x[batch, pos, d_model] -> [batch, pos, d_model]: layer `layer`'s
    attention, from your steps: steps.qkv, steps.attn_scores, ..."""
    p = f"blocks.{layer}.attn."
    names = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V")
    q, k, v = steps.qkv(x, *(params[p + name] for name in names))
    scores = steps.causal_mask(steps.attn_scores(q, k))
    z = steps.weighted_values(steps.softmax_pattern(scores), v)
    return steps.attn_out(z, params[p + "W_O"], params[p + "b_O"])

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

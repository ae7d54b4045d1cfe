"""The solutions of chapter 04's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell shows
its source.
"""

import math

import torch


def gelu(x):
    """x[...] -> x[...]: GPT-2's tanh approximation of GELU, elementwise."""
    inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
    return 0.5 * x * (1 + torch.tanh(inner))


def mlp_forward(x, W_in, b_in, W_out, b_out):
    """x[batch, pos, d_model] -> [batch, pos, d_model]:
    gelu(x @ W_in + b_in) @ W_out + b_out."""
    # @ contracts the last axis (d_model) and broadcasts over batch and pos
    pre = x @ W_in + b_in  # [batch, pos, d_mlp]
    return gelu(pre) @ W_out + b_out

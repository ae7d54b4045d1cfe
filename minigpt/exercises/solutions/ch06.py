"""The solutions of chapter 06's exercises.

Each is written once, here: the chapter's check falls back on it while the reader's
function is still a stub, and the chapter's folded solution cell shows its source.
"""

import math

import torch.nn.functional as F


def next_token_loss(logits, tokens):
    """logits[batch, pos, d_vocab] on tokens[batch, pos] -> scalar: the mean
    cross-entropy of logits[:, p] against tokens[:, p + 1]."""
    inputs = logits[:, :-1].flatten(0, 1)  # [batch * (pos - 1), d_vocab]
    targets = tokens[:, 1:].flatten()  # [batch * (pos - 1)]
    return F.cross_entropy(inputs, targets)  # log_softmax, pick, mean


def schedule(step, max_steps, warmup_steps, lr, min_lr):
    """Learning rate of optimizer step `step` (from 0): linear warmup to lr,
    then half a cosine from lr down to min_lr at max_steps."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)  # 0 -> 1
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))

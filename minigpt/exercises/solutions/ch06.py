"""The solutions of chapter 06's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell shows
its source.
"""

import math

import torch
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


def train_step(model, optimizer, tokens, scheduler, max_norm):
    """tokens[batch, n_ctx + 1] -> the loss (a float), after one optimizer
    step: forward, loss, backward, clip, step, schedule, zero the gradients."""
    logits = model(tokens[:, :-1])  # the last token is only a target
    targets = tokens[:, 1:]  # logits[:, p] predict tokens[:, p + 1]
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()  # adds d loss / d p to every p.grad
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()  # the update, from the clipped gradients
    scheduler.step()  # the learning rate of the next step
    optimizer.zero_grad()  # or the next backward adds to these gradients
    return loss.item()


def make_optimizer(model, lr, weight_decay, betas):
    """AdamW with two groups: the matrices (embeddings included) decay; the
    biases (b_Q[n_heads, d_head] too) and the LayerNorm gains do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_bias = name.rsplit(".", 1)[-1].startswith("b_")
        if param.ndim >= 2 and not is_bias:
            decay.append(param)
        else:
            no_decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)

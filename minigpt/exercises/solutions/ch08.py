"""The solutions of chapter 08's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell shows
its source.
"""

import torch


def induction_score(pattern):
    """pattern[batch, n_heads, 2 seq, 2 seq] -> [n_heads]."""
    seq = pattern.shape[-1] // 2
    queries = torch.arange(seq, 2 * seq, device=pattern.device)
    keys = queries - seq + 1  # the token after the previous occurrence
    return pattern[:, :, queries, keys].mean(dim=(0, 2))


def ov_top_tokens(W_E, W_V, W_O, W_U, k):
    """-> [d_vocab, k]: the k outputs each source token raises most."""
    circuit = W_E @ (W_V @ W_O) @ W_U  # W_V @ W_O first: [d_model, d_model]
    return circuit.topk(k, dim=-1).indices


def composition_score(W_A, W_B):
    """||W_A W_B||_F / (||W_A||_F ||W_B||_F), a float."""
    norm = torch.linalg.matrix_norm  # Frobenius by default
    return float(norm(W_A @ W_B) / (norm(W_A) * norm(W_B)))


def first_token_score(pattern):
    """pattern[batch, n_heads, q, k] -> [n_heads]."""
    return pattern[:, :, 1:, 0].mean(dim=(0, 2))  # queries 1.. to key 0


def ablate_head(z, head):
    """z[batch, pos, n_heads, d_head] -> z with one head's output zeroed."""
    z = z.clone()  # leave the activation the hook was given untouched
    z[:, :, head] = 0.0
    return z


def previous_token_score(pattern):
    """pattern[batch, n_heads, q, k] -> [n_heads]."""
    # the diagonal just below the main one: query i to key i - 1, for i >= 1
    below = pattern.diagonal(
        offset=-1, dim1=-2, dim2=-1
    )  # [batch, n_heads, q - 1]
    return below.mean(dim=(0, 2))


def patch_hook(activation, hook, clean_cache, position):
    """activation[batch, pos, ...] -> the same, with position `position` from
    the clean run: clean_cache[hook.name][:, position]."""
    patched = activation.clone()  # the clean cache and the run's own untouched
    patched[:, position] = clean_cache[hook.name][:, position]
    return patched


def positional_qk(W_pos, W_Q, W_K, ln_w):
    """W_pos[n_ctx, d_model], one head's W_Q and W_K [d_model, d_head], ln1's
    gain ln_w[d_model] -> [n_ctx, n_ctx], query position by key position."""
    centred = W_pos - W_pos.mean(-1, keepdim=True)  # as LayerNorm centres
    q = centred @ (W_Q * ln_w[:, None])  # [n_ctx, d_head]: the gain folded in
    k = centred @ (W_K * ln_w[:, None])
    return q @ k.T / W_Q.shape[-1] ** 0.5  # as the attention scores are scaled


def k_composition(W_V, W_O, W_Q, W_K):
    """A layer-0 head's W_V [d_model, d_head], W_O [d_head, d_model] and a
    layer-1 head's W_Q, W_K [d_model, d_head] -> the K-composition, a float."""
    W_OV = W_V @ W_O  # [d_model, d_model]: what head A writes
    W_QK = W_Q @ W_K.T  # [d_model, d_model]: query side by key side
    product = W_OV @ W_QK.T  # A's output read by B's keys: W_OV W_K W_Q^T
    norm = torch.linalg.matrix_norm  # Frobenius by default
    return float(norm(product) / (norm(W_OV) * norm(W_QK)))

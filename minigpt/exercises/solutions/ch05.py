"""The solutions of chapter 05's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell shows
its source.
"""

import torch


def layer_norm(x, w, b, eps=1e-5):
    """x[batch, pos, d_model] -> [batch, pos, d_model]: centre over d_model,
    divide by sqrt(biased variance + eps), then * w + b."""
    centred = x - x.mean(dim=-1, keepdim=True)
    # the biased variance: divide by d_model
    var = centred.pow(2).mean(dim=-1, keepdim=True)
    return centred / (var + eps).sqrt() * w + b


def block_forward(resid_pre, ln1, attn, ln2, mlp):
    """resid_pre[batch, pos, d_model] -> resid_post[batch, pos, d_model]:
    attention then MLP, each reading its own LayerNorm of the stream."""
    resid_mid = resid_pre + attn(ln1(resid_pre))
    return resid_mid + mlp(ln2(resid_mid))


def count_parameters(cfg):
    d, m = cfg.d_model, cfg.d_mlp
    attn = 4 * d * d + 4 * d  # W_Q, W_K, W_V, W_O, biases (n_heads*d_head=d)
    mlp = 2 * d * m + m + d  # W_in, W_out, b_in, b_out
    norms = 2 * 2 * d  # ln1, ln2
    block = attn + mlp + norms
    return cfg.d_vocab * d + cfg.n_ctx * d + cfg.n_layers * block + 2 * d


def gpt_forward(
    tokens, params, n_layers, layer_norm, block_forward, attention, mlp
):
    """tokens[batch, pos] -> logits[batch, pos, d_vocab]: embed, n_layers
    blocks, the final LayerNorm, unembed."""

    def block_parts(layer):  # block `layer`'s four parts, each of one tensor
        p = f"blocks.{layer}."
        return (
            lambda x: layer_norm(x, params[p + "ln1.w"], params[p + "ln1.b"]),
            lambda x: attention(x, layer),
            lambda x: layer_norm(x, params[p + "ln2.w"], params[p + "ln2.b"]),
            lambda x: mlp(x, layer),
        )

    positions = torch.arange(tokens.shape[1], device=tokens.device)
    W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
    resid = W_E[tokens] + W_pos[positions]  # the stream starts as their sum
    for layer in range(n_layers):
        resid = block_forward(resid, *block_parts(layer))
    final = layer_norm(resid, params["ln_final.w"], params["ln_final.b"])
    return final @ params["unembed.W_U"] + params["unembed.b_U"]

"""Looking inside a GPT: parameter counts by hand, the residual stream as a sum of parts,
direct logit attribution and the logit lens.

All of them read the activations of ``model.run_with_cache(tokens)``.
"""

from __future__ import annotations

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from minigpt.config import GPTConfig


def parameter_count(cfg: GPTConfig, tied_unembed: bool = False) -> dict[str, int]:
    """The number of parameters of each part of a GPT, worked out from the config alone.

    With ``tied_unembed=True`` the unembedding is counted as ``W_E.T`` (no new weights, no
    bias), as in GPT-2 itself (124,439,808 for GPT-2 small); otherwise as our
    :class:`~minigpt.model.GPT` holds it (its own ``W_U`` and ``b_U``).
    """
    d, h, dh, m = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp
    attn = 3 * (h * d * dh + h * dh) + h * dh * d + d  # W_Q, W_K, W_V with biases; W_O, b_O
    mlp = d * m + m + m * d + d  # W_in, b_in, W_out, b_out
    layer_norms = 2 * 2 * d  # ln1 and ln2, a gain and a bias each
    return {
        "embed": cfg.d_vocab * d,
        "pos_embed": cfg.n_ctx * d,
        "attention (all layers)": cfg.n_layers * attn,
        "mlp (all layers)": cfg.n_layers * mlp,
        "layer norms": cfg.n_layers * layer_norms + 2 * d,  # plus ln_final
        "unembed": 0 if tied_unembed else d * cfg.d_vocab + cfg.d_vocab,
    }


def residual_components(
    acts: dict[str, Tensor], n_layers: int
) -> tuple[Float[Tensor, "component batch pos d_model"], list[str]]:
    """The final residual stream split into what each part of the model wrote into it.

    The stream only ever gets things *added*: ``embed + pos_embed + attn_0 + mlp_0 + ...``.
    Returns the stacked components and their labels (``embed``, ``pos_embed``, ``0_attn``,
    ``0_mlp``, ...); their sum is ``blocks.{n_layers-1}.hook_resid_post``.
    """
    parts = [acts["hook_embed"], acts["hook_pos_embed"]]
    labels = ["embed", "pos_embed"]
    for i in range(n_layers):
        parts += [acts[f"blocks.{i}.hook_attn_out"], acts[f"blocks.{i}.hook_mlp_out"]]
        labels += [f"{i}_attn", f"{i}_mlp"]
    return torch.stack(parts), labels


def direct_logit_attribution(
    model, acts: dict[str, Tensor]
) -> tuple[Float[Tensor, "component batch pos d_vocab"], list[str]]:
    """Each component's direct contribution to the final logits.

    The final LayerNorm is not linear, but once its scale (``ln_final.hook_scale``, one
    number per position) is fixed it is: centre, divide by that scale, multiply by ``w``.
    So ``logits = sum over components of (centre(c) / scale * w) @ W_U`` plus a constant
    ``ln_final.b @ W_U + b_U``, returned as the last component, labelled ``bias``. The
    components sum to the model's logits (up to float rounding).
    """
    comps, labels = residual_components(acts, model.cfg.n_layers)
    scale = acts["ln_final.hook_scale"]  # [batch, pos, 1]
    centred = comps - comps.mean(dim=-1, keepdim=True)
    normed = centred / scale * model.ln_final.w
    per_comp = einops.einsum(
        normed,
        model.unembed.W_U,
        "component batch pos d_model, d_model d_vocab -> component batch pos d_vocab",
    )
    bias = model.ln_final.b @ model.unembed.W_U + model.unembed.b_U
    bias = bias.expand_as(per_comp[0])[None]
    return torch.cat([per_comp, bias]), [*labels, "bias"]


def logit_lens(model, acts: dict[str, Tensor]) -> Float[Tensor, "layer batch pos d_vocab"]:
    """What the model would predict if it stopped after each layer.

    Applies the final LayerNorm and the unembedding to the residual stream before block 0,
    1, ..., and after the last block (entry ``n_layers``, which equals the logits).
    """
    n = model.cfg.n_layers
    streams = [acts[f"blocks.{i}.hook_resid_pre"] for i in range(n)]
    streams.append(acts[f"blocks.{n - 1}.hook_resid_post"])
    return torch.stack([model.unembed(model.ln_final(s)) for s in streams])

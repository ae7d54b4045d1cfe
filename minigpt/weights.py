"""Moving weights into a :class:`~minigpt.model.GPT`, with every key and shape checked.

* Hugging Face's ``GPT2LMHeadModel`` stores a layer's queries, keys and values as one
  ``Conv1D`` (``c_attn.weight[d_model, 3 * d_model]``, applied as ``x @ W``); we split it
  into TransformerLens's per-head ``W_Q, W_K, W_V[n_heads, d_model, d_head]``.
* TransformerLens's ``TransformerBridge.tl_parameters()`` already uses our names and shapes.
"""

from __future__ import annotations

import einops
import torch
from torch import Tensor

# Buffers some transformers versions keep in a GPT-2 state dict; they hold no weights.
_HF_BUFFERS = (".attn.bias", ".attn.masked_bias")


def hf_to_tl_state_dict(
    hf_state: dict[str, Tensor], n_layers: int, n_heads: int
) -> dict[str, Tensor]:
    """Rename and reshape a Hugging Face GPT-2 state dict into TransformerLens's layout.

    Raises KeyError naming a missing key and ValueError naming an unexpected one.
    """
    src = {k.removeprefix("transformer."): v for k, v in hf_state.items()}
    src = {k: v for k, v in src.items() if not k.endswith(_HF_BUFFERS)}
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in src:
            raise KeyError(f"the Hugging Face state dict has no {key!r}")
        used.add(key)
        return src[key]

    heads = "d_model (n_heads d_head) -> n_heads d_model d_head"
    out = {"embed.W_E": take("wte.weight"), "pos_embed.W_pos": take("wpe.weight")}
    for i in range(n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        W_Q, W_K, W_V = take(h + "attn.c_attn.weight").chunk(3, dim=1)
        b_Q, b_K, b_V = take(h + "attn.c_attn.bias").chunk(3, dim=0)
        for name, w in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V)):
            out[b + "attn." + name] = einops.rearrange(w, heads, n_heads=n_heads)
        for name, bias in (("b_Q", b_Q), ("b_K", b_K), ("b_V", b_V)):
            out[b + "attn." + name] = einops.rearrange(
                bias, "(n_heads d_head) -> n_heads d_head", n_heads=n_heads
            )
        out[b + "attn.W_O"] = einops.rearrange(
            take(h + "attn.c_proj.weight"),
            "(n_heads d_head) d_model -> n_heads d_head d_model",
            n_heads=n_heads,
        )
        out[b + "attn.b_O"] = take(h + "attn.c_proj.bias")
        out[b + "ln1.w"], out[b + "ln1.b"] = take(h + "ln_1.weight"), take(h + "ln_1.bias")
        out[b + "ln2.w"], out[b + "ln2.b"] = take(h + "ln_2.weight"), take(h + "ln_2.bias")
        out[b + "mlp.W_in"], out[b + "mlp.b_in"] = (
            take(h + "mlp.c_fc.weight"),
            take(h + "mlp.c_fc.bias"),
        )
        out[b + "mlp.W_out"] = take(h + "mlp.c_proj.weight")
        out[b + "mlp.b_out"] = take(h + "mlp.c_proj.bias")
    out["ln_final.w"], out["ln_final.b"] = take("ln_f.weight"), take("ln_f.bias")
    # GPT-2 ties the unembedding to the embedding and has no output bias.
    W_U = src["lm_head.weight"] if "lm_head.weight" in src else src["wte.weight"]
    used.add("lm_head.weight")
    out["unembed.W_U"] = W_U.T
    out["unembed.b_U"] = src.get("lm_head.bias", torch.zeros(W_U.shape[0], dtype=W_U.dtype))
    used.add("lm_head.bias")
    extra = sorted(set(src) - used)
    if extra:
        raise ValueError(f"unexpected keys in the Hugging Face state dict: {extra[:5]}")
    return out


def load_tl_parameters(model: torch.nn.Module, params: dict[str, Tensor], prefix: str = "") -> None:
    """Copy TransformerLens-named ``params`` into ``model``: the keys must match exactly and
    every shape must agree. Raises ValueError naming the first problem.

    ``prefix`` loads one part of a model into a module of its own: with
    ``prefix="blocks.0.attn."`` an :class:`~minigpt.attention.Attention` gets layer 0's
    ``W_Q``, ``b_Q``, ... (only keys under the prefix are considered).
    """
    if prefix:
        params = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
        if not params:
            raise ValueError(f"no parameter name starts with prefix={prefix!r}")
    ours = dict(model.named_parameters())
    missing = sorted(set(ours) - set(params))
    unexpected = sorted(set(params) - set(ours))
    if missing or unexpected:
        raise ValueError(
            f"key mismatch{f' under {prefix!r}' if prefix else ''}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, p in ours.items():
        if tuple(params[name].shape) != tuple(p.shape):
            raise ValueError(
                f"{prefix}{name}: source shape {tuple(params[name].shape)}, "
                f"model shape {tuple(p.shape)}"
            )
    with torch.no_grad():
        for name, p in ours.items():
            p.copy_(params[name].detach())


def load_hf_state_dict(model, hf_state: dict[str, Tensor]) -> None:
    """Copy a Hugging Face GPT-2 state dict into ``model`` (a :class:`~minigpt.model.GPT`)."""
    cfg = model.cfg
    load_tl_parameters(model, hf_to_tl_state_dict(hf_state, cfg.n_layers, cfg.n_heads))


def hf_weights_cached(name: str) -> bool:
    """Whether a hub model's config and weights are in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json"), str):
        return False
    return any(
        isinstance(try_to_load_from_cache(name, f), str)
        for f in ("model.safetensors", "pytorch_model.bin")
    )

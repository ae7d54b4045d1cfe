"""GPT-2 in Hugging Face's layout and in ours (TransformerLens's), each way from one table.

* The settings: :data:`CONFIG_FIELDS` pairs each :class:`~minigpt.config.GPTConfig` field
  with its ``transformers.GPT2Config`` name; :func:`config_from_hf` and :func:`config_to_hf`
  read it in opposite directions.
* The weights: :data:`LAYER_TENSORS` pairs each tensor of a block with Hugging Face's name
  for it and the einops pattern from their shape to ours. Hugging Face keeps a layer's
  queries, keys and values in one ``Conv1D`` (``c_attn.weight[d_model, 3 * d_model]``,
  applied as ``x @ W``); we keep TransformerLens's per-head ``W_Q, W_K, W_V[n_heads,
  d_model, d_head]``. :func:`hf_to_tl_state_dict` reads the table one way,
  :func:`tl_to_hf_state_dict` the other (each pattern reversed).
* TransformerLens's ``TransformerBridge.tl_parameters()`` already uses our names and
  shapes: :func:`load_tl_parameters` copies such a dict into a model, or into one module.

GPT-2 has no unembedding bias and ties its unembedding to the embedding; our models may
have an own ``W_U`` and a ``b_U``. :func:`fold_unembed_bias` moves a ``b_U`` into the final
LayerNorm and ``W_U`` exactly, so that GPT-2's layout can hold it.
"""

from __future__ import annotations

import einops
import torch
from torch import Tensor

from minigpt.config import GPTConfig

# (GPTConfig's field, GPT2Config's name for it)
CONFIG_FIELDS = (
    ("d_model", "n_embd"),
    ("n_heads", "n_head"),
    ("d_mlp", "n_inner"),
    ("n_layers", "n_layer"),
    ("n_ctx", "n_positions"),
    ("d_vocab", "vocab_size"),
    ("layer_norm_eps", "layer_norm_epsilon"),
    ("init_range", "initializer_range"),
)
# The tanh approximation of GELU, as our MLP computes it (gelu_pytorch_tanh is the same formula).
HF_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")

_QKV = "c_attn"  # Hugging Face's fused query/key/value projection: parts 0, 1, 2 of its last axis
_HEADS = "d_model (n_heads d_head) -> n_heads d_model d_head"
_HEAD_BIAS = "(n_heads d_head) -> n_heads d_head"
# One block: (our name, Hugging Face's name, einops pattern from theirs to ours or None).
LAYER_TENSORS = (
    ("ln1.w", "ln_1.weight", None),
    ("ln1.b", "ln_1.bias", None),
    ("attn.W_Q", "attn.c_attn.weight", _HEADS),
    ("attn.W_K", "attn.c_attn.weight", _HEADS),
    ("attn.W_V", "attn.c_attn.weight", _HEADS),
    ("attn.b_Q", "attn.c_attn.bias", _HEAD_BIAS),
    ("attn.b_K", "attn.c_attn.bias", _HEAD_BIAS),
    ("attn.b_V", "attn.c_attn.bias", _HEAD_BIAS),
    ("attn.W_O", "attn.c_proj.weight", "(n_heads d_head) d_model -> n_heads d_head d_model"),
    ("attn.b_O", "attn.c_proj.bias", None),
    ("ln2.w", "ln_2.weight", None),
    ("ln2.b", "ln_2.bias", None),
    ("mlp.W_in", "mlp.c_fc.weight", None),
    ("mlp.b_in", "mlp.c_fc.bias", None),
    ("mlp.W_out", "mlp.c_proj.weight", None),
    ("mlp.b_out", "mlp.c_proj.bias", None),
)
# The tensors outside the blocks (the unembedding is handled on its own: GPT-2 ties it).
MODEL_TENSORS = (
    ("embed.W_E", "wte.weight", None),
    ("pos_embed.W_pos", "wpe.weight", None),
    ("ln_final.w", "ln_f.weight", None),
    ("ln_final.b", "ln_f.bias", None),
)
# Buffers some transformers versions keep in a GPT-2 state dict; they hold no weights.
_HF_BUFFERS = (".attn.bias", ".attn.masked_bias")


def _reversed(pattern: str) -> str:
    left, right = pattern.split("->")
    return f"{right.strip()} -> {left.strip()}"


def _entries(n_layers: int):
    """Every tensor of a ``n_layers`` model: ``(ours, theirs, pattern, part)``, where
    ``part`` is 0, 1 or 2 for the pieces of the fused ``c_attn`` and None otherwise."""
    for ours, theirs, pattern in MODEL_TENSORS:
        yield ours, theirs, pattern, None
    for i in range(n_layers):
        for ours, theirs, pattern in LAYER_TENSORS:
            part = "QKV".index(ours[-1]) if _QKV in theirs else None
            yield f"blocks.{i}.{ours}", f"h.{i}.{theirs}", pattern, part


# -- the settings ----------------------------------------------------------------------------


def config_from_hf(hf_config) -> GPTConfig:
    """The :class:`~minigpt.config.GPTConfig` of a Hugging Face ``GPT2Config``."""
    values = {ours: getattr(hf_config, theirs) for ours, theirs in CONFIG_FIELDS}
    values["d_mlp"] = values["d_mlp"] or 4 * values["d_model"]  # GPT-2's n_inner=None
    return GPTConfig(**values, d_head=values["d_model"] // values["n_heads"])


def config_to_hf(cfg: GPTConfig, *, tied: bool, eot_id: int | None = None, dtype="float32"):
    """The ``transformers.GPT2Config`` of a :class:`~minigpt.config.GPTConfig`.

    Dropout is 0 everywhere: our model has none, so the Hugging Face one, even in training
    mode, computes what ours does. ``eot_id`` (the tokenizer's ``<|endoftext|>``) becomes
    ``bos_token_id`` and ``eos_token_id``.
    """
    from transformers import GPT2Config

    return GPT2Config(
        **{theirs: getattr(cfg, ours) for ours, theirs in CONFIG_FIELDS},
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        scale_attn_weights=True,
        scale_attn_by_inverse_layer_idx=False,
        reorder_and_upcast_attn=False,
        tie_word_embeddings=tied,
        bos_token_id=eot_id,
        eos_token_id=eot_id,
        architectures=["GPT2LMHeadModel"],
        dtype=dtype,
    )


def check_gpt2_config(hf_config, where: str = "the config") -> None:
    """Raise ValueError naming a setting of a ``GPT2Config`` that our GPT cannot compute."""
    model_type = getattr(hf_config, "model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"{where} is a {model_type!r} model, not GPT-2 ('gpt2')")
    wanted = {
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "add_cross_attention": False,
    }
    for name, value in wanted.items():
        if getattr(hf_config, name, value) != value:
            raise ValueError(
                f"{where} has {name}={getattr(hf_config, name)!r}; minigpt's GPT computes "
                f"only {name}={value!r}"
            )
    act = hf_config.activation_function
    if act not in HF_ACTIVATIONS:
        raise ValueError(
            f"{where} has activation_function={act!r}; minigpt's GPT uses GELU's tanh "
            f"approximation ({' or '.join(map(repr, HF_ACTIVATIONS))})"
        )
    if hf_config.n_embd % hf_config.n_head:
        raise ValueError(
            f"{where}: n_embd={hf_config.n_embd} is not a multiple of n_head={hf_config.n_head}"
        )


# -- the weights -----------------------------------------------------------------------------


def hf_to_tl_state_dict(
    hf_state: dict[str, Tensor], n_layers: int, n_heads: int
) -> dict[str, Tensor]:
    """Rename and reshape a Hugging Face GPT-2 state dict into TransformerLens's layout.

    Raises KeyError naming a missing key and ValueError naming an unexpected one.
    """
    src = {k.removeprefix("transformer."): v for k, v in hf_state.items()}
    src = {k: v for k, v in src.items() if not k.endswith(_HF_BUFFERS)}
    out = {}
    for ours, theirs, pattern, part in _entries(n_layers):
        if theirs not in src:
            raise KeyError(f"the Hugging Face state dict has no {theirs!r}")
        tensor = src[theirs] if part is None else src[theirs].chunk(3, dim=-1)[part]
        out[ours] = (
            tensor if pattern is None else einops.rearrange(tensor, pattern, n_heads=n_heads)
        )
    used = {theirs for _, theirs, _, _ in _entries(n_layers)} | {"lm_head.weight", "lm_head.bias"}
    extra = sorted(set(src) - used)
    if extra:
        raise ValueError(f"unexpected keys in the Hugging Face state dict: {extra[:5]}")
    # GPT-2 ties the unembedding to the embedding and has no output bias.
    W_U = src.get("lm_head.weight", src["wte.weight"])
    out["unembed.W_U"] = W_U.T
    out["unembed.b_U"] = src.get("lm_head.bias", torch.zeros(W_U.shape[0], dtype=W_U.dtype))
    return out


def tl_to_hf_state_dict(params: dict[str, Tensor], n_heads: int) -> dict[str, Tensor]:
    """The inverse of :func:`hf_to_tl_state_dict`: ``GPT2LMHeadModel``'s keys and layouts.

    Gives ``transformer.*`` and ``lm_head.weight`` (``W_U.T``), contiguous and on the CPU.
    ``unembed.b_U`` must be zero, since GPT-2 has no unembedding bias (fold it first with
    :func:`fold_unembed_bias`); raises ValueError for that, or for a key it does not know,
    and KeyError naming a missing one.
    """
    n_layers = sum(1 for k in params if k.startswith("blocks.") and k.endswith(".attn.W_Q"))
    missing = [ours for ours, *_ in _entries(n_layers) if ours not in params]
    missing += [k for k in ("unembed.W_U", "unembed.b_U") if k not in params]
    if missing:
        raise KeyError(f"the parameters have no {missing[0]!r}")
    if params["unembed.b_U"].any():
        raise ValueError(
            "unembed.b_U is not zero, and GPT2LMHeadModel has no unembedding bias; fold it into "
            "the final LayerNorm first (minigpt.formats.gpt2_weights.fold_unembed_bias)"
        )
    known = {ours for ours, *_ in _entries(n_layers)} | {"unembed.W_U", "unembed.b_U"}
    extra = sorted(set(params) - known)
    if extra:
        raise ValueError(f"parameters GPT-2 has no place for: {extra[:5]}")
    out: dict[str, Tensor] = {}
    fused: dict[str, list[Tensor]] = {}
    for ours, theirs, pattern, part in _entries(n_layers):
        tensor = params[ours].detach()
        if pattern is not None:
            tensor = einops.rearrange(tensor, _reversed(pattern))
        if part is None:
            out["transformer." + theirs] = tensor
        else:  # queries, keys and values go back into one tensor, in that order
            fused.setdefault("transformer." + theirs, []).append(tensor)
    out.update({key: torch.cat(parts, dim=-1) for key, parts in fused.items()})
    out["lm_head.weight"] = params["unembed.W_U"].detach().T
    return {k: v.cpu().contiguous() for k, v in out.items()}


def fold_unembed_bias(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """A copy of ``params`` with the same logits and ``unembed.b_U`` zero.

    The final LayerNorm gives ``y = w * x_hat + b``, and ``x_hat`` (centred) is orthogonal
    to the all-ones vector ``1``. So ``1`` is a free direction: with the gain ``w' = 1``,
    the bias ``b' = 1`` and ``W_U' = diag(w) W_U + 1 c`` where
    ``c = (b @ W_U + b_U - 1 @ diag(w) W_U) / d_model``,
    ``y' @ W_U' = x_hat @ diag(w) W_U + (x_hat . 1) c + 1 @ diag(w) W_U + d_model c
    = y @ W_U + b_U`` exactly (in float32 up to rounding: computed in float64 here).
    """
    w, b = params["ln_final.w"].detach(), params["ln_final.b"].detach()
    W_U, b_U = params["unembed.W_U"].detach(), params["unembed.b_U"].detach()
    d_model = w.shape[0]
    scaled = w.double()[:, None] * W_U.double()
    c = (b.double() @ W_U.double() + b_U.double() - scaled.sum(0)) / d_model
    out = dict(params)
    out["ln_final.w"] = torch.ones_like(w)
    out["ln_final.b"] = torch.ones_like(b)
    out["unembed.W_U"] = (scaled + c).to(W_U.dtype)
    out["unembed.b_U"] = torch.zeros_like(b_U)
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

"""Moving weights into a :class:`~minigpt.model.GPT`, with every key and shape checked.

* Hugging Face's ``GPT2LMHeadModel`` stores a layer's queries, keys and values as one
  ``Conv1D`` (``c_attn.weight[d_model, 3 * d_model]``, applied as ``x @ W``); we split it
  into TransformerLens's per-head ``W_Q, W_K, W_V[n_heads, d_model, d_head]``.
* TransformerLens's ``TransformerBridge.tl_parameters()`` already uses our names and shapes.
* The way back (:func:`tl_to_hf_state_dict`, :func:`save_hf_folder`) writes a folder that
  ``transformers.GPT2LMHeadModel.from_pretrained`` loads: ``config.json``,
  ``model.safetensors`` and, with a tokenizer, ``tokenizer.json`` and
  ``tokenizer_config.json`` (:func:`hf_tokenizer`); :func:`read_hf_folder` reads such a
  folder, or a copy of OpenAI's GPT-2, back.

GPT-2 has no unembedding bias, and ties its unembedding to the embedding; our models may
have both an own ``W_U`` and a ``b_U`` (the trainer learns them). An own ``W_U`` is written
as an untied ``lm_head.weight`` (``tie_word_embeddings=False``). A non-zero ``b_U`` is
folded, exactly, into the final LayerNorm and ``lm_head`` (:func:`fold_unembed_bias`); the
original tensors go to ``minigpt.safetensors`` beside it, so that minigpt reads back the
very same parameters.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import einops
import torch
from torch import Tensor

from minigpt.files import atomic_folder, digest, first_line, fsync_folder
from minigpt.formats.hf_tokenizer import save_hf_tokenizer

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


# -- the way back: a Hugging Face GPT-2 folder ==============================================

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # a model sharded over several files
TORCH_WEIGHTS_FILE = "pytorch_model.bin"  # older copies of GPT-2 (OpenAI's on the hub too)
FOLD_FILE = "minigpt.safetensors"  # the original final LayerNorm and unembedding, when folded
FOLD_FORMAT = "minigpt-unembed-bias-folded"
# The tanh approximation of GELU, as our MLP computes it (gelu_pytorch_tanh is the same formula).
HF_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")
_UNEMBED_KEYS = ("ln_final.w", "ln_final.b", "unembed.W_U", "unembed.b_U")
_FOLDED_HF_KEYS = ("transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight")


def tl_to_hf_state_dict(params: dict[str, Tensor], n_heads: int) -> dict[str, Tensor]:
    """The inverse of :func:`hf_to_tl_state_dict`: ``GPT2LMHeadModel``'s keys and layouts.

    Gives ``transformer.*`` and ``lm_head.weight`` (``W_U.T``), contiguous and on the CPU.
    ``unembed.b_U`` must be zero, since GPT-2 has no unembedding bias (fold it first with
    :func:`fold_unembed_bias`); raises ValueError for that, or for a key it does not know,
    and KeyError naming a missing one.
    """
    used: set[str] = set()

    def take(key: str) -> Tensor:
        if key not in params:
            raise KeyError(f"the parameters have no {key!r}")
        used.add(key)
        return params[key].detach()

    if take("unembed.b_U").any():
        raise ValueError(
            "unembed.b_U is not zero, and GPT2LMHeadModel has no unembedding bias; fold it "
            "into the final LayerNorm first (minigpt.weights.fold_unembed_bias)"
        )
    n_layers = sum(1 for k in params if k.startswith("blocks.") and k.endswith(".attn.W_Q"))
    heads = "n_heads d_model d_head -> d_model (n_heads d_head)"
    flat = "n_heads d_head -> (n_heads d_head)"
    out = {
        "transformer.wte.weight": take("embed.W_E"),
        "transformer.wpe.weight": take("pos_embed.W_pos"),
    }
    for i in range(n_layers):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        out[h + "ln_1.weight"], out[h + "ln_1.bias"] = take(b + "ln1.w"), take(b + "ln1.b")
        out[h + "attn.c_attn.weight"] = torch.cat(
            [einops.rearrange(take(b + "attn." + n), heads) for n in ("W_Q", "W_K", "W_V")], dim=1
        )
        out[h + "attn.c_attn.bias"] = torch.cat(
            [einops.rearrange(take(b + "attn." + n), flat) for n in ("b_Q", "b_K", "b_V")]
        )
        out[h + "attn.c_proj.weight"] = einops.rearrange(
            take(b + "attn.W_O"), "n_heads d_head d_model -> (n_heads d_head) d_model"
        )
        out[h + "attn.c_proj.bias"] = take(b + "attn.b_O")
        out[h + "ln_2.weight"], out[h + "ln_2.bias"] = take(b + "ln2.w"), take(b + "ln2.b")
        out[h + "mlp.c_fc.weight"], out[h + "mlp.c_fc.bias"] = (
            take(b + "mlp.W_in"),
            take(b + "mlp.b_in"),
        )
        out[h + "mlp.c_proj.weight"] = take(b + "mlp.W_out")
        out[h + "mlp.c_proj.bias"] = take(b + "mlp.b_out")
    out["transformer.ln_f.weight"] = take("ln_final.w")
    out["transformer.ln_f.bias"] = take("ln_final.b")
    out["lm_head.weight"] = take("unembed.W_U").T
    extra = sorted(set(params) - used)
    if extra:
        raise ValueError(f"parameters GPT-2 has no place for: {extra[:5]}")
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


def gpt2_config_for(cfg, *, tied: bool, eot_id: int | None = None, dtype: str = "float32"):
    """The ``transformers.GPT2Config`` of a :class:`~minigpt.config.GPTConfig`.

    Dropout is 0 everywhere: our model has none, so the Hugging Face one, even in training
    mode, computes what ours does. ``eot_id`` (the tokenizer's ``<|endoftext|>``) becomes
    ``bos_token_id`` and ``eos_token_id``.
    """
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=cfg.d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=cfg.layer_norm_eps,
        initializer_range=cfg.init_range,
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


# -- writing and reading a folder ------------------------------------------------------------


def _write_into(folder: Path, fill) -> None:
    """Fill ``folder`` through ``fill(staging)``: a new (or empty) folder appears whole
    (:func:`minigpt.files.atomic_folder`); in a folder that holds files already, each file
    is replaced in one rename, ``config.json`` last, and other files are left alone."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    if not folder.exists() or not any(folder.iterdir()):
        with atomic_folder(folder) as staging:
            fill(staging)
        return
    staging = Path(tempfile.mkdtemp(prefix=".minigpt-export.", dir=folder))
    try:
        fill(staging)
        names = sorted((p.name for p in staging.iterdir()), key=lambda n: n == CONFIG_FILE)
        for name in names:
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
            os.replace(staging / name, folder / name)
        fsync_folder(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_hf_folder(
    model, folder: str | os.PathLike, tokenizer=None, fold_unembed_bias: bool = True
) -> Path:
    """Write ``model`` (a :class:`~minigpt.model.GPT`) as a Hugging Face GPT-2 folder.

    ``config.json`` and ``model.safetensors`` (``GPT2LMHeadModel``'s keys and layouts);
    with ``tokenizer``, also its files (:func:`save_hf_tokenizer`). The unembedding:

    * ``W_U == W_E.T`` and ``b_U == 0``: tied, as GPT-2 (no ``lm_head.weight`` is written);
    * an own ``W_U``: untied, ``tie_word_embeddings=False``;
    * a non-zero ``b_U``: folded (:func:`fold_unembed_bias`), which gives the same logits
      but another final LayerNorm and ``lm_head``; the originals are kept in
      ``minigpt.safetensors`` for :func:`read_hf_folder`. With ``fold_unembed_bias=False``
      such a model is a ValueError instead.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    cfg = model.cfg
    params = {k: v.detach().cpu() for k, v in model.named_parameters()}
    if tokenizer is not None and tokenizer.vocab_size > cfg.d_vocab:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} ids, the model only d_vocab={cfg.d_vocab}"
        )
    folded = bool(params["unembed.b_U"].any())
    if folded and not fold_unembed_bias:
        raise ValueError(
            "the model has a non-zero unembedding bias (unembed.b_U), which GPT2LMHeadModel "
            "cannot hold; pass fold_unembed_bias=True to fold it into the final LayerNorm "
            "(the same logits)"
        )
    originals = {k: params[k].contiguous() for k in _UNEMBED_KEYS}
    if folded:
        params = _fold(params)
    tied = not folded and torch.equal(params["unembed.W_U"], params["embed.W_E"].T)
    state = tl_to_hf_state_dict(params, cfg.n_heads)
    if tied:
        del state["lm_head.weight"]
    dtype = str(params["embed.W_E"].dtype).removeprefix("torch.")
    eot_id = tokenizer.eot_id if tokenizer is not None else None
    hf_config = gpt2_config_for(cfg, tied=tied, eot_id=eot_id, dtype=dtype)

    def fill(staging: Path) -> None:
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        if folded:
            stamp = digest({k: state[k] for k in _FOLDED_HF_KEYS})
            meta = {"format": "pt", "minigpt": FOLD_FORMAT, "folded_sha256": stamp}
            save_file(originals, str(staging / FOLD_FILE), metadata=meta)
        if tokenizer is not None:
            save_hf_tokenizer(tokenizer, staging, model_max_length=cfg.n_ctx)
        hf_config.save_pretrained(str(staging))

    _write_into(folder, fill)
    if not folded and (folder / FOLD_FILE).is_file():  # from an earlier export: now wrong
        (folder / FOLD_FILE).unlink()
    return folder


def _read_weights(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """The state dict in ``folder``: ``model.safetensors`` (or its shards), else
    ``pytorch_model.bin`` (read with ``weights_only=True``)."""
    from safetensors.torch import load_file

    if (folder / WEIGHTS_FILE).is_file():
        return load_file(str(folder / WEIGHTS_FILE)), folder / WEIGHTS_FILE
    if (folder / WEIGHTS_INDEX_FILE).is_file():
        index = json.loads((folder / WEIGHTS_INDEX_FILE).read_text(encoding="utf-8"))
        state: dict[str, Tensor] = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(folder / shard)))
        return state, folder / WEIGHTS_INDEX_FILE
    if (folder / TORCH_WEIGHTS_FILE).is_file():
        state = torch.load(folder / TORCH_WEIGHTS_FILE, map_location="cpu", weights_only=True)
        return state, folder / TORCH_WEIGHTS_FILE
    raise FileNotFoundError(
        f"{folder} holds no weights: no {WEIGHTS_FILE}, {WEIGHTS_INDEX_FILE} or "
        f"{TORCH_WEIGHTS_FILE}"
    )


def _unfolded(folder: Path, hf_state: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """The original final LayerNorm and unembedding kept by :func:`save_hf_folder`, if
    ``minigpt.safetensors`` is there and ``model.safetensors`` is still what it was written
    beside (else a warning, and None)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = folder / FOLD_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    prefixed = ("transformer.", "lm_head.")
    state = {(k if k.startswith(prefixed) else "transformer." + k): v for k, v in hf_state.items()}
    if meta.get("minigpt") != FOLD_FORMAT or not all(k in state for k in _FOLDED_HF_KEYS):
        warnings.warn(f"{path} is not minigpt's; ignored", stacklevel=3)
        return None
    if digest({k: state[k] for k in _FOLDED_HF_KEYS}) != meta.get("folded_sha256"):
        warnings.warn(
            f"{path} was written beside other weights than the ones in {folder} now; ignored "
            "(the model gets the folded final LayerNorm and unembedding: the same logits)",
            stacklevel=3,
        )
        return None
    return load_file(str(path))


def hf_folder_config(folder: Path) -> tuple[dict | None, Exception | None]:
    """``(config.json as a dict, None)`` when ``folder`` is a GPT-2 folder with weights, else
    ``(None, the error)``: a FileNotFoundError for a missing folder or file, a ValueError for
    a bad config, its message what is wrong in words ("holds no weights: ..."). The one check behind
    :func:`read_hf_folder` and :func:`minigpt.reference.load_gpt2_folder`.
    """
    weights = (WEIGHTS_FILE, WEIGHTS_INDEX_FILE, TORCH_WEIGHTS_FILE)
    if not folder.is_dir():
        return None, FileNotFoundError("does not exist (or is not a folder)")
    if not (folder / CONFIG_FILE).is_file():
        return None, FileNotFoundError(f"has no {CONFIG_FILE}; it is not a Hugging Face model")
    if not any((folder / name).is_file() for name in weights):
        return None, FileNotFoundError(f"holds no weights: no {', '.join(weights)}")
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, ValueError(f"has a broken config: {CONFIG_FILE} is not valid JSON ({err})")
    if not isinstance(raw, dict):
        return None, ValueError(f"has a broken config: {CONFIG_FILE} is not a JSON object")
    if raw.get("model_type", "gpt2") != "gpt2":
        return None, ValueError(f"holds a {raw['model_type']!r} model, not GPT-2")
    return raw, None


def read_hf_folder(folder: str | os.PathLike):
    """``(GPTConfig, TransformerLens-named parameters)`` of a Hugging Face GPT-2 folder:
    one written by :func:`save_hf_folder`, or a copy of OpenAI's GPT-2 (``config.json`` +
    ``model.safetensors`` or ``pytorch_model.bin``).

    Raises FileNotFoundError naming a missing folder or file, ValueError naming a setting
    our GPT cannot compute, a missing or unexpected key, or a shape that does not fit.
    """
    from transformers import GPT2Config

    from minigpt.config import GPTConfig

    folder = Path(folder).expanduser()
    raw, problem = hf_folder_config(folder)
    if problem is not None:
        raise type(problem)(f"model folder {folder} {problem}")
    hf_config = GPT2Config.from_dict(raw)
    check_gpt2_config(hf_config, where=str(folder / CONFIG_FILE))
    cfg = GPTConfig.from_hf(hf_config)
    try:
        hf_state, source = _read_weights(folder)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated or foreign file: say which folder
        raise ValueError(f"the weights in {folder} cannot be read: {first_line(err)}") from None
    if getattr(hf_config, "tie_word_embeddings", True):  # transformers ignores lm_head then
        hf_state = {k: v for k, v in hf_state.items() if k != "lm_head.weight"}
    try:
        params = hf_to_tl_state_dict(hf_state, cfg.n_layers, cfg.n_heads)
    except (KeyError, ValueError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise ValueError(f"{source}: {message}") from None
    originals = _unfolded(folder, hf_state)
    if originals is not None:
        params.update({k: originals[k] for k in _UNEMBED_KEYS})
    return cfg, params


_fold = fold_unembed_bias  # save_hf_folder's argument of the same name hides the function

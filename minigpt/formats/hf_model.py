"""Hugging Face's GPT-2 (``GPT2LMHeadModel``): in memory, on the hub, and as a folder.

* :func:`from_hf` and :func:`from_bridge` copy a Hugging Face model's (or a
  TransformerLens bridge's) weights into a :class:`~minigpt.model.GPT`, every key and
  shape checked (:mod:`minigpt.formats.gpt2_weights` holds the table).
* :func:`save_pretrained` writes a model as a folder that
  ``transformers.GPT2LMHeadModel.from_pretrained`` loads: ``config.json``,
  ``model.safetensors`` and, with a tokenizer, ``tokenizer.json`` and
  ``tokenizer_config.json`` (:mod:`minigpt.formats.hf_tokenizer`). The header of
  ``model.safetensors`` carries the SHA-256 of its tensors, checked when the folder is read
  (a file that another tool wrote again carries none, and is read as it is).
* :func:`from_pretrained` reads such a folder, a copy of OpenAI's GPT-2, or a GPT-2 from
  the Hugging Face cache or hub (:func:`load_pretrained_hf`).

An own ``W_U`` is written as an untied ``lm_head.weight`` (``tie_word_embeddings=False``).
A non-zero ``b_U`` is folded, exactly, into the final LayerNorm and ``lm_head``
(:func:`~minigpt.formats.gpt2_weights.fold_unembed_bias`); the original tensors go to
``minigpt.safetensors`` beside it, so that minigpt reads back the very same parameters.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from minigpt.assets import hub_reachable
from minigpt.files import atomic_folder, digest, first_line, fsync_folder
from minigpt.formats.gpt2_weights import (
    check_gpt2_config,
    config_from_hf,
    config_to_hf,
    fold_unembed_bias,
    hf_to_tl_state_dict,
    load_tl_parameters,
    tl_to_hf_state_dict,
)
from minigpt.formats.hf_tokenizer import save_hf_tokenizer
from minigpt.model import GPT

PRETRAINED_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # OpenAI's, on the hub
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"  # a model sharded over several files
TORCH_WEIGHTS_FILE = "pytorch_model.bin"  # older copies of GPT-2 (OpenAI's on the hub too)
FOLD_FILE = "minigpt.safetensors"  # the original final LayerNorm and unembedding, when folded
FOLD_FORMAT = "minigpt-unembed-bias-folded"
DIGEST_KEY = "minigpt_sha256"  # in model.safetensors' metadata: minigpt.files.digest of its tensors
_UNEMBED_KEYS = ("ln_final.w", "ln_final.b", "unembed.W_U", "unembed.b_U")
_FOLDED_HF_KEYS = ("transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight")


# -- models in memory ------------------------------------------------------------------------


def from_hf(hf_model, attn_impl: str = "sdpa") -> GPT:
    """A GPT with the weights of a Hugging Face ``GPT2LMHeadModel`` (strict key and shape check)."""
    cfg = config_from_hf(hf_model.config)
    model = GPT(cfg, attn_impl=attn_impl)
    load_tl_parameters(model, hf_to_tl_state_dict(hf_model.state_dict(), cfg.n_layers, cfg.n_heads))
    return model.to(next(hf_model.parameters()).device)


def from_bridge(bridge, attn_impl: str = "sdpa") -> GPT:
    """A GPT with the weights of a TransformerLens ``TransformerBridge`` (GPT-2 family)."""
    model = GPT(config_from_hf(bridge.original_model.config), attn_impl=attn_impl)
    load_tl_parameters(model, bridge.tl_parameters())
    return model.to(next(bridge.original_model.parameters()).device)


# -- the hub and the Hugging Face cache ------------------------------------------------------


@contextlib.contextmanager
def quiet_loading():
    """Hide transformers' "Loading weights: 0/148" progress bar, which would land in the pages."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def hf_weights_cached(name: str) -> bool:
    """Whether a hub model's config and weights are in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, CONFIG_FILE), str):
        return False
    return any(
        isinstance(try_to_load_from_cache(name, f), str) for f in (WEIGHTS_FILE, TORCH_WEIGHTS_FILE)
    )


def load_pretrained_hf(name: str = "gpt2"):
    """OpenAI's weights for ``name`` (a GPT-2 on the Hugging Face hub) as a ``GPT2LMHeadModel``.

    From the local Hugging Face cache, else from the hub when it answers. Returns
    ``(model, reason)``, or ``(None, reason)`` at once where neither has them.
    """
    from transformers import GPT2LMHeadModel

    if hf_weights_cached(name):
        with quiet_loading():
            model = GPT2LMHeadModel.from_pretrained(name, local_files_only=True)
        return model, f"Real {name} weights, from the local Hugging Face cache."
    if not hub_reachable():
        return (
            None,
            f"The weights of {name!r} are not in the Hugging Face cache and the hub is unreachable.",
        )
    try:
        with quiet_loading():
            model = GPT2LMHeadModel.from_pretrained(name)
    except OSError as err:
        return None, f"Downloading the weights of {name!r} failed ({type(err).__name__})."
    return model, f"Real {name} weights, downloaded from the Hugging Face hub."


# -- writing a folder ------------------------------------------------------------------------


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


def save_pretrained(
    model: GPT, folder: str | os.PathLike, tokenizer=None, fold_unembed_bias: bool = True
) -> Path:
    """Write ``model`` as a Hugging Face GPT-2 folder; returns the folder.

    ``config.json`` and ``model.safetensors`` (``GPT2LMHeadModel``'s key names and layouts),
    so ``transformers.GPT2LMHeadModel.from_pretrained(folder)`` gives the same logits and
    :func:`from_pretrained` gives this model back exactly (the weights' SHA-256 is in the
    file's header, and checked there). With ``tokenizer`` (a :class:`~minigpt.tokenizer.BPETokenizer`), also
    ``tokenizer.json`` and ``tokenizer_config.json``: ``transformers.AutoTokenizer`` then
    gives its ids (checked before anything is written). The unembedding:

    * ``W_U == W_E.T`` and ``b_U == 0``: tied, as GPT-2 (no ``lm_head.weight`` is written);
    * an own ``W_U``: untied, ``tie_word_embeddings=False``;
    * a non-zero ``b_U`` (a trained model has one): folded into the final LayerNorm and
      ``lm_head``, the same logits; the originals are kept in ``minigpt.safetensors``. With
      ``fold_unembed_bias=False`` such a model is a ValueError instead.

    A new folder appears whole; in an existing one each file is replaced whole, and files
    of other names are left alone.
    """
    from safetensors.torch import save_file

    folder, cfg = Path(folder), model.cfg
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
    hf_config = config_to_hf(cfg, tied=tied, eot_id=eot_id, dtype=dtype)

    def fill(staging: Path) -> None:
        meta = {"format": "pt", DIGEST_KEY: digest(state)}
        save_file(state, str(staging / WEIGHTS_FILE), metadata=meta)
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


_fold = fold_unembed_bias  # save_pretrained's argument of the same name hides the function


# -- reading a folder ------------------------------------------------------------------------


def _read_weights(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """The state dict in ``folder``: ``model.safetensors`` (or its shards), else
    ``pytorch_model.bin`` (read with ``weights_only=True``).

    Raises ValueError when ``model.safetensors`` carries a digest (:func:`save_pretrained`
    writes one) that its tensors no longer match: a flipped byte is never loaded."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = folder / WEIGHTS_FILE
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            expected = (f.metadata() or {}).get(DIGEST_KEY)
        state = load_file(str(path))
        if expected is not None and digest(state) != expected:
            raise ValueError(
                f"{path} is damaged: its tensors do not match the SHA-256 written in its header"
            )
        return state, path
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
    """The original final LayerNorm and unembedding kept by :func:`save_pretrained`, if
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
    a bad config, its message what is wrong in words ("holds no weights: ..."). The one check
    behind :func:`read_hf_folder` and :func:`minigpt.reference.load_gpt2_folder`.
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
    one written by :func:`save_pretrained`, or a copy of OpenAI's GPT-2 (``config.json`` +
    ``model.safetensors`` or ``pytorch_model.bin``).

    Raises FileNotFoundError naming a missing folder or file, ValueError naming a setting
    our GPT cannot compute, weights that fail their digest, a missing or unexpected
    key, or a shape that does not fit.
    """
    from transformers import GPT2Config

    folder = Path(folder).expanduser()
    raw, problem = hf_folder_config(folder)
    if problem is not None:
        raise type(problem)(f"model folder {folder} {problem}")
    hf_config = GPT2Config.from_dict(raw)
    check_gpt2_config(hf_config, where=str(folder / CONFIG_FILE))
    cfg = config_from_hf(hf_config)
    try:
        hf_state, source = _read_weights(folder)
    except (FileNotFoundError, ValueError):
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


def from_pretrained(name: str | os.PathLike = "gpt2", attn_impl: str = "sdpa") -> GPT:
    """OpenAI's GPT-2, or a model from a Hugging Face GPT-2 folder; in eval mode.

    ``name`` is ``gpt2``, ``gpt2-medium``, ``gpt2-large`` or ``gpt2-xl``: from the local
    Hugging Face cache or the hub, raising OSError at once where neither has them
    (rather than after the ~30 s of retries of a plain ``from_pretrained`` offline).

    Anything else (a ``Path``, or a string naming a folder) is a folder: one written by
    :func:`save_pretrained`, or a GPT-2 copied by hand (``config.json`` +
    ``model.safetensors`` or ``pytorch_model.bin``). Every key and shape is checked:
    FileNotFoundError names a missing folder or file, ValueError anything that does
    not fit.
    """
    if isinstance(name, str) and name in PRETRAINED_NAMES:
        hf, reason = load_pretrained_hf(name)
        if hf is None:
            raise OSError(f"{reason} Fetch them once where the hub is reachable.")
        return from_hf(hf.eval(), attn_impl=attn_impl).eval()
    if isinstance(name, str) and not (os.sep in name or name.startswith(".")):
        if not Path(name).exists():
            raise ValueError(
                f"name={name!r} is not one of {', '.join(PRETRAINED_NAMES)}, nor a folder"
            )
    cfg, params = read_hf_folder(name)
    model = GPT(cfg, attn_impl=attn_impl)
    try:
        load_tl_parameters(model, params)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return model.eval()

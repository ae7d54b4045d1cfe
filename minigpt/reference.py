"""The reference GPT-2 that every chapter checks itself against.

``load_reference()`` gives GPT-2 small as Hugging Face's ``GPT2LMHeadModel`` wrapped in
TransformerLens's ``TransformerBridge``, which exposes a hook on every activation.

* **Weights.** Real GPT-2 weights are used whenever they can be had: from the local
  Hugging Face cache, or from the hub when it answers. Otherwise the reference is GPT-2
  small's exact architecture (``GPT2Config()``) with seeded random weights, and it says
  so (``.weights == "random"``). Either way the comparisons in the book are real: our
  modules get the same weights and the same input as the reference.
* **Tokenizer.** Built offline from GPT-2's published BPE tables (see
  :mod:`minigpt.assets`), saved once to the cache folder and loaded from there.
* **Forcing a mode.** ``$MINIGPT_WEIGHTS`` (or the ``weights=`` argument) is ``auto``
  (the default), ``pretrained`` (an error if the weights cannot be had) or ``random``.
* **A local copy.** ``$MINIGPT_GPT2_PATH`` (or the ``path=`` argument) names a folder
  holding GPT-2 as Hugging Face writes it (``config.json`` + ``model.safetensors``, e.g.
  copied by hand from a machine that can reach the hub); its weights are used, and the
  reference says which folder they came from. A missing or broken folder is an error.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minigpt.assets import cache_dir, gpt2_bpe_files, read_gpt2_bpe
from minigpt.device import resolve_device
from minigpt.files import atomic_folder, first_line
from minigpt.formats.hf_model import hf_folder_config, load_pretrained_hf, quiet_loading
from minigpt.tokenizer import EOT

WEIGHTS_ENV = "MINIGPT_WEIGHTS"
GPT2_PATH_ENV = "MINIGPT_GPT2_PATH"  # a local GPT-2 folder (config.json + model.safetensors)
WEIGHT_MODES = ("auto", "pretrained", "random")
RANDOM_SEED = 0  # the seed of the random-weight fallback, so every run sees the same model
HUB_MODEL = "gpt2"  # GPT-2 small on the Hugging Face hub
BOS_ID = 50256  # the id of EOT in GPT-2's vocabulary, which GPT-2 also puts first


# Known facts of OpenAI's GPT-2 small, against which the book checks what it says of the
# trained model. TransformerLens's own tests pin this loss of "Hello world!" after the start
# token; a model with other weights lands far from it (random weights: about 11).
HELLO_WORLD = "Hello world!"
HELLO_WORLD_LOSS = 5.331856
HELLO_WORLD_LOSS_TOL = 1e-3  # float32 on CPU or GPU agrees to ~1e-5; other weights miss by >0.1


class ReferenceUnavailable(RuntimeError):
    """The reference cannot be loaded the way it was asked for."""


class ClaimFailed(AssertionError):
    """Something the book says of trained GPT-2 does not hold for the weights it loaded."""


def check_claim(statement: str, holds: bool, measured: str) -> str:
    """Back a sentence about the trained model with the measurement made in the same cell.

    Returns ``statement`` followed by what was measured, for the page to print; raises
    :class:`ClaimFailed` naming both when ``holds`` is false, so that a build with wrong or
    broken weights stops instead of publishing the sentence.
    """
    if not holds:
        raise ClaimFailed(
            f"the book says {statement!r}, but these weights give {measured}: they do not "
            "behave like OpenAI's GPT-2 small"
        )
    return f"{statement} (checked: {measured})"


@dataclass
class Reference:
    """GPT-2 small, ready to compare against.

    Attributes:
        bridge: TransformerLens ``TransformerBridge`` around ``hf_model``; use
            ``bridge.run_with_cache(tokens)`` to read any hook.
        hf_model: the Hugging Face ``GPT2LMHeadModel``, untouched (the bridge wraps a copy
            with the same weights).
        tokenizer: GPT-2's Hugging Face tokenizer, built offline.
        weights: ``"pretrained"`` (OpenAI's trained GPT-2) or ``"random"`` (seeded init).
        device: where the model lives.
        reason: one sentence on why these weights were chosen.
        load_seconds: how long loading took.
        path: the local folder the weights came from (``path=`` or ``$MINIGPT_GPT2_PATH``),
            else None.
    """

    bridge: object
    hf_model: torch.nn.Module
    tokenizer: object
    weights: str
    device: torch.device
    reason: str
    n_params: int = (
        0  # of the Hugging Face model, tied tensors counted once (GPT-2 small: 124,439,808)
    )
    load_seconds: float = field(default=0.0)
    path: str | None = None

    @property
    def pretrained(self) -> bool:
        return self.weights == "pretrained"

    def to_tokens(self, text: str | list[str], prepend_bos: bool = True) -> torch.Tensor:
        """Token ids ``[batch, pos]`` on the reference's device, with ``<|endoftext|>`` first."""
        texts = [text] if isinstance(text, str) else list(text)
        ids = [self.tokenizer.encode(t) for t in texts]
        if prepend_bos:
            ids = [[BOS_ID, *row] for row in ids]
        if len({len(row) for row in ids}) != 1:
            raise ValueError("texts tokenize to different lengths; pass them one at a time")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    @property
    def model_name(self) -> str:
        """``"GPT-2 small"``, or the shape of another GPT-2 (a local folder may hold one)."""
        c = self.hf_model.config
        if (c.n_layer, c.n_embd, c.n_head, c.vocab_size) == (12, 768, 12, 50257):
            return "GPT-2 small"
        return f"GPT-2 ({c.n_layer} layers, d_model {c.n_embd})"

    def summary(self) -> str:
        n_params = self.n_params
        mode = "PRETRAINED GPT-2 weights" if self.pretrained else "RANDOM weights (seeded)"
        if self.path is not None:
            mode = f"PRETRAINED weights from the folder {self.path}"
        return (
            f"Reference {self.model_name}: {mode}, {n_params / 1e6:.1f}M parameters, "
            f"on {self.device}, loaded in {self.load_seconds:.1f} s. {self.reason}"
        )

    def loss(self, text: str) -> float:
        """Mean next-token loss (nats) of ``text`` after the start token."""
        tokens = self.to_tokens(text)
        with torch.no_grad():
            logits = self.hf_model(tokens).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, tokens[0, 1:]).item()

    def check_gpt2_small(self) -> str:
        """Check that pretrained weights are GPT-2 small's: the loss of ``HELLO_WORLD``.

        Raises :class:`ClaimFailed` when it is not within ``HELLO_WORLD_LOSS_TOL`` of
        ``HELLO_WORLD_LOSS``; with random weights there is nothing to check (a ValueError).
        """
        if not self.pretrained:
            raise ValueError("check_gpt2_small() checks pretrained weights; these are random")
        loss = self.loss(HELLO_WORLD)
        return check_claim(
            f"these are GPT-2 small's weights: the loss of {HELLO_WORLD!r} is "
            f"{HELLO_WORLD_LOSS} ± {HELLO_WORLD_LOSS_TOL}",
            math.isfinite(loss) and abs(loss - HELLO_WORLD_LOSS) <= HELLO_WORLD_LOSS_TOL,
            f"loss {loss:.6f}",
        )

    def __repr__(self) -> str:
        return f"Reference(weights={self.weights!r}, device={str(self.device)!r})"

    def _repr_html_(self) -> str:
        colour = "#1b7f3b" if self.pretrained else "#b35900"
        return (
            f'<div style="border-left:6px solid {colour};padding:6px 10px;margin:4px 0;">'
            f"<b>{html.escape(self.summary().split(':')[0])}</b>: "
            f"{html.escape(self.summary().split(':', 1)[1])}</div>"
        )


def weights_mode(weights: str | None = None) -> str:
    """The requested mode: the argument, else ``$MINIGPT_WEIGHTS``, else ``auto``."""
    mode = (weights or os.environ.get(WEIGHTS_ENV) or "auto").strip().lower()
    if mode not in WEIGHT_MODES:
        source = "weights" if weights else f"${WEIGHTS_ENV}"
        raise ValueError(f"{source}={mode!r} is not one of {', '.join(WEIGHT_MODES)}")
    return mode


def gpt2_hf_tokenizer():
    """GPT-2's tokenizer as a Hugging Face ``GPT2TokenizerFast``, built from the verified tables.

    It is saved once under ``cache_dir()/gpt2-tokenizer`` and loaded from there (the bridge
    needs a tokenizer that knows its own folder).
    """
    from transformers import AutoTokenizer, GPT2TokenizerFast

    folder = cache_dir() / "gpt2-tokenizer"
    stamp = folder / "minigpt-source.json"
    files = gpt2_bpe_files()
    if not stamp.is_file():
        vocab, merges = read_gpt2_bpe(files)
        tok = GPT2TokenizerFast(
            vocab=vocab,
            merges=merges,
            bos_token=EOT,
            eos_token=EOT,
            unk_token=EOT,
            add_prefix_space=False,
        )
        if len(tok) != 50257:
            raise ReferenceUnavailable(f"built a GPT-2 tokenizer with {len(tok)} tokens, not 50257")
        if folder.exists() and not stamp.is_file():  # a broken older copy
            shutil.rmtree(folder)
        with atomic_folder(folder) as staging:  # another process may win the race: fine
            tok.save_pretrained(staging)
            (staging / stamp.name).write_text(json.dumps({"from": str(files.encoder_json.parent)}))
    tok = AutoTokenizer.from_pretrained(str(folder))
    tok.pad_token = EOT
    return tok


def gpt2_folder(path: str | os.PathLike | None = None) -> tuple[Path, str] | None:
    """The local GPT-2 folder asked for, and who asked: ``path``, else ``$MINIGPT_GPT2_PATH``."""
    if path is not None:
        return Path(path).expanduser(), "the path argument"
    env = os.environ.get(GPT2_PATH_ENV, "").strip()
    if env:
        return Path(env).expanduser(), f"${GPT2_PATH_ENV}"
    return None


def load_gpt2_folder(folder: str | os.PathLike, source: str | None = None):
    """GPT-2 from a local folder (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``), loaded with ``GPT2LMHeadModel.from_pretrained(folder)``.

    Returns ``(model, reason)``. Raises :class:`ReferenceUnavailable` naming the folder (and
    ``source``, who named it) when it is missing, lacks a file, holds another model or a
    vocabulary other than GPT-2's 50,257 tokens, or its weights do not load whole.
    """
    from transformers import GPT2LMHeadModel

    folder = Path(folder).expanduser()
    given = f" (given by {source})" if source else ""
    config, error = hf_folder_config(folder)
    problem = None if error is None else str(error)
    if problem is None:
        if config.get("vocab_size", 50257) != 50257:
            problem = (
                f"holds a model with vocab_size={config.get('vocab_size')}; the reference "
                "uses GPT-2's tokenizer, 50,257 tokens"
            )
    if problem is None:
        try:
            with warnings.catch_warnings(), quiet_loading():
                warnings.simplefilter("ignore")
                model, info = GPT2LMHeadModel.from_pretrained(
                    str(folder), local_files_only=True, output_loading_info=True
                )
        except Exception as err:  # a truncated or foreign file: say which folder
            problem = f"cannot be loaded as GPT-2: {type(err).__name__}: {first_line(err)}"
        else:
            lacking = sorted(info.get("missing_keys") or []) + sorted(
                str(k) for k in info.get("mismatched_keys") or []
            )
            if lacking:
                problem = f"holds incomplete or misshapen weights: {lacking[:3]}"
    if problem is not None:
        raise ReferenceUnavailable(f"the GPT-2 folder {folder}{given} {problem}")
    return model, f"Weights from the local folder {folder}{given}."


# How far the offline reference's small parameters sit from Hugging Face's init, which sets
# every bias to 0 and every LayerNorm to gain 1, shift 0: a comparison against such a model
# cannot see a missing bias or LayerNorm affine, since both sides are zero there. Sizes are
# chosen so that dropping any one of them moves some activation by far more than the
# book's tolerances, while the residual stream stays dominated by what the tokens put in.
RANDOM_LN_GAIN_STD = 0.1  # LayerNorm gains ~ N(1, 0.1)
RANDOM_LN_SHIFT_STD = 0.05  # LayerNorm shifts ~ N(0, 0.05)
RANDOM_BIAS_STD = 0.02  # biases of q, k, v and of the MLP's first layer ~ N(0, 0.02)
RANDOM_RESID_BIAS_STD = 0.01  # biases of layers that write to the residual stream ~ N(0, 0.01)


def random_gpt2_hf(seed: int = RANDOM_SEED, **config):
    """GPT-2 small's exact architecture with seeded random weights, none of them trivial.

    ``config`` changes settings of its ``GPT2Config`` (``n_layer=2, n_embd=64``, ...): the
    tests use small models drawn the same way.

    Matrices follow GPT-2's own init (normal, std 0.02; residual projections scaled by
    1/sqrt(2 * n_layers)). Then, unlike that init, every bias and every LayerNorm gain and
    shift is drawn too (see ``RANDOM_LN_GAIN_STD`` and the others above), so that every
    parameter tensor differs from its trivial value and a check against this model fails
    when a bias or a LayerNorm affine is left out. The model is not trained.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(GPT2Config(**config))
        with torch.no_grad():
            for name, param in model.named_parameters():
                *_, module, kind = name.split(".")
                if module.startswith("ln_"):
                    if kind == "weight":
                        param.normal_(1.0, RANDOM_LN_GAIN_STD)
                    else:
                        param.normal_(0.0, RANDOM_LN_SHIFT_STD)
                elif kind == "bias":
                    std = RANDOM_RESID_BIAS_STD if module == "c_proj" else RANDOM_BIAS_STD
                    param.normal_(0.0, std)
    return model


def _boot_bridge(hf_model, tokenizer, device: torch.device):
    """Wrap a copy of ``hf_model`` in a TransformerBridge.

    The bridge rebuilds the module tree it is given (it splits GPT-2's fused ``c_attn`` into
    q, k, v and wraps every module), so it gets a deep copy: the ``hf_model`` we hand out
    stays a plain Hugging Face model with its usual ``state_dict``.
    """
    import copy

    from transformer_lens.model_bridge import TransformerBridge

    hf_model = copy.deepcopy(hf_model)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TL warns about things that do not apply to GPT-2
        bridge = TransformerBridge.boot_transformers(
            HUB_MODEL, hf_model=hf_model, tokenizer=tokenizer, device=str(device)
        )
    return bridge


_LOADED: dict[tuple[str, str], Reference] = {}


def load_reference(
    weights: str | None = None,
    device: str | torch.device | None = None,
    path: str | os.PathLike | None = None,
) -> Reference:
    """GPT-2 small through TransformerLens, loaded once per process.

    Args:
        weights: ``"auto"`` (default; real weights when reachable, else seeded random),
            ``"pretrained"`` (raise :class:`ReferenceUnavailable` if unreachable) or
            ``"random"``. Defaults to ``$MINIGPT_WEIGHTS``.
        device: ``"auto"`` (default: CUDA, then MPS, then CPU), or a device name.
            Defaults to ``$MINIGPT_DEVICE``.
        path: a local GPT-2 folder (``config.json`` + ``model.safetensors``), loaded with
            ``GPT2LMHeadModel.from_pretrained(path)`` instead of the cache or the hub and
            reported as pretrained weights from that folder. Defaults to
            ``$MINIGPT_GPT2_PATH`` (which ``weights="random"`` overrides; the argument
            with ``weights="random"`` is a ValueError). A missing or broken folder raises
            :class:`ReferenceUnavailable` naming it.
    """
    mode = weights_mode(weights)
    dev = resolve_device(device)
    if path is not None and weights is not None and mode == "random":
        raise ValueError(f"path={str(path)!r} gives pretrained weights, but weights='random'")
    local = gpt2_folder(path) if (path is not None or mode != "random") else None
    if local is not None:
        return _load_local_reference(*local, dev)
    for key in ((mode, str(dev)), ("pretrained" if mode == "auto" else mode, str(dev))):
        if key in _LOADED:
            return _LOADED[key]

    start = time.perf_counter()
    hf_model, reason = None, "Random weights were asked for."
    if mode in ("auto", "pretrained"):
        hf_model, reason = load_pretrained_hf()
        if hf_model is None and mode == "pretrained":
            asked = "weights='pretrained'" if weights else f"{WEIGHTS_ENV}=pretrained"
            instead = "weights='random'" if weights else f"{WEIGHTS_ENV}=random"
            err = ReferenceUnavailable(
                f"{asked}, but the real GPT-2 weights cannot be had: {reason} "
                f'Fill the Hugging Face cache (run `python -c "from transformers import '
                f"GPT2LMHeadModel; GPT2LMHeadModel.from_pretrained('gpt2')\"` where the hub is "
                f"reachable) or ask for {instead}."
            )
            err.reason = reason
            raise err
    resolved = "pretrained" if hf_model is not None else "random"
    if hf_model is None:
        hf_model = random_gpt2_hf()
        if mode == "auto":
            reason += f" Using GPT-2 small's architecture with random weights (seed {RANDOM_SEED})."
    ref = _make_reference(hf_model, resolved, reason, dev, start)
    _LOADED[(resolved, str(dev))] = ref
    _LOADED[(mode, str(dev))] = ref
    return ref


def _make_reference(
    hf_model, resolved: str, reason: str, dev: torch.device, start: float, path=None
) -> Reference:
    hf_model = hf_model.to(dev).eval()
    n_params = sum({p.data_ptr(): p.numel() for p in hf_model.parameters()}.values())
    tokenizer = gpt2_hf_tokenizer()
    bridge = _boot_bridge(hf_model, tokenizer, dev)
    return Reference(
        bridge=bridge,
        hf_model=hf_model,
        tokenizer=tokenizer,
        weights=resolved,
        device=dev,
        reason=reason,
        n_params=n_params,
        load_seconds=time.perf_counter() - start,
        path=None if path is None else str(path),
    )


def _load_local_reference(folder: Path, source: str, dev: torch.device) -> Reference:
    """The reference from a local GPT-2 folder, loaded once per process and folder."""
    key = (f"folder:{folder.resolve()}", str(dev))
    if key in _LOADED:
        return _LOADED[key]
    start = time.perf_counter()
    hf_model, reason = load_gpt2_folder(folder, source)
    ref = _make_reference(hf_model, "pretrained", reason, dev, start, path=folder)
    _LOADED[key] = ref
    return ref

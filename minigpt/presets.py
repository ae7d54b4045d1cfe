"""Named training setups: a model shape, a corpus, a tokenizer and a :class:`TrainConfig`.

Presets are data; nothing branches on a preset's name. :func:`plan_run` turns one into a run
(its tokenizer, data, settings and model shape), and :meth:`RunPlan.materialize` builds the
model and loads the tokens: the command line (``minigpt-train --preset tiny``) and
:func:`minigpt.zoo.shakespeare_model` both start their runs this way.

* ``tiny``: a 2-layer, 128-wide model on Shakespeare with the 4,096-token tokenizer of
  chapter 1; about two minutes on two CPU cores; the model the other chapters load.
* ``seed``: the seed project's 6-layer, 256-wide model on Pile-10k with GPT-2's tokenizer.
* ``gpt2``: GPT-2 small (124M) with GPT-2's tokenizer and its training recipe; for a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from minigpt.config import GPTConfig
from minigpt.data import TokenData, load_tokens, tokenizer_fingerprint
from minigpt.model import GPT
from minigpt.tokenizer import BPETokenizer, gpt2_tokenizer, shakespeare_tokenizer
from minigpt.train import TrainConfig


@dataclass(frozen=True)
class Preset:
    """Everything needed to start a run, except the output folder and the device."""

    name: str
    description: str
    model: dict = field(default_factory=dict)  # GPTConfig fields; d_vocab comes from the tokenizer
    train: TrainConfig = field(default_factory=TrainConfig)
    data: str = "shakespeare"  # a corpus name, path or Hugging Face dataset (minigpt.corpus)
    tokenizer: str = "shakespeare-4096"  # "shakespeare-<vocab size>" or "gpt2"

    def model_config(self, d_vocab: int) -> GPTConfig:
        return GPTConfig(**self.model, d_vocab=d_vocab)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="tiny",
            description="2 layers, d_model 128, context 128, Shakespeare; ~2 min on 2 CPU cores",
            model=dict(d_model=128, n_heads=4, d_head=32, d_mlp=512, n_layers=2, n_ctx=128),
            train=TrainConfig(
                max_steps=200,
                batch_size=16,
                lr=3e-3,
                min_lr=3e-4,
                warmup_steps=20,
                weight_decay=0.1,
                eval_interval=50,
                eval_windows=32,
                checkpoint_interval=50,
            ),
        ),
        Preset(
            name="seed",
            description="the seed project's 6 layers, d_model 256, context 1024, on Pile-10k",
            model=dict(d_model=256, n_heads=8, d_head=32, d_mlp=1024, n_layers=6, n_ctx=1024),
            train=TrainConfig(
                max_steps=5000,
                batch_size=32,
                lr=1e-3,
                min_lr=1e-4,
                warmup_steps=200,
                eval_interval=250,
                eval_windows=64,
                checkpoint_interval=500,
            ),
            data="NeelNanda/pile-10k",
            tokenizer="gpt2",
        ),
        Preset(
            name="gpt2",
            description="GPT-2 small (124M), context 1024, ~0.5M tokens a step; for a GPU",
            model=dict(d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_layers=12, n_ctx=1024),
            train=TrainConfig(
                max_steps=10000,
                batch_size=512,
                grad_accum=32,
                lr=6e-4,
                min_lr=6e-5,
                warmup_steps=700,
                eval_interval=500,
                eval_windows=128,
                checkpoint_interval=1000,
                compile=True,
            ),
            data="NeelNanda/pile-10k",
            tokenizer="gpt2",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``, or a ValueError listing the ones that exist."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} is unknown; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def get_tokenizer(name: str) -> BPETokenizer:
    """A tokenizer by name: ``"gpt2"`` or ``"shakespeare-<vocab size>"`` (e.g. ``shakespeare-4096``)."""
    if name == "gpt2":
        return gpt2_tokenizer()
    prefix = "shakespeare-"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        return shakespeare_tokenizer(int(name[len(prefix) :]))
    raise ValueError(f"tokenizer={name!r} is unknown; use 'gpt2' or 'shakespeare-<vocab size>'")


@dataclass(frozen=True)
class RunPlan:
    """A run, decided but not started: what :func:`plan_run` makes of a preset."""

    preset: Preset
    tokenizer: BPETokenizer
    data: str  # the corpus (see minigpt.corpus)
    train: TrainConfig  # with n_ctx filled in
    model: GPTConfig
    meta: dict  # saved in the checkpoint; a resume must bring the same
    data_options: dict = field(default_factory=dict)  # config, split, text_column of a dataset

    def materialize(self, max_documents: int | None = None) -> tuple[GPT, TokenData]:
        """The freshly initialised model (seeded with ``train.seed``) and the tokenized corpus."""
        data = load_tokens(
            self.data, self.tokenizer, max_documents=max_documents, **self.data_options
        )
        torch.manual_seed(self.train.seed)
        return GPT(self.model), data


def plan_run(
    preset: str,
    *,
    tokenizer: str | None = None,
    data: str | None = None,
    data_options: dict | None = None,
    train_changes: dict | None = None,
) -> RunPlan:
    """The run a preset describes, with the tokenizer, the corpus or training settings changed.

    ``train_changes`` are :class:`TrainConfig` fields; ``None`` values are ignored, so a
    command line can pass every flag through. ``data_options`` (``config``, ``split``,
    ``text_column`` of a Hugging Face dataset; ``None`` values ignored) choose which part of
    the corpus, and are recorded with it. The training window defaults to the model's context.
    """
    chosen = get_preset(preset)
    tokenizer_name = tokenizer or chosen.tokenizer
    tok = get_tokenizer(tokenizer_name)
    changes = {k: v for k, v in (train_changes or {}).items() if v is not None}
    cfg = chosen.train.replace(**changes)
    if cfg.n_ctx is None:
        cfg = cfg.replace(n_ctx=chosen.model["n_ctx"])
    data_name = data or chosen.data
    options = {k: v for k, v in (data_options or {}).items() if v is not None}
    meta = {
        "preset": chosen.name,
        "data": data_name,
        **({"data_options": options} if options else {}),
        "tokenizer": tokenizer_name,
        "tokenizer_fingerprint": tokenizer_fingerprint(tok),
    }
    model = chosen.model_config(tok.vocab_size)
    return RunPlan(chosen, tok, data_name, cfg, model, meta, options)

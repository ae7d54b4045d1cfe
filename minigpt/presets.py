"""Named training setups: a model shape, a corpus, a tokenizer and a :class:`TrainConfig`.

Presets are data; nothing branches on a preset's name. :func:`plan_run` turns one into a run
(its tokenizer, data, settings and model shape), and :meth:`RunPlan.materialize` builds the
model and loads the tokens: the command line (``minigpt-train --preset tiny``) and
:func:`minigpt.zoo.shakespeare_model` both start their runs this way.

* ``tiny``: a 2-layer, 128-wide model on Shakespeare with the 4,096-token tokenizer of
  chapter 1; under half a minute on two CPU cores; the model the other chapters load.
* ``seed``: the seed project's 6-layer, 256-wide model on Pile-10k with GPT-2's tokenizer.
* ``seed-de``: the same model and settings on German Wikipedia (``wikimedia/wikipedia``,
  configuration ``20231101.de``), the seed project's other corpus.
* ``gpt2``: GPT-2 small (124M) on OpenWebText (``Skylion007/openwebtext``) with GPT-2's
  recipe as nanoGPT reproduces it: 491,520 tokens a step (480 windows of 1,024, in 40
  micro-batches of 12), AdamW betas (0.9, 0.95), weight decay 0.1, 2,000 warmup steps, then
  cosine to a tenth of the peak 6e-4 over 600,000 steps; for GPUs.

:func:`run_budget` computes what a preset's steps add up to (tokens a step, steps for a
number of tokens, the hours at a given rate), so a text can quote it rather than type it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from minigpt.checkpoint import DATA_KEY, data_record
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
    data_options: dict = field(default_factory=dict)  # config, split, text_column of a dataset

    def model_config(self, d_vocab: int) -> GPTConfig:
        return GPTConfig(**self.model, d_vocab=d_vocab)


SEED_TRAIN = TrainConfig(
    max_steps=5000,
    batch_size=32,
    lr=1e-3,
    min_lr=1e-4,
    warmup_steps=200,
    eval_interval=250,
    eval_windows=64,
    checkpoint_interval=500,
)
SEED_MODEL = dict(d_model=256, n_heads=8, d_head=32, d_mlp=1024, n_layers=6, n_ctx=1024)
# nanoGPT's config/train_gpt2.py with its train.py defaults: 12 windows of 1,024 a micro-step,
# 40 micro-steps (5 on each of 8 GPUs) a step, lr 6e-4 decayed over 600,000 steps to 6e-5.
GPT2_TRAIN = TrainConfig(
    max_steps=600_000,
    batch_size=480,
    grad_accum=40,
    lr=6e-4,
    min_lr=6e-5,
    warmup_steps=2000,
    weight_decay=0.1,
    beta1=0.9,
    beta2=0.95,
    grad_clip=1.0,
    eval_interval=1000,
    eval_windows=240,
    checkpoint_interval=1000,
    compile=True,
)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="tiny",
            description="2 layers, d_model 128, context 128, Shakespeare; ~25 s on 2 CPU cores",
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
            model=SEED_MODEL,
            train=SEED_TRAIN,
            data="NeelNanda/pile-10k",
            tokenizer="gpt2",
        ),
        Preset(
            name="seed-de",
            description="the seed's model on German Wikipedia (wikimedia/wikipedia 20231101.de)",
            model=SEED_MODEL,
            train=SEED_TRAIN,
            data="wikimedia/wikipedia",
            data_options={"config": "20231101.de"},
            tokenizer="gpt2",
        ),
        Preset(
            name="gpt2",
            description="GPT-2 small (124M) on OpenWebText, nanoGPT's recipe "
            "(491,520 tokens a step); for GPUs",
            model=dict(d_model=768, n_heads=12, d_head=64, d_mlp=3072, n_layers=12, n_ctx=1024),
            train=GPT2_TRAIN,
            data="Skylion007/openwebtext",
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

    def materialize(
        self, max_documents: int | None = None, progress: bool = True
    ) -> tuple[GPT, TokenData]:
        """The freshly initialised model (seeded with ``train.seed``) and the tokenized corpus
        (``progress``: the tokenization's progress bar, on a terminal)."""
        data = load_tokens(
            self.data,
            self.tokenizer,
            max_documents=max_documents,
            progress=progress,
            **self.data_options,
        )
        torch.manual_seed(self.train.seed)
        return GPT(self.model), data

    def run_meta(self, data: TokenData) -> dict:
        """:attr:`meta` with what the checkpoint records of ``data`` (the digest of its ids
        and of each corpus file: :func:`minigpt.checkpoint.data_record`), so that a resume on
        a corpus whose content changed is refused, naming the file."""
        record = data_record(data.provenance)
        return {**self.meta, DATA_KEY: record} if record else dict(self.meta)


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
    ``text_column`` of a Hugging Face dataset, ``lossy`` of a text file; ``None`` values
    ignored) choose which part of the corpus, and are recorded with it; they are added to the
    preset's own (``seed-de``'s ``config``), which hold for any ``data``: a local copy of
    the dataset is read as the hub's would be. The training window defaults to the model's context.
    """
    chosen = get_preset(preset)
    tokenizer_name = tokenizer or chosen.tokenizer
    tok = get_tokenizer(tokenizer_name)
    changes = {k: v for k, v in (train_changes or {}).items() if v is not None}
    cfg = chosen.train.replace(**changes)
    if cfg.n_ctx is None:
        cfg = cfg.replace(n_ctx=chosen.model["n_ctx"])
    data_name = data or chosen.data
    given = {k: v for k, v in (data_options or {}).items() if v is not None}
    # the preset's options hold for another copy of its dataset too (a local one, say)
    options = {**chosen.data_options, **given}
    meta = {
        "preset": chosen.name,
        "data": data_name,
        **({"data_options": options} if options else {}),
        "tokenizer": tokenizer_name,
        "tokenizer_fingerprint": tokenizer_fingerprint(tok),
    }
    model = chosen.model_config(tok.vocab_size)
    return RunPlan(chosen, tok, data_name, cfg, model, meta, options)


# -- what a run adds up to ------------------------------------------------------------------


def _vocab_size_of(tokenizer: str) -> int:
    """The vocabulary size a tokenizer name stands for, without building the tokenizer."""
    prefix = "shakespeare-"
    if tokenizer == "gpt2":
        return 50257
    if tokenizer.startswith(prefix) and tokenizer[len(prefix) :].isdigit():
        return int(tokenizer[len(prefix) :])
    return get_tokenizer(tokenizer).vocab_size  # raises, naming the unknown tokenizer


def matmul_params(cfg: GPTConfig) -> int:
    """The parameters of a model shape that take part in matrix products: all but the token and
    position embeddings (which are looked up). ``W_U`` counts; it is a matrix of its own."""
    with torch.device("meta"):  # shapes only, no memory
        model = GPT(cfg)
    looked_up = ("embed.W_E", "pos_embed.W_pos")
    return sum(p.numel() for n, p in model.named_parameters() if n not in looked_up)


@dataclass(frozen=True)
class RunBudget:
    """What a preset's run adds up to: ``steps`` optimizer steps of ``tokens_per_step`` tokens
    (``batch_size`` windows of ``n_ctx``, every process and micro-step together) on a model
    with ``n_params`` parameters in matrix products (:func:`matmul_params`)."""

    preset: str
    tokens_per_step: int
    steps: int
    n_params: int

    @property
    def tokens(self) -> int:
        return self.tokens_per_step * self.steps

    @property
    def flops(self) -> float:
        """``6 N D``: forward and backward through the matrix products (attention left out)."""
        return 6.0 * self.n_params * self.tokens

    def hours(self, flops_per_s: float) -> float:
        """Hours of training at a sustained ``flops_per_s`` (e.g. 40% of a GPU's peak)."""
        if not (math.isfinite(flops_per_s) and flops_per_s > 0):
            raise ValueError(f"flops_per_s={flops_per_s!r} must be a finite number > 0")
        return self.flops / flops_per_s / 3600


def run_budget(preset: str | Preset, tokens: int | None = None) -> RunBudget:
    """The steps, tokens and FLOPs of a preset's run, or of a run over ``tokens`` tokens.

    ``run_budget("gpt2").tokens_per_step == 491_520``; ``run_budget("gpt2", tokens=9e9).steps``
    is the number of steps (rounded up) that read 9 billion tokens once.
    """
    chosen = get_preset(preset) if isinstance(preset, str) else preset
    n_ctx = chosen.train.n_ctx or chosen.model["n_ctx"]
    per_step = chosen.train.batch_size * n_ctx
    if tokens is None:
        steps = chosen.train.max_steps
    elif isinstance(tokens, bool) or not isinstance(tokens, int | float) or not tokens >= 1:
        raise ValueError(f"tokens={tokens!r} must be None or a number >= 1")
    else:
        steps = math.ceil(tokens / per_step)
    n_params = matmul_params(chosen.model_config(_vocab_size_of(chosen.tokenizer)))
    return RunBudget(chosen.name, per_step, steps, n_params)

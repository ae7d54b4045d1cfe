"""Small trained models that chapters can ask for without retraining them every time.

:func:`induction_model` gives a 2-layer model trained on a made-up language in which copying
pays, for chapter 8 (about a minute to train, then cached the same way).

:func:`shakespeare_model` gives the ``tiny`` preset trained on Shakespeare. The first call
trains it (about 25 s on two CPU cores) into
``cache_dir()/checkpoints/shakespeare-tiny``; later calls load it. A run that was cut
short is resumed, a checkpoint of an older preset or tokenizer is trained again, and a
file lock makes processes that ask at the same time train it only once.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import torch

from minigpt.assets import cache_dir
from minigpt.checkpoint import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    CheckpointError,
    model_from_checkpoint,
    read_checkpoint,
)
from minigpt.config import GPTConfig
from minigpt.device import resolve_device
from minigpt.files import FileLock
from minigpt.model import GPT
from minigpt.presets import plan_run
from minigpt.train import TrainConfig, train

SHAKESPEARE_PRESET = "tiny"


def shakespeare_run_dir() -> Path:
    """The folder holding the tiny Shakespeare model's ``checkpoint.pt`` and ``metrics.jsonl``."""
    return cache_dir() / "checkpoints" / "shakespeare-tiny"


@contextlib.contextmanager
def _one_thread():
    """Train the tiny model on one CPU thread.

    For a model this small, a second thread buys little on an idle machine and costs a lot
    (2-3x slower, measured) when the cores are shared, as they are when chapters run in
    parallel; one thread also gives the same model whatever the number of cores.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _checkpoint_status(path: Path, model: GPTConfig, train_cfg: TrainConfig, meta: dict) -> str:
    """``"missing"``, ``"finished"``, ``"partial"`` (resumable) or ``"stale"`` (another setup)."""
    if not path.is_file():
        return "missing"
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError:
        return "stale"
    same = (
        ckpt.model_config == model
        and ckpt.meta == meta
        and ckpt.train_config is not None
        and not train_cfg.differences(ckpt.train_config)  # max_steps included
    )
    if not same:
        return "stale"
    return "finished" if ckpt.step >= train_cfg.max_steps else "partial"


def shakespeare_model(device: str | torch.device | None = None, *, progress: bool = False):
    """The ``tiny`` preset trained on Shakespeare: ``(GPT in eval mode, BPETokenizer)``.

    Args:
        device: where the model goes (and trains, if it must): ``None``/``"auto"`` for the
            best device here, or a name such as ``"cpu"``.
        progress: show the training progress bar (on a terminal) if it has to train.
    """
    device = resolve_device(device)
    plan = plan_run(SHAKESPEARE_PRESET)
    folder = shakespeare_run_dir()
    path = folder / CHECKPOINT_NAME
    with FileLock(folder.with_name(folder.name + ".lock")):
        status = _checkpoint_status(path, plan.model, plan.train, plan.meta)
        if status == "stale":  # made by an older preset or tokenizer: this cache is ours
            shutil.rmtree(folder)
        if status != "finished":
            model, data = plan.materialize()
            with _one_thread():
                result = train(
                    model,
                    data,
                    plan.train,
                    out_dir=folder,
                    resume=status == "partial",
                    device=device,
                    progress=progress,
                    meta=plan.meta,
                )
            if result.status != "finished":
                raise KeyboardInterrupt(
                    f"training of the tiny Shakespeare model stopped at step {result.step}; "
                    "call shakespeare_model() again to resume it"
                )
        model = model_from_checkpoint(path, device=device)
    return model.eval(), plan.tokenizer


def shakespeare_metrics_path() -> Path:
    """``metrics.jsonl`` of the tiny Shakespeare run (exists once it has been trained)."""
    return shakespeare_run_dir() / METRICS_NAME


# -- a model that learns induction ----------------------------------------------------------

INDUCTION_NAME = "induction-2l"
# GPT-2's architecture, shrunk: 2 layers of 4 heads, 64 wide, an MLP as wide as the stream
# (a quarter of GPT-2's ratio, which halves the training time and changes nothing here).
INDUCTION_MODEL = dict(d_model=64, n_heads=4, d_head=16, d_mlp=64, n_layers=2, n_ctx=48, d_vocab=64)
INDUCTION_TRAIN = TrainConfig(
    max_steps=1000,
    batch_size=64,
    lr=5e-3,
    min_lr=1e-3,
    warmup_steps=20,
    weight_decay=0.0,
    eval_interval=250,
    eval_windows=16,
    checkpoint_interval=0,
)
# The training text: a made-up language of 64 tokens, in pieces of three kinds, one third each.
INDUCTION_LANGUAGE = dict(
    piece=(16, 64),  # lengths of the bigram and skip pieces, uniform in [low, high]
    bigram_keep=0.7,  # bigram piece: the next token is the current one's fixed successor, or random
    skip_keep=0.5,  # skip piece: the next token is the successor of the token two back, or random
    block=(4, 20),  # repeat piece: a block of this many distinct random tokens ...
    repeats=(3.0, 6.0),  # ... written out this many times over (a fraction cuts the last copy)
    n_tokens=1_000_000,  # total length of the text
    seed=0,
)
PROBE_SEQ = 20  # the probe: PROBE_BATCH blocks of PROBE_SEQ random ids, each repeated twice
PROBE_BATCH = 32
PROBE_INTERVAL = 25  # training steps between two measurements on the probe
PROBE_NAME = "probe.jsonl"


def induction_run_dir() -> Path:
    """The folder of the induction model: ``checkpoint.pt``, ``metrics.jsonl``, ``probe.jsonl``."""
    return cache_dir() / "checkpoints" / INDUCTION_NAME


def induction_probe(generator_seed: int = 1) -> torch.Tensor:
    """The fixed probe ``[PROBE_BATCH, 2 * PROBE_SEQ]`` measured during training (same every call)."""
    from minigpt.interp import repeated_tokens

    gen = torch.Generator().manual_seed(generator_seed)
    return repeated_tokens(PROBE_BATCH, PROBE_SEQ, INDUCTION_MODEL["d_vocab"], gen)


def _successors(rng, keep: float, length: int, back: int, table, vocab: int) -> list[int]:
    """A piece where token ``t`` is ``table[token t - back]`` with chance ``keep``, else random."""
    piece = [int(t) for t in rng.integers(0, vocab, back)]
    coins, noise = rng.random(length), rng.integers(0, vocab, length)
    for t in range(back, length):
        piece.append(int(table[piece[t - back]]) if coins[t] < keep else int(noise[t]))
    return piece


def induction_language(n_tokens: int | None = None, seed: int | None = None) -> np.ndarray:
    """The induction model's training text: ``n_tokens`` ids of a made-up 64-token language.

    Three kinds of pieces, drawn with equal chances, each teaching one part of the circuit:

    * **bigram**: each token is usually followed by its fixed successor (a permutation of the
      vocabulary), so the *current* token predicts the next, as in natural text;
    * **skip**: each token is usually the successor (another permutation) of the token *two*
      back, so knowing the *previous* token pays, which a previous-token head provides;
    * **repeat**: a block of distinct random tokens written out 3 to 6 times, which nothing
      but copying from earlier in the context can predict.
    """
    lang = INDUCTION_LANGUAGE
    n_tokens = lang["n_tokens"] if n_tokens is None else n_tokens
    vocab = INDUCTION_MODEL["d_vocab"]
    rng = np.random.default_rng(lang["seed"] if seed is None else seed)
    bigram, skip = rng.permutation(vocab), rng.permutation(vocab)
    pieces, total = [], 0
    while total < n_tokens:
        kind = int(rng.integers(3))
        if kind == 2:
            size = int(rng.integers(lang["block"][0], lang["block"][1] + 1))
            block = rng.choice(vocab, size, replace=False)
            times = rng.uniform(*lang["repeats"])
            piece = np.tile(block, int(np.ceil(times)))[: int(size * times)]
        else:
            length = int(rng.integers(lang["piece"][0], lang["piece"][1] + 1))
            keep = lang["bigram_keep"] if kind == 0 else lang["skip_keep"]
            table = bigram if kind == 0 else skip
            piece = np.array(_successors(rng, keep, length, kind + 1, table, vocab))
        pieces.append(piece)
        total += piece.size
    return np.concatenate(pieces)[:n_tokens].astype(np.uint16)


def induction_training_data():
    """:func:`induction_language` as a :class:`~minigpt.data.TokenData` (5% held out)."""
    from minigpt.data import TokenData

    return TokenData(induction_language(), INDUCTION_MODEL["d_vocab"])


def _induction_meta() -> dict:
    return {
        "preset": INDUCTION_NAME,
        "data": "induction language",
        "language": {
            k: list(v) if isinstance(v, tuple) else v for k, v in INDUCTION_LANGUAGE.items()
        },
        "probe": [PROBE_BATCH, PROBE_SEQ, PROBE_INTERVAL],
    }


def induction_config():
    """The induction model's :class:`~minigpt.config.GPTConfig`."""
    from minigpt.config import GPTConfig

    return GPTConfig(**INDUCTION_MODEL)


def untrained_induction_model(device: str | torch.device | None = None) -> GPT:
    """The induction model as it starts training (same seed): the baseline for every score."""
    torch.manual_seed(INDUCTION_TRAIN.seed)
    return GPT(induction_config()).to(resolve_device(device)).eval()


def _probe_record(step: int, model, probe: torch.Tensor, heldout: torch.Tensor) -> dict:
    """Losses on the two halves of the probe and on held-out text, and every induction score."""
    from minigpt.interp import copy_losses, induction_scores, previous_token_scores
    from minigpt.train import lm_loss

    was_training = model.training
    model.eval()
    with torch.no_grad():
        first, repeated = copy_losses(model(probe[:, :-1]), probe)
        text_loss = float(lm_loss(model(heldout[:, :-1]), heldout[:, 1:]))
        scores = induction_scores(model, probe)
        previous = previous_token_scores(model, probe)
    model.train(was_training)
    return {
        "step": step,
        "first_half_loss": first,  # predicting ids 1 .. seq-1
        "repeated_half_loss": repeated,  # ids seq .. 2 seq - 1
        "text_loss": text_loss,
        "induction_scores": scores.tolist(),
        "previous_token_scores": previous.tolist(),
    }


def induction_model(device: str | torch.device | None = None, *, progress: bool = False) -> GPT:
    """A 2-layer GPT-2 that has learned induction (in eval mode).

    Trained on one CPU thread (about a minute) on :func:`induction_language` the first time it
    is asked for, into :func:`induction_run_dir`; loaded after that. While it trains, every
    ``PROBE_INTERVAL`` steps it measures the loss on the two halves of a fixed probe of
    repeated random blocks and every head's induction and previous-token scores:
    :func:`induction_probe_records` reads them back.
    """
    import json

    from minigpt.files import atomic_write_text

    device = resolve_device(device)
    model_cfg, meta = induction_config(), _induction_meta()
    cfg = INDUCTION_TRAIN.replace(n_ctx=model_cfg.n_ctx)
    folder = induction_run_dir()
    path = folder / CHECKPOINT_NAME
    with FileLock(folder.with_name(folder.name + ".lock")):
        status = _checkpoint_status(path, model_cfg, cfg, meta)
        if status == "finished" and not (folder / PROBE_NAME).is_file():
            status = "stale"
        if status != "finished":  # a run cut short is trained again: it takes a minute
            if folder.exists():
                shutil.rmtree(folder)
            data = induction_training_data()
            heldout = data.fixed_windows(16, cfg.n_ctx, "val").to(device)
            probe = induction_probe().to(device)
            model = untrained_induction_model(device).train()
            records = []

            def measure(step: int, record: dict, model) -> None:
                if step % PROBE_INTERVAL == 0:
                    records.append(_probe_record(step, model, probe, heldout))

            with _one_thread():
                records.append(_probe_record(0, model, probe, heldout))
                result = train(
                    model,
                    data,
                    cfg,
                    out_dir=folder,
                    device=device,
                    progress=progress,
                    callback=measure,
                    meta=meta,
                )
            if result.status != "finished":
                raise KeyboardInterrupt(
                    f"training of the induction model stopped at step {result.step}; "
                    "call induction_model() again to train it"
                )
            lines = "".join(json.dumps(r) + "\n" for r in records)
            atomic_write_text(folder / PROBE_NAME, lines)
        model = model_from_checkpoint(path, device=device)
    return model.eval()


def induction_probe_records() -> list[dict]:
    """What :func:`induction_model` measured on the probe while it trained (train it first)."""
    import json

    text = (induction_run_dir() / PROBE_NAME).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def induction_metrics_path() -> Path:
    """``metrics.jsonl`` of the induction model's run."""
    return induction_run_dir() / METRICS_NAME

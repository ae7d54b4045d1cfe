"""Named training setups (minigpt.presets): looking presets and tokenizers up by name, the run
plan a preset gives (:func:`plan_run`), and the seeded model and tokens it materializes.

GPT-2's tokenizer is used throughout: it is built from the installed tables, so no test here
trains the 4,096-token Shakespeare tokenizer.
"""

from __future__ import annotations

import pytest
import torch

from minigpt.data import tokenizer_fingerprint
from minigpt.presets import PRESETS, Preset, get_preset, get_tokenizer, plan_run
from minigpt.train import TrainConfig

MICRO = dict(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=1, n_ctx=12)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The token cache of these tests, in a fresh folder."""
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def micro(tmp_path, monkeypatch, cache):
    """A tiny custom preset over a small text file, registered as ``micro``."""
    text = tmp_path / "text.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun.\n" * 20)
    preset = Preset(
        "micro",
        "a test preset",
        model=MICRO,
        train=TrainConfig(max_steps=3, batch_size=2, warmup_steps=1, eval_interval=1),
        data=str(text),
        tokenizer="gpt2",
    )
    monkeypatch.setitem(PRESETS, "micro", preset)
    return preset, text


def test_presets_are_found_by_name_and_an_unknown_one_is_named():
    assert get_preset("tiny") is PRESETS["tiny"] and PRESETS["tiny"].name == "tiny"
    assert set(PRESETS) >= {"tiny", "seed", "gpt2"}
    with pytest.raises(
        ValueError, match=r"preset='huge' is unknown; choose one of tiny, seed, seed-de, gpt2"
    ):
        get_preset("huge")


@pytest.mark.parametrize("name", ["gpt3", "shakespeare-", "shakespeare-big", "Shakespeare-4096"])
def test_an_unknown_tokenizer_is_named(name):
    with pytest.raises(ValueError, match=rf"tokenizer={name!r} is unknown; use 'gpt2' or"):
        get_tokenizer(name)


def test_gpt2_tokenizer_by_name():
    tok = get_tokenizer("gpt2")
    assert tok.vocab_size == 50257 and tok.encode("Hello world") == [15496, 995]


def test_plan_run_fills_the_context_applies_changes_and_records_the_run():
    plan = plan_run("tiny", tokenizer="gpt2", train_changes={"lr": 1e-3, "max_steps": None})
    tiny = PRESETS["tiny"]
    assert plan.preset is tiny
    assert plan.train.n_ctx == tiny.model["n_ctx"] == 128  # the window defaults to the context
    assert plan.train.lr == 1e-3  # changed
    assert plan.train.max_steps == tiny.train.max_steps == 200  # None: the preset's value
    assert plan.train.replace(n_ctx=None, lr=tiny.train.lr) == tiny.train  # nothing else moved
    assert plan.model.d_vocab == plan.tokenizer.vocab_size == 50257
    assert plan.model.replace(d_vocab=1) == tiny.model_config(1)  # the preset's shape
    assert plan.data == "shakespeare"
    assert plan.meta == {
        "preset": "tiny",
        "data": "shakespeare",
        "tokenizer": "gpt2",
        "tokenizer_fingerprint": tokenizer_fingerprint(plan.tokenizer),
    }


def test_plan_run_takes_the_presets_tokenizer_and_data_unless_told_otherwise():
    plan = plan_run("seed")  # the seed preset uses GPT-2's tokenizer: nothing to train
    assert plan.meta["tokenizer"] == "gpt2" and plan.meta["data"] == "NeelNanda/pile-10k"
    assert plan.data == "NeelNanda/pile-10k"
    other = plan_run("seed", data="my/corpus", train_changes={"n_ctx": 64, "seed": 5})
    assert other.data == other.meta["data"] == "my/corpus"
    assert other.train.n_ctx == 64 and other.train.seed == 5  # an explicit window is kept
    with pytest.raises(ValueError, match="TrainConfig.batch_size=0"):
        plan_run("seed", train_changes={"batch_size": 0})


def test_materialize_gives_a_seeded_model_and_the_tokens(micro):
    preset, text = micro
    plan = plan_run("micro")
    assert plan.preset is preset and plan.train.n_ctx == 12 and plan.model.d_vocab == 50257
    model, data = plan.materialize()
    again, data_again = plan.materialize()
    assert model.cfg == plan.model
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the same seed, the same weights
    assert data.vocab_size == 50257
    assert data.tokens.tolist() == plan.tokenizer.encode(text.read_text())
    assert data_again.tokens.tolist() == data.tokens.tolist()
    reseeded, _ = plan_run("micro", train_changes={"seed": 1}).materialize()
    assert not torch.equal(reseeded.embed.W_E, model.embed.W_E)  # the seed decides the weights


def test_materialize_reads_only_max_documents(cache, tmp_path, monkeypatch):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("First document.\n")
    (folder / "b.txt").write_text("Second document.\n")
    preset = Preset("micro", "two documents", MICRO, data=str(folder), tokenizer="gpt2")
    monkeypatch.setitem(PRESETS, "micro", preset)
    plan = plan_run("micro")
    _, first = plan.materialize(max_documents=1)
    _, both = plan.materialize()
    tok = plan.tokenizer
    assert first.tokens.tolist() == tok.encode("First document.\n")
    expected = tok.encode("First document.\n") + [tok.eot_id] + tok.encode("Second document.\n")
    assert both.tokens.tolist() == expected


def test_the_seed_presets_name_their_corpora_in_full():
    seed, seed_de = PRESETS["seed"], PRESETS["seed-de"]
    assert seed.data == "NeelNanda/pile-10k" and not seed.data_options
    assert (seed_de.data, seed_de.data_options) == (
        "wikimedia/wikipedia",
        {"config": "20231101.de"},
    )
    assert seed_de.model == seed.model and seed_de.train == seed.train  # only the corpus differs
    plan = plan_run("seed-de")
    assert plan.data_options == {"config": "20231101.de"}
    assert plan.meta["data_options"] == {"config": "20231101.de"}
    assert plan_run("seed-de", data_options={"split": "train"}).data_options == {
        "config": "20231101.de",
        "split": "train",
    }
    # a copy of the dataset elsewhere is read the same way
    assert plan_run("seed-de", data="copy/of-wikipedia").data_options == {"config": "20231101.de"}


def test_the_gpt2_preset_is_nanogpts_recipe_on_openwebtext():
    gpt2 = PRESETS["gpt2"]
    cfg = gpt2.train
    assert gpt2.data == "Skylion007/openwebtext" and gpt2.tokenizer == "gpt2"
    assert cfg.batch_size * gpt2.model["n_ctx"] == 491_520  # nanoGPT: 12 x 1024 x 5 x 8
    assert cfg.batch_size // cfg.grad_accum == 12  # its micro-batch on one GPU
    assert (cfg.beta1, cfg.beta2, cfg.weight_decay, cfg.grad_clip) == (0.9, 0.95, 0.1, 1.0)
    assert cfg.min_lr == pytest.approx(cfg.lr / 10) and cfg.lr == 6e-4
    assert 0 < cfg.warmup_steps < cfg.max_steps


def test_run_budget_computes_tokens_steps_and_hours():
    from minigpt.presets import matmul_params, run_budget

    budget = run_budget("gpt2")
    cfg = PRESETS["gpt2"].train
    assert budget.tokens_per_step == cfg.batch_size * 1024
    assert budget.steps == cfg.max_steps and budget.tokens == budget.steps * budget.tokens_per_step
    # GPT-2 small without its two embeddings, with W_U: 85.0M in the blocks + 38.6M
    assert budget.n_params == matmul_params(PRESETS["gpt2"].model_config(50257))
    assert 123_000_000 < budget.n_params < 124_500_000
    assert budget.flops == 6 * budget.n_params * budget.tokens
    assert budget.hours(1e15) == pytest.approx(budget.flops / 1e15 / 3600)
    once = run_budget("gpt2", tokens=9_000_000_000)  # a corpus of 9B tokens read once
    assert once.steps == -(-9_000_000_000 // budget.tokens_per_step)
    assert (once.steps - 1) * once.tokens_per_step < 9e9 <= once.tokens
    tiny = run_budget("tiny")
    assert tiny.tokens_per_step == 16 * 128 and tiny.steps == 200
    with pytest.raises(ValueError, match=r"tokens=0 must be None or a number >= 1"):
        run_budget("gpt2", tokens=0)
    with pytest.raises(ValueError, match=r"flops_per_s=-1.0 must be a finite number > 0"):
        budget.hours(-1.0)

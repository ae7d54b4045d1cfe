"""The small trained models chapters load (minigpt.zoo): trained once, then loaded from the cache.

The first test runs on a micro preset (d_model 32, one layer) so it stays quick; the last one
checks the real tiny Shakespeare model (trained into the cache on first use, ~1-2 min).
"""

import math

import numpy as np
import pytest
import torch

from minigpt.checkpoint import read_metrics
from minigpt.train import TrainConfig, lm_loss

CFG = TrainConfig(
    max_steps=8, batch_size=4, lr=1e-2, warmup_steps=2, eval_interval=4, eval_windows=4
)


pytestmark = pytest.mark.usefixtures("one_thread")  # micro models: see conftest.py


def test_shakespeare_model_trains_once_then_loads(tmp_path, monkeypatch):
    import minigpt.presets as presets
    import minigpt.zoo as zoo
    from minigpt.presets import Preset
    from minigpt.tokenizer import BPETokenizer

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "text.txt"
    text.write_text("Once more unto the breach, dear friends, once more;\n" * 80)
    tokenizer = BPETokenizer.train(text.read_text(), 280)
    model = dict(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=16)
    preset = Preset("tiny", "test", model, CFG.replace(max_steps=3), data=str(text))
    monkeypatch.setattr(presets, "get_preset", lambda name: preset)
    monkeypatch.setattr(presets, "get_tokenizer", lambda name: tokenizer)

    first, tok = zoo.shakespeare_model("cpu")
    assert tok is tokenizer and first.cfg.d_vocab == 280 and not first.training
    assert [r["step"] for r in read_metrics(zoo.shakespeare_metrics_path())] == [0, 1, 2, 3]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded")

    monkeypatch.setattr(zoo, "train", no_training)
    second, _ = zoo.shakespeare_model("cpu")
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name
    preset = Preset("tiny", "test", model, CFG.replace(max_steps=4), data=str(text))
    with pytest.raises(AssertionError, match="should have been loaded"):  # stale: retrains
        zoo.shakespeare_model("cpu")


@pytest.mark.slow
def test_the_real_tiny_shakespeare_model_has_learned():
    """Trains the tiny preset if the cache lacks it (~1-2 min), then checks what it learned."""
    from minigpt.checkpoint import read_metrics
    from minigpt.zoo import shakespeare_metrics_path, shakespeare_model

    model, tokenizer = shakespeare_model("cpu")
    records = read_metrics(shakespeare_metrics_path())
    val = [r["val_loss"] for r in records if "val_loss" in r]
    assert abs(val[0] - math.log(tokenizer.vocab_size)) < 0.1  # starts at ~ln 4096 = 8.32
    assert val[-1] < 6.0  # perplexity under ~400, from 4096
    ids = torch.tensor([tokenizer.encode("ROMEO.\nWhat say you, my lord?\n")])
    with torch.no_grad():
        loss = lm_loss(model(ids[:, :-1]), ids[:, 1:])
    assert float(loss) < 6.5


def test_induction_model_trains_once_with_its_probe_then_loads(tmp_path, monkeypatch):
    import minigpt.zoo as zoo

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        zoo,
        "INDUCTION_MODEL",
        dict(d_model=16, n_heads=2, d_head=8, d_mlp=16, n_layers=2, n_ctx=24, d_vocab=64),
    )
    monkeypatch.setattr(zoo, "INDUCTION_TRAIN", CFG.replace(max_steps=4))
    monkeypatch.setattr(zoo, "INDUCTION_LANGUAGE", {**zoo.INDUCTION_LANGUAGE, "n_tokens": 3000})
    monkeypatch.setattr(zoo, "PROBE_SEQ", 8)
    monkeypatch.setattr(zoo, "PROBE_INTERVAL", 2)

    first = zoo.induction_model("cpu")
    assert first.cfg.n_layers == 2 and not first.training
    records = zoo.induction_probe_records()
    assert [r["step"] for r in records] == [0, 2, 4]
    for r in records:
        assert np.array(r["induction_scores"]).shape == (2, 2)
        assert np.array(r["previous_token_scores"]).shape == (2, 2)
        assert r["first_half_loss"] > 0 and r["repeated_half_loss"] > 0 and r["text_loss"] > 0
    # step 0 is the untrained model, the chapter's baseline
    untrained = zoo.untrained_induction_model("cpu")
    probe = zoo.induction_probe()
    from minigpt.interp import induction_scores

    torch.testing.assert_close(
        induction_scores(untrained, probe),
        torch.tensor(records[0]["induction_scores"]),
        atol=1e-6,
        rtol=0,
    )

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been loaded")

    monkeypatch.setattr(zoo, "train", no_training)
    second = zoo.induction_model("cpu")
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


def test_induction_language_has_its_three_kinds_of_pieces():
    """Each kind of piece shows its rule at about the rate the recipe asks for."""
    import minigpt.zoo as zoo

    text = zoo.induction_language(200_000, seed=3).astype(np.int64)
    again = zoo.induction_language(200_000, seed=3)
    assert np.array_equal(text, again) and again.dtype == np.uint16  # same seed, same text
    assert text.min() >= 0 and text.max() < zoo.INDUCTION_MODEL["d_vocab"]
    rng = np.random.default_rng(3)  # the permutations are the first draws of the seed
    bigram, skip = rng.permutation(64), rng.permutation(64)
    follows = np.mean(text[1:] == bigram[text[:-1]])
    skips = np.mean(text[2:] == skip[text[:-2]])
    # pieces of each kind are drawn equally often; bigram and skip pieces average 40 tokens,
    # repeat pieces 12 tokens times 4.5 copies = 54, so each rule governs 40 / 134 of the
    # text (less its first token or two per piece), and holds by chance (1/64) elsewhere
    share = 40 / (40 + 40 + 54)
    expect_follows = share * (0.7 + 0.3 / 64) * 39 / 40 + (1 - share) / 64
    expect_skips = share * (0.5 + 0.5 / 64) * 38 / 40 + (1 - share) / 64
    assert abs(follows - expect_follows) < 0.015, (follows, expect_follows)
    assert abs(skips - expect_skips) < 0.015, (skips, expect_skips)
    # repeat pieces: a token equal to the one `period` back, for some period in 4..20
    period_match = np.zeros(text.size, dtype=bool)
    for period in range(4, 21):
        period_match[period:] |= text[period:] == text[:-period]
    assert period_match.mean() > 0.2

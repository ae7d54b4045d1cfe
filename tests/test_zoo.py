"""The small trained models chapters load (minigpt.zoo): trained once, then loaded from the cache.

The first test runs on a micro preset (d_model 32, one layer) so it stays quick; the last one
checks the real tiny Shakespeare model (trained into the cache on first use, ~1-2 min).
"""

import math

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

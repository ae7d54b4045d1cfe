"""The reference GPT-2 (minigpt.reference): its tokenizer, offline fallback, forced modes, the pretrained path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from minigpt import reference as reference_module
from minigpt.assets import gpt2_bpe_files
from minigpt.formats import hf_model as hf_model_module
from minigpt.reference import (
    BOS_ID,
    HELLO_WORLD,
    ClaimFailed,
    ReferenceUnavailable,
    check_claim,
    gpt2_hf_tokenizer,
    load_reference,
    random_gpt2_hf,
    weights_mode,
)

HARD_STRINGS = [
    "",
    " ",
    "   leading and trailing   ",
    "\n\n\nnew\r\nlines\t\ttabs",
    "Hello world!",
    "I'm sure they'll say it's what we'd've done",
    "12345 67.89 1,000,000 3.14159",
    "CamelCase and ALLCAPS and lowercase",
    "emoji 🤖🎉 and flags 🇬🇧",
    "中文字符 and 日本語のテキスト",
    "combining marks: e\u0301 n\u0303 a\u0308",
    "text with <|endoftext|> inside",
]


def tiktoken_gpt2():
    """tiktoken's GPT-2 encoding built from the same verified files (no download)."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    files = gpt2_bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files.vocab_bpe), encoder_json_file=str(files.encoder_json)
    )
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding(
        "gpt2-local",
        pat_str=pattern,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": BOS_ID},
    )


def test_hf_tokenizer_matches_tiktoken_on_hard_strings_and_shakespeare():
    from minigpt.corpus import load_corpus

    hf = gpt2_hf_tokenizer()
    tk = tiktoken_gpt2()
    assert len(hf) == tk.n_vocab == 50257
    for text in HARD_STRINGS:
        # In plain text, <|endoftext|> is just characters to both (HF: split_special_tokens).
        assert hf.encode(text, split_special_tokens=True) == tk.encode_ordinary(text), text
    sample = load_corpus("shakespeare")[:300_000]
    assert hf.encode(sample) == tk.encode_ordinary(sample)
    assert hf.decode(hf.encode(sample)) == sample


def test_reference_offline_is_seeded_gpt2_small(reference):
    if reference.weights == "pretrained":
        pytest.skip("real GPT-2 weights are reachable here, so the offline fallback is not in use")
    assert reference.weights == "random"
    assert "random" in reference.reason.lower() or "unreachable" in reference.reason.lower()
    assert reference.n_params == 124_439_808  # GPT-2 small, tied embedding and unembedding
    assert "RANDOM" in reference.summary() and "RANDOM" in reference._repr_html_()
    fresh = random_gpt2_hf()
    theirs = reference.hf_model.state_dict()
    assert theirs.keys() == fresh.state_dict().keys()  # a plain HF model, not the bridge's wrapping
    for name, ours in fresh.state_dict().items():
        torch.testing.assert_close(ours, theirs[name].cpu(), atol=0, rtol=0, msg=name)


def test_offline_reference_has_no_trivial_parameter():
    """Every bias non-zero, every LayerNorm gain away from 1 and shift away from 0.

    So a comparison against the offline reference fails when our model leaves any of them
    out (Hugging Face's init would make both sides zero, or one, there).
    """
    model = random_gpt2_hf()
    params = dict(model.named_parameters())
    assert len(params) == 148
    for name, p in params.items():
        module, kind = name.split(".")[-2:]
        if module.startswith("ln_") and kind == "weight":
            away = (p - 1).abs().mean().item()
            assert 0.05 < away < 0.15, (name, away)  # gains ~ N(1, 0.1)
        elif module.startswith("ln_") or kind == "bias":
            away = p.abs().mean().item()
            assert 0.005 < away < 0.06, (name, away)  # shifts and biases ~ N(0, 0.01..0.05)
        else:
            assert 0.001 < p.std().item() < 0.03, name  # GPT-2's own init for matrices
    # Well conditioned: a loss near uniform's ln(50257) = 10.82, no blown-up activations.
    tokens = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(tokens, labels=tokens)
    assert 10.5 < out.loss.item() < 11.3
    assert out.logits.std().item() < 1.0


def test_check_claim_prints_what_holds_and_stops_what_does_not():
    assert check_claim("two is even", True, "2 % 2 == 0") == "two is even (checked: 2 % 2 == 0)"
    with pytest.raises(ClaimFailed, match=r"says 'three is even', but these weights give 3 % 2"):
        check_claim("three is even", False, "3 % 2 == 1")
    assert issubclass(ClaimFailed, AssertionError)


def test_check_gpt2_small_rejects_weights_that_are_not_gpt2(tmp_path, capfd, monkeypatch):
    """A folder of random weights with GPT-2's vocabulary loads as "pretrained" but fails the
    known loss of "Hello world!"; with its own loss as the known value the check passes."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(3)
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)).save_pretrained(tmp_path)
    capfd.readouterr()
    ref = load_reference(path=tmp_path, device="cpu")
    assert ref.pretrained
    assert "Loading weights" not in capfd.readouterr().err  # no progress bar in the pages
    with pytest.raises(ClaimFailed, match="GPT-2 small's weights.*loss 1[01]\\."):
        ref.check_gpt2_small()
    monkeypatch.setattr(reference_module, "HELLO_WORLD_LOSS", ref.loss(HELLO_WORLD))
    assert "checked: loss" in ref.check_gpt2_small()
    with pytest.raises(ValueError, match="random"):
        load_reference(weights="random", device="cpu").check_gpt2_small()


def test_reference_bridge_equals_hf_model(reference):
    tokens = reference.to_tokens("Hello world! The bridge must not change the maths.")
    assert tokens[0, 0].item() == BOS_ID
    with torch.no_grad():
        bridge_logits = reference.bridge(tokens)
        hf_logits = reference.hf_model(tokens).logits
    # The bridge splits GPT-2's fused c_attn matmul into separate q, k, v matmuls, so float32
    # rounding differs slightly (seen: 2.7e-6 on logits of size ~1); nothing else may differ.
    torch.testing.assert_close(bridge_logits, hf_logits, atol=2e-5, rtol=1e-5)
    assert load_reference() is reference  # loaded once per process


def test_random_weights_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = random_gpt2_hf()
    after = torch.rand(3)
    b = random_gpt2_hf()
    torch.testing.assert_close(after, expected, atol=0, rtol=0)
    torch.testing.assert_close(
        a.transformer.h[3].mlp.c_fc.weight, b.transformer.h[3].mlp.c_fc.weight
    )


def test_offline_decision_is_fast(monkeypatch):
    monkeypatch.setattr(hf_model_module, "hf_weights_cached", lambda name: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    if hf_model_module.hub_reachable():
        pytest.skip("the Hugging Face hub is reachable from here")
    import transformers  # noqa: F401  (importing it costs seconds in every mode: not the decision)

    start = time.perf_counter()
    model, reason = hf_model_module.load_pretrained_hf()
    elapsed = time.perf_counter() - start
    assert model is None and "unreachable" in reason
    assert elapsed < 3.0, f"deciding that the hub is unreachable took {elapsed:.1f} s (limit 3 s)"


def test_forcing_pretrained_where_unreachable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(hf_model_module, "hf_weights_cached", lambda name: False)
    monkeypatch.setattr(hf_model_module, "hub_reachable", lambda timeout=1.5: False)
    monkeypatch.setenv("MINIGPT_WEIGHTS", "pretrained")
    monkeypatch.setattr(reference_module, "_LOADED", {})
    with pytest.raises(
        ReferenceUnavailable, match="MINIGPT_WEIGHTS=pretrained.*MINIGPT_WEIGHTS=random"
    ):
        load_reference(device="cpu")


def test_forcing_random_and_bad_modes(monkeypatch, reference):
    monkeypatch.setenv("MINIGPT_WEIGHTS", "random")
    assert weights_mode() == "random"
    assert weights_mode("PRETRAINED") == "pretrained"
    if reference.weights == "random":
        assert load_reference(device=reference.device) is reference
    monkeypatch.setenv("MINIGPT_WEIGHTS", "fast")
    with pytest.raises(
        ValueError, match=r"\$MINIGPT_WEIGHTS='fast' is not one of auto, pretrained, random"
    ):
        load_reference()
    with pytest.raises(ValueError, match="weights='trained' is not one of"):
        load_reference(weights="trained")


@pytest.mark.slow
def test_pretrained_path_reads_a_filled_hugging_face_cache(tmp_path):
    """With weights in the HF cache, the same code loads them and says "pretrained".

    We cannot download OpenAI's weights here, so we fill a cache with a small GPT-2-shaped
    model laid out exactly as the hub cache lays out ``gpt2``, and check that
    ``load_reference`` picks it up offline, says so, and computes with those weights.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(7)
    stand_in = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4)).eval()
    snapshot = tmp_path / "hub" / "models--gpt2" / "snapshots" / ("0" * 40)
    stand_in.save_pretrained(snapshot)
    (tmp_path / "hub" / "models--gpt2" / "refs").mkdir()
    (tmp_path / "hub" / "models--gpt2" / "refs" / "main").write_text("0" * 40)
    tokens = [BOS_ID, 15496, 995, 0]
    with torch.no_grad():
        expected = stand_in(torch.tensor([tokens])).logits[0, -1, :5].tolist()
    script = textwrap.dedent(
        f"""
        import json, torch
        from minigpt.reference import load_reference
        ref = load_reference()
        with torch.no_grad():
            logits = ref.bridge(torch.tensor([{tokens}]))
        print(json.dumps({{"weights": ref.weights, "reason": ref.reason,
                           "logits": logits[0, -1, :5].tolist()}}))
        """
    )
    env = dict(
        os.environ,
        HF_HUB_CACHE=str(tmp_path / "hub"),
        HF_HUB_OFFLINE="1",
        MINIGPT_WEIGHTS="pretrained",
        MINIGPT_DEVICE="cpu",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["weights"] == "pretrained"
    assert "cache" in out["reason"]
    torch.testing.assert_close(
        torch.tensor(out["logits"]), torch.tensor(expected), atol=1e-5, rtol=1e-5
    )

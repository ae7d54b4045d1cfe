"""Hugging Face's GPT-2 folders (minigpt.formats.hf_model): a GPT written with
save_pretrained and read back with from_pretrained or transformers, its digest checked;
the reference from a local folder; ``minigpt-train --export``."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from minigpt import reference as reference_module
from minigpt.config import GPTConfig
from minigpt.formats.hf_model import (
    FOLD_FILE,
    from_hf,
    from_pretrained,
    save_pretrained,
)
from minigpt.model import GPT
from minigpt.reference import GPT2_PATH_ENV, ReferenceUnavailable, _boot_bridge, load_reference
from minigpt.tokenizer import EOT, BPETokenizer, gpt2_tokenizer

# --------------------------------------------------------------------------------------
# A GPT as a Hugging Face GPT-2 folder and back (save_pretrained / from_pretrained),
# its tokenizer for transformers' AutoTokenizer, the reference from a local folder
# (load_reference(path=...), $MINIGPT_GPT2_PATH) and ``minigpt-train --export``.
# --------------------------------------------------------------------------------------


ATOL = 1e-4  # as tests/test_model.py: float32 on CPU, only the summation order may differ

TEXT = (
    "Now is the winter of our discontent made glorious summer by this sun of York; "
    "and all the clouds that lour'd upon our house in the deep bosom of the ocean buried. "
    "Café naïve 中文 🤖, 12345 tabs\tand\nnewlines.\n"
) * 20

STRINGS = [
    "",
    "Hello world!",
    "   leading and trailing   ",
    "\n\n\nnew\r\nlines\t\ttabs",
    "I'm sure they'll say it's what we'd've done",
    "emoji 🤖🎉 and flags 🇬🇧, 中文字符 and 日本語のテキスト",
    "combining marks: e\u0301 n\u0303 a\u0308",
    "text with <|endoftext|> inside<|endoftext|><|endoftext|>",
    "<|endoftext|>",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # micro models: see conftest.py


@pytest.fixture(scope="module")
def small_tokenizer():
    """Trained here: ids 0..255 are the bytes in order (not GPT-2's order), <|endoftext|> last."""
    tok = BPETokenizer.train(TEXT, 320)
    assert tok.byte_order == tuple(range(256)) and tok.eot_id == 319
    return tok


def _model(d_vocab: int, variant: str, seed: int = 0) -> GPT:
    """A 2-layer, 64-wide GPT with non-trivial LayerNorms and biases. ``variant``: ``tied``
    (W_U = W_E.T, no b_U: GPT-2's own layout), ``untied`` (own W_U, no b_U) or ``bias``
    (own W_U and a non-zero b_U, as a trained model has)."""
    torch.manual_seed(seed)
    cfg = GPTConfig(
        d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=2, n_ctx=32, d_vocab=d_vocab
    )
    model = GPT(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".w", ".b")) or ".b_" in name:
                p.add_(0.2 * torch.randn_like(p))
        if variant != "bias":
            model.unembed.b_U.zero_()
        if variant == "tied":
            model.unembed.W_U.copy_(model.embed.W_E.T)
    return model


def _tokens(d_vocab: int, seed: int = 3) -> torch.Tensor:
    return torch.randint(0, d_vocab, (2, 32), generator=torch.Generator().manual_seed(seed))


def _hf(folder):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(str(folder)).eval()


# -- (a) transformers loads what we write ====================================================


@pytest.mark.parametrize("variant", ["tied", "untied", "bias"])
def test_transformers_gives_our_logits(tmp_path, small_tokenizer, variant):
    from safetensors import safe_open

    model = _model(small_tokenizer.vocab_size, variant)
    folder = save_pretrained(model, tmp_path / "hf", tokenizer=small_tokenizer)
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is (variant == "tied")
    assert config["activation_function"] == "gelu_new" and config["n_inner"] == 256
    assert config["bos_token_id"] == config["eos_token_id"] == 319
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) is (variant != "tied")
    assert (folder / FOLD_FILE).is_file() is (variant == "bias")
    hf = _hf(folder)
    tokens = _tokens(small_tokenizer.vocab_size)
    with torch.no_grad():
        ours, theirs = model(tokens), hf(tokens).logits
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)
    assert ours.abs().max() > 0.1  # not a trivially small comparison


def test_refusing_to_fold_the_unembedding_bias(tmp_path):
    with pytest.raises(ValueError, match=r"non-zero unembedding bias \(unembed.b_U\)"):
        save_pretrained(_model(101, "bias"), tmp_path / "x", fold_unembed_bias=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("which", ["gpt2", "small", "other-pattern", "no-pattern"])
def test_auto_tokenizer_gives_our_ids(tmp_path, small_tokenizer, which):
    from transformers import AutoTokenizer

    if which == "gpt2":
        tok = gpt2_tokenizer()
    elif which == "small":
        tok = small_tokenizer
    else:  # another pre-tokenizer, and a second special token
        pattern = r"\w+|\s+|[^\w\s]+" if which == "other-pattern" else None
        tok = BPETokenizer.train(TEXT, 330, pattern=pattern, special_tokens=(EOT, "<|pad|>"))
    model = _model(tok.vocab_size, "untied")
    folder = save_pretrained(model, tmp_path / which, tokenizer=tok)
    hf_tok = AutoTokenizer.from_pretrained(str(folder))
    assert len(hf_tok) == tok.vocab_size
    assert hf_tok.eos_token == EOT and hf_tok.eos_token_id == tok.eot_id
    assert hf_tok.model_max_length == 32
    extra = ["<|pad|> twice<|pad|><|pad|>"] if "<|pad|>" in tok.special_tokens else []
    for text in STRINGS + extra:
        ids = tok.encode(text, allowed_special="all")
        assert hf_tok.encode(text) == ids, text
        assert hf_tok.decode(ids) == tok.decode(ids), text
    sample = TEXT[:2000]
    assert hf_tok.encode(sample) == tok.encode(sample)


def test_a_tokenizer_larger_than_the_model_is_refused(tmp_path, small_tokenizer):
    with pytest.raises(ValueError, match="320 ids, the model only d_vocab=101"):
        save_pretrained(_model(101, "untied"), tmp_path / "x", tokenizer=small_tokenizer)


# -- (b) and back: from_pretrained ============================================================


@pytest.mark.parametrize("variant", ["tied", "untied", "bias"])
def test_from_pretrained_gives_the_same_parameters(tmp_path, variant):
    model = _model(101, variant)
    folder = save_pretrained(model, tmp_path / "hf")
    back = from_pretrained(folder)
    assert not back.training and back.cfg == model.cfg
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for name, value in ours.items():
        assert torch.equal(theirs[name], value), name
    assert torch.equal(from_pretrained(str(folder)).unembed.b_U, model.unembed.b_U)


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path):
    """save_pretrained writes the SHA-256 of the tensors into model.safetensors' header; one
    flipped bit in a weight is refused by name, where it would otherwise load silently."""
    from safetensors import safe_open

    folder = save_pretrained(_model(101, "untied"), tmp_path / "hf")
    path = folder / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        assert len(f.metadata()["minigpt_sha256"]) == 64
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01  # the low bit of a byte deep in the last tensor: still a valid float
    path.write_bytes(bytes(raw))
    _hf(folder)  # transformers reads it without a word: the damage is silent there
    with pytest.raises(ValueError, match=r"model.safetensors is damaged.*SHA-256"):
        from_pretrained(folder)


def test_folded_weights_saved_again_by_transformers(tmp_path):
    """After a fine-tune in transformers, minigpt.safetensors still restores the unembedding
    while the folded tensors are the ones it was written beside; once they change, it is
    ignored with a warning and the model gets the folded weights: the same logits either way."""
    model = _model(101, "bias")
    folder = save_pretrained(model, tmp_path / "hf")
    hf = _hf(folder)
    tokens = _tokens(101)
    for tensor in (hf.transformer.h[0].mlp.c_fc.bias, hf.lm_head.weight):
        with torch.no_grad():
            tensor.add_(0.05 * torch.randn_like(tensor))  # a fine-tune, say
        hf.save_pretrained(str(folder))
        if tensor is hf.lm_head.weight:
            with pytest.warns(UserWarning, match="minigpt.safetensors was written beside other"):
                back = from_pretrained(folder)
            assert not back.unembed.b_U.any()
        else:
            back = from_pretrained(folder)
            assert torch.equal(back.unembed.b_U, model.unembed.b_U)
        with torch.no_grad():
            torch.testing.assert_close(back(tokens), hf(tokens).logits, atol=ATOL, rtol=0)


def test_reads_a_gpt2_copied_by_hand(tmp_path):
    """OpenAI's layout on the hub: GPT2Model keys (no ``transformer.``), attention-mask buffers,
    no lm_head, in pytorch_model.bin."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(4)
    hf = GPT2LMHeadModel(
        GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=101, n_positions=32)
    ).eval()
    state = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    del state["lm_head.weight"]
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
    folder = tmp_path / "gpt2-copy"
    hf.config.save_pretrained(str(folder))
    torch.save(state, folder / "pytorch_model.bin")
    model = from_pretrained(folder)
    expected = from_hf(hf)
    for (name, p), q in zip(model.named_parameters(), expected.parameters(), strict=True):
        assert torch.equal(p, q), name
    tokens = _tokens(101)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), hf(tokens).logits, atol=ATOL, rtol=0)


def test_exporting_into_a_folder_with_files(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    save_pretrained(_model(101, "bias"), folder)
    assert (folder / FOLD_FILE).is_file()
    model = _model(101, "untied", seed=1)
    save_pretrained(model, folder)  # replaces the files; the stale fold file goes
    assert (folder / "notes.txt").read_text() == "mine" and not (folder / FOLD_FILE).exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]
    assert torch.equal(from_pretrained(folder).unembed.W_U, model.unembed.W_U)


# -- (c) TransformerLens boots on the folder ==================================================


@pytest.mark.parametrize("variant", ["untied", "bias"])
def test_bridge_boots_on_the_folder(tmp_path, small_tokenizer, variant):
    from transformers import AutoTokenizer

    model = _model(small_tokenizer.vocab_size, variant)
    folder = save_pretrained(model, tmp_path / "hf", tokenizer=small_tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = _boot_bridge(
            _hf(folder), AutoTokenizer.from_pretrained(str(folder)), torch.device("cpu")
        )
    tokens = _tokens(small_tokenizer.vocab_size)
    with torch.no_grad():
        ours = model(tokens)
        theirs, cache = bridge.run_with_cache(tokens)
        _, acts = model.run_with_cache(tokens)
    torch.testing.assert_close(theirs, ours, atol=ATOL, rtol=0)
    # The residual stream is untouched by the fold: only the unembedding was rewritten.
    torch.testing.assert_close(
        cache["blocks.1.hook_resid_post"], acts["blocks.1.hook_resid_post"], atol=ATOL, rtol=0
    )


# -- (d), (e) the reference from a local folder ==============================================


@pytest.fixture
def isolated_reference(monkeypatch):
    """load_reference's per-process cache emptied for the test, and no folder from outside."""
    monkeypatch.setattr(reference_module, "_LOADED", {})
    monkeypatch.delenv(GPT2_PATH_ENV, raising=False)
    monkeypatch.delenv("MINIGPT_WEIGHTS", raising=False)
    return monkeypatch


def test_load_reference_from_a_folder(tmp_path, isolated_reference):
    """A GPT-2-vocabulary, 2-layer 64-wide model stands in for GPT-2 small (124M, ~10 s)."""
    model = _model(50257, "tied")
    folder = save_pretrained(model, tmp_path / "gpt2-local")
    ref = load_reference(path=folder, device="cpu")
    assert ref.weights == "pretrained" and ref.pretrained and ref.path == str(folder)
    assert str(folder) in ref.reason and str(folder) in ref.summary()
    assert "the path argument" in ref.reason
    assert ref.summary().startswith("Reference GPT-2 (2 layers, d_model 64): PRETRAINED")
    tokens = ref.to_tokens("Hello world! The reference reads a local folder.")
    with torch.no_grad():
        ours = model(tokens)
        torch.testing.assert_close(ref.hf_model(tokens).logits, ours, atol=ATOL, rtol=0)
        torch.testing.assert_close(ref.bridge(tokens), ours, atol=ATOL, rtol=0)
    assert load_reference(path=folder, device="cpu") is ref  # loaded once per folder
    isolated_reference.setenv(GPT2_PATH_ENV, str(folder))
    assert load_reference(device="cpu") is ref
    assert load_reference(weights="pretrained", device="cpu") is ref
    with pytest.raises(ValueError, match="gives pretrained weights, but weights='random'"):
        load_reference(weights="random", path=folder, device="cpu")


def test_missing_or_broken_folders_are_errors_naming_them(tmp_path, isolated_reference):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match=f"model folder {missing} does not exist"):
        from_pretrained(missing)
    with pytest.raises(ValueError, match="name='gpt3' is not one of gpt2.*nor a folder"):
        from_pretrained("gpt3")
    with pytest.raises(
        ReferenceUnavailable, match=f"folder {missing} \\(given by the path argument\\) does not"
    ):
        load_reference(path=missing, device="cpu")
    isolated_reference.setenv(GPT2_PATH_ENV, str(missing))
    with pytest.raises(
        ReferenceUnavailable, match=f"folder {missing} \\(given by \\$MINIGPT_GPT2_PATH\\)"
    ):
        load_reference(device="cpu")
    isolated_reference.delenv(GPT2_PATH_ENV)

    config_only = tmp_path / "config-only"
    save_pretrained(_model(50257, "tied"), config_only)
    (config_only / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=f"{config_only} holds no weights"):
        from_pretrained(config_only)
    with pytest.raises(ReferenceUnavailable, match=f"{config_only} .*holds no weights"):
        load_reference(path=config_only, device="cpu")

    # config.json says 3 layers, the weights hold 2
    short = tmp_path / "short"
    save_pretrained(_model(50257, "tied"), short)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(ValueError, match=r"short/model.safetensors: .* no 'h.2.ln_1.weight'"):
        from_pretrained(short)
    with pytest.raises(ReferenceUnavailable, match=f"{short} .*holds incomplete"):
        load_reference(path=short, device="cpu")

    truncated = tmp_path / "truncated"
    save_pretrained(_model(50257, "tied"), truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"the weights in {truncated} cannot be read"):
        from_pretrained(truncated)
    with pytest.raises(ReferenceUnavailable, match=f"{truncated} .*cannot be loaded as GPT-2"):
        load_reference(path=truncated, device="cpu")

    small_vocab = tmp_path / "small-vocab"
    save_pretrained(_model(101, "tied"), small_vocab)
    with pytest.raises(ReferenceUnavailable, match="vocab_size=101; the reference uses GPT-2's"):
        load_reference(path=small_vocab, device="cpu")
    (small_vocab / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        from_pretrained(small_vocab)
    (small_vocab / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(ValueError, match="activation_function='relu'"):
        from_pretrained(small_vocab)


# -- (f) minigpt-train --export ==============================================================


def test_train_cli_exports_the_finished_model(tmp_path, capsys):
    from transformers import AutoTokenizer

    from minigpt.checkpoint import load_checkpoint, model_from_checkpoint
    from minigpt.presets import get_tokenizer
    from minigpt.train_cli import main

    text = tmp_path / "text.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun.\n" * 60)
    out, export = tmp_path / "run", tmp_path / "export"
    args = ["--data", str(text), "--out", str(out), "--batch-size", "2", "--n-ctx", "16",
            "--max-steps", "2", "--warmup-steps", "1", "--no-progress", "--device", "cpu",
            "--export", str(export)]  # fmt: skip
    assert main(args) == 0
    assert f"exported the model and its tokenizer to {export}" in capsys.readouterr().out
    checkpoint = out / "checkpoint.pt"
    trained = model_from_checkpoint(checkpoint).eval()
    assert trained.unembed.b_U.any()  # training moved the bias: the folded path
    hf = _hf(export)
    tokens = _tokens(trained.cfg.d_vocab)[:, :16]
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, trained(tokens), atol=ATOL, rtol=0)
    back = from_pretrained(export)
    for name, value in trained.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    tokenizer_name = load_checkpoint(checkpoint)["meta"]["tokenizer"]
    ours = get_tokenizer(tokenizer_name)
    hf_tok = AutoTokenizer.from_pretrained(str(export))
    for sample in STRINGS[:-2] + [text.read_text()[:500]]:
        assert hf_tok.encode(sample) == ours.encode(sample), sample

    (tmp_path / "a-file").write_text("")
    assert main(args[:-1] + [str(tmp_path / "a-file")]) == 2
    assert "--export" in capsys.readouterr().err

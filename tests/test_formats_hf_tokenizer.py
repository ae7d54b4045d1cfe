"""Hugging Face's tokenizer.json (minigpt.formats.hf_tokenizer): files written through the
tokenizers library read back to the same tokenizer, files Hugging Face wrote give its ids
exactly, and bad or mistyped files are named errors."""

# ruff: noqa: F811 (the fixtures imported from other test files are the tests' parameters)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_formats_renumbered import assert_same_ids, same_layout, shift, shifted, shifted_files  # noqa: F401 (fixtures)
from test_tokenizer import gpt2, gpt2_ids, sample, small, small_cl100k, texts  # noqa: F401 (fixtures)

from minigpt.assets import read_gpt2_bpe
from minigpt.formats.hf_tokenizer import (
    PROBE_TEXTS,
    TokenizerJsonError,
    read_tokenizer_json,
    save_hf_tokenizer,
)
from minigpt.tokenizer import EOT, BPETokenizer, TokenizerFileError, gpt2_tokenizer


def tokenizer_json(tok: BPETokenizer, folder: Path) -> Path:
    """``tok`` written by :func:`save_hf_tokenizer` (checked there), its tokenizer.json."""
    pytest.importorskip("transformers")
    save_hf_tokenizer(tok, folder)
    return folder / "tokenizer.json"


# -- Hugging Face tokenizer.json -----------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "gpt2", "shifted", "cl100k"])
def test_hf_round_trip(which, tmp_path, texts, small, gpt2, shifted, small_cl100k):
    tokenizers = pytest.importorskip("tokenizers")
    tok = {"small": small, "gpt2": gpt2, "shifted": shifted, "cl100k": small_cl100k}[which]
    path = tokenizer_json(tok, tmp_path)
    hf = tokenizers.Tokenizer.from_file(str(path))
    expected = [tok.encode(t, allowed_special="all") for t in texts]
    for text, ids in zip(texts, expected):  # Hugging Face always splits out added tokens
        assert hf.encode(text).ids == ids, text[:60]
        assert hf.decode(ids, skip_special_tokens=False) == text
    back = read_tokenizer_json(path)
    assert same_layout(back, tok)
    assert_same_ids(back, texts, expected)


@pytest.mark.parametrize("which", ["small", "shifted"])
def test_transformers_fast_tokenizer_reads_our_file(which, tmp_path, texts, small, shifted):
    transformers = pytest.importorskip("transformers")
    tok = {"small": small, "shifted": shifted}[which]
    path = tokenizer_json(tok, tmp_path)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path))
    assert len(fast) == tok.vocab_size
    for text in texts:
        assert fast.encode(text) == tok.encode(text, allowed_special="all"), text[:60]


def test_hf_file_written_by_hugging_face_gives_its_ids(tmp_path, texts, gpt2_ids):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import AddedToken, decoders, models, pre_tokenizers

    encoder, merges = read_gpt2_bpe()
    shifted_vocab = {t: 0 if t == EOT else i + 1 for t, i in encoder.items()}
    hf = tokenizers.Tokenizer(models.BPE(vocab=shifted_vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    path = tmp_path / "tokenizer.json"
    hf.save(str(path))
    tok = read_tokenizer_json(path)
    assert tok.eot_id == 0
    for text, ids in zip(texts, gpt2_ids):
        assert tok.encode(text, allowed_special="all") == hf.encode(text).ids == shift(ids)


def test_gpt2_tokenizer_json_from_transformers(tmp_path, gpt2):
    from minigpt.reference import gpt2_hf_tokenizer

    path = tmp_path / "gpt2.json"
    gpt2_hf_tokenizer().backend_tokenizer.save(str(path))  # merges as lists; a no-op template
    tok = read_tokenizer_json(path)
    assert type(tok) is BPETokenizer and same_layout(tok, gpt2)


def edit_json(path: Path, edit) -> Path:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["model"].update(type="WordPiece"), "not a BPE tokenizer.json"),
        (lambda d: d.update(normalizer={"type": "NFC"}), "a NFC normalizer"),
        (lambda d: d["model"].update(byte_fallback=True), "model.byte_fallback=true"),
        (lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), "a Whitespace pre-tokenizer"),
        (
            lambda d: d.update(
                post_processor={
                    "type": "TemplateProcessing",
                    "single": [
                        {"SpecialToken": {"id": EOT, "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}},
                    ],
                }  # fmt: skip
            ),
            "TemplateProcessing post-processor that adds tokens",
        ),
        (
            lambda d: d["model"]["merges"].append("Ġthe Ġthe"),
            r"model.merges\[\d+\] makes 'ĠtheĠthe' .*which is not in",
        ),
        (lambda d: d["model"]["merges"].append(["a"]), "is not a pair of tokens"),
    ],
)
def test_bad_hf_files(edit, message, tmp_path, small):
    path = edit_json(tokenizer_json(small, tmp_path), edit)
    with pytest.raises(TokenizerFileError, match=message) as info:
        read_tokenizer_json(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda d: d.update(model="x"), "model"),
        (lambda d: d["model"].update(vocab=[]), "model.vocab"),
        (lambda d: d["model"].update(merges=[1, 2]), r"model.merges\[0\]"),
        (lambda d: d["model"].update(merges="a b"), "model.merges"),
        (lambda d: d.update(added_tokens="<|endoftext|>"), "added_tokens"),
        (lambda d: d.update(added_tokens=["<|endoftext|>"]), r"added_tokens\[0\]"),
        (lambda d: d.update(pre_tokenizer="ByteLevel"), "pre_tokenizer"),
        (lambda d: d.update(normalizer=[]), "normalizer"),
        (lambda d: d.update(decoder="x"), "decoder"),
        (lambda d: d.update(post_processor=3), "post_processor"),
        (lambda d: d["model"]["vocab"].update(a="1"), r"model.vocab\['a'\]"),
    ],
)
def test_unexpected_json_types_are_named(edit, field, tmp_path, small):
    path = edit_json(tokenizer_json(small, tmp_path), edit)
    with pytest.raises(TokenizerJsonError, match=field) as info:
        read_tokenizer_json(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_a_folder_where_the_file_is_expected_is_named(tmp_path):
    with pytest.raises(TokenizerFileError, match=r"tokenizer.json file .* is a folder"):
        read_tokenizer_json(tmp_path)


# -- the writer on its own -------------------------------------------------------------


def test_written_gpt2_tokenizer_gives_our_ids(tmp_path):
    tok = gpt2_tokenizer()
    back = save_hf_tokenizer(tok, tmp_path, model_max_length=1024)
    assert (tmp_path / "tokenizer.json").is_file() and len(back) == 50257
    assert back.eos_token == EOT and back.eos_token_id == 50256
    for text in (*PROBE_TEXTS, "a<|endoftext|>b"):
        ids = tok.encode(text, allowed_special="all")
        assert back.encode(text, add_special_tokens=False) == ids, text
        assert back.decode(ids) == tok.decode(ids), text


def test_two_ids_with_the_same_bytes_are_refused(tmp_path):
    # Two merges of the same pair give two ids for b"ab": a {text: id} vocabulary cannot hold both.
    tok = BPETokenizer([(97, 98), (97, 98)], special_tokens={EOT: 258})
    with pytest.raises(ValueError, match="token ids 256 and 257 stand for the same bytes b'ab'"):
        save_hf_tokenizer(tok, tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()

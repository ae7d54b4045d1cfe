"""GPT-2's vocab.json + merges.txt (minigpt.formats.vocab_merges): GPT-2's own tables give
GPT-2's ids, renumbered files give theirs, round trips, and bad files named."""

# ruff: noqa: F811 (the fixtures imported from other test files are the tests' parameters)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_formats_renumbered import (  # noqa: F401 (fixtures)
    assert_same_ids,
    gpt2_files,
    same_layout,
    shift,
    shifted,
    shifted_files,
)
from test_tokenizer import gpt2, gpt2_ids, sample, small, small_cl100k, texts  # noqa: F401 (fixtures)

from minigpt.formats.renumbered import MAX_UNUSED_IDS, RenumberedTokenizer, string_tables
from minigpt.formats.vocab_merges import read_vocab_merges, write_vocab_merges
from minigpt.tokenizer import EOT, BPETokenizer, TokenizerFileError

# -- vocab.json + merges.txt -------------------------------------------------------------


def test_gpt2_tables_as_vocab_merges_give_gpt2_ids(gpt2_files, gpt2, texts, gpt2_ids):
    tok = read_vocab_merges(*gpt2_files)
    assert type(tok) is BPETokenizer  # GPT-2's ids already follow the layout: no map
    assert same_layout(tok, gpt2)
    assert_same_ids(tok, texts, gpt2_ids)


def test_shifted_layout_gives_shifted_ids(shifted, gpt2, texts, gpt2_ids):
    # <|endoftext|> at 0, every other id one higher: encode returns the file's ids exactly.
    assert isinstance(shifted, RenumberedTokenizer)
    assert (shifted.vocab_size, shifted.eot_id) == (50257, 0)
    assert shifted.special_token_ids == {EOT: 0} and shifted.special_tokens == {EOT: 50256}
    assert shifted.merges == gpt2.merges  # the layout inside is GPT-2's
    assert_same_ids(shifted, texts, [shift(ids) for ids in gpt2_ids])
    for text, ids in zip(texts, gpt2_ids):
        assert shifted.decode(shift(ids)) == text
    assert shifted.encode_ordinary("Hello world") == [15497, 996]
    assert shifted.token_bytes(0) == EOT.encode() and shifted.token_bytes(1) == b"!"
    assert shifted.decode_bytes([15497]) == b"Hello"
    with pytest.raises(ValueError, match="0..50256"):
        shifted.decode([50257])


@pytest.mark.parametrize("which", ["small", "gpt2", "shifted", "cl100k"])
def test_vocab_merges_round_trip(which, tmp_path, texts, small, gpt2, shifted, small_cl100k):
    tok = {"small": small, "gpt2": gpt2, "shifted": shifted, "cl100k": small_cl100k}[which]
    vocab_path, merges_path = write_vocab_merges(tok, tmp_path)
    back = read_vocab_merges(vocab_path, merges_path, pattern=tok.pattern)
    assert same_layout(back, tok)
    assert_same_ids(back, texts, [tok.encode(t, allowed_special="all") for t in texts])


def test_vocab_merges_named_special_tokens(small, tmp_path):
    tok = small.with_special_tokens(["<|pad|>"])
    vocab_path, merges_path = write_vocab_merges(tok, tmp_path)
    with pytest.raises(TokenizerFileError, match=r"no merge makes.*'<\|pad\|>'") as info:
        read_vocab_merges(vocab_path, merges_path)  # only <|endoftext|> by default
    assert str(vocab_path) in str(info.value)
    back = read_vocab_merges(vocab_path, merges_path, [EOT, "<|pad|>"])
    assert same_layout(back, tok)
    added = read_vocab_merges(vocab_path, merges_path, {EOT: 1023, "<|pad|>": 1024, "<|x|>": 1025})
    assert added.encode("<|x|>", allowed_special="all") == [1025]
    with pytest.raises(TokenizerFileError, match="no entry for the special token"):
        read_vocab_merges(vocab_path, merges_path, [EOT, "<|nope|>"])


def edit_files(tok: BPETokenizer, folder: Path, vocab_edit=None, merges_edit=None):
    vocab_path, merges_path = write_vocab_merges(tok, folder)
    if vocab_edit:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        vocab_edit(vocab)
        vocab_path.write_text(json.dumps(vocab), encoding="utf-8")
    if merges_edit:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
        merges_edit(lines)
        merges_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def test_merge_result_missing_from_vocab_is_named(small, tmp_path):
    last = "".join(string_tables(small, "x")[1][-1])  # the token the last merge makes
    vocab_path, merges_path = edit_files(small, tmp_path, vocab_edit=lambda v: v.pop(last))
    with pytest.raises(TokenizerFileError) as info:
        read_vocab_merges(vocab_path, merges_path)
    message = str(info.value)
    assert str(merges_path) in message and repr(last) in message and "not in" in message
    assert f"line {len(small.merges) + 1}" in message  # line 1 is the #version header


def test_vocab_token_no_merge_makes_is_named(small, tmp_path):
    last = "".join(string_tables(small, "x")[1][-1])
    vocab_path, merges_path = edit_files(small, tmp_path, merges_edit=lambda lines: lines.pop())
    with pytest.raises(TokenizerFileError, match="no merge makes") as info:
        read_vocab_merges(vocab_path, merges_path)
    assert str(vocab_path) in str(info.value) and repr(last) in str(info.value)


@pytest.mark.parametrize(
    "vocab_edit, merges_edit, message",
    [
        (lambda v: v.pop("Ā"), None, r"lacks the single-byte tokens of 1 byte\(s\) \('Ā'\)"),
        (
            lambda v: v.update({"▁x": 5000}),
            None,
            "character '▁'.*not one of GPT-2's 256 byte stand-ins",
        ),
        (lambda v: v.update({"a": v["b"]}), None, "id .* is given to both"),
        (None, lambda lines: lines.insert(1, "a b c"), "line 2 is 'a b c', not two tokens"),
        (None, lambda lines: lines.insert(1, lines.pop()), "there is no .* yet: a later merge"),
    ],
)
def test_bad_vocab_merges_files(vocab_edit, merges_edit, message, small, tmp_path):
    vocab_path, merges_path = edit_files(small, tmp_path, vocab_edit, merges_edit)
    with pytest.raises(TokenizerFileError, match=message):
        read_vocab_merges(vocab_path, merges_path)


def test_unreadable_vocab_merges(tmp_path, small):
    vocab_path, merges_path = write_vocab_merges(small, tmp_path)
    with pytest.raises(TokenizerFileError, match="does not exist"):
        read_vocab_merges(tmp_path / "nope.json", merges_path)
    vocab_path.write_text("{bad json")
    with pytest.raises(TokenizerFileError, match="not valid JSON"):
        read_vocab_merges(vocab_path, merges_path)
    vocab_path.write_text("[1, 2]")
    with pytest.raises(TokenizerFileError, match="not a vocab.json"):
        read_vocab_merges(vocab_path, merges_path)


def test_an_id_far_beyond_the_vocab_is_refused(small, tmp_path):
    # One id of 1e8 in a small vocab.json would size a table of 1e8 entries (about 1 GB).
    for huge in (10**8, 10**12):
        vocab_path, merges_path = edit_files(
            small, tmp_path / str(huge), vocab_edit=lambda v, huge=huge: v.update({EOT: huge})
        )
        with pytest.raises(TokenizerFileError, match=rf"id {huge} is out of range") as info:
            read_vocab_merges(vocab_path, merges_path)
        message = str(info.value)
        assert str(vocab_path) in message and f"[0, {1024 + MAX_UNUSED_IDS})" in message


def test_a_folder_where_a_file_is_expected_is_named(small, tmp_path):
    vocab_path, merges_path = write_vocab_merges(small, tmp_path)
    with pytest.raises(TokenizerFileError, match=r"vocab.json file .* is a folder"):
        read_vocab_merges(tmp_path, merges_path)
    with pytest.raises(TokenizerFileError, match=r"merges.txt file .* is a folder"):
        read_vocab_merges(vocab_path, tmp_path)

"""Tokenizers whose ids are not our layout's (minigpt.formats.renumbered): the id map, its
file, its stream; and the shared fixtures of the format tests (files that renumber GPT-2)."""

# ruff: noqa: F811 (the fixtures imported from other test files are the tests' parameters)

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_tokenizer import FILE_STRINGS, gpt2, gpt2_ids, sample, small, texts  # noqa: F401 (fixtures)

from minigpt.assets import read_gpt2_bpe
from minigpt.files import digest
from minigpt.formats.renumbered import (
    MAX_UNUSED_IDS,
    RenumberedTokenizer,
    layout_from_tables,
    public_id,
    tokenizer_from_layout,
)
from minigpt.formats.vocab_merges import read_vocab_merges, write_vocab_merges
from minigpt.tokenizer import EOT, BPETokenizer, TokenizerFileError


def write_files(folder: Path, vocab: dict[str, int], merges) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + lines, encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory) -> tuple[Path, Path]:
    """GPT-2's own tables (OpenAI's encoder.json and vocab.bpe) as vocab.json + merges.txt."""
    encoder, merges = read_gpt2_bpe()
    return write_files(tmp_path_factory.mktemp("gpt2"), encoder, merges)


@pytest.fixture(scope="module")
def shifted_files(tmp_path_factory) -> tuple[Path, Path]:
    """GPT-2's tables with <|endoftext|> at id 0 and every other id one higher."""
    encoder, merges = read_gpt2_bpe()
    shifted = {t: 0 if t == EOT else i + 1 for t, i in encoder.items()}
    return write_files(tmp_path_factory.mktemp("shifted"), shifted, merges)


@pytest.fixture(scope="module")
def shifted(shifted_files) -> BPETokenizer:
    return read_vocab_merges(*shifted_files)


def shift(ids: list[int]) -> list[int]:
    return [0 if i == 50256 else i + 1 for i in ids]


def same_layout(a: BPETokenizer, b: BPETokenizer) -> bool:
    keys = ("pattern", "byte_order", "merges", "special_tokens", "id_map")
    da, db = a.to_dict(), b.to_dict()
    return all(da.get(k) == db.get(k) for k in keys)


def assert_same_ids(tok: BPETokenizer, texts: list[str], expected: list[list[int]]) -> None:
    for text, want in zip(texts, expected):
        assert tok.encode(text, allowed_special="all") == want, text[:60]


def scrambled_copy(tok: BPETokenizer, folder: Path, seed: int = 0) -> tuple[dict, Path, Path]:
    """``tok``'s vocab.json with every id moved at random (bytes not at 0..255, merges not
    making ids in order); returns ``{old id: new id}`` and the two files."""
    vocab_path, merges_path = write_vocab_merges(tok, folder / "orig")
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    new_ids = list(range(tok.vocab_size))
    random.Random(seed).shuffle(new_ids)
    perm = dict(enumerate(new_ids))
    merges = [line.split(" ") for line in merges_path.read_text().splitlines()[1:]]
    files = write_files(folder / "scrambled", {t: perm[i] for t, i in vocab.items()}, merges)
    return perm, *files


def test_scrambled_layout_round_trips(small, texts, tmp_path):
    perm, vocab_path, merges_path = scrambled_copy(small, tmp_path)
    tok = read_vocab_merges(vocab_path, merges_path)
    assert min(tok.id_map[:256]) > 0 and tok.id_map != tuple(sorted(tok.id_map))
    assert tok.eot_id == perm[small.eot_id]
    expected = [[perm[i] for i in small.encode(t, allowed_special="all")] for t in texts]
    assert_same_ids(tok, texts, expected)
    for text, ids in zip(texts, expected):
        assert tok.decode(ids) == text
        assert list(tok.encode_iterable([text[:7], text[7:]], allowed_special="all")) == ids
    # Written back (in the file's ids), read again: the same tokenizer.
    again = read_vocab_merges(*write_vocab_merges(tok, tmp_path / "again"))
    assert same_layout(again, tok)
    # The class's own file keeps the map (file version 3), which the plain class refuses.
    path = tok.save(tmp_path / "tok.json")
    assert json.loads(path.read_text())["version"] == 3
    loaded = RenumberedTokenizer.load(path)
    assert loaded.id_map == tok.id_map and loaded.encode(texts[0]) == expected[0]
    with pytest.raises(TokenizerFileError, match="renumbered tokenizer .*RenumberedTokenizer.load"):
        BPETokenizer.load(path)


# -- the id map itself ---------------------------------------------------------------------


def test_id_map_is_checked():
    with pytest.raises(ValueError, match="id_map must give each of the 257 tokens its own id"):
        RenumberedTokenizer([], special_tokens={EOT: 256}, id_map=[0] * 257)
    layout = {"merges": [], "byte_order": range(256), "special_tokens": {EOT: 256}}
    identity = tokenizer_from_layout({**layout, "id_map": list(range(257))}, "here")
    assert type(identity) is BPETokenizer and identity.to_dict()["version"] == 2
    moved = tokenizer_from_layout({**layout, "id_map": [*range(1, 257), 0]}, "here")
    assert type(moved) is RenumberedTokenizer and moved.eot_id == 0
    assert public_id(moved, 256) == 0 and public_id(identity, 256) == 256


def test_mapped_file_with_a_bad_id_map_is_refused(small, tmp_path):
    mapped = read_vocab_merges(*scrambled_copy(small, tmp_path)[1:])
    path = mapped.save(tmp_path / "tok.json")
    data = json.loads(path.read_text())
    data["id_map"] = data["id_map"][:-1]
    data["sha256"] = digest({k: v for k, v in data.items() if k != "sha256"})
    path.write_text(json.dumps(data))
    with pytest.raises(TokenizerFileError, match="id_map must give each") as info:
        RenumberedTokenizer.load(path)
    assert str(path) in str(info.value)


def test_checksum_still_guards_a_mapped_file(small, tmp_path):
    mapped = read_vocab_merges(*scrambled_copy(small, tmp_path)[1:])
    path = mapped.save(tmp_path / "tok.json")
    data = json.loads(path.read_text())
    data["id_map"][0], data["id_map"][1] = data["id_map"][1], data["id_map"][0]  # still valid
    path.write_text(json.dumps(data))
    with pytest.raises(TokenizerFileError, match="does not match the checksum"):
        RenumberedTokenizer.load(path)


def test_stream_of_a_renumbered_tokenizer_equals_encode(shifted):
    # The stream's parts are encoded by the subclass's own chunk encoder: the file's ids.
    text = "we'll  \n\n <|endoftext|>x  y's 123 🙂 don't\n" * 3
    want = shifted.encode(text, allowed_special="all")
    assert want.count(0) == 3  # <|endoftext|> is id 0 in the shifted file
    for step in (1, 2, 5, 13):
        pieces = [text[i : i + step] for i in range(0, len(text), step)]
        assert list(shifted.encode_iterable(pieces, allowed_special="all")) == want, step


def test_an_id_far_beyond_the_tokens_is_refused_before_any_table():
    # 256 bytes and one special token; an id of 1e8 (or 1e12) would size the decode table.
    singles = {bytes([b]): b for b in range(256)}
    limit = 257 + MAX_UNUSED_IDS
    for huge in (10**8, 10**12):
        with pytest.raises(TokenizerFileError, match=rf"id {huge} .*\[0, {limit}\)") as info:
            layout_from_tables(singles, [], [], {EOT: huge}, "some.tiktoken", show=repr)
        assert "some.tiktoken" in str(info.value)
        with pytest.raises(ValueError, match=rf"\[0, {limit}\)"):
            RenumberedTokenizer([], special_tokens={EOT: 256}, id_map=[*range(256), huge])
    # At the edge of the range it is still allowed: gaps up to MAX_UNUSED_IDS are fine.
    layout = layout_from_tables(singles, [], [], {EOT: limit - 1}, "x", show=repr)
    assert tokenizer_from_layout(layout, "x").eot_id == limit - 1

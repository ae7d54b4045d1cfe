"""Where minigpt finds GPT-2's BPE tables and keeps its cache (minigpt.assets): the tables
checked against their published SHA-256, a clear error for a corrupt or missing one."""

from __future__ import annotations

import shutil

import pytest

from minigpt.assets import (
    AssetError,
    cache_dir,
    gpt2_bpe_files,
    read_gpt2_bpe,
    sha256_of,
    verify_sha256,
)


def test_bpe_files_match_published_hashes():
    files = gpt2_bpe_files()
    assert sha256_of(files.encoder_json).startswith("196139668be6")
    assert sha256_of(files.vocab_bpe).startswith("1ce1664773c5")


def test_corrupt_bpe_file_is_a_clear_error(tmp_path):
    files = gpt2_bpe_files()
    shutil.copy(files.encoder_json, tmp_path / "encoder.json")
    data = bytearray(files.vocab_bpe.read_bytes())
    data[100] ^= 1  # flip one bit
    (tmp_path / "vocab.bpe").write_bytes(bytes(data))
    with pytest.raises(AssetError, match=r"vocab\.bpe has SHA-256 .* but GPT-2's published file"):
        gpt2_bpe_files(tmp_path)


def test_missing_bpe_file_is_a_clear_error(tmp_path):
    with pytest.raises(AssetError, match="encoder.json is missing"):
        gpt2_bpe_files(tmp_path)


def test_cache_dir_is_minigpt_cache_made_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "a" / "b"))
    assert cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    monkeypatch.delenv("MINIGPT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "minigpt"
    assert cache_dir().is_dir()


def test_verify_sha256_and_the_gpt2_tables(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256("abc")
    assert sha256_of(path) == abc
    verify_sha256(path, abc)
    with pytest.raises(AssetError, match=r"f\.bin has SHA-256 ba7816bf.*, but GPT-2's published"):
        verify_sha256(path, "0" * 64)
    encoder, merges = read_gpt2_bpe()
    assert len(encoder) == 50257 and len(merges) == 50000
    assert encoder["<|endoftext|>"] == 50256 and encoder["Hello"] == 15496
    assert merges[0] == ("Ġ", "t")  # GPT-2's first merge: " t", in its byte stand-ins

"""tiktoken's rank files (minigpt.formats.tiktoken_ranks): exact ids with tiktoken itself,
round trips, gaps in the ids, and bad files named."""

# ruff: noqa: F811 (the fixtures imported from other test files are the tests' parameters)

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import regex
from test_formats_renumbered import (  # noqa: F401 (fixtures)
    assert_same_ids,
    gpt2_files,
    same_layout,
    scrambled_copy,
    shifted,
    shifted_files,
)
from test_tokenizer import gpt2, gpt2_ids, sample, small, small_cl100k, texts  # noqa: F401 (fixtures)

from minigpt.assets import gpt2_bpe_files
from minigpt.bpe import GPT2_PATTERN, split_by_ranks
from minigpt.formats.renumbered import MAX_UNUSED_IDS, RenumberedTokenizer, public_id
from minigpt.formats.tiktoken_ranks import R50K_PATTERN, read_tiktoken, write_tiktoken
from minigpt.formats.vocab_merges import read_vocab_merges
from minigpt.tokenizer import EOT, BPETokenizer, TokenizerFileError


@pytest.fixture(autouse=True)
def no_tiktoken_cache(monkeypatch):
    # tiktoken caches what it reads under a key made from the path alone, and pytest reuses
    # its temporary paths: an empty TIKTOKEN_CACHE_DIR turns that cache off.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")


# -- reading and writing ------------------------------------------------------------------------------


def write_ranks(path: Path, ranks: dict[bytes, int]) -> Path:
    lines = (
        f"{base64.b64encode(t).decode()} {r}\n"
        for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
    )
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def tiktoken_gpt2_ranks() -> dict[bytes, int]:
    tiktoken_load = pytest.importorskip("tiktoken.load")
    files = gpt2_bpe_files()  # the verified files, read from disk: no download
    return tiktoken_load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files.vocab_bpe), encoder_json_file=str(files.encoder_json)
    )


def tiktoken_encoding(ranks: dict[bytes, int], tok: BPETokenizer):
    tiktoken = pytest.importorskip("tiktoken")
    return tiktoken.Encoding(
        "test", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_token_ids
    )


def test_gpt2_ranks_from_tiktoken_give_gpt2(tiktoken_gpt2_ranks, tmp_path, gpt2, texts, gpt2_ids):
    path = write_ranks(tmp_path / "gpt2.tiktoken", tiktoken_gpt2_ranks)
    tok = read_tiktoken(path, {EOT: 50256})
    # Merges recovered from ranks alone are GPT-2's 50,000 merges, in order.
    assert type(tok) is BPETokenizer and same_layout(tok, gpt2)
    assert_same_ids(tok, texts, gpt2_ids)
    enc = tiktoken_encoding(tiktoken_gpt2_ranks, tok)
    assert enc.encode(texts[0]) == gpt2_ids[0]


@pytest.mark.parametrize("which", ["small", "gpt2", "shifted", "cl100k"])
def test_tiktoken_round_trip(which, tmp_path, texts, small, gpt2, shifted, small_cl100k):
    tiktoken_load = pytest.importorskip("tiktoken.load")
    tok = {"small": small, "gpt2": gpt2, "shifted": shifted, "cl100k": small_cl100k}[which]
    path = write_tiktoken(tok, tmp_path / "tok.tiktoken")
    ranks = tiktoken_load.load_tiktoken_bpe(str(path))
    learned = 256 + len(tok.merges)
    assert ranks == {tok.token_bytes(public_id(tok, i)): public_id(tok, i) for i in range(learned)}
    enc = tiktoken_encoding(ranks, tok)  # tiktoken itself, from our file
    expected = [tok.encode(t, allowed_special="all") for t in texts]
    for text, ids in zip(texts, expected):
        assert enc.encode(text, allowed_special="all") == ids, text[:60]
        assert enc.decode(ids) == text
    back = read_tiktoken(path, tok.special_token_ids, tok.pattern)
    assert same_layout(back, tok)
    assert_same_ids(back, texts, expected)


def test_tiktoken_ids_may_leave_gaps(small, tmp_path):
    path = write_tiktoken(small, tmp_path / "small.tiktoken")  # ranks 0..1022
    tok = read_tiktoken(path, {EOT: 5000, "<|fim|>": 5005})
    assert tok.vocab_size == 5006 and tok.eot_id == 5000 and isinstance(tok, RenumberedTokenizer)
    hi = small.encode("hi")
    assert tok.encode("hi<|fim|><|endoftext|>", allowed_special="all") == [*hi, 5005, 5000]
    assert tok.decode([5000, *hi]) == EOT + "hi"
    with pytest.raises(ValueError, match="leaves id 1023 unused"):
        tok.decode([*hi, 1023])
    wider = tok.with_special_tokens(["<|pad|>"])
    assert wider.special_token_ids["<|pad|>"] == 5006 and wider.vocab_size == 5007
    loaded = RenumberedTokenizer.load(tok.save(tmp_path / "tok.json"))
    assert loaded.encode("<|fim|>", allowed_special="all") == [5005]
    assert same_layout(loaded, tok)


def test_save_tiktoken_refuses_ids_out_of_merge_order(small, tmp_path):
    tok = read_vocab_merges(*scrambled_copy(small, tmp_path)[1:])
    with pytest.raises(ValueError, match="ids must grow with the merges"):
        write_tiktoken(tok, tmp_path / "tok.tiktoken")


def test_bad_tiktoken_files(small, tmp_path):
    path = write_tiktoken(small, tmp_path / "tok.tiktoken")
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("\n".join([*lines[:10], "not-base64!! 10", *lines[10:]]))
    with pytest.raises(TokenizerFileError, match=r"line 11 is 'not-base64!! 10'"):
        read_tiktoken(bad)
    bad.write_text("\n".join([*lines, lines[300].split()[0] + " 5000"]))
    with pytest.raises(TokenizerFileError, match="is already on line 301"):
        read_tiktoken(bad)
    # A token whose parts are gone: BPE over the lower ranks cannot make it.
    ranks = {base64.b64decode(line.split()[0]): int(line.split()[1]) for line in lines}
    part = small.token_bytes(small.merges[-1][0])  # a part of the last merge's token
    if len(part) == 1:
        part = small.token_bytes(small.merges[-1][1])
    assert len(part) > 1
    del ranks[part]
    write_ranks(bad, ranks)
    with pytest.raises(TokenizerFileError, match="not two lower-ranked tokens joined") as info:
        read_tiktoken(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(TokenizerFileError, match="id 1023 is given to both"):
        read_tiktoken(path, {EOT: 1023, "<|x|>": 1023})


def test_split_by_ranks():
    ranks = {b"a": 0, b"b": 1, b"ab": 2, b"abb": 3, b"bb": 4}
    assert split_by_ranks(b"abb", ranks) == [b"ab", b"b"]
    assert split_by_ranks(b"bb", ranks) == [b"b", b"b"]


def test_an_id_far_beyond_the_ranks_is_refused(small, tmp_path):
    # One rank of 1e8 (or 1e12) in a file of 1,023 ranks: refused before any table is sized.
    path = write_tiktoken(small, tmp_path / "tok.tiktoken")
    lines = path.read_text().splitlines()
    for huge in (10**8, 10**12):
        bad = tmp_path / f"{huge}.tiktoken"
        bad.write_text("\n".join([*lines[:-1], lines[-1].split()[0] + f" {huge}"]) + "\n")
        with pytest.raises(TokenizerFileError, match=rf"id {huge} is out of range") as info:
            read_tiktoken(bad)
        assert str(bad) in str(info.value) and f"[0, {1023 + MAX_UNUSED_IDS})" in str(info.value)
    with pytest.raises(TokenizerFileError, match=r"id 100000000 is out of range"):
        read_tiktoken(path, {EOT: 10**8})  # a special token's id, too


def test_a_folder_where_the_file_is_expected_is_named(tmp_path):
    with pytest.raises(TokenizerFileError, match=r"tiktoken file .* is a folder"):
        read_tiktoken(tmp_path)


def test_r50k_spelling_splits_as_gpt2_pattern(texts):
    for text in texts:
        assert regex.findall(R50K_PATTERN, text) == regex.findall(GPT2_PATTERN, text), text[:60]

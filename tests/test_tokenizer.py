"""The BPE tokenizer: hand-derived cases, exact parity with tiktoken and Hugging Face's GPT-2
tokenizers (whole Shakespeare corpus and hard strings), properties, files and bad input."""

from __future__ import annotations

import inspect
import json
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt import tokenizer as tokenizer_module
from minigpt.assets import gpt2_bpe_files
from minigpt.bpe import GPT2_PATTERN, bpe_word, merge, pair_counts, train_merges, word_counts_of
from minigpt.tokenizer import (
    EOT,
    BPETokenizer,
    TokenizerFileError,
    gpt2_tokenizer,
    shakespeare_tokenizer,
    show_tokens,
)

# tiktoken's name for GPT-2's pattern; written differently from ours, it must split the same.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

HARD_STRINGS = [
    "",
    " ",
    "     ",
    "\n",
    "\n\n\n",
    "  \n \n\t\t x  ",
    "\r\n\r\nline",
    "hello   world  ",
    "trailing space ",
    "0",
    "1234567890 3.14159 1,000,000 2026-11-23",
    "I'm can't we'll they've you'd he's 'S DON'T 'll",
    "Hello HELLO hello hElLo",
    "🙂 👍🏽 👨‍👩‍👧 🏳️‍🌈",
    "日本語のテキスト 中文 한국어",
    "e\u0301 n\u0303 Z\u0351\u0307\u0308 a\u20dd",
    "\u00a0\u2003x\u3000y\u200b\u200dz",
    "ﷺ ꙮ 𒐫 \U0010ffff",
    "<|endoftext|>",
    "a<|endoftext|>b",
    " <|endoftext|> hello\n<|endoftext|><|endoftext|>",
    "<|endoftext",
    "<|startoftext|> <|pad|>",
]


@pytest.fixture(scope="module")
def gpt2() -> BPETokenizer:
    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    pytest.importorskip("tiktoken")
    import tiktoken
    import tiktoken.load

    files = gpt2_bpe_files()  # the verified files; tiktoken reads them from disk, no download
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files.vocab_bpe), encoder_json_file=str(files.encoder_json)
    )
    return tiktoken.Encoding(
        "gpt2-offline", pat_str=R50K_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256}
    )


@pytest.fixture(scope="module")
def hf_gpt2():
    from minigpt.reference import gpt2_hf_tokenizer

    return gpt2_hf_tokenizer()


@pytest.fixture(scope="module")
def shakespeare() -> str:
    from minigpt.corpus import load_corpus

    return load_corpus("shakespeare")


@pytest.fixture(scope="module")
def shakespeare_ids(gpt2, shakespeare) -> list[int]:
    return gpt2.encode(shakespeare)


# -- the algorithm, on cases worked out by hand ------------------------------------------


def test_pair_counts_and_merge_hand_derived():
    assert pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert pair_counts([5, 5, 5]) == {(5, 5): 2}  # overlapping pairs count
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]  # left to right, no overlap
    assert merge([1], (1, 2), 4) == [1]


def test_train_on_wikipedia_example():
    # "aaabdaaabac": aa -> Z, then ab -> Y (tied with Za, smaller pair wins), then ZY -> X.
    tok = BPETokenizer.train("aaabdaaabac", 259, pattern=None, special_tokens=())
    a, b = ord("a"), ord("b")
    assert tok.merges == [(a, a), (a, b), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]
    assert tok.token_bytes(258) == b"aaab"


def test_bpe_word_applies_lowest_rank_first():
    ranks = {(1, 2): 257, (2, 3): 256}  # (2, 3) was learned first, so it wins over (1, 2)
    assert bpe_word([1, 2, 3], ranks) == [1, 256]


def naive_merges(text: str, n_merges: int, pattern: str | None) -> list[tuple[int, int]]:
    """The textbook loop over the whole text: count all pairs, merge the top one, repeat."""
    words = [list(c.encode("utf-8")) for c in (regex.findall(pattern, text) if pattern else [text])]
    merges = []
    for step in range(n_merges):
        counts = Counter(p for w in words for p in zip(w, w[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        words = [merge(w, pair, 256 + step) for w in words]
    return merges


@settings(max_examples=60, deadline=None)
@given(
    text=st.one_of(st.text(alphabet="ab c\n'", max_size=80), st.text(max_size=40)),
    pattern=st.sampled_from([GPT2_PATTERN, None]),
)
def test_fast_training_equals_naive_loop(text, pattern):
    chunks = regex.findall(pattern, text) if pattern else [text]
    assert train_merges(word_counts_of(chunks), 25) == naive_merges(text, 25, pattern)


@settings(max_examples=25, deadline=None)
@given(text=st.text(min_size=30, max_size=200))
def test_training_is_deterministic(text):
    first = BPETokenizer.train(text, 260, special_tokens=(), name="a")
    second = BPETokenizer.train(text, 260, special_tokens=(), name="a")
    assert first.to_dict() == second.to_dict()


def test_training_on_shakespeare(tmp_path, monkeypatch, shakespeare):
    # The real thing, the chapters' tokenizer: 4,096 ids, <|endoftext|> last, saved on disk.
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    monkeypatch.setattr(tokenizer_module, "load_corpus", lambda name: shakespeare)
    tok = shakespeare_tokenizer(4096)
    assert (tok.vocab_size, tok.eot_id, len(tok.merges)) == (4096, 4095, 3839)
    sample = shakespeare[:200_000]
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample
    assert max(ids) < 4095
    # Trained on this text, it needs fewer than one token per 3 characters.
    assert len(sample) / len(ids) > 3.0


# -- GPT-2: exact parity with tiktoken and Hugging Face ----------------------------------


def test_gpt2_shape(gpt2):
    assert (gpt2.vocab_size, len(gpt2.merges), gpt2.eot_id) == (50257, 50000, 50256)
    assert gpt2.encode("Hello world") == [15496, 995]  # GPT-2's well-known ids
    assert gpt2.token_bytes(220) == b" " and gpt2.token_bytes(198) == b"\n"


def test_gpt2_matches_tiktoken_on_shakespeare(shakespeare, shakespeare_ids, tiktoken_gpt2):
    assert shakespeare_ids == tiktoken_gpt2.encode_ordinary(shakespeare)


def test_gpt2_matches_hugging_face_on_shakespeare(shakespeare, shakespeare_ids, hf_gpt2):
    assert shakespeare_ids == hf_gpt2.encode(shakespeare)


def test_gpt2_round_trips_shakespeare(gpt2, shakespeare, shakespeare_ids):
    assert gpt2.decode(shakespeare_ids) == shakespeare


@pytest.mark.parametrize("text", HARD_STRINGS, ids=repr)
def test_gpt2_matches_tiktoken_and_hf_on_hard_strings(text, gpt2, tiktoken_gpt2, hf_gpt2):
    ours = gpt2.encode(text, allowed_special="all")
    assert ours == tiktoken_gpt2.encode(text, allowed_special="all")
    assert ours == hf_gpt2.encode(text)  # HF reads <|endoftext|> in text as the special token
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2.decode(ours) == text


def test_lone_surrogate_becomes_replacement_character(gpt2, tiktoken_gpt2):
    text = "a\ud800b \udfff"
    assert gpt2.encode(text) == tiktoken_gpt2.encode(text)
    assert gpt2.decode(gpt2.encode(text)) == "a\ufffdb \ufffd"


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=60))
def test_gpt2_matches_tiktoken_on_random_text(text, gpt2, tiktoken_gpt2):
    assert gpt2.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


def test_decode_mid_character(gpt2, tiktoken_gpt2):
    ids = gpt2.encode("日本語🙂")
    assert len(ids) > 3
    for end in range(len(ids) + 1):
        assert gpt2.decode(ids[:end]) == tiktoken_gpt2.decode(ids[:end])
    assert "\ufffd" in gpt2.decode(ids[:1])  # the first id is part of a character


# -- properties --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_trained() -> BPETokenizer:
    return BPETokenizer.train("the cat sat on the mat; THE CAT 123 ünïcödé\n" * 20, 280)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_round_trip_any_string(text, gpt2, small_trained):
    for tok in (gpt2, small_trained):
        assert tok.decode(tok.encode(text, disallowed_special=())) == text


# -- special tokens ----------------------------------------------------------------------


def test_special_token_policy(gpt2):
    text = "end<|endoftext|>start"
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'.*allowed_special"):
        gpt2.encode(text)
    assert gpt2.encode(text, allowed_special="all") == [437, 50256, 9688]
    assert gpt2.encode(text, allowed_special={EOT}) == [437, 50256, 9688]
    as_text = gpt2.encode(text, disallowed_special=())
    assert 50256 not in as_text and as_text == gpt2.encode_ordinary(text)
    with pytest.raises(ValueError, match="not special tokens"):
        gpt2.encode(text, allowed_special={"<|pad|>"})
    with pytest.raises(ValueError, match="allowed_special='everything'"):
        gpt2.encode(text, allowed_special="everything")


def test_added_special_tokens_come_after_50256(gpt2):
    extended = gpt2.with_special_tokens(["<|startoftext|>", "<|pad|>", "<|unk|>"])
    assert extended.vocab_size == 50260 and gpt2.vocab_size == 50257
    assert extended.special_tokens == {EOT: 50256, "<|startoftext|>": 50257, "<|pad|>": 50258,
                                       "<|unk|>": 50259}  # fmt: skip
    ids = extended.encode("<|startoftext|>Hi<|pad|>", allowed_special="all")
    assert ids == [50257, 17250, 50258]
    assert extended.decode(ids) == "<|startoftext|>Hi<|pad|>"
    with pytest.raises(ValueError, match="unique"):
        gpt2.with_special_tokens([EOT])


def test_trained_special_tokens_are_last(small_trained):
    assert small_trained.eot_id == small_trained.vocab_size - 1 == 279
    assert small_trained.encode(EOT, allowed_special="all") == [279]


# -- files -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "gpt2"])
def test_save_load_round_trip(which, tmp_path, small_trained, gpt2):
    tok = small_trained if which == "small" else gpt2
    path = tok.save(tmp_path / "sub" / "tok.json")
    loaded = BPETokenizer.load(path)
    assert loaded.to_dict() == tok.to_dict()
    text = "The cat sat on the mat, 123 ünïcödé 🙂\n"
    assert loaded.encode(text) == tok.encode(text)
    assert [p.name for p in path.parent.iterdir()] == ["tok.json"]  # no temporary file left


def test_shakespeare_tokenizer_is_trained_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(
        tokenizer_module, "load_corpus", lambda name: calls.append(name) or "to be or not " * 50
    )
    first = shakespeare_tokenizer(262)
    second = shakespeare_tokenizer(262)
    assert calls == ["shakespeare"] and first.to_dict() == second.to_dict()
    path = tmp_path / "tokenizers" / "shakespeare-262.json"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="not valid JSON"):
        third = shakespeare_tokenizer(262)
    assert calls == ["shakespeare"] * 2 and third.to_dict() == first.to_dict()


def _corrupt(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": "other"}, "not a minigpt tokenizer"),
        ({"version": 99}, "version 99"),
        ({"merges": [[1, 2], [3, 999]]}, r"merges\[1\]=\[3, 999\]"),
        ({"merges": [[1]]}, r"bad merges \(a list of \[id, id\] pairs\)"),
        ({"merges": [[1, 2.5]]}, r"bad merges"),
        ({"byte_order": list(range(255))}, "bad byte_order"),
        ({"byte_order": [0] * 256}, "each of the 256 byte values exactly once"),
        ({"special_tokens": {EOT: "x"}}, "bad special_tokens"),
        ({"special_tokens": {EOT: 5}}, "special_tokens"),
        ({"pattern": "(unclosed"}, "corrupt"),
    ],
)
def test_corrupt_file_is_named(change, message, tmp_path, small_trained):
    path = _corrupt(small_trained.save(tmp_path / "tok.json"), **change)
    with pytest.raises(TokenizerFileError, match=message) as info:
        BPETokenizer.load(path)
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path, small_trained):
    with pytest.raises(TokenizerFileError, match="does not exist"):
        BPETokenizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"format": "minigpt-bpe", "merg')
    with pytest.raises(TokenizerFileError, match="not valid JSON"):
        BPETokenizer.load(bad)
    data = small_trained.to_dict()
    del data["merges"]
    bad.write_text(json.dumps(data))
    with pytest.raises(TokenizerFileError, match="lacks the fields \\['merges'\\]"):
        BPETokenizer.load(bad)


# -- bad input ---------------------------------------------------------------------------
# The runtime type checker these tests install (conftest.py) rejects a wrongly typed
# argument before our own check runs; `inspect.unwrap` reaches the function a reader calls
# in a notebook, to check the message they would see.


@pytest.mark.parametrize("value", [123, b"bytes", None, ["a"]])
def test_encode_rejects_non_strings(value, gpt2):
    with pytest.raises(TypeError):
        gpt2.encode(value)
    with pytest.raises(TypeError, match="encode expects a str"):
        inspect.unwrap(BPETokenizer.encode)(gpt2, value)


@pytest.mark.parametrize("size", [0, 255, 256])
def test_vocab_size_too_small(size):
    with pytest.raises(ValueError, match=f"vocab_size={size} must be an integer >= 257"):
        BPETokenizer.train("some text", size)


@pytest.mark.parametrize("specials", [("<|a|>", "<|a|>"), ("",)])
def test_train_rejects_bad_special_tokens(specials):
    with pytest.raises(ValueError, match="must be non-empty and unique"):
        BPETokenizer.train("some text", 300, special_tokens=specials)


def test_vocab_size_beyond_the_text():
    with pytest.raises(ValueError, match="runs out of pairs"):
        BPETokenizer.train("abab", 300, special_tokens=())


@pytest.mark.parametrize("ids, message", [([15496, 50257], r"ids\[1\]=50257"), ([-1], "-1")])
def test_decode_rejects_unknown_ids(ids, message, gpt2):
    with pytest.raises(ValueError, match=message + ".*0..50256"):
        gpt2.decode(ids)


def test_decode_rejects_non_integers(gpt2):
    with pytest.raises(TypeError, match=r"ids\[0\]=1.5"):
        gpt2.decode([1.5])


def test_decode_accepts_a_tensor(gpt2):
    torch = pytest.importorskip("torch")
    assert gpt2.decode(torch.tensor([15496, 995])) == "Hello world"


def test_show_tokens_marks_spaces_and_ids(gpt2):
    view = show_tokens(gpt2, "Hello world\n")
    assert repr(view) == "Hello| world|\n"
    page = view._repr_html_()
    assert "␣world" in page and 'title="id 995"' in page and "3 tokens" in page


def test_word_cache_does_not_change_ids(small_trained):
    text = "the cat sat on the mat, again and again and again"
    warm = small_trained.encode(text)
    small_trained.clear_cache()
    assert small_trained._cache == {}
    assert small_trained.encode(text) == warm
    assert len(small_trained._cache) == len(set(regex.findall(GPT2_PATTERN, text)))

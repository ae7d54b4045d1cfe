"""The BPE tokenizer (minigpt.tokenizer): hand-derived cases, exact parity with tiktoken and Hugging Face's GPT-2
tokenizers (whole Shakespeare corpus and hard strings), properties, files and bad input."""

from __future__ import annotations

import inspect
import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minigpt import tokenizer as tokenizer_module
from minigpt.assets import gpt2_bpe_files
from minigpt.bpe import GPT2_PATTERN
from minigpt.formats.tiktoken_ranks import R50K_PATTERN  # tiktoken's spelling, for tiktoken
from minigpt.tokenizer import (
    EOT,
    BPETokenizer,
    TokenizerFileError,
    gpt2_tokenizer,
    shakespeare_tokenizer,
    show_tokens,
)

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


def test_train_on_wikipedia_example():
    # "aaabdaaabac": aa -> Z, then ab -> Y (tied with Za, smaller pair wins), then ZY -> X.
    tok = BPETokenizer.train("aaabdaaabac", 259, pattern=None, special_tokens=())
    a, b = ord("a"), ord("b")
    assert tok.merges == [(a, a), (a, b), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]
    assert tok.token_bytes(258) == b"aaab"


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
    with pytest.raises(TokenizerFileError, match=r"is a folder; give the path of the file") as info:
        BPETokenizer.load(tmp_path)  # a folder where the file is expected
    assert str(tmp_path) in str(info.value)
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


# -- shared with the tests of minigpt.formats (they import these) ------------------------


# tiktoken's cl100k_base pattern: not GPT-2's, so files must carry it (a Split in tokenizer.json).
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

FILE_STRINGS = [
    "",
    " ",
    "     ",
    "\n\n\n",
    "  \n \n\t\t x  ",
    "\r\n\r\nline",
    "hello   world  ",
    "1234567890 3.14159 1,000,000 2026-11-23",
    "I'm can't we'll they've you'd he's 'S DON'T 'll",
    "🙂 👍🏽 👨‍👩‍👧 🏳️‍🌈",
    "日本語のテキスト 中文 한국어",
    "e\u0301 n\u0303 Z\u0351\u0307\u0308 a\u20dd",
    "\u00a0\u2003x\u3000y\u200b\u200dz",
    "ﷺ ꙮ 𒐫 \U0010ffff",
    EOT,
    "a<|endoftext|>b",
    " <|endoftext|> hello\n<|endoftext|><|endoftext|>",
    "<|endoftext",
    "<|startoftext|> <|pad|>",
]


@pytest.fixture(scope="module")
def sample() -> str:
    from minigpt.corpus import load_corpus

    return load_corpus("shakespeare")[:200_000]


@pytest.fixture(scope="module")
def texts(sample) -> list[str]:
    return [sample, *FILE_STRINGS]


@pytest.fixture(scope="module")
def gpt2_ids(gpt2, texts) -> list[list[int]]:
    return [gpt2.encode(t, allowed_special="all") for t in texts]


@pytest.fixture(scope="module")
def small(sample) -> BPETokenizer:
    return BPETokenizer.train(sample, 1024, name="small")  # <|endoftext|> is id 1023


@pytest.fixture(scope="module")
def small_cl100k(sample) -> BPETokenizer:
    return BPETokenizer.train(sample, 700, pattern=CL100K_PATTERN, name="cl")


# -- encode_iterable ----------------------------------------------------------------------

ATOMS = ["we", "'ll", "'", "l", "s", "'s", "don't", " ", "  ", "   ", "\n", "\n\n", " \n ",
         "\t", "\r\n", "x", "Hello", "WORLD", "123", "4567", "🙂", "日本", "é", "!!", "?", ".",
         EOT, "<|", "|>", "endoftext", "<|endoftext", "supercalifragilistic"]  # fmt: skip

texts_to_split = st.lists(st.one_of(st.sampled_from(ATOMS), st.text(max_size=5)), max_size=30).map(
    "".join
)


def pieces_of(text: str, cuts: list[int]) -> list[str]:
    cuts = sorted(c % (len(text) + 1) for c in cuts)
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def outcome(fn, *args, **kwargs):
    """What ``fn`` returns (a generator: as a list), or the ValueError it raises."""
    try:
        result = fn(*args, **kwargs)
        return result if isinstance(result, list) else list(result)
    except ValueError as err:
        return ("ValueError", str(err))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=texts_to_split, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_equals_encode_wherever_cut(text, cuts, gpt2, small, small_cl100k):
    pieces = pieces_of(text, cuts)
    assert "".join(pieces) == text
    for tok in (gpt2, small, small_cl100k):
        for policy in ({"allowed_special": "all"}, {"disallowed_special": ()}, {}):
            want = outcome(tok.encode, text, **policy)
            got = outcome(tok.encode_iterable, pieces, **policy)
            assert got == want, (tok.name, policy, pieces)


def test_stream_every_pair_of_cuts(gpt2, small_cl100k):
    text = "we'll  \n\n <|endoftext|>x  y's 123 🙂 don't\n"
    for tok in (gpt2, small_cl100k):
        want = tok.encode(text, allowed_special="all")
        for i, j in itertools.combinations_with_replacement(range(len(text) + 1), 2):
            pieces = [text[:i], text[i:j], text[j:]]
            assert list(tok.encode_iterable(pieces, allowed_special="all")) == want, pieces


def test_stream_one_character_at_a_time(gpt2, sample):
    text = sample[:20_000] + " <|endoftext|>  \n"
    assert list(gpt2.encode_iterable(iter(text), allowed_special="all")) == gpt2.encode(
        text, allowed_special="all"
    )


def test_stream_is_lazy(gpt2):
    # An endless input: only a lazy encoder can give the first ids.
    endless = itertools.cycle(["the cat ", "sat<|endof", "text|>on the mat\n"])
    stream = gpt2.encode_iterable(endless, allowed_special="all")
    assert isinstance(stream, Iterator) and inspect.isgenerator(stream)
    first = list(itertools.islice(stream, 1000))
    text = "the cat sat<|endoftext|>on the mat\n" * 400
    assert first == gpt2.encode(text, allowed_special="all")[:1000]


def test_stream_policy_and_bad_input(gpt2):
    with pytest.raises(ValueError, match="not special tokens"):
        gpt2.encode_iterable(["x"], allowed_special={"<|pad|>"})  # checked before iterating
    with pytest.raises(TypeError):
        gpt2.encode_iterable("a str")
    with pytest.raises(TypeError, match="piece 1 is a bytes"):
        list(inspect.unwrap(BPETokenizer.encode_iterable)(gpt2, ["ok", b"no"]))
    stream = gpt2.encode_iterable(["fine text. <|endof", "text|> more"])
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'"):
        list(stream)


MEMORY_SCRIPT = r"""
import random, resource, time
from minigpt.tokenizer import EOT, BPETokenizer

def vm_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()

random.seed(0)
words = [random.choice(["la", "abc", "x", "do", "re"]) * random.randint(40, 400) for _ in range(40)]
seps = [" ", "  ", ", ", ". ", "'s ", " 123 ", "\n", " \n\n ", EOT, " " + EOT + "\n"]
period = "".join(random.choice(words) + random.choice(seps) for _ in range(12_000)) + "end.\n"
tok = BPETokenizer.train(period[:300_000], 256 + 120 + 1)
per_period = len(tok.encode(period, allowed_special="all"))

baseline = vm_bytes()  # after the imports and the set-up
limit = baseline + 300 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    bytearray(400 * 2**20)
    raise SystemExit("the address-space limit does not bite")
except MemoryError:
    pass

n_periods = (1 << 30) // len(period) + 1  # just over 1 GiB of text in all
piece = (1 << 20) + 7  # 1 MiB pieces that cut words, separators and <|endoftext|> anywhere
assert piece < len(period)

def pieces():
    doubled = period * 2
    total, sent = n_periods * len(period), 0
    while sent < total:
        size = min(piece, total - sent)
        start = sent % len(period)
        yield doubled[start : start + size]
        sent += size

start = time.perf_counter()
count = sum(1 for _ in tok.encode_iterable(pieces(), allowed_special="all"))
seconds = time.perf_counter() - start
# The period starts with a word and ends with a newline, so its ids just repeat.
assert count == n_periods * per_period, (count, n_periods * per_period)
print(f"{n_periods * len(period) / 2**30:.3f} GiB, {count} ids, {seconds:.1f} s, "
      f"{(vm_bytes() - baseline) / 2**20:.0f} MiB more address space")
"""


def test_stream_of_a_gigabyte_in_bounded_memory():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    assert "GiB" in result.stdout


# -- training around special tokens --------------------------------------------------------


def _learned(tok: BPETokenizer) -> list[bytes]:
    return [tok.token_bytes(256 + i) for i in range(len(tok.merges))]


def _from_special(token: bytes) -> bool:
    return any(piece in token for piece in (b"<|", b"|>", b"<", b">", b"|", b"endoft"))


@pytest.mark.parametrize("pattern", [GPT2_PATTERN, None])
def test_training_never_merges_special_token_text(pattern, sample):
    size = 2000 if pattern else 300
    assert not any(c in sample for c in "<|>")
    text = EOT.join(sample[i : i + size] for i in range(0, 60 * size, size))
    vocab = 600 if pattern else 300
    declared = BPETokenizer.train(text, vocab, pattern=pattern)
    undeclared = BPETokenizer.train(text, vocab, pattern=pattern, special_tokens=())
    assert not any(_from_special(t) for t in _learned(declared))
    # The same text with <|endoftext|> not declared learns its pieces, it is so frequent.
    assert any(b"<|" in t or b"|>" in t for t in _learned(undeclared))
    ids = declared.encode(text, allowed_special="all")
    assert ids.count(declared.eot_id) == 59 and declared.decode(ids) == text


def test_stream_with_a_pattern_that_skips_characters(sample):
    # Text the pattern does not match is dropped by encode; the stream must drop the same.
    tok = BPETokenizer.train(sample[:20_000], 300, pattern=r" ?\p{L}+| ?\p{N}+")
    text = "we'll  go, 12 345 -- don't!  stop;\nhere  "
    want = tok.encode(text)
    assert len(tok.decode(want)) < len(text)
    for i, j in itertools.combinations_with_replacement(range(len(text) + 1), 2):
        pieces = [text[:i], text[i:j], text[j:]]
        assert list(tok.encode_iterable(pieces)) == want, pieces


def test_a_tokenizer_file_with_one_merge_changed_is_refused(tmp_path):
    tok = BPETokenizer.train("to be or not to be, that is the question " * 30, 270)
    path = tok.save(tmp_path / "tok.json")
    assert BPETokenizer.load(path).merges == tok.merges
    data = json.loads(path.read_text())
    data["merges"][3] = data["merges"][2]  # still a valid file, one merge changed
    path.write_text(json.dumps(data))
    with pytest.raises(TokenizerFileError, match=r"tok\.json is corrupt.*checksum.*delete it"):
        BPETokenizer.load(path)


def test_stream_stays_linear_on_text_without_whitespace(small):
    # 200 KB with no whitespace, in 100-character pieces: one pre-token that grows piece by
    # piece. Looking at the held-back text again only once it has doubled keeps this linear.
    rng = random.Random(0)
    text = "".join(rng.choice("abcdefghij") for _ in range(200_000))
    pieces = [text[i : i + 100] for i in range(0, len(text), 100)]
    small.clear_cache()
    start = time.perf_counter()
    want = small.encode(text)
    encode_seconds = time.perf_counter() - start
    small.clear_cache()
    start = time.perf_counter()
    got = list(small.encode_iterable(pieces))
    stream_seconds = time.perf_counter() - start
    assert got == want
    assert stream_seconds < 5 * encode_seconds + 0.5, (stream_seconds, encode_seconds)

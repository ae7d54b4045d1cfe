"""bpe_word, the merge loop applied to one chunk: the fast version against the plain
rescanning loop it replaced, a hand-derived case, and exact parity with tiktoken on long
chunks (text without whitespace), where the rescanning loop took minutes."""

from __future__ import annotations

import base64
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.assets import gpt2_bpe_files
from minigpt.bpe import bpe_word, merge
from minigpt.formats.tiktoken_ranks import R50K_PATTERN  # tiktoken's spelling, for tiktoken
from minigpt.tokenizer import EOT, gpt2_tokenizer


def bpe_word_reference(ids: list[int], ranks: dict[tuple[int, int], int]) -> list[int]:
    """The plain loop minigpt used before: rescan for the lowest-ranked pair (the leftmost
    on ties), merge all its occurrences, repeat. Quadratic in the word's length."""
    while len(ids) >= 2:
        best = None
        best_rank = None
        for pair in zip(ids, ids[1:]):
            rank = ranks.get(pair)
            if rank is not None and (best_rank is None or rank < best_rank):
                best, best_rank = pair, rank
        if best is None:
            break
        ids = merge(ids, best, best_rank)
    return ids


def test_hand_derived():
    # The docstring's example: (1, 1) merges at positions 0 and 2, not 1 (overlap);
    # the merge makes (3, 1) adjacent, the next rank.
    ranks = {(1, 1): 3, (3, 1): 4}
    assert bpe_word([1, 1, 1, 1, 1], ranks) == [3, 4]
    # a a a -> aa a: occurrences do not overlap, and the leftover does not merge.
    assert bpe_word([1, 1, 1], {(1, 1): 3}) == [3, 1]
    # a a a a -> aa aa -> aaaa: a chain, each merge making the next pair.
    assert bpe_word([1, 1, 1, 1], {(1, 1): 3, (3, 3): 4}) == [4]
    # Lowest rank first, wherever it is: (2, 3) before (1, 2), which it breaks up.
    assert bpe_word([1, 2, 3], {(1, 2): 5, (2, 3): 4}) == [1, 4]
    assert bpe_word([], {(1, 1): 3}) == [] and bpe_word([7], {}) == [7]


@st.composite
def learned_tables(draw, alphabet: int = 4) -> dict[tuple[int, int], int]:
    """A table as training makes one: merge i joins two tokens that exist before it and
    makes token ``alphabet + i``, so merges build chains (a a, then aa a, then ...)."""
    ranks: dict[tuple[int, int], int] = {}
    for _ in range(draw(st.integers(0, 12))):
        tokens = st.integers(0, alphabet + len(ranks) - 1)
        pair = (draw(tokens), draw(tokens))
        if pair not in ranks:
            ranks[pair] = alphabet + len(ranks)
    return ranks


# Any table at all, even ones no training makes: two pairs sharing a rank, a merge whose
# id is one of its own parts, a later merge with a lower id than the pair it builds on.
any_tables = st.dictionaries(
    st.tuples(st.integers(0, 7), st.integers(0, 7)), st.integers(-2, 9), max_size=14
)


@st.composite
def words(draw, alphabet: int = 4) -> list[int]:
    """Ids over a small alphabet, often in runs (a a a a), where occurrences overlap."""
    runs = draw(st.lists(st.tuples(st.integers(0, alphabet - 1), st.integers(1, 6)), max_size=12))
    return [token for token, length in runs for _ in range(length)]


@settings(max_examples=400, deadline=None)
@given(ids=words(), ranks=learned_tables())
def test_equals_reference_on_learned_tables(ids, ranks):
    before = list(ids)
    assert bpe_word(ids, ranks) == bpe_word_reference(ids, ranks)
    assert ids == before  # the input is not changed


@settings(max_examples=400, deadline=None)
@given(ids=words() | st.lists(st.integers(0, 7), max_size=40), ranks=any_tables)
def test_equals_reference_on_any_table(ids, ranks):
    assert bpe_word(ids, ranks) == bpe_word_reference(ids, ranks)


def test_equals_reference_on_gpt2_merges():
    # Short whitespace-free chunks with GPT-2's real table: the reference is still quick.
    tok = gpt2_tokenizer()
    ranks = {pair: 256 + i for i, pair in enumerate(tok.merges)}
    byte_to_id = {b: i for i, b in enumerate(tok.byte_order)}
    rng = random.Random(0)
    for text in ["a" * 700, "ab" * 300, "".join(rng.choices(string.ascii_letters, k=700))]:
        ids = [byte_to_id[b] for b in text.encode()]
        assert bpe_word(ids, ranks) == bpe_word_reference(ids, ranks)


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


def long_texts() -> dict[str, str]:
    """~100k characters each, no whitespace. Letters only are a single chunk of 100k bytes
    (the rescanning loop needed about a minute for it); base64 splits into many chunks."""
    rng = random.Random(1234)
    return {
        "one letter repeated": "a" * 100_000,
        "random letters": "".join(rng.choices(string.ascii_letters, k=100_000)),
        "base64 of random bytes": base64.b64encode(rng.randbytes(75_000)).decode(),
        "CJK, 3 bytes a character": "".join(rng.choices("日本語中文字漢", k=33_000)),
    }


@pytest.mark.parametrize("name", list(long_texts()))
def test_long_chunks_match_tiktoken(name, tiktoken_gpt2):
    text = long_texts()[name]
    assert len(text) >= 33_000 and not any(c.isspace() for c in text)
    tok = gpt2_tokenizer()
    tok.clear_cache()  # encode from scratch, not from an earlier test's cached chunks
    assert tok.encode(text) == tiktoken_gpt2.encode(text)


# -- moved from tests/test_tokenizer.py: counting and merging pairs, and training merges --
# (imports here, below the tests above, so that those stay as they were)

from collections import Counter  # noqa: E402

import regex  # noqa: E402

from minigpt.bpe import GPT2_PATTERN, pair_counts, train_merges, word_counts_of  # noqa: E402


def test_pair_counts_and_merge_hand_derived():
    assert pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert pair_counts([5, 5, 5]) == {(5, 5): 2}  # overlapping pairs count
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]  # left to right, no overlap
    assert merge([1], (1, 2), 4) == [1]


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

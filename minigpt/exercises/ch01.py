"""Checks for the exercises of chapter 01 (tokenization).

Each check runs the reader's function on hand-picked and random cases, compares it with
the package's own version (:mod:`minigpt.bpe`, :mod:`minigpt.tokenizer`), prints a verdict
when all agree and raises ``AssertionError`` naming the first case that does not.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from minigpt.bpe import bpe_word, merge, pair_counts

HAND_CASES = [
    ([1, 2, 3, 1, 2], (1, 2), 4),  # the docstring example
    ([5, 5, 5], (5, 5), 9),  # overlapping: left to right, so [9, 5]
    ([5, 5, 5, 5], (5, 5), 9),
    ([1, 2], (2, 1), 7),  # the pair in the wrong order is not the pair
    ([], (1, 2), 3),
    ([1], (1, 2), 3),
]


def _random_lists(seed: int, n: int = 200) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(4) for _ in range(rng.randrange(12))] for _ in range(n)]


def check_merge(fn: Callable, seed: int = 0) -> None:
    """Check ``fn(ids, pair, new_id) -> list`` against :func:`minigpt.bpe.merge`."""
    rng = random.Random(seed)
    cases = HAND_CASES + [
        (ids, (rng.randrange(4), rng.randrange(4)), 99) for ids in _random_lists(seed)
    ]
    for ids, pair, new_id in cases:
        expected = merge(ids, pair, new_id)
        got = fn(list(ids), pair, new_id)
        if list(got) != expected:
            hint = (
                " Occurrences must not overlap: scan left to right and skip past a merge."
                if (pair[0] == pair[1])
                else ""
            )
            raise AssertionError(
                f"merge({ids}, {pair}, {new_id}) returned {got}, expected {expected}.{hint}"
            )
    print(f"Correct: merge agrees with minigpt.bpe.merge on {len(cases)} cases.")


def check_pair_counts(fn: Callable, seed: int = 0) -> None:
    """Check ``fn(ids) -> {pair: count}`` against :func:`minigpt.bpe.pair_counts`."""
    cases = [case[0] for case in HAND_CASES] + _random_lists(seed)
    for ids in cases:
        expected = pair_counts(ids)
        got = dict(fn(list(ids)))
        if got != expected:
            raise AssertionError(
                f"pair_counts({ids}) returned {got}, expected {expected} "
                "(count every adjacent pair, overlapping ones too; no pairs for 0 or 1 ids)"
            )
    print(f"Correct: pair_counts agrees with minigpt.bpe.pair_counts on {len(cases)} cases.")


def check_encode_word(fn: Callable, words: tuple[str, ...] | None = None) -> None:
    """Check ``fn(ids, ranks) -> list`` against :func:`minigpt.bpe.bpe_word` with GPT-2's merges.

    ``ranks`` maps a pair of ids to the id it merges into (lower = learned earlier).
    Words are given to ``fn`` as GPT-2 byte ids, as the tokenizer does.
    """
    from minigpt.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    ranks = {pair: 256 + i for i, pair in enumerate(tok.merges)}
    byte_to_id = {b: i for i, b in enumerate(tok.byte_order)}
    words = words or (" hello", " tokenization", "aaaa", " Shakespeare", " 1234", " naïve", "!!!")
    for word in words:
        ids = [byte_to_id[b] for b in word.encode("utf-8")]
        expected = bpe_word(ids, ranks)
        got = fn(list(ids), ranks)
        if list(got) != expected:
            raise AssertionError(
                f"for {word!r} (byte ids {ids}) you returned {list(got)}, expected {expected} "
                f"(pieces {[tok.decode([i]) for i in expected]}). Merge the pair of lowest rank "
                "first, and repeat until no pair of the word has a rank."
            )
    print(f"Correct: your BPE reproduces GPT-2's tokens for {len(words)} words.")

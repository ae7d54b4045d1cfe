"""Byte-pair encoding, the algorithm: count pairs, merge the most frequent, repeat.

These are the small pure functions behind :class:`minigpt.tokenizer.BPETokenizer`:

* :func:`pair_counts` and :func:`merge` are the two steps of BPE, written plainly.
* :func:`train_merges` learns merges over *word counts* with incremental pair-count
  updates, so a few thousand merges on a 5 MB corpus take seconds.
* :func:`bpe_word` applies learned merges to one word, lowest rank first, as GPT-2 does.
* :func:`bytes_to_unicode` is GPT-2's table of printable stand-ins for the 256 bytes,
  needed to read its ``encoder.json`` and ``vocab.bpe``.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import no_type_check

# GPT-2's pre-tokenization: split text into contractions, letter runs, digit runs,
# punctuation runs and whitespace, each optionally led by one space. BPE never merges
# across these chunks. (tiktoken calls this pattern r50k_base.)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

Pair = tuple[int, int]

# `merge` and `bpe_word` run millions of times in training and encoding; `@no_type_check`
# keeps the tests' runtime type checker (see tests/conftest.py) off these two hot loops.


def pair_counts(ids: Sequence[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """How often each adjacent pair occurs in ``ids`` (overlapping pairs count).

    ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``. Pass ``counts`` to add to it.
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


@no_type_check
def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right, by ``new_id``.

    ``ids=[1, 2, 3, 1, 2], pair=(1, 2), new_id=4 -> [4, 3, 4]``; ``[5, 5, 5]`` with
    ``(5, 5)`` gives ``[new, 5]``: occurrences do not overlap.
    """
    out: list[int] = []
    i, n = 0, len(ids)
    first, second = pair
    while i < n:
        if i < n - 1 and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def most_frequent_pair(counts: dict[Pair, int]) -> Pair:
    """The pair with the highest count; ties go to the smallest pair, so training is deterministic."""
    return min(counts, key=lambda pair: (-counts[pair], pair))


def train_merges(
    word_counts: dict[tuple[int, ...], int], n_merges: int, first_new_id: int = 256
) -> list[Pair]:
    """Learn up to ``n_merges`` merges from ``{word (token ids): count}``.

    Merge ``i`` creates token ``first_new_id + i``. Each step picks the most frequent pair
    (ties: the smallest pair, as :func:`most_frequent_pair`), exactly as the naive loop
    ``pair_counts -> most_frequent_pair -> merge`` over the whole text would, but only the
    words that contain the chosen pair are rewritten, and pair counts change by deltas.
    A max-heap with lazy deletion finds the next pair without scanning all pairs.

    Stops early when no pair occurs any more (a tiny corpus).
    """
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}  # pair -> indices of words that (may) contain it
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + freq
            where.setdefault(pair, set()).add(index)
    heap = [(-count, pair) for pair, count in counts.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while len(merges) < n_merges and heap:
        neg_count, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -neg_count or neg_count == 0:
            continue  # a stale heap entry: this pair's count has changed since it was pushed
        new_id = first_new_id + len(merges)
        merges.append(pair)
        delta: dict[Pair, int] = {}
        for index in where.pop(pair):
            word = words[index]
            if len(word) < 2:
                continue
            new_word = merge(word, pair, new_id)
            if len(new_word) == len(word):
                continue  # the pair left this word in an earlier merge
            freq = freqs[index]
            for old in zip(word, word[1:]):
                delta[old] = delta.get(old, 0) - freq
            for new in zip(new_word, new_word[1:]):
                delta[new] = delta.get(new, 0) + freq
                where.setdefault(new, set()).add(index)
            words[index] = new_word
        for changed, change in delta.items():
            if change == 0:
                continue
            count = counts.get(changed, 0) + change
            if count > 0:
                counts[changed] = count
                heapq.heappush(heap, (-count, changed))
            else:
                counts.pop(changed, None)
        counts.pop(pair, None)
    return merges


def word_counts_of(chunks: Iterable[str]) -> dict[tuple[int, ...], int]:
    """``{UTF-8 bytes of the chunk: count}`` for pre-tokenized chunks, in first-seen order."""
    return {tuple(chunk.encode("utf-8")): n for chunk, n in Counter(chunks).items()}


@no_type_check
def bpe_word(ids: list[int], ranks: dict[Pair, int]) -> list[int]:
    """Apply merges to one word: repeatedly merge the adjacent pair of lowest rank.

    ``ranks`` maps a pair to the id of the token it makes; ids grow with the order the
    merges were learned, so the lowest id is the earliest merge. All occurrences of the
    chosen pair are merged at once, left to right (GPT-2's own ``bpe`` does the same).
    """
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


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, used in its vocabulary files.

    Printable Latin-1 bytes stand for themselves; the other 68 (control characters,
    space, ...) are shifted to code points 256 and up, so the space byte 0x20 becomes
    ``"Ġ"`` (U+0120) and newline 0x0A becomes ``"Ċ"``. Token ``i`` of GPT-2, for ``i < 256``,
    is the ``i``-th byte in this table's order.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table

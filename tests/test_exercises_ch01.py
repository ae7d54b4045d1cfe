"""The chapter-01 exercise checks accept right answers and reject wrong ones."""

import pytest

from minigpt.exercises.ch01 import check_encode_word, check_merge, check_pair_counts


def right_merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if tuple(ids[i : i + 2]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def test_merge_check(capsys):
    check_merge(right_merge)
    assert "Correct" in capsys.readouterr().out

    def overlapping(ids, pair, new_id):  # merges at every position where the pair starts
        return [new_id if tuple(ids[i : i + 2]) == pair else t for i, t in enumerate(ids)]

    with pytest.raises(AssertionError, match=r"merge\(\[1, 2, 3, 1, 2\].*expected \[4, 3, 4\]"):
        check_merge(overlapping)


def test_pair_counts_check(capsys):
    def right(ids):
        counts = {}
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        return counts

    check_pair_counts(right)
    assert "Correct" in capsys.readouterr().out

    def non_overlapping(ids):  # steps by two, so misses every other pair
        counts = {}
        for i in range(0, len(ids) - 1, 2):
            counts[(ids[i], ids[i + 1])] = counts.get((ids[i], ids[i + 1]), 0) + 1
        return counts

    with pytest.raises(AssertionError, match="overlapping ones too"):
        check_pair_counts(non_overlapping)


def test_encode_word_check(capsys):
    def right(ids, ranks):
        while len(ids) > 1:
            pairs = [p for p in zip(ids, ids[1:]) if p in ranks]
            if not pairs:
                return ids
            best = min(pairs, key=ranks.get)
            ids = right_merge(ids, best, ranks[best])
        return ids

    check_encode_word(right)
    assert "Correct" in capsys.readouterr().out

    def first_pair_first(ids, ranks):  # merges left to right instead of by rank
        while True:
            pairs = [p for p in zip(ids, ids[1:]) if p in ranks]
            if not pairs:
                return ids
            ids = right_merge(ids, pairs[0], ranks[pairs[0]])

    with pytest.raises(AssertionError, match="lowest rank"):
        check_encode_word(first_pair_first)

"""The chapter-01 exercise checks accept right answers and name the typical wrong ones."""

import re

import pytest

from minigpt.exercises import ch01
from minigpt.exercises.ch01 import (
    check_decode,
    check_encode_word,
    check_merge,
    check_pair_counts,
    check_train_bpe,
)


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


def right_encode(ids, ranks):
    while len(ids) > 1:
        pairs = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not pairs:
            return ids
        best = min(pairs, key=ranks.get)
        ids = right_merge(ids, best, ranks[best])
    return ids


def test_merge_check_accepts_a_right_answer(capsys):
    check_merge(right_merge)
    assert "Correct" in capsys.readouterr().out


def test_merge_check_names_the_case():
    def overlapping(ids, pair, new_id):  # new_id wherever the pair starts, nothing dropped
        return [new_id if tuple(ids[i : i + 2]) == pair else t for i, t in enumerate(ids)]

    with pytest.raises(AssertionError, match=r"merge\(\[1, 2, 3, 1, 2\].*expected \[4, 3, 4\]"):
        check_merge(overlapping)


def test_merge_check_without_return():
    with pytest.raises(AssertionError, match="missing `return`"):
        check_merge(lambda ids, pair, new_id: None)


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (ch01._merge_keeps_second, "kept the pair's second id"),
        (ch01._merge_overlapping, "overlapping occurrences"),
        (ch01._merge_drops_last, "last id is missing"),
        (ch01._merge_right_to_left, "right to left"),
        (ch01._merge_first_only, "only the first occurrence"),
    ],
)
def test_merge_check_diagnoses_typical_mistakes(wrong, diagnosis):
    with pytest.raises(AssertionError, match=f"Likely cause: .*{diagnosis}"):
        check_merge(wrong)


def test_merge_check_diagnoses_a_for_loop_that_cannot_skip():
    def for_loop(ids, pair, new_id):  # `i += 2` inside a for loop does not skip anything
        out = []
        for i in range(len(ids)):
            if tuple(ids[i : i + 2]) == pair:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
        return out

    with pytest.raises(AssertionError, match="kept the pair's second id"):
        check_merge(for_loop)


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


def test_encode_word_check_accepts_a_right_answer(capsys):
    check_encode_word(right_encode)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (ch01._encode_first_seen, "merged the leftmost pair"),
        (ch01._encode_latest_first, "highest rank first"),
        (ch01._encode_one_pass, "look again after each merge"),
        (ch01._encode_with_overlapping_merge, "merges overlapping occurrences"),
    ],
)
def test_encode_word_check_diagnoses_typical_mistakes(wrong, diagnosis):
    with pytest.raises(AssertionError, match=f"Likely cause: .*{diagnosis}.*lowest rank"):
        check_encode_word(wrong)


def test_encode_word_check_diagnoses_a_single_merge():
    def one_merge(ids, ranks):  # stops after the first merge
        pairs = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not pairs:
            return ids
        best = min(pairs, key=ranks.get)
        return right_merge(ids, best, ranks[best])

    with pytest.raises(AssertionError, match=r"for ' hello'.*expected \[23748\]"):
        check_encode_word(one_merge)


def right_train(ids, n_merges):
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = {}
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        top = max(counts.values())
        pair = min(p for p, c in counts.items() if c == top)
        ids = right_merge(ids, pair, new_id)
        merges.append(pair)
    return merges


def test_train_bpe_check_accepts_a_right_answer(capsys):
    assert check_train_bpe(right_train) is right_train
    assert "Correct: your merges equal minigpt.bpe.train_merges'" in capsys.readouterr().out


def first_seen_train(ids, n_merges):  # max() keeps the first of equal counts
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = {}
        for pair in zip(ids, ids[1:]):
            counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = max(counts, key=counts.get)
        ids = right_merge(ids, pair, new_id)
        merges.append(pair)
    return merges


def counted_once_train(ids, n_merges):  # the merges are the top pairs of the raw bytes
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return sorted(counts, key=lambda p: (-counts[p], p))[:n_merges]


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (first_seen_train, "the one seen first in the text"),
        (counted_once_train, "counted the pairs once"),
        *((mistake, hint[:30]) for mistake, hint in ch01.TRAIN_MISTAKES),
    ],
)
def test_train_bpe_check_diagnoses_typical_mistakes(wrong, diagnosis):
    with pytest.raises(AssertionError, match=r"Likely cause: .*" + re.escape(diagnosis)):
        check_train_bpe(wrong)


def test_train_bpe_check_names_a_loop_that_does_not_stop():
    def no_stop(ids, n_merges):  # min() of no pairs raises ValueError
        merges = []
        for new_id in range(256, 256 + n_merges):
            counts = ch01.pair_counts(ids)
            pair = min(counts, key=lambda p: (-counts[p], p))
            ids = right_merge(ids, pair, new_id)
            merges.append(pair)
        return merges

    with pytest.raises(AssertionError, match="after 7 merges the text is a single token"):
        check_train_bpe(no_stop)


def test_train_bpe_check_wants_the_pairs():
    with pytest.raises(AssertionError, match="return the list of merged pairs"):
        check_train_bpe(lambda ids, n: list(range(n)))
    with pytest.raises(AssertionError, match="missing `return`"):
        check_train_bpe(lambda ids, n: None)
    with pytest.raises(AssertionError, match=r"You learned 2 merges, minigpt 3"):
        check_train_bpe(lambda ids, n: right_train(ids, n)[:2])


def right_decode(ids, vocab):
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


class FakeTokenizer:
    """A tokenizer of the hand-made vocabulary's kind, without loading GPT-2's files."""

    def __init__(self):
        self.table = ch01._hand_vocab()
        self.vocab_size = len(self.table)

    def token_bytes(self, i):
        return self.table[i]

    def encode(self, text):
        return list(text.encode("utf-8"))  # bytes only: every prefix ends inside a character

    def decode(self, ids):
        return right_decode(ids, self.table)


def test_decode_check_accepts_a_right_answer(capsys):
    assert check_decode(right_decode) is right_decode
    check_decode(right_decode, FakeTokenizer())
    out = capsys.readouterr().out
    assert out.count("Correct: your decode reads the joined bytes once") == 2
    assert f"on {len(ch01.HAND_DECODE_CASES)} cases" in out


@pytest.mark.parametrize("tokenizer", [None, FakeTokenizer()], ids=["by hand", "tokenizer"])
@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda ids, vocab: "".join(vocab[i].decode() for i in ids), "each token on its own"),
        (
            lambda ids, vocab: "".join(vocab[i].decode(errors="replace") for i in ids),
            "each token on its own",
        ),
        (lambda ids, vocab: b"".join(vocab[i] for i in ids).decode(), "errors='replace'"),
        (
            lambda ids, vocab: b"".join(vocab[i] for i in ids).decode(errors="ignore"),
            "errors='ignore' drops",
        ),
        (lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("latin-1"), "Latin-1"),
        (lambda ids, vocab: " ".join(right_decode([i], vocab) for i in ids), "a space between"),
    ],
)
def test_decode_check_diagnoses_typical_mistakes(wrong, diagnosis, tokenizer):
    with pytest.raises(AssertionError, match=r"Likely cause: .*" + re.escape(diagnosis)):
        check_decode(wrong, tokenizer)


def test_decode_check_wants_text():
    with pytest.raises(AssertionError, match="returned bytes"):
        check_decode(lambda ids, vocab: b"".join(vocab[i] for i in ids))
    with pytest.raises(AssertionError, match="missing `return`"):
        check_decode(lambda ids, vocab: None)


def test_decode_check_says_a_stub_is_not_written(capsys):
    def decode(ids, vocab):
        raise NotImplementedError  # your code here

    assert check_decode(decode) is check_decode.solution
    assert "Correct: the solution's decode" in capsys.readouterr().out


def test_train_bpe_check_diagnoses_a_loop_that_also_fails_elsewhere():
    def first_seen_no_stop(ids, n_merges):  # two mistakes: the tie-break shows first
        merges = []
        for new_id in range(256, 256 + n_merges):
            counts = ch01.pair_counts(ids)
            pair = max(counts, key=counts.get)  # raises once no pair is left
            ids = right_merge(ids, pair, new_id)
            merges.append(pair)
        return merges

    with pytest.raises(AssertionError, match="the one seen first in the text"):
        check_train_bpe(first_seen_no_stop)

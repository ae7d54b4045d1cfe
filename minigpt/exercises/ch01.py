"""Checks for the exercises of chapter 01 (tokenization).

Each check runs the reader's function on hand-picked and random cases and compares it
with the package's own version (:mod:`minigpt.bpe`). When all agree it prints a verdict;
otherwise it raises ``AssertionError`` naming the first case that differs, and, where the
answer is what a known mistake gives, the likely cause.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from minigpt.bpe import bpe_word, merge, pair_counts, train_merges
from minigpt.exercises.diagnose import matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch01 as solutions

A = ord("a")  # 97: the byte of "a", as in the chapter's toy string
HAND_CASES = [
    ([1, 2, 3, 1, 2], (1, 2), 4),  # the docstring example
    ([A, A, A], (A, A), 256),  # "aaa": left to right, so [256, 97]
    ([A, A, A, A], (A, A), 256),  # "aaaa": [256, 256]
    ([5, 5, 5, 5, 5], (5, 5), 9),
    ([1, 2, 3], (1, 2), 4),  # the last id is not part of a merge
    ([1, 2], (2, 1), 7),  # the pair in the wrong order is not the pair
    ([], (1, 2), 3),
    ([1], (1, 2), 3),
]


def _random_lists(seed: int, n: int = 200) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(4) for _ in range(rng.randrange(12))] for _ in range(n)]


# -- known mistakes in a merge step: each is what a reader's loop gives when it goes wrong


def _merge_keeps_second(ids, pair, new_id):  # advances by one after a merge
    out, i = [], 0
    while i < len(ids):
        out.append(new_id if tuple(ids[i : i + 2]) == pair else ids[i])
        i += 1
    return out


def _merge_overlapping(ids, pair, new_id):  # every occurrence, overlapping ones too
    out = []
    for i in range(len(ids)):
        if tuple(ids[i : i + 2]) == pair:
            out.append(new_id)
        elif i == 0 or tuple(ids[i - 1 : i + 1]) != pair:
            out.append(ids[i])
    return out


def _merge_drops_last(ids, pair, new_id):  # loops over pairs, forgets the last id
    out, i = [], 0
    while i < len(ids) - 1:
        if (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _merge_right_to_left(ids, pair, new_id):
    reversed_pair = (pair[1], pair[0])
    return merge(ids[::-1], reversed_pair, new_id)[::-1]


def _merge_first_only(ids, pair, new_id):
    for i in range(len(ids) - 1):
        if (ids[i], ids[i + 1]) == pair:
            return [*ids[:i], new_id, *ids[i + 2 :]]
    return list(ids)


MERGE_MISTAKES = [
    (
        _merge_keeps_second,
        "after a merge you kept the pair's second id: a merge replaces two ids by one, "
        "so step past both (i += 2; note that `i += 2` inside `for i in range(...)` "
        "does nothing, the loop resets i)",
    ),
    (
        _merge_overlapping,
        "you merged overlapping occurrences: in 'aaa' only the first 'aa' can merge, "
        "because its second 'a' is used up; the answer is [new, a], not [new, new]",
    ),
    (
        _merge_drops_last,
        "the last id is missing: a loop over pairs stops one short of the end, so "
        "append the final id when it was not part of a merge",
    ),
    (
        _merge_right_to_left,
        "you scanned right to left: 'aaa' must give [new, a] (left to right), not [a, new]",
    ),
    (
        _merge_first_only,
        "you replaced only the first occurrence: replace every one, left to right",
    ),
]


def _diagnose(got, case, mistakes, call, others=()) -> str:
    """The hint of the known mistake that gives ``got`` on ``case``, else ''.

    When several do, the one that also agrees with the reader on ``others`` (pairs of a
    case and the reader's answer to it) wins.
    """

    def same(got, wrong) -> bool:
        return list(call(wrong, case)) == list(got)

    agreeing = [m for m in mistakes if all(list(call(m[0], c)) == list(a) for c, a in others)]
    hint = matching_mistake(got, agreeing, same) or matching_mistake(got, mistakes, same)
    return f" Likely cause: {hint}." if hint else ""


@exercise(solutions.merge)
def check_merge(fn: Callable, seed: int = 0) -> None:
    """Check ``fn(ids, pair, new_id) -> list`` against :func:`minigpt.bpe.merge`."""
    rng = random.Random(seed)
    cases = HAND_CASES + [
        (ids, (rng.randrange(4), rng.randrange(4)), 99) for ids in _random_lists(seed)
    ]
    for ids, pair, new_id in cases:
        expected = merge(ids, pair, new_id)
        got = fn(list(ids), pair, new_id)
        if got is None or list(got) != expected:
            hint = _diagnose(
                [] if got is None else got,
                (ids, pair, new_id),
                MERGE_MISTAKES,
                lambda wrong, c: wrong(list(c[0]), c[1], c[2]),
            )
            if got is None:
                hint = " Likely cause: the function returns nothing (a missing `return`)."
            raise AssertionError(
                f"merge({ids}, {pair}, {new_id}) returned {got}, expected {expected}.{hint}"
            )
    print(f"Correct: merge agrees with minigpt.bpe.merge on {len(cases)} cases.")


@exercise(solutions.pair_counts)
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


# -- known mistakes in the training loop: each is a loop that goes wrong in one way


def _most_frequent(counts, order="smallest"):
    if order == "largest":  # ties to the largest pair
        return max(counts, key=lambda pair: (counts[pair], pair))
    if order == "first seen":  # max() keeps the first of equal counts: the text's order
        return max(counts, key=counts.get)
    return min(counts, key=lambda pair: (-counts[pair], pair))


def _train(ids, n_merges, order="smallest", first_id=256, step=merge, stale=False):
    """The naive training loop, or one of its typical mistakes."""
    ids, merges = list(ids), []
    counts = pair_counts(ids)
    new_id = max(ids, default=0) + 1 if first_id is None else first_id
    for _ in range(n_merges):
        if not stale:
            counts = pair_counts(ids)
        if not counts:
            break
        pair = _most_frequent(counts, order)
        ids = step(ids, pair, new_id)
        merges.append(pair)
        new_id += 1
        if stale:
            del counts[pair]
    return merges


TRAIN_MISTAKES = [
    (
        lambda ids, n: _train(ids, n, order="first seen"),
        "among pairs of equal count you took the one seen first in the text "
        "(max(counts, key=counts.get) does that); the book breaks ties by the smallest pair, "
        "min(counts, key=lambda p: (-counts[p], p)), so that the merges do not depend on the "
        "order in which pairs were counted",
    ),
    (
        lambda ids, n: _train(ids, n, order="largest"),
        "among pairs of equal count you took the largest pair; the book takes the smallest, "
        "min(counts, key=lambda p: (-counts[p], p))",
    ),
    (
        lambda ids, n: _train(ids, n, stale=True),
        "you counted the pairs once, before the loop: count them again after every merge, "
        "since a merge removes pairs and makes new ones (the new id with its neighbours)",
    ),
    (
        lambda ids, n: _train(ids, n, first_id=257),
        "your first new id is 257: ids 0-255 are the bytes, so merge i makes id 256 + i",
    ),
    (
        lambda ids, n: _train(ids, n, first_id=None),
        "your new ids start after the largest id in the text, among the bytes: ids 0-255 "
        "are all bytes, whether the text uses them or not, so merge i makes id 256 + i",
    ),
    (
        lambda ids, n: _train(ids, n, step=_merge_overlapping),
        "your merge step merges overlapping occurrences ('aaa' shows it); use a merge that "
        "passes check_merge",
    ),
]

TRAIN_TEXTS = [
    ("aaabdaaabac", 3),  # the chapter's toy string: a tie at the second merge
    ("aaabdaaabac", 10),  # until the text is one token
    ("abab", 5),  # one token after 2 merges: stop there
    ("aaaaaaaa", 4),  # runs: counted overlapping, merged without overlaps
    ("the cat sat on the mat; the rat sat on the hat.", 20),
    ("", 3),
    ("x", 3),
]


def _train_cases(seed: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    cases = [(list(text.encode("utf-8")), n) for text, n in TRAIN_TEXTS]
    for _ in range(60):
        text = "".join(rng.choice("abcd") for _ in range(rng.randrange(2, 30)))
        cases.append((list(text.encode("utf-8")), rng.randrange(1, 10)))
    return cases


@exercise(solutions.train_bpe)
def check_train_bpe(fn: Callable, seed: int = 0) -> None:
    """Check ``fn(ids, n_merges) -> [pair, ...]`` against :func:`minigpt.bpe.train_merges`.

    Each text is given as its UTF-8 byte ids and trained as one word (no pre-tokenization),
    which is the naive loop over the whole text. The merges must be the same, in the same
    order: the chapter's texts, then 60 random strings of a, b, c and d.
    """
    cases = _train_cases(seed)
    answers = []  # (case, the reader's answer), to tell mistakes apart
    for ids, n_merges in cases:
        expected = train_merges({tuple(ids): 1}, n_merges)
        call = f"train_bpe(list({bytes(ids)!r}), {n_merges})"
        try:
            got = fn(list(ids), n_merges)
        except (ValueError, KeyError, IndexError) as err:
            if len(expected) < n_merges:
                raise AssertionError(
                    f"{call} raised {type(err).__name__}: {err}. Likely cause: after "
                    f"{len(expected)} merges the text is a single token and no pair is left; "
                    "stop when pair_counts is empty."
                ) from err
            raise
        try:
            got = None if got is None else [tuple(int(i) for i in p) for p in got]
        except (TypeError, ValueError):
            raise AssertionError(
                f"{call} returned {got!r}: return the list of merged pairs, such as "
                "[(97, 97), (97, 98)]"
            ) from None
        if got == expected:
            continue
        if got is None:
            raise AssertionError(f"{call} returned None. Likely cause: a missing `return`.")
        for other, other_n in cases:  # the reader's answers everywhere, for the diagnosis
            try:
                answers.append(((other, other_n), list(fn(list(other), other_n))))
            except Exception:  # a case it fails on tells no mistake apart
                continue
        hint = _diagnose(
            got,
            (ids, n_merges),
            TRAIN_MISTAKES,
            lambda wrong, c: [tuple(p) for p in wrong(list(c[0]), c[1])],
            [(c, [tuple(p) for p in a]) for c, a in answers],
        )
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
        where = (
            f" The first that differs is merge {first} (new id {256 + first})."
            if first is not None
            else f" You learned {len(got)} merges, minigpt {len(expected)}."
        )
        raise AssertionError(f"{call} returned the merges {got}, expected {expected}.{where}{hint}")
    print(f"Correct: your merges equal minigpt.bpe.train_merges' on {len(cases)} texts.")


# -- known mistakes in encoding a word with learned merges


def _ranked(ids, ranks):
    return [p for p in zip(ids, ids[1:]) if p in ranks]


def _encode_first_seen(ids, ranks):  # the leftmost pair that has a merge, not the lowest rank
    while pairs := _ranked(ids, ranks):
        ids = merge(ids, pairs[0], ranks[pairs[0]])
    return ids


def _encode_latest_first(ids, ranks):  # the highest rank (latest learned) first
    while pairs := _ranked(ids, ranks):
        best = max(pairs, key=ranks.get)
        ids = merge(ids, best, ranks[best])
    return ids


def _encode_one_pass(ids, ranks):  # merges the pairs the word starts with, never rescans
    for pair in sorted(set(_ranked(ids, ranks)), key=ranks.get):
        ids = merge(ids, pair, ranks[pair])
    return ids


def _encode_with_overlapping_merge(ids, ranks):
    while pairs := _ranked(ids, ranks):
        best = min(pairs, key=ranks.get)
        ids = _merge_overlapping(ids, best, ranks[best])
    return ids


ENCODE_MISTAKES = [
    (
        _encode_first_seen,
        "you merged the leftmost pair that has a merge; merge the pair of LOWEST rank "
        "(learned earliest) wherever it is in the word: training applied the merges in "
        "that order, so a later merge only ever saw text the earlier ones had shaped",
    ),
    (
        _encode_latest_first,
        "you merged the highest rank first; the lowest rank is the earliest merge and goes first",
    ),
    (
        _encode_one_pass,
        "you applied only the merges of the pairs the word started with; every merge makes "
        "new pairs (the new token with its neighbours), so look again after each merge "
        "and repeat until no adjacent pair has a rank",
    ),
    (
        _encode_with_overlapping_merge,
        "your merge step merges overlapping occurrences ('aaaa' shows it); use a merge "
        "that passes check_merge",
    ),
]

WORDS = (" hello", " tokenization", "aaaa", " Shakespeare", " 1234", " naïve", "!!!", " aaaaaaa")


@exercise(solutions.encode_word)
def check_encode_word(fn: Callable, words: tuple[str, ...] | None = None) -> None:
    """Check ``fn(ids, ranks) -> list`` against :func:`minigpt.bpe.bpe_word` with GPT-2's merges.

    ``ranks`` maps a pair of ids to the id it merges into (lower = learned earlier).
    Words are given to ``fn`` as GPT-2 byte ids, as the tokenizer does.
    """
    from minigpt.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()
    ranks = {pair: 256 + i for i, pair in enumerate(tok.merges)}
    byte_to_id = {b: i for i, b in enumerate(tok.byte_order)}
    words = words or WORDS
    answers = []  # (ids, the reader's answer) so far, to tell mistakes apart
    for word in words:
        ids = [byte_to_id[b] for b in word.encode("utf-8")]
        expected = bpe_word(ids, ranks)
        got = fn(list(ids), ranks)
        if got is not None and list(got) != expected:
            for other in words:  # the reader's answers on every word, for the diagnosis
                other_ids = [byte_to_id[b] for b in other.encode("utf-8")]
                answers.append((other_ids, fn(list(other_ids), ranks)))
        if got is None or list(got) != expected:
            hint = _diagnose(
                [] if got is None else got,
                ids,
                ENCODE_MISTAKES,
                lambda wrong, c: wrong(list(c), ranks),
                answers,
            )
            if got is None:
                hint = " Likely cause: the function returns nothing (a missing `return`)."
            try:
                shown = [tok.decode([i]) for i in got]
            except (TypeError, ValueError, KeyError, IndexError):
                shown = "not GPT-2 token ids"
            raise AssertionError(
                f"for {word!r} (byte ids {ids}) you returned {got} (pieces {shown}), "
                f"expected {expected} (pieces {[tok.decode([i]) for i in expected]}).{hint}"
                " The rule: merge the pair of lowest rank first, and repeat until no "
                "adjacent pair of the word has a rank."
            )
    print(f"Correct: your BPE reproduces GPT-2's tokens for {len(words)} words.")


# -- decoding: join every token's bytes, then read them once


def _hand_vocab() -> dict[int, bytes]:
    """The 256 bytes, and tokens that hold part of a character, as BPE makes them."""
    vocab = {i: bytes([i]) for i in range(256)}
    vocab.update(
        {
            256: "🙂".encode()[:2],  # f0 9f: the emoji's first two bytes ...
            257: "🙂".encode()[2:],  # 99 82: ... and its last two
            258: b" caf" + "é".encode()[:1],  # ' caf' and the first byte of é (c3)
            259: "é".encode()[1:] + b"!",  # a9, then '!'
            260: " 日".encode()[:3],  # ' ' and two of the three bytes of 日
            261: "日".encode()[2:] + "本".encode()[:1],
            262: "本".encode()[1:],
        }
    )
    return vocab


# Whole texts first (a reader who decodes token by token, strictly, fails there), then
# prefixes that end inside a character and bytes that are never UTF-8.
HAND_DECODE_CASES = [
    [104, 105],  # 'hi'
    [256, 257],  # '🙂' in two tokens
    [258, 259],  # ' café!'
    [260, 261, 262],  # ' 日本'
    [104, 258, 259, 256, 257],
    [],
    [256],  # a prefix that ends inside the emoji
    [258],  # inside é
    [260, 261],  # inside 本
    [0xFF, 104],  # a byte that is never UTF-8
]

DECODE_MISTAKES = [
    (
        lambda ids, vocab: "".join(vocab[i].decode("utf-8", errors="replace") for i in ids),
        "you decoded each token on its own: a token may hold only part of a character, "
        "and a part alone is not UTF-8. Join all the bytes first, then decode them once",
    ),
    (
        lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("utf-8", errors="ignore"),
        "errors='ignore' drops the bytes of a split character without a trace; minigpt, "
        "like GPT-2, shows them as the replacement character U+FFFD (errors='replace')",
    ),
    (
        lambda ids, vocab: b"".join(vocab[i] for i in ids).decode("latin-1"),
        "you read the bytes as Latin-1, one character per byte: read them as UTF-8",
    ),
    (
        lambda ids, vocab: " ".join(vocab[i].decode("utf-8", errors="replace") for i in ids),
        "you put a space between tokens: a token's bytes already hold its spaces (a "
        "word's leading space is part of its token), so join the bytes with nothing between",
    ),
]


def _decode_cases(tokenizer) -> list[tuple[list[int], object]]:
    """(ids, vocab): the tokenizer's tokens of a text and every prefix of them, if a tokenizer
    is given, then the cases of the vocabulary made by hand."""
    hand = _hand_vocab()
    cases = [(ids, hand) for ids in HAND_DECODE_CASES]
    if tokenizer is None:
        return cases
    vocab = [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
    ids = tokenizer.encode(DECODE_TEXT)
    return [(ids[:end], vocab) for end in range(len(ids), 0, -1)] + cases


DECODE_TEXT = "🙂 日本 naïve café"


@exercise(solutions.decode)
def check_decode(fn: Callable, tokenizer=None) -> None:
    """Check ``fn(ids, vocab) -> str``, where ``vocab[i]`` is the bytes of token ``i``.

    The text must be the tokens' bytes joined, read as UTF-8 once, with bytes that are not
    UTF-8 (a prefix that ends inside a character) read as U+FFFD: ``errors="replace"``, as
    :meth:`minigpt.tokenizer.BPETokenizer.decode` does. With ``tokenizer``, first on its
    tokens of :data:`DECODE_TEXT` and on every prefix of them (longest first: the whole text
    is valid UTF-8); then on a vocabulary made by hand, with tokens that split an emoji, an
    accented letter and two Japanese characters.
    """
    cases = _decode_cases(tokenizer)
    for ids, vocab in cases:
        data = b"".join(vocab[i] for i in ids)
        if isinstance(vocab, list):  # the tokenizer's ids: its own decode says the text
            expected = tokenizer.decode(ids)
        else:
            expected = data.decode("utf-8", errors="replace")  # BPETokenizer.decode's rule
        try:
            got = fn(list(ids), vocab)
        except UnicodeDecodeError as err:
            try:
                data.decode("utf-8")
                hint = DECODE_MISTAKES[0][1]  # the joined bytes are UTF-8: a token was not
            except UnicodeDecodeError:
                hint = (
                    "decoding raised on bytes that are not UTF-8 (these ids end inside a "
                    "character, as a prefix of a text can): decode with errors='replace', "
                    "which reads them as U+FFFD instead of raising"
                )
            raise AssertionError(
                f"decode({ids}) raised {type(err).__name__}: {err}. Likely cause: {hint}."
            ) from None
        if got == expected:
            continue
        if isinstance(got, bytes):
            raise AssertionError(
                f"decode({ids}) returned bytes {got!r}: return the text, a str "
                f"(here {expected!r}), by decoding the joined bytes as UTF-8"
            )
        if got is None:
            raise AssertionError(f"decode({ids}) returned None. Likely cause: a missing `return`.")
        hint = matching_mistake(
            got, DECODE_MISTAKES, lambda got, wrong, c=(ids, vocab): got == wrong(*c)
        )
        raise AssertionError(
            f"decode({ids}) (bytes {data!r}) returned {got!r}, expected {expected!r}."
            + (f" Likely cause: {hint}." if hint else "")
        )
    print(f"Correct: your decode reads the joined bytes once, on {len(cases)} cases.")

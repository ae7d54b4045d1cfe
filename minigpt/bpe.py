"""Byte-pair encoding, the algorithm: count pairs, merge the most frequent, repeat.

These are the small pure functions behind :class:`minigpt.tokenizer.BPETokenizer`:

* :func:`pair_counts` and :func:`merge` are the two steps of BPE, written plainly.
* :func:`train_merges` learns merges over *word counts* with incremental pair-count
  updates, so a few thousand merges on a 5 MB corpus take seconds.
* :func:`bpe_word` applies learned merges to one word, lowest rank first, as GPT-2 does.
* :func:`cut_stream` cuts a stream of text where a cut does not change its pre-tokens
  (:func:`stable_cut` finds where), so that ``BPETokenizer.encode_iterable`` and the
  training data's worker processes encode text of any size piece by piece.
* :func:`split_by_ranks` recovers the merge that made a token from a rank table
  (tiktoken's files store ranks, not merges).
* :func:`bytes_to_unicode` is GPT-2's table of printable stand-ins for the 256 bytes,
  needed to read its ``encoder.json`` and ``vocab.bpe``.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import no_type_check

import regex

# GPT-2's pre-tokenization: split text into contractions, letter runs, digit runs,
# punctuation runs and whitespace, each optionally led by one space. BPE never merges
# across these chunks. (tiktoken calls this pattern r50k_base.)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

Pair = tuple[int, int]

# A stream of text keeps at least this many characters of each piece back for the next one
# (with the last two pre-tokens and any trailing whitespace): a pre-token near the end of
# a piece may still grow, or be split differently, once the next piece is there.
STREAM_MARGIN = 8
_SPACE = regex.compile(r"\s")  # a stream is never cut right after one of these

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


def _positions_by_rank(rank_at: list) -> dict[int, list[int]]:
    """``{rank: positions whose pair has it}``, in order; ``None`` (no pair) left out."""
    where: dict[int, list[int]] = {}
    for i, rank in enumerate(rank_at):
        if rank is not None:
            where.setdefault(rank, []).append(i)
    return where


# bpe_word runs past 80 lines (85, most of them comments) on purpose: its loop is the encoder's
# hot path, run once per merge of every new word, and cutting it into functions would add a
# call per merge; the comments walk through it step by step instead.
@no_type_check
def bpe_word(ids: list[int], ranks: dict[Pair, int]) -> list[int]:
    """Apply merges to one word: repeatedly merge the adjacent pair of lowest rank.

    ``ranks`` maps a pair to the id of the token it makes; ids grow with the order the
    merges were learned, so the lowest id is the earliest merge. Each step merges the
    lowest-ranked pair at all its occurrences, left to right, without overlap (GPT-2's own
    ``bpe`` does the same). With ``ranks = {(1, 1): 3, (3, 1): 4}``::

        [1, 1, 1, 1, 1]
        -> [3, 3, 1]   (1, 1) at positions 0 and 2; the one at 1 overlaps the first
        -> [3, 4]      now (3, 1) is adjacent; (3, 3) and (3, 4) have no rank: done

    Rescanning the word for every step would take time quadratic in its length, and a
    word can be long (text without spaces can be one chunk). Instead the word is a linked
    list, so a merge costs O(1), and for each rank we keep the positions where a pair of
    that rank starts, with a heap of those ranks to find the lowest: O(n log n) in all.
    """
    n = len(ids)
    if n < 2:
        return list(ids)
    # The word as a doubly linked list over positions 0..n-1. A merge keeps the new token
    # at the left position and sets the right one to None, so positions stay in text
    # order and the answer is the tokens that are left. Position n holds a None that is no
    # token, so that every position has a right neighbour; left[0] = -1 means "none".
    token = [*ids, None]
    right = list(range(1, n + 1))
    left = list(range(-1, n))
    # rank_at[i]: the rank of the pair that starts at position i (None: no pair, no rank,
    # or i was merged away). where[rank]: positions whose pair had that rank when it was
    # filed. A merge changes a few pairs; rather than find and delete their old entries,
    # we skip, when its turn comes, any position whose rank_at has changed (stale).
    rank_at = list(map(ranks.get, zip(ids, ids[1:])))
    rank_at.append(None)
    where = _positions_by_rank(rank_at)
    todo = list(where)  # the ranks that have a list in `where`, as a heap: lowest first
    heapq.heapify(todo)

    while todo:
        # One round is one step of the rescanning loop: the lowest rank's leftmost pair,
        # merged at every occurrence, left to right.
        rank = heapq.heappop(todo)
        positions = where.pop(rank)
        positions.sort()
        changed = []  # positions whose pair this round made: filed after the round
        first = second = None
        previous = -1
        for i in positions:
            if i == previous or rank_at[i] != rank:
                # A position filed twice, or stale. An occurrence that overlaps the one
                # just merged lost its left token to it, so it is stale: a, a, a with
                # (a, a) gives aa, a.
                continue
            previous = i
            j = right[i]
            if first is None:
                first, second = token[i], token[j]
            elif token[i] != first or token[j] != second:
                changed.append(i)  # another pair of this rank (hand-made tables only): later
                continue
            # Merge i with its right neighbour j into the token `rank`; unlink j.
            token[i] = rank
            token[j] = rank_at[j] = None
            k = right[i] = right[j]
            left[k] = i
            # Two pairs are new: (rank, token k) at i, and (token before i, rank).
            # They are filed at the end of the round, as the rescanning loop would find
            # them only on its next scan. (Setting rank_at now is safe: both positions
            # are behind us in this round, and it makes their old filings stale.)
            rank_at[i] = ranks.get((rank, token[k]))
            changed.append(i)
            h = left[i]
            if h != -1:
                rank_at[h] = ranks.get((token[h], rank))
                changed.append(h)
        for i in changed:
            new_rank = rank_at[i]
            if new_rank is None:
                continue
            if new_rank in where:
                where[new_rank].append(i)
            else:
                where[new_rank] = [i]
                heapq.heappush(todo, new_rank)

    return [t for t in token if t is not None]


@no_type_check
def stable_cut(pattern: regex.Pattern, text: str, hold: int) -> int:
    """Where the pre-tokens of ``text`` (split by ``pattern``) that more text after it
    cannot change end: ``text[:cut]`` is final, ``text[cut:]`` waits for the next piece.

    A pre-token is final if it ends ``STREAM_MARGIN`` characters and a whitespace run
    before both the end of the text and ``hold`` (a special token may start there: it
    would end the text, which changes the pre-tokens just before it as much as more text
    would), and the last two are never final. The cut has no whitespace just before it,
    so that encoding ``text[:cut]`` alone gives the same pre-tokens as in the whole: a
    look-ahead such as GPT-2's ``\\s+(?!\\S)`` then decides the same at its end.
    With ``hold = len(text)``: ``"hello world, it's"`` -> ``5`` (``"hello"`` is final).
    """
    limit = min(hold - STREAM_MARGIN, len(text[:hold].rstrip()), len(text.rstrip()))
    chunks = pattern.findall(text)
    if sum(map(len, chunks)) == len(text):
        # The pre-tokens tile the text (GPT-2's do): walk back from the end to the last
        # one that is final, keeping the last two in any case; `end` is where it ends.
        k = len(chunks) - 2
        if k <= 0:
            return 0
        end = len(text) - len(chunks[-1]) - len(chunks[-2])
        while k > 0 and (end > limit or _SPACE.match(text, end - 1)):
            k -= 1
            end -= len(chunks[k])
        return end
    # A pattern that skips characters: the same rule, match by match.
    pending = deque()  # the last pre-tokens seen, not yet known to be final
    cuts = [0]  # where final pre-tokens end
    for match in pattern.finditer(text):
        pending.append(match)
        if len(pending) > 2:
            if pending[0].end() > limit:
                break  # this one and all after it are carried over
            cuts.append(pending.popleft().end())
    # Skipped text after the last final pre-token may go too, up to its last non-space.
    end = pending[0].start() if pending else max(cuts[-1], min(limit, len(text)))
    while end > cuts[-1] and _SPACE.match(text, end - 1):
        end -= 1
    if end > cuts[-1]:
        return end
    return next(c for c in reversed(cuts) if c == 0 or not _SPACE.match(text, c - 1))


def special_splitter(tokens: Collection[str]) -> regex.Pattern:
    """A regex that finds the special tokens in text (the longest first), as one group."""
    return regex.compile(
        "(" + "|".join(regex.escape(t) for t in sorted(tokens, key=len)[::-1]) + ")"
    )


def split_on(text: str, tokens: Collection[str]) -> list[str]:
    """``text`` cut at (and without) every occurrence of the ``tokens``."""
    if not tokens or not any(token in text for token in tokens):
        return [text]
    return special_splitter(tokens).split(text)[::2]


@no_type_check
def cut_stream(
    pieces: Iterator[str],
    pattern: regex.Pattern | None,
    allowed: Collection[str],
    disallowed: Collection[str],
    refuse: Callable[[str], Exception],
) -> Iterator[tuple[str, bool]]:
    """``"".join(pieces)`` cut, lazily, where a cut cannot change its pre-tokens: pairs
    ``(text, False)``, each pre-tokenized by ``pattern`` exactly as inside the whole, and
    ``(token, True)`` for each special token in ``allowed``. A token in ``disallowed``
    raises ``refuse(token)`` when the stream reaches it.

    Text held back (see :func:`stable_cut`) is looked at again only once as much new text
    has come, so a long pre-token in small pieces costs linear time, not quadratic; the
    last piece is never scanned for a cut: it is final.
    """
    keep = max(map(len, disallowed), default=1) - 1  # a disallowed token can straddle this much
    window = ""  # the end of the text seen so far, to find disallowed tokens across pieces
    tail = ""  # text looked at but not final: it may still change with the next piece
    fresh = []  # pieces not looked at yet
    n_fresh = 0
    for position, piece in enumerate(pieces):
        if not isinstance(piece, str):
            raise TypeError(
                f"encode_iterable expects str pieces; piece {position} is a {type(piece).__name__}"
            )
        if not piece:
            continue
        if disallowed:
            probe = window + piece
            for token in disallowed:
                if token in probe:
                    raise refuse(token)
            window = probe[-keep:] if keep else ""
        if fresh and n_fresh >= len(tail):  # more text follows: cut what came before it
            tail = yield from _final_parts(tail + "".join(fresh), pattern, allowed, final=False)
            fresh, n_fresh = [], 0
        fresh.append(piece)
        n_fresh += len(piece)
    yield from _final_parts(tail + "".join(fresh), pattern, allowed, final=True)


@no_type_check
def _final_parts(text, pattern, allowed, final):
    """Yield the parts of ``text`` that no text after it can change (all of it if
    ``final``); return the rest."""
    start = 0  # text[:start] is yielded (it ends with a special token, if any)
    hold = len(text)  # a special token may start at text[hold:]: keep it back
    if allowed:
        # A special token found at or before `last` is final: all its text is here.
        last = len(text) if final else len(text) - max(map(len, allowed))
        if any(token in text for token in allowed):
            for match in special_splitter(allowed).finditer(text):
                if match.start() > last:
                    break
                if match.start() > start:
                    yield text[start : match.start()], False
                yield match.group(), True
                start = match.end()
        hold = max(last + 1, start)
    open_part = text[start:]
    if final:
        cut = len(open_part)
    else:
        cut = 0 if pattern is None else stable_cut(pattern, open_part, hold - start)
    if cut:
        yield open_part[:cut], False
    return open_part[cut:]


@no_type_check
def split_by_ranks(token: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """The parts BPE leaves of ``token`` when only tokens ranked below ``token`` may form.

    This is how a merge list is recovered from a rank table such as tiktoken's, which
    stores only ``{token bytes: rank}``: starting from single bytes, repeatedly join the
    adjacent pair whose joined bytes have the lowest rank below ``ranks[token]`` (the
    leftmost if two tie), until none is left. For a table made by BPE training this ends
    with exactly two parts, the merge that made ``token``; anything else means the token
    is not reachable by merging two earlier tokens. With ``ranks = {b"a": 0, b"b": 1,
    b"ab": 2, b"abb": 3}``, ``split_by_ranks(b"abb", ranks) == [b"ab", b"b"]``.
    """
    limit = ranks[token]
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best = best_rank = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < limit and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best is None:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


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

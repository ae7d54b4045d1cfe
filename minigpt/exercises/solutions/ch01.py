"""The solutions of chapter 01's exercises.

Each is written once, here: the chapter's check falls back on it while the
reader's function is still a stub, and the chapter's folded solution cell
shows its source.
"""


def pair_counts(ids):
    counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2  # skip both halves: occurrences must not overlap
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(ids, n_merges):
    """ids: the text's byte ids -> the pairs merged, in order (at most
    n_merges); merge i makes the new id 256 + i."""
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = pair_counts(ids)  # recounted: each merge changes the pairs
        if not counts:
            break  # the text is a single token: nothing left to merge
        # The most frequent pair; among equal counts, the smallest pair.
        pair = min(counts, key=lambda p: (-counts[p], p))
        ids = merge(ids, pair, new_id)
        merges.append(pair)
    return merges


def encode_word(ids, ranks):
    while len(ids) > 1:
        candidates = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not candidates:
            break
        best = min(candidates, key=ranks.get)  # the earliest-learned merge
        ids = merge(ids, best, ranks[best])
    return ids


def decode(ids, vocab):
    """ids: token ids -> text; vocab[i] is the bytes of token i."""
    data = b"".join(vocab[i] for i in ids)  # all the bytes first
    return data.decode("utf-8", errors="replace")  # then one read, as UTF-8

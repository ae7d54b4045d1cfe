"""The solutions of chapter 01's exercises.

Each is written once, here: the chapter's check falls back on it while the reader's
function is still a stub, and the chapter's folded solution cell shows its source.
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


def encode_word(ids, ranks):
    while len(ids) > 1:
        candidates = [p for p in zip(ids, ids[1:]) if p in ranks]
        if not candidates:
            break
        best = min(candidates, key=ranks.get)  # the earliest-learned merge
        ids = merge(ids, best, ranks[best])
    return ids

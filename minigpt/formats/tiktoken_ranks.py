"""tiktoken's rank files (lines of ``base64(token bytes) rank``): one reader, one writer.

A rank is both a token's id and its merge priority. The file has no merges, no special
tokens and no pattern: the reader recovers each merge (:func:`minigpt.bpe.split_by_ranks`)
and takes the special tokens and the pattern as arguments.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path

from minigpt.bpe import GPT2_PATTERN, split_by_ranks
from minigpt.files import atomic_write_text
from minigpt.formats.renumbered import layout_from_tables, public_id, tokenizer_from_layout
from minigpt.tokenizer import BPETokenizer, TokenizerFileError, read_text_file

__all__ = ["R50K_PATTERN", "read_tiktoken", "write_tiktoken"]

# GPT-2's pattern as tiktoken spells it (r50k_base): written differently from
# minigpt.bpe.GPT2_PATTERN, it splits text exactly the same (the tests check).
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _read_ranks(path: Path) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """``{token bytes: rank}`` of a rank file, and the line each token is on."""
    ranks: dict[bytes, int] = {}
    line_of: dict[bytes, int] = {}
    token_of: dict[int, bytes] = {}
    for number, line in enumerate(read_text_file(path, "tiktoken").split("\n"), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError(line)
            token, rank = base64.b64decode(fields[0], validate=True), int(fields[1])
            if not token or rank < 0:
                raise ValueError(line)
        except (ValueError, binascii.Error):
            raise TokenizerFileError(
                f"{path} line {number} is {line[:80]!r}, not `base64(token bytes) rank`"
            ) from None
        for seen, what in (
            (token in ranks, f"token {token!r}"),
            (rank in token_of, f"rank {rank}"),
        ):
            if seen:
                first = line_of[token] if token in ranks else line_of[token_of[rank]]
                raise TokenizerFileError(f"{path} line {number}: {what} is already on line {first}")
        ranks[token], line_of[token], token_of[rank] = rank, number, token
    return ranks, line_of


def read_tiktoken(
    path: str | os.PathLike,
    special_tokens: Mapping[str, int] | None = None,
    pattern: str | None = GPT2_PATTERN,
    *,
    name: str | None = None,
) -> BPETokenizer:
    """The tokenizer of a tiktoken rank file.

    Each token longer than a byte gets the merge BPE would make it with: BPE on its own
    bytes using only lower-ranked tokens must end in exactly two parts, which become the
    merge. For rank tables made by BPE training (all of OpenAI's) this reproduces
    tiktoken's ids exactly. Pass tiktoken's ``special_tokens={text: id}`` (e.g.
    ``{"<|endoftext|>": 50256}`` for GPT-2) and the pattern.
    """
    path = Path(path)
    ranks, line_of = _read_ranks(path)
    pairs, places = [], []
    for token in sorted((t for t in ranks if len(t) > 1), key=ranks.__getitem__):
        parts = split_by_ranks(token, ranks)
        if len(parts) != 2:
            raise TokenizerFileError(
                f"{path} line {line_of[token]}: token {token!r} (rank {ranks[token]}) is "
                f"not two lower-ranked tokens joined (BPE over the lower ranks leaves "
                f"{len(parts)} parts), so no merge can make it"
            )
        pairs.append((parts[0], parts[1]))
        places.append(f"{path} line {line_of[token]}")
    specials = dict(special_tokens or {})
    layout = layout_from_tables(ranks, pairs, places, specials, str(path), show=repr)
    return tokenizer_from_layout(
        layout,
        str(path),
        pattern=pattern,
        name=name or path.stem,
        metadata={"read_from": "tiktoken"},
    )


def write_tiktoken(tok: BPETokenizer, path: str | os.PathLike) -> Path:
    """Write ``tok`` as a tiktoken rank file (rank = ``tok``'s id).

    Special tokens and the pattern are not part of the format: give them to
    ``tiktoken.Encoding(..., special_tokens=tok.special_token_ids)`` or to
    :func:`read_tiktoken`. Raises ``ValueError`` if tiktoken could not reproduce ``tok``:
    its merges must make ids in increasing order (a rank is also the merge priority), and
    each merge must be the one :func:`read_tiktoken` recovers.
    """
    made = [public_id(tok, 256 + i) for i in range(len(tok.merges))]
    for i in range(1, len(made)):
        if made[i] <= made[i - 1]:
            raise ValueError(
                f"cannot write a tiktoken file: merge {i} makes id {made[i]} after merge "
                f"{i - 1} made id {made[i - 1]}, but a tiktoken rank is both the id and the "
                "merge priority, so ids must grow with the merges"
            )
    ids = [public_id(tok, i) for i in range(256 + len(tok.merges))]
    ranks = {tok.token_bytes(i): i for i in ids}
    for i, (a, b) in enumerate(tok.merges):
        token, first, second = (tok.token_bytes(public_id(tok, j)) for j in (256 + i, a, b))
        if split_by_ranks(token, ranks) != [first, second]:
            raise ValueError(
                f"cannot write a tiktoken file: merge {i} makes {token!r} from "
                f"{first!r} + {second!r}, but BPE over the lower ranks splits it "
                f"as {split_by_ranks(token, ranks)!r}, so tiktoken would encode differently"
            )
    lines = [
        f"{base64.b64encode(token).decode('ascii')} {rank}"
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")

"""Tokenizers whose ids are not our layout's, and the tables other tools' files give.

Other tools' files number tokens freely (``<|endoftext|>`` at id 0, bytes anywhere, merges
in any id order), and a model trained with such a file expects *its* ids. BPE needs our
layout inside (bytes, then merges in order, then special tokens: a merge's rank is the id
it makes). So a tokenizer read from such a file is a :class:`RenumberedTokenizer`: a
:class:`~minigpt.tokenizer.BPETokenizer` with an *id map* at its edges. Its ``merges``,
``byte_order`` and ``special_tokens`` are in the layout (internal ids); ``encode``,
``encode_iterable``, ``decode``, ``token_bytes``, ``eot_id``, ``special_token_ids`` and
``vocab_size`` speak the file's ids. Mapping costs nothing per token: the encode cache
holds mapped ids, and decoding reads a table indexed by the file's id. The ids may leave
gaps (tiktoken's special tokens often do), at most :data:`MAX_UNUSED_IDS` of them.

The readers here (:func:`layout_from_tables`, :func:`layout_from_strings`) turn a file's
tables into the layout plus the id map; :func:`tokenizer_from_layout` builds the plain class
when the map is the identity (GPT-2's own files) and a :class:`RenumberedTokenizer`
otherwise. :func:`string_tables` is what the writers write.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import no_type_check

import regex

from minigpt.bpe import bytes_to_unicode
from minigpt.tokenizer import BPETokenizer, TokenizerFileError, is_int

__all__ = [
    "MAX_UNUSED_IDS",
    "RenumberedTokenizer",
    "layout_from_strings",
    "layout_from_tables",
    "named_specials",
    "public_id",
    "string_tables",
    "tokenizer_from_layout",
]

# Ids a file may leave unused: the decode table has one entry per id up to the largest,
# so an id far beyond the tokens would take memory for nothing (1e8 ids: about 1 GB).
MAX_UNUSED_IDS = 1 << 16


def check_id_range(ids: Collection[int], n_tokens: int, where: str) -> None:
    """ValueError naming ``where`` and the allowed range unless every id is an int in
    ``[0, n_tokens + MAX_UNUSED_IDS)``; checked before a table of that size is made."""
    limit = n_tokens + MAX_UNUSED_IDS
    for token_id in ids:
        if not is_int(token_id) or not 0 <= token_id < limit:
            raise TokenizerFileError(
                f"{where}: id {token_id!r} is out of range; with {n_tokens} tokens the ids "
                f"must be ints in [0, {limit}) (at most {MAX_UNUSED_IDS} ids left unused)"
            )


class RenumberedTokenizer(BPETokenizer):
    """A :class:`~minigpt.tokenizer.BPETokenizer` whose public ids are ``id_map``'s:
    ``id_map[i]`` is the id :meth:`encode` returns, and :meth:`decode` takes, for the token
    at position ``i`` of the layout (see the module)."""

    FILE_VERSION = 3  # the class's file, with an id map

    def __init__(self, merges, *, id_map: Sequence[int], **fields) -> None:
        super().__init__(merges, **fields)
        vocab = self._vocab
        id_map = list(id_map)
        check_id_range(id_map, len(vocab), "id_map")
        if len(id_map) != len(vocab) or len(set(id_map)) != len(id_map):
            raise ValueError(
                f"id_map must give each of the {len(vocab)} tokens its own id >= 0 "
                f"(got {len(id_map)} ids, {len(set(id_map))} distinct)"
            )
        self.id_map = tuple(id_map)
        self._by_id = [None] * (max(id_map) + 1)  # None marks an unused id
        for internal, public in enumerate(id_map):
            self._by_id[public] = vocab[internal]
        self._special_ids = {text: id_map[i] for text, i in self.special_tokens.items()}

    @no_type_check  # once per new word: keep the tests' type checker off this hot path
    def _encode_chunk(self, chunk: str) -> list[int]:
        id_map = self.id_map
        return [id_map[i] for i in super()._encode_chunk(chunk)]

    def _check_ids(self, ids: list) -> None:
        super()._check_ids(ids)
        by_id = self._by_id
        for position, token_id in enumerate(ids):
            if by_id[token_id] is None:
                raise ValueError(
                    f"ids[{position}]={token_id} is not a token id; the file this "
                    f"tokenizer was read from leaves id {token_id} unused"
                )

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + ", id_map=...)"

    def with_special_tokens(self, tokens: Sequence[str]) -> RenumberedTokenizer:
        """A copy with more special tokens; they take the ids after the largest one."""
        plain = super().with_special_tokens(tokens)
        id_map = [*self.id_map, *range(self.vocab_size, self.vocab_size + len(tokens))]
        return RenumberedTokenizer(plain.merges, id_map=id_map, **_fields(plain))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "id_map": list(self.id_map)}

    @classmethod
    def _fields_of(cls, data: dict, path: Path) -> dict:
        fields = super()._fields_of(data, path)
        id_map = data.get("id_map")
        if not isinstance(id_map, list) or not all(map(is_int, id_map)):
            raise TokenizerFileError(f"{path} is corrupt: bad id_map (a list of ints)")
        return {**fields, "id_map": id_map}


def _fields(tok: BPETokenizer) -> dict:
    return {
        "byte_order": tok.byte_order,
        "special_tokens": tok.special_tokens,
        "pattern": tok.pattern,
        "name": tok.name,
        "metadata": tok.metadata,
    }


def public_id(tok: BPETokenizer, internal: int) -> int:
    """The id ``tok`` encodes the token at position ``internal`` of its layout as."""
    return tok.id_map[internal] if isinstance(tok, RenumberedTokenizer) else internal


def tokenizer_from_layout(layout: dict, where: str, **fields) -> BPETokenizer:
    """A :class:`BPETokenizer` (the id map is the identity) or a :class:`RenumberedTokenizer`
    of a layout from :func:`layout_from_tables`; :class:`TokenizerFileError` naming ``where``
    for what does not fit."""
    layout = dict(layout)
    id_map = layout.pop("id_map")
    try:
        if id_map == list(range(len(id_map))):
            return BPETokenizer(**layout, **fields)
        return RenumberedTokenizer(**layout, id_map=id_map, **fields)
    except (TypeError, ValueError, regex.error) as err:
        if isinstance(err, TokenizerFileError):
            raise
        raise TokenizerFileError(f"{where}: {err}") from None


def string_tables(tok: BPETokenizer, what: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """``{token string: id}`` in GPT-2's byte stand-ins (special tokens: their text, as
    GPT-2's ``encoder.json`` has ``<|endoftext|>``), sorted by id, and the merges as pairs
    of token strings: what ``vocab.json``, ``merges.txt`` and ``tokenizer.json`` hold.
    ``what`` names the file in the ValueError for a special token spelt like a learned one."""
    table = bytes_to_unicode()
    learned = [tok.token_bytes(public_id(tok, i)) for i in range(256 + len(tok.merges))]
    strings = ["".join([table[b] for b in t]) for t in learned]
    vocab: dict[str, int] = {}
    for i, string in enumerate(strings):
        if string in vocab:  # two merges that make the same bytes: one spelling, two ids
            raise ValueError(
                f"cannot write {what}: token ids {vocab[string]} and {public_id(tok, i)} stand "
                f"for the same bytes {learned[i]!r}, and the file has one entry per spelling"
            )
        vocab[string] = public_id(tok, i)
    for text, internal in tok.special_tokens.items():
        if text in vocab:
            raise ValueError(
                f"cannot write {what}: the special token {text!r} is spelt like learned "
                f"token {vocab[text]}, and the file has one entry per spelling"
            )
        vocab[text] = public_id(tok, internal)
    merges = [(strings[a], strings[b]) for a, b in tok.merges]
    return dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges


def named_specials(
    named: Collection[str] | Mapping[str, int], vocab: Mapping[str, int], where: str
) -> dict[str, int]:
    """``{text: id}`` of the special tokens named by text (their ids from ``vocab``) or given."""
    if isinstance(named, str):
        raise TypeError(f"special_tokens must be a collection of str, got {named!r}")
    if isinstance(named, Mapping):
        for text, token_id in named.items():
            if text in vocab and vocab[text] != token_id:
                raise TokenizerFileError(
                    f"{where} gives the special token {text!r} id {vocab[text]}, not {token_id}"
                )
        return dict(named)
    missing = [text for text in named if text not in vocab]
    if missing:
        raise TokenizerFileError(
            f"{where} has no entry for the special token(s) {missing!r}; pass "
            "special_tokens={text: id} to give them ids"
        )
    return {text: vocab[text] for text in named}


def layout_from_strings(
    vocab: Mapping[str, int],
    pairs: Sequence[tuple[str, str]],
    places: Sequence[str],
    specials: Mapping[str, int],
    vocab_where: str,
) -> dict:
    """:func:`layout_from_tables` for files that spell tokens in GPT-2's byte stand-ins."""
    table = bytes_to_unicode()
    byte_of = {char: b for b, char in table.items()}

    def to_bytes(string: str, where: str) -> bytes:
        try:
            return bytes([byte_of[char] for char in string])
        except KeyError as err:
            raise TokenizerFileError(
                f"{where}: the token {string!r} has the character {err.args[0]!r}, which is "
                "not one of GPT-2's 256 byte stand-ins (is this a byte-level BPE?)"
            ) from None

    token_ids = {to_bytes(s, vocab_where): i for s, i in vocab.items() if s not in specials}
    byte_pairs = [(to_bytes(a, at), to_bytes(b, at)) for (a, b), at in zip(pairs, places)]

    def show(token: bytes) -> str:
        return repr("".join([table[b] for b in token]))

    return layout_from_tables(token_ids, byte_pairs, places, specials, vocab_where, show=show)


def _check_owners(token_ids: Mapping[bytes, int], specials: Mapping[str, int], where: str, show):
    """Each id an int in range (before any table is sized by it), given to one token."""
    named = [(show(t), i) for t, i in token_ids.items()]
    named += [(f"special token {text!r}", i) for text, i in specials.items()]
    check_id_range([i for _, i in named], len(named), where)
    owner: dict[int, str] = {}
    for what, token_id in named:
        if token_id in owner:
            raise TokenizerFileError(
                f"{where}: id {token_id} is given to both {owner[token_id]} and {what}"
            )
        owner[token_id] = what


def _merge_layout(token_ids, pairs, places, internal, id_map, vocab_where, show) -> list:
    """Merge ``i`` as a pair of internal ids, each checked to join two existing tokens into
    a token of the vocab that no earlier merge made; ``internal`` and ``id_map`` grow."""
    merges = []
    for rank, ((a, b), place) in enumerate(zip(pairs, places)):
        for part in (a, b):
            if part not in internal:
                why = (
                    "a later merge makes it" if part in token_ids else f"it is not in {vocab_where}"
                )
                raise TokenizerFileError(
                    f"{place} merges {show(a)} and {show(b)}, but there is no {show(part)} "
                    f"yet: {why}"
                )
        joined = a + b
        if joined not in token_ids:
            raise TokenizerFileError(
                f"{place} makes {show(joined)} (from {show(a)} and {show(b)}), which is not "
                f"in {vocab_where}"
            )
        if joined in internal:
            raise TokenizerFileError(
                f"{place} makes {show(joined)}, which an earlier merge already made; "
                "each token must be made by exactly one merge"
            )
        internal[joined] = 256 + rank
        id_map.append(token_ids[joined])
        merges.append((internal[a], internal[b]))
    return merges


def layout_from_tables(
    token_ids: Mapping[bytes, int],
    pairs: Sequence[tuple[bytes, bytes]],
    places: Sequence[str],
    specials: Mapping[str, int],
    vocab_where: str,
    *,
    show: Callable[[bytes], str],
) -> dict:
    """Our layout, as ``BPETokenizer`` keyword arguments with the ``id_map``, of a file's
    tables: ``token_ids`` (token bytes -> the file's id, special tokens left out), the
    merges as pairs of token bytes in rank order (``places[i]`` says where merge ``i`` is
    written), and ``specials`` (text -> the file's id).

    The 256 single bytes take internal ids 0..255 in the order of their file ids, merge
    ``i`` makes ``256 + i``, special tokens follow in the order of their ids. Raises
    :class:`TokenizerFileError` naming the file and the token for what does not fit, and
    for an id beyond the tokens by more than :data:`MAX_UNUSED_IDS`.
    """
    _check_owners(token_ids, specials, vocab_where, show)
    singles = sorted((i, t[0]) for t, i in token_ids.items() if len(t) == 1)
    missing = sorted(set(range(256)) - {b for _, b in singles})
    if missing:
        shown = ", ".join(show(bytes([b])) for b in missing[:8])
        raise TokenizerFileError(
            f"{vocab_where} lacks the single-byte tokens of {len(missing)} byte(s) ({shown}"
            f"{', ...' if len(missing) > 8 else ''}); a byte-level BPE has all 256"
        )
    byte_order = [b for _, b in singles]
    internal = {bytes([b]): n for n, b in enumerate(byte_order)}
    id_map = [i for i, _ in singles]
    merges = _merge_layout(token_ids, pairs, places, internal, id_map, vocab_where, show)
    unmade = [t for t in token_ids if t not in internal]
    if unmade:
        raise TokenizerFileError(
            f"{vocab_where} has {len(unmade)} token(s) that no merge makes, such as "
            f"{show(unmade[0])} (id {token_ids[unmade[0]]}); each token must be a byte or "
            "be made by a merge, or be declared a special token (special_tokens=..., or "
            "added_tokens in a tokenizer.json)"
        )
    special_tokens = {}
    for text, token_id in sorted(specials.items(), key=lambda kv: kv[1]):
        special_tokens[text] = len(id_map)
        id_map.append(token_id)
    return {
        "merges": merges,
        "byte_order": byte_order,
        "special_tokens": special_tokens,
        "id_map": id_map,
    }

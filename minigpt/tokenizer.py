"""Byte-level BPE tokenizers: the class, its files, and the tokenizers the book uses.

* :class:`BPETokenizer` holds the merges (pair of ids -> new id, in the order learned),
  the byte each of the first 256 ids stands for, the pre-tokenization regex and the
  special tokens, which always come after the learned tokens. It trains, encodes (all at
  once, or lazily from a stream of text with :meth:`~BPETokenizer.encode_iterable`),
  decodes, and saves itself to (and loads itself from) one JSON file. The algorithm
  itself (pair counts, merges, training over word counts) is in :mod:`minigpt.bpe`.
* It also reads and writes other tools' files: GPT-2's ``vocab.json`` + ``merges.txt``,
  tiktoken's rank files, and Hugging Face's ``tokenizer.json``. Those may number their
  tokens in any order; the class keeps its own layout and an *id map* (see below).
* :func:`gpt2_tokenizer` loads GPT-2's 50,000 merges from OpenAI's verified tables; its
  ids equal tiktoken's and Hugging Face's.
* :func:`shakespeare_tokenizer` is trained on Shakespeare's complete works once, saved
  in the cache folder, and loaded from there by the training and sampling chapters.
* :func:`show_tokens` draws text as coloured token spans in a notebook.
"""

from __future__ import annotations

import base64
import binascii
import collections
import functools
import html
import json
import os
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import no_type_check

import regex

from minigpt.assets import cache_dir, read_gpt2_bpe
from minigpt.bpe import (
    GPT2_PATTERN,
    Pair,
    bpe_word,
    bytes_to_unicode,
    split_by_ranks,
    train_merges,
    word_counts_of,
)
from minigpt.corpus import load_corpus
from minigpt.files import atomic_write_text, check_format, digest

__all__ = [
    "EOT",
    "BPETokenizer",
    "TokenizerFileError",
    "gpt2_tokenizer",
    "shakespeare_tokenizer",
    "shakespeare_tokenizer_path",
    "show_tokens",
]

EOT = "<|endoftext|>"  # GPT-2's end-of-text token (id 50256), also used as beginning-of-text
CACHE_LIMIT = 200_000  # words kept in the per-tokenizer encode cache
FILE_FORMAT = "minigpt-bpe"
FILE_VERSION = 2  # 2: carries a checksum of its content
FILE_VERSION_MAPPED = 3  # 3: also an id map (a tokenizer read from another tool's file)
# encode_iterable keeps at least this many characters of each piece back for the next one
# (with the last two pre-tokens and any trailing whitespace): a pre-token near the end of
# a piece may still grow, or be split differently, once the next piece is there.
STREAM_MARGIN = 8
# GPT-2's pattern as tiktoken writes it (r50k_base); it splits text exactly as ours does.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class TokenizerFileError(ValueError):
    """A saved tokenizer file is missing, corrupt or not a minigpt tokenizer."""


def _is_int_list(value: object, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _read_tokenizer_fields(path: Path) -> tuple[dict, bool]:
    """The keyword arguments of ``BPETokenizer(...)`` stored in ``path``, with their types
    checked, and whether the content matches the checksum stored with it.

    Raises :class:`TokenizerFileError` naming the file and what is wrong with it. (Whether the
    values fit together, e.g. merges that only use earlier ids, is checked by the class; the
    checksum is checked last, by :meth:`BPETokenizer.load`, so that a damaged field is named.)
    """
    if not path.is_file():
        raise TokenizerFileError(f"tokenizer file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerFileError(f"tokenizer file {path} is not valid JSON: {err}") from None
    mapped = isinstance(data, dict) and data.get("version") == FILE_VERSION_MAPPED
    check_format(
        data,
        path,
        kind="minigpt tokenizer",
        format=FILE_FORMAT,
        version=FILE_VERSION_MAPPED if mapped else FILE_VERSION,
        error=TokenizerFileError,
    )
    intact = data.get("sha256") == digest({k: v for k, v in data.items() if k != "sha256"})
    missing = {"merges", "byte_order", "special_tokens", "pattern"} - set(data)
    if missing:
        raise TokenizerFileError(f"{path} lacks the fields {sorted(missing)}")
    merges, order, specials = data["merges"], data["byte_order"], data["special_tokens"]
    metadata = data.get("metadata") or {}
    id_map = data.get("id_map") if mapped else None
    checks = {
        "merges (a list of [id, id] pairs)": isinstance(merges, list)
        and all(_is_int_list(pair, 2) for pair in merges),
        "byte_order (a list of 256 ints)": _is_int_list(order, 256),
        "special_tokens (a {text: id} object)": isinstance(specials, dict)
        and all(_is_int_list([i], 1) for i in specials.values()),
        "pattern (a string or null)": data["pattern"] is None or isinstance(data["pattern"], str),
        "metadata (an object)": isinstance(metadata, dict),
        "id_map (a list of ints)": not mapped
        or (isinstance(id_map, list) and _is_int_list(id_map, len(id_map))),
    }
    bad = [field for field, ok in checks.items() if not ok]
    if bad:
        raise TokenizerFileError(f"{path} is corrupt: bad {', '.join(bad)}")
    fields = {
        "merges": [tuple(pair) for pair in merges],
        "byte_order": order,
        "special_tokens": specials,
        "pattern": data["pattern"],
        "name": str(data.get("name", path.stem)),
        "metadata": metadata,
        "id_map": id_map,
    }
    return fields, intact


def _special_splitter(tokens: Collection[str]) -> regex.Pattern:
    """A regex that finds the special tokens in text (the longest first), as one group."""
    return regex.compile(
        "(" + "|".join(regex.escape(t) for t in sorted(tokens, key=len)[::-1]) + ")"
    )


def _split_on(text: str, tokens: Collection[str]) -> list[str]:
    """``text`` cut at (and without) every occurrence of the ``tokens``."""
    if not tokens or not any(token in text for token in tokens):
        return [text]
    return _special_splitter(tokens).split(text)[::2]


# -- the class ============================================================================


class BPETokenizer:
    """A byte-level BPE tokenizer.

    Args:
        merges: merge ``i`` joins the pair of ids ``merges[i]`` into the new id ``256 + i``.
        byte_order: ``byte_order[i]`` is the byte that id ``i < 256`` stands for
            (default: id ``i`` is byte ``i``; GPT-2 uses its own order).
        special_tokens: ``{text: id}``; the ids must be ``256 + len(merges)`` onwards.
        pattern: regex that splits text into chunks before BPE (``None``: no split).
        name: a label shown in ``repr`` and saved with the file.
        metadata: JSON-able facts saved with the file (what it was trained on, ...).
        id_map: ``None`` (the usual case), or the id each token has to the outside world:
            ``id_map[i]`` is the id :meth:`encode` returns, and :meth:`decode` takes, for
            the token at position ``i`` of the layout above.

    **The id map.** The layout above (bytes, then merges in order, then special tokens) is
    what BPE needs: a merge's rank *is* the id it makes, which is how :func:`bpe_word`
    picks the next merge. Other tools' files number tokens freely (``<|endoftext|>`` at
    id 0, bytes anywhere, merges in any id order), and a model trained with such a file
    expects *its* ids. So a tokenizer read from one keeps our layout inside and an id map
    at the edges: ``merges``, ``byte_order`` and ``special_tokens`` are always in the
    layout (internal ids); :meth:`encode`, :meth:`encode_iterable`, :meth:`decode`,
    :meth:`token_bytes`, :attr:`eot_id`, :attr:`special_token_ids` and :attr:`vocab_size`
    speak the file's ids. Mapping costs nothing per token: the encode cache holds mapped
    ids, and decoding reads a table indexed by the file's id. A file whose ids already
    follow the layout (GPT-2's) gives ``id_map=None``. The file's ids may leave gaps
    (tiktoken's special tokens often do); :attr:`vocab_size` is then one more than the
    largest id, and decoding an unused id is an error.
    """

    def __init__(
        self,
        merges: Sequence[Pair],
        *,
        byte_order: Sequence[int] | None = None,
        special_tokens: Mapping[str, int] | None = None,
        pattern: str | None = GPT2_PATTERN,
        name: str = "bpe",
        metadata: Mapping[str, object] | None = None,
        id_map: Sequence[int] | None = None,
    ) -> None:
        self.byte_order = tuple(range(256) if byte_order is None else byte_order)
        if sorted(self.byte_order) != list(range(256)):
            raise ValueError("byte_order must list each of the 256 byte values exactly once")
        vocab = [bytes([b]) for b in self.byte_order]
        self.merges: list[Pair] = []
        for i, pair in enumerate(merges):
            if len(pair) != 2 or not all(0 <= int(t) < 256 + i for t in pair):
                raise ValueError(
                    f"merges[{i}]={list(pair)!r} must be two ids in [0, {256 + i}), "
                    "the tokens that exist before it"
                )
            first, second = int(pair[0]), int(pair[1])
            self.merges.append((first, second))
            vocab.append(vocab[first] + vocab[second])
        self.special_tokens = dict(special_tokens or {})
        expected = list(range(len(vocab), len(vocab) + len(self.special_tokens)))
        if sorted(self.special_tokens.values()) != expected:
            raise ValueError(
                f"special_tokens={self.special_tokens!r} must take the ids right after the "
                f"learned ones, {expected[:1] or [len(vocab)]} onwards, each once"
            )
        for text, _ in sorted(self.special_tokens.items(), key=lambda kv: kv[1]):
            vocab.append(text.encode("utf-8"))
        self.pattern = pattern
        self.name = name
        self.metadata = dict(metadata or {})
        self._vocab = vocab  # id -> bytes (special tokens: their text)
        self._ranks = {pair: 256 + i for i, pair in enumerate(self.merges)}
        self._byte_to_id = [0] * 256
        for token_id, b in enumerate(self.byte_order):
            self._byte_to_id[b] = token_id
        self._regex = regex.compile(pattern) if pattern else None
        self._cache: dict[str, list[int]] = {}  # chunk -> its ids (mapped, if there is a map)
        self.id_map: tuple[int, ...] | None = None
        self._by_id: list = vocab  # id (the world's) -> bytes; None marks an unused id
        if id_map is not None:
            id_map = [int(i) for i in id_map]
            if len(id_map) != len(vocab) or len(set(id_map)) != len(id_map) or min(id_map) < 0:
                raise ValueError(
                    f"id_map must give each of the {len(vocab)} tokens its own id >= 0 "
                    f"(got {len(id_map)} ids, {len(set(id_map))} distinct)"
                )
            if id_map != list(range(len(vocab))):
                self.id_map = tuple(id_map)
                self._by_id = [None] * (max(id_map) + 1)
                for internal, public in enumerate(id_map):
                    self._by_id[public] = vocab[internal]

    def __getstate__(self) -> dict:  # for worker processes: the encode cache stays behind
        return {**self.__dict__, "_cache": {}}

    # -- sizes and lookups -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens (the embedding's row count).

        With an id map whose ids leave gaps: one more than the largest id."""
        return len(self._by_id)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def eot_id(self) -> int | None:
        """The id of ``<|endoftext|>``, or ``None`` if this tokenizer has no such token."""
        return self.special_token_ids.get(EOT)

    @property
    def special_token_ids(self) -> dict[str, int]:
        """``{text: id}`` of the special tokens, in the ids :meth:`encode` returns.

        Equal to :attr:`special_tokens` unless there is an :attr:`id_map`."""
        return {text: self._public(i) for text, i in self.special_tokens.items()}

    def _public(self, internal: int) -> int:
        return internal if self.id_map is None else self.id_map[internal]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token: its text in UTF-8)."""
        self._check_ids([token_id])
        return self._by_id[token_id]

    def __repr__(self) -> str:
        mapped = "" if self.id_map is None else ", id_map=..."
        return (
            f"BPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, "
            f"merges={len(self.merges)}, special_tokens={self.special_token_ids!r}{mapped})"
        )

    # -- training ----------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        pattern: str | None = GPT2_PATTERN,
        special_tokens: Sequence[str] = (EOT,),
        name: str = "bpe",
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        ``vocab_size`` counts everything: the 256 bytes, the merges, and the special
        tokens, which get the last ids. Ties between equally frequent pairs go to the
        smaller pair of ids, so training is deterministic.

        The text is first cut at every occurrence of a special token's text, which is
        left out, and only then pre-tokenized: a document separator such as
        ``<|endoftext|>`` in the training text is one token, so no merge may join its
        pieces (``<|``, ``|>``) or join it to the text around it.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(special_tokens, str):
            raise TypeError(f"special_tokens must be a sequence of str, got {special_tokens!r}")
        floor = 256 + len(special_tokens)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < floor:
            raise ValueError(
                f"vocab_size={vocab_size!r} must be an integer >= {floor} "
                f"(256 byte tokens + {len(special_tokens)} special tokens)"
            )
        if len(set(special_tokens)) != len(special_tokens) or not all(special_tokens):
            raise ValueError(
                f"special_tokens={list(special_tokens)!r} must be non-empty and unique"
            )
        parts = _split_on(text, special_tokens)
        if pattern:
            compiled = regex.compile(pattern)
            chunks = [chunk for part in parts for chunk in compiled.findall(part)]
        else:
            chunks = [part for part in parts if part]
        n_merges = vocab_size - floor
        merges = train_merges(word_counts_of(chunks), n_merges)
        if len(merges) < n_merges:
            raise ValueError(
                f"vocab_size={vocab_size} needs {n_merges} merges, but the text ({len(text)} "
                f"characters) runs out of pairs after {len(merges)}; use vocab_size <= "
                f"{floor + len(merges)} or more text"
            )
        specials = {tok: 256 + n_merges + i for i, tok in enumerate(special_tokens)}
        metadata = {"trained_on_chars": len(text)}
        return cls(merges, special_tokens=specials, pattern=pattern, name=name, metadata=metadata)

    def with_special_tokens(self, tokens: Sequence[str]) -> BPETokenizer:
        """A copy with more special tokens, appended after the last id.

        GPT-2 has 50,257 ids; ``gpt2_tokenizer().with_special_tokens(["<|pad|>"])`` gives
        ``<|pad|>`` id 50257, so a model using it needs a 50,258-row embedding. (With an
        id map, the new tokens take the ids after the largest one.)
        """
        clash = [t for t in tokens if t in self.special_tokens]
        if clash or len(set(tokens)) != len(tokens) or not all(tokens):
            raise ValueError(f"tokens={list(tokens)!r}: each must be new, non-empty and unique")
        specials = dict(self.special_tokens)
        specials.update({t: len(self._vocab) + i for i, t in enumerate(tokens)})
        id_map = None
        if self.id_map is not None:  # the new tokens take the ids after the largest one
            id_map = [*self.id_map, *range(self.vocab_size, self.vocab_size + len(tokens))]
        return BPETokenizer(
            self.merges,
            byte_order=self.byte_order,
            special_tokens=specials,
            pattern=self.pattern,
            name=self.name,
            metadata=self.metadata,
            id_map=id_map,
        )

    # -- encoding ----------------------------------------------------------------------

    @no_type_check  # once per new word: keep the tests' type checker off this hot path
    def _encode_chunk(self, chunk: str) -> list[int]:
        try:
            data = chunk.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: encode it as U+FFFD, as tiktoken does
            data = chunk.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
        byte_to_id = self._byte_to_id
        ids = bpe_word([byte_to_id[b] for b in data], self._ranks)
        if self.id_map is not None:
            id_map = self.id_map
            ids = [id_map[i] for i in ids]
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Token ids of ``text``, reading special-token text as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        cache = self._cache
        out: list[int] = []
        for chunk in self._regex.findall(text) if self._regex is not None else [text]:
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[chunk] = ids
            out.extend(ids)
        return out

    def clear_cache(self) -> None:
        """Forget the cached encodings of words (to time a cold encode, or free memory)."""
        self._cache.clear()

    def encode(
        self,
        text: str,
        *,
        allowed_special: str | Collection[str] = (),
        disallowed_special: str | Collection[str] = "all",
    ) -> list[int]:
        """Token ids of ``text``. Special tokens follow an explicit policy (as tiktoken's):

        * ``allowed_special`` (``"all"`` or a set): these become their special id;
        * ``disallowed_special`` (``"all"``, the default, means every special token not
          allowed): finding one in ``text`` raises ``ValueError``, since text from users
          should not be able to inject control tokens;
        * special tokens in neither are encoded as ordinary text.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        allowed = self._policy_set(allowed_special, "allowed_special", set())
        disallowed = self._policy_set(disallowed_special, "disallowed_special", allowed)
        for token in disallowed:
            if token in text:
                raise self._disallowed_error(token)
        return self._encode_allowed(text, allowed)

    def _disallowed_error(self, token: str) -> ValueError:
        return ValueError(
            f"text contains the special token {token!r}. Pass "
            f"allowed_special={{{token!r}}} to encode it as id "
            f"{self._public(self.special_tokens[token])}, or disallowed_special=() to "
            "encode it as ordinary text"
        )

    def _encode_allowed(self, text: str, allowed: set[str]) -> list[int]:
        """``text`` encoded with the special tokens in ``allowed`` as their ids."""
        if not allowed or not any(token in text for token in allowed):
            return self.encode_ordinary(text)
        out: list[int] = []
        for i, part in enumerate(_special_splitter(allowed).split(text)):
            if i % 2:  # the separators land at the odd positions
                out.append(self._public(self.special_tokens[part]))
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def encode_iterable(
        self,
        texts: Iterable[str],
        *,
        allowed_special: str | Collection[str] = (),
        disallowed_special: str | Collection[str] = "all",
    ) -> Iterator[int]:
        """The ids of ``"".join(texts)``, yielded lazily: text of any size in bounded memory.

        Equal to ``encode("".join(texts), ...)`` with the same special-token policy, id for
        id, wherever the pieces are cut (inside a word, a run of spaces, a special token).
        The policy is checked now; a disallowed special token raises ``ValueError`` when
        the stream reaches it, after the ids before it have been yielded.

        How a cut is kept from changing the ids: a pre-token near the end of a piece may
        still grow (``"wor" + "ld"``) or split differently (``"we'l" + "l"``: ``'ll`` is a
        contraction) once the next piece is there. So each piece's last two pre-tokens,
        its trailing whitespace and at least its last ``STREAM_MARGIN`` characters, rounded
        back to a pre-token boundary, are held back and put before the next piece, as is
        anything that may be the start of a special token. Memory is bounded by the piece
        size plus the longest pre-token (one pre-token must be held whole; with
        ``pattern=None`` the whole text is one).
        """
        if isinstance(texts, str):
            raise TypeError(
                "encode_iterable expects an iterable of str pieces; use encode for a str"
            )
        allowed = self._policy_set(allowed_special, "allowed_special", set())
        disallowed = self._policy_set(disallowed_special, "disallowed_special", allowed)
        return self._stream(iter(texts), allowed, disallowed)

    @no_type_check
    def _stream(self, pieces, allowed, disallowed):
        splitter = _special_splitter(allowed) if allowed else None
        longest_allowed = max(map(len, allowed), default=0)
        keep = max(map(len, disallowed), default=1) - 1  # a disallowed token can straddle this much
        window = ""  # the end of the text seen so far, to find disallowed tokens across pieces
        tail = ""  # text not encoded yet: it may still change with the next piece
        for position, piece in enumerate(pieces):
            if not isinstance(piece, str):
                raise TypeError(
                    f"encode_iterable expects str pieces; piece {position} is a "
                    f"{type(piece).__name__}"
                )
            if not piece:
                continue
            if disallowed:
                probe = window + piece
                for token in disallowed:
                    if token in probe:
                        raise self._disallowed_error(token)
                window = probe[-keep:] if keep else ""
            text = tail + piece
            out: list[int] = []
            start = 0  # text[:start] is encoded (it ends with a special token, if any)
            hold = len(text)  # a special token may start at text[hold:]: keep it back
            if splitter is not None:
                # A special token found at or before `last` is final: all its text is here.
                last = len(text) - longest_allowed
                if any(token in text for token in allowed):
                    for match in splitter.finditer(text):
                        if match.start() > last:
                            break
                        if match.start() > start:
                            out.extend(self.encode_ordinary(text[start : match.start()]))
                        out.append(self._public(self.special_tokens[match.group()]))
                        start = match.end()
                hold = max(last + 1, start)
            open_part = text[start:]
            cut = self._stable_prefix(open_part, hold - start, out)
            tail = open_part[cut:]
            yield from out
        if tail:
            yield from self._encode_allowed(tail, allowed)

    @no_type_check
    def _stable_prefix(self, text, hold, out):
        """Encode the pre-tokens of ``text`` that more text after it cannot change, into
        ``out``; return where the rest (to carry over) starts."""
        if self._regex is None:
            return 0  # one chunk: nothing is final until the text ends
        # A pre-token is final if it ends STREAM_MARGIN characters and a whitespace run
        # before both the end of the text and `hold`: a special token there would end the
        # text, which changes the pre-tokens just before it as much as more text would.
        limit = min(hold - STREAM_MARGIN, len(text[:hold].rstrip()), len(text.rstrip()))
        cache = self._cache
        chunks = self._regex.findall(text)
        if sum(map(len, chunks)) == len(text):
            # The pre-tokens tile the text (GPT-2's do): walk back from the end to the last
            # one that is final, keeping the last two in any case; `end` is where it ends.
            k = len(chunks) - 2
            if k <= 0:
                return 0
            end = len(text) - len(chunks[-1]) - len(chunks[-2])
            while k > 0 and end > limit:
                k -= 1
                end -= len(chunks[k])
            for i in range(k):
                chunk = chunks[i]
                ids = cache.get(chunk)
                if ids is None:
                    ids = self._encode_chunk(chunk)
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[chunk] = ids
                out.extend(ids)
            return end
        # A pattern that skips characters: the same rule, match by match.
        pending = collections.deque()  # the last pre-tokens seen, not yet known to be final
        done = 0
        for match in self._regex.finditer(text):
            pending.append(match)
            if len(pending) > 2:
                first = pending[0]
                if first.end() > limit:
                    break  # this one and all after it are carried over
                pending.popleft()
                done = first.end()
                chunk = first.group()
                ids = cache.get(chunk)
                if ids is None:
                    ids = self._encode_chunk(chunk)
                    if len(cache) >= CACHE_LIMIT:
                        cache.clear()
                    cache[chunk] = ids
                out.extend(ids)
        if pending:
            return pending[0].start()
        return max(done, min(limit, len(text)))

    def _policy_set(self, value: str | Collection[str], arg: str, exclude: set[str]) -> set[str]:
        if value == "all":
            return set(self.special_tokens) - exclude
        if isinstance(value, str):
            raise ValueError(f'{arg}={value!r} must be "all" or a collection of special tokens')
        unknown = set(value) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"{arg} names {sorted(unknown)!r}, which are not special tokens of this "
                f"tokenizer (it has {sorted(self.special_tokens)!r})"
            )
        return set(value) - exclude

    # -- decoding ----------------------------------------------------------------------

    def _check_ids(self, ids: list) -> None:
        for position, token_id in enumerate(ids):
            if not isinstance(token_id, int) or isinstance(token_id, bool):
                raise TypeError(
                    f"ids[{position}]={token_id!r} is a {type(token_id).__name__}, not an int"
                )
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            position, bad = next((p, t) for p, t in enumerate(ids) if not 0 <= t < self.vocab_size)
            raise ValueError(
                f"ids[{position}]={bad} is not a token id; this tokenizer's ids are "
                f"0..{self.vocab_size - 1}"
            )
        if self.id_map is not None and len(self._by_id) > len(self._vocab):  # gaps
            by_id = self._by_id
            for position, token_id in enumerate(ids):
                if by_id[token_id] is None:
                    raise ValueError(
                        f"ids[{position}]={token_id} is not a token id; the file this "
                        f"tokenizer was read from leaves id {token_id} unused"
                    )

    def decode_bytes(self, ids: Iterable) -> bytes:
        """The bytes that ``ids`` (ints, or a 1-D integer tensor) stand for, joined."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        self._check_ids(ids)
        vocab = self._by_id
        return b"".join([vocab[i] for i in ids])

    def decode(self, ids: Iterable) -> str:
        """The text of ``ids``. Bytes that are not valid UTF-8 (ids that end in the middle
        of a character) become the replacement character U+FFFD, as in GPT-2."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- files -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        data = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION if self.id_map is None else FILE_VERSION_MAPPED,
            "name": self.name,
            "pattern": self.pattern,
            "byte_order": list(self.byte_order),
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": self.special_tokens,
            "metadata": self.metadata,
        }
        if self.id_map is not None:
            data["id_map"] = list(self.id_map)
        return data

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON with a checksum of its content, atomically (a reader
        never sees half a file, and :meth:`load` refuses a changed one)."""
        data = self.to_dict()
        data["sha256"] = digest(data)
        return atomic_write_text(path, json.dumps(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`; :class:`TokenizerFileError` if it is bad."""
        fields, intact = _read_tokenizer_fields(Path(path))
        try:
            tok = cls(**fields)
        except (TypeError, ValueError, regex.error) as err:
            raise TokenizerFileError(f"{path} is corrupt: {err}") from None
        if not intact:
            raise TokenizerFileError(
                f"tokenizer file {path} is corrupt: its content does not match the checksum "
                "stored in it (a changed byte or an edit). Nothing was loaded; delete it, or "
                "replace it with a good copy."
            )
        return tok

    # -- other tools' files ------------------------------------------------------------
    # Each reader turns the file into (token bytes -> the file's id, merges as pairs of
    # token bytes in rank order, special tokens) and :func:`_layout_from_tables` turns that
    # into our layout plus the id map. Each writer writes the file's ids (the id map's).

    @classmethod
    def _from_layout(cls, layout: dict, where: str, **fields) -> BPETokenizer:
        try:
            return cls(**layout, **fields)
        except (TypeError, ValueError, regex.error) as err:
            raise TokenizerFileError(f"{where}: {err}") from None

    def _string_tables(self, what: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """``{token string: id}`` in GPT-2's byte stand-ins (special tokens: their text, as
        GPT-2's ``encoder.json`` has ``<|endoftext|>``), sorted by id, and the merges as
        pairs of token strings."""
        table = bytes_to_unicode()
        strings = ["".join([table[b] for b in t]) for t in self._vocab[: 256 + len(self.merges)]]
        vocab = {string: self._public(i) for i, string in enumerate(strings)}
        for text, internal in self.special_tokens.items():
            if text in vocab:
                raise ValueError(
                    f"cannot write {what}: the special token {text!r} is spelt like learned "
                    f"token {vocab[text]}, and the file has one entry per spelling"
                )
            vocab[text] = self._public(internal)
        merges = [(strings[a], strings[b]) for a, b in self.merges]
        return dict(sorted(vocab.items(), key=lambda kv: kv[1])), merges

    @classmethod
    def from_vocab_merges(
        cls,
        vocab_json_path: str | os.PathLike,
        merges_txt_path: str | os.PathLike,
        special_tokens: Collection[str] | Mapping[str, int] | None = None,
        *,
        pattern: str | None = GPT2_PATTERN,
        name: str | None = None,
    ) -> BPETokenizer:
        """Read GPT-2-style ``vocab.json`` (token string -> id) and ``merges.txt``.

        Token strings are written in GPT-2's byte stand-ins (:func:`bytes_to_unicode`);
        ``merges.txt`` has an optional ``#version`` first line, then one merge ``a b`` per
        line in rank order. Ids may follow any layout; the tokenizer then carries an id map
        (see the class), so :meth:`encode` returns the file's ids.

        ``special_tokens``: the vocab entries that are special tokens, by text (default:
        ``<|endoftext|>`` if the vocab has it), or ``{text: id}`` to add ones it lacks.
        Every other entry must be a byte or be made by a merge, and every merge must make
        an entry of the vocab: :class:`TokenizerFileError` names the file and the token.
        """
        vocab_path, merges_path = Path(vocab_json_path), Path(merges_txt_path)
        vocab = _read_json(vocab_path, "vocab.json")
        if not isinstance(vocab, dict) or not all(_is_int_list([i], 1) for i in vocab.values()):
            raise TokenizerFileError(
                f"{vocab_path} is not a vocab.json: it must be one JSON object of "
                "token string -> integer id"
            )
        text = _read_text(merges_path, "merges.txt")
        pairs, places = [], []
        for number, line in enumerate(text.split("\n"), 1):
            line = line.rstrip("\r")
            if not line or (number == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise TokenizerFileError(
                    f"{merges_path} line {number} is {line[:80]!r}, not two tokens separated "
                    "by one space"
                )
            pairs.append((parts[0], parts[1]))
            places.append(f"{merges_path} line {number}")
        if special_tokens is None:
            special_tokens = [EOT] if EOT in vocab else []
        specials = _named_specials(special_tokens, vocab, str(vocab_path))
        layout = _layout_from_strings(vocab, pairs, places, specials, str(vocab_path))
        return cls._from_layout(
            layout,
            str(vocab_path),
            pattern=pattern,
            name=name or vocab_path.parent.name or vocab_path.stem,
            metadata={"read_from": "vocab.json+merges.txt"},
        )

    def save_vocab_merges(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``folder/vocab.json`` and ``folder/merges.txt`` in GPT-2's format and this
        tokenizer's ids (special tokens go into ``vocab.json`` by text, as GPT-2's
        ``<|endoftext|>``; the pattern is not part of the format). Returns both paths."""
        vocab, merges = self._string_tables("vocab.json")
        folder = Path(folder)
        lines = "".join(f"{a} {b}\n" for a, b in merges)
        return (
            atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False)),
            atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + lines),
        )

    @classmethod
    def from_tiktoken(
        cls,
        path: str | os.PathLike,
        special_tokens: Mapping[str, int] | None = None,
        pattern: str | None = GPT2_PATTERN,
        *,
        name: str | None = None,
    ) -> BPETokenizer:
        """Read a tiktoken rank file: lines of ``base64(token bytes) rank``.

        The rank is both the id and the merge priority. The file has no merges, so each
        token longer than a byte gets the merge BPE would make it with: BPE on its own
        bytes using only lower-ranked tokens (:func:`minigpt.bpe.split_by_ranks`) must end
        in exactly two parts, which become the merge. For rank tables made by BPE
        training (all of OpenAI's) this reproduces tiktoken's ids exactly.

        The file holds no special tokens and no pattern: pass them (tiktoken's
        ``special_tokens={text: id}``, e.g. ``{"<|endoftext|>": 50256}`` for GPT-2).
        """
        path = Path(path)
        text = _read_text(path, "tiktoken")
        ranks: dict[bytes, int] = {}
        line_of: dict[bytes, int] = {}
        token_of: dict[int, bytes] = {}
        for number, line in enumerate(text.split("\n"), 1):
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
                    raise TokenizerFileError(
                        f"{path} line {number}: {what} is already on line {first}"
                    )
            ranks[token], line_of[token], token_of[rank] = rank, number, token
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
        layout = _layout_from_tables(ranks, pairs, places, specials, str(path), show=repr)
        return cls._from_layout(
            layout,
            str(path),
            pattern=pattern,
            name=name or path.stem,
            metadata={"read_from": "tiktoken"},
        )

    def save_tiktoken(self, path: str | os.PathLike) -> Path:
        """Write a tiktoken rank file (``base64(token bytes) rank``, rank = this tokenizer's id).

        Special tokens and the pattern are not part of the format: give them to
        ``tiktoken.Encoding(..., special_tokens=tok.special_token_ids)`` or to
        :meth:`from_tiktoken`. Raises ``ValueError`` if tiktoken could not reproduce this
        tokenizer: its merges must make ids in increasing order (a rank is also the merge
        priority), and each merge must be the one :meth:`from_tiktoken` recovers.
        """
        made = [self._public(256 + i) for i in range(len(self.merges))]
        for i in range(1, len(made)):
            if made[i] <= made[i - 1]:
                raise ValueError(
                    f"cannot write a tiktoken file: merge {i} makes id {made[i]} after merge "
                    f"{i - 1} made id {made[i - 1]}, but a tiktoken rank is both the id and the "
                    "merge priority, so ids must grow with the merges"
                )
        vocab = self._vocab
        ranks = {vocab[i]: self._public(i) for i in range(256 + len(self.merges))}
        for i, (a, b) in enumerate(self.merges):
            token = vocab[256 + i]
            if split_by_ranks(token, ranks) != [vocab[a], vocab[b]]:
                raise ValueError(
                    f"cannot write a tiktoken file: merge {i} makes {token!r} from "
                    f"{vocab[a]!r} + {vocab[b]!r}, but BPE over the lower ranks splits it "
                    f"as {split_by_ranks(token, ranks)!r}, so tiktoken would encode differently"
                )
        lines = [
            f"{base64.b64encode(token).decode('ascii')} {rank}"
            for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])
        ]
        return atomic_write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def from_hf_tokenizer_json(
        cls, path: str | os.PathLike, *, name: str | None = None
    ) -> BPETokenizer:
        """Read a Hugging Face ``tokenizer.json`` of a byte-level BPE model (GPT-2's kind).

        Reads ``model.vocab``, ``model.merges`` (``"a b"`` strings or ``[a, b]`` lists) and
        ``added_tokens``, which become special tokens with their ids (Hugging Face always
        splits them out of text: encode with ``allowed_special="all"`` to match it). The
        pre-tokenizer must be ``ByteLevel`` (GPT-2's pattern, or none with
        ``use_regex=false``) or a ``Split`` regex followed by ``ByteLevel``; a normalizer,
        BPE dropout, subword prefixes, byte fallback or ``ignore_merges`` are refused with
        :class:`TokenizerFileError`, since they would change the ids.
        """
        path = Path(path)
        data = _read_json(path, "tokenizer.json")
        model = data.get("model") if isinstance(data, dict) else None
        if not isinstance(model, dict) or model.get("type") != "BPE":
            kind = model.get("type") if isinstance(model, dict) else None
            raise TokenizerFileError(
                f"{path} is not a BPE tokenizer.json (its model.type is {kind!r}, not 'BPE')"
            )
        vocab, merges = model.get("vocab"), model.get("merges")
        if not isinstance(vocab, dict) or not all(_is_int_list([i], 1) for i in vocab.values()):
            raise TokenizerFileError(f"{path}: model.vocab must be an object of token -> id")
        if not isinstance(merges, list):
            raise TokenizerFileError(f"{path}: model.merges must be a list")
        pairs, places = [], []
        for k, entry in enumerate(merges):
            if isinstance(entry, str):
                entry = entry.split(" ")
            if not (
                isinstance(entry, list)
                and len(entry) == 2
                and all(isinstance(p, str) and p for p in entry)
            ):
                raise TokenizerFileError(
                    f"{path}: model.merges[{k}]={merges[k]!r} is not a pair of tokens"
                )
            pairs.append((entry[0], entry[1]))
            places.append(f"{path} model.merges[{k}]")
        problems = []
        for key in ("continuing_subword_prefix", "end_of_word_suffix"):
            if model.get(key):
                problems.append(f"model.{key}={model[key]!r}")
        if model.get("dropout"):
            problems.append(f"BPE dropout ({model['dropout']})")
        for key in ("byte_fallback", "ignore_merges"):
            if model.get(key):
                problems.append(f"model.{key}=true")
        if data.get("normalizer") is not None:
            problems.append(f"a {data['normalizer'].get('type')} normalizer")
        pattern = _hf_pattern(data.get("pre_tokenizer"), problems)
        decoder = data.get("decoder")
        if decoder is not None and decoder.get("type") != "ByteLevel":
            problems.append(f"a {decoder.get('type')} decoder")
        _hf_check_post_processor(data.get("post_processor"), problems)
        for entry in data.get("added_tokens") or []:
            for key in ("single_word", "lstrip", "rstrip"):
                if isinstance(entry, dict) and entry.get(key):
                    problems.append(f"{key}=true on added token {entry.get('content')!r}")
        if problems:
            raise TokenizerFileError(
                f"{path} uses {', '.join(problems)}, which would change the ids; minigpt reads "
                "byte-level BPE files (ByteLevel pre-tokenizer and decoder, no normalizer)"
            )
        specials: dict[str, int] = {}
        for k, entry in enumerate(data.get("added_tokens") or []):
            content, token_id = entry.get("content"), entry.get("id")
            if not isinstance(content, str) or not _is_int_list([token_id], 1):
                raise TokenizerFileError(f"{path}: added_tokens[{k}] lacks a content or an id")
            if content in vocab and vocab[content] != token_id:
                raise TokenizerFileError(
                    f"{path}: added token {content!r} has id {token_id}, but model.vocab "
                    f"gives it id {vocab[content]}"
                )
            specials[content] = token_id
        layout = _layout_from_strings(vocab, pairs, places, specials, f"{path} (model.vocab)")
        return cls._from_layout(
            layout,
            str(path),
            pattern=pattern,
            name=name or path.stem,
            metadata={"read_from": "tokenizer.json"},
        )

    def save_hf_tokenizer_json(self, path: str | os.PathLike) -> Path:
        """Write a Hugging Face ``tokenizer.json`` that gives this tokenizer's ids, for
        ``tokenizers.Tokenizer.from_file`` or ``PreTrainedTokenizerFast(tokenizer_file=...)``.

        Special tokens are added tokens (and in ``model.vocab``, as in GPT-2's file, so
        they keep their ids), which Hugging Face always splits out of text. GPT-2's
        pattern is the ``ByteLevel`` pre-tokenizer's own; another one is a ``Split``
        before it (in Hugging Face's regex dialect, Oniguruma).
        """
        vocab, merges = self._string_tables("a tokenizer.json")

        def byte_level(use_regex: bool) -> dict:
            return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": use_regex}  # fmt: skip

        if self.pattern in (GPT2_PATTERN, R50K_PATTERN) or self.pattern is None:
            pre_tokenizer = byte_level(self.pattern is not None)
        else:
            split = {"type": "Split", "pattern": {"Regex": self.pattern}, "behavior": "Isolated",
                     "invert": False}  # fmt: skip
            pre_tokenizer = {"type": "Sequence", "pretokenizers": [split, byte_level(False)]}
        added = [
            {"id": self._public(i), "content": text, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for text, i in sorted(self.special_tokens.items(), key=lambda kv: kv[1])
        ]  # fmt: skip
        data = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {**byte_level(True), "trim_offsets": False},
            "decoder": byte_level(True),
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": vocab,
                "merges": [f"{a} {b}" for a, b in merges],
            },
        }
        return atomic_write_text(path, json.dumps(data, ensure_ascii=False))


# -- reading other tools' files ============================================================


def _read_text(path: Path, kind: str) -> str:
    if not path.is_file():
        raise TokenizerFileError(f"{kind} file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerFileError(f"{kind} file {path} is not UTF-8 text: {err}") from None


def _read_json(path: Path, kind: str) -> object:
    try:
        return json.loads(_read_text(path, kind))
    except json.JSONDecodeError as err:
        raise TokenizerFileError(f"{kind} file {path} is not valid JSON: {err}") from None


def _named_specials(
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


def _hf_pattern(pre: object, problems: list[str]) -> str | None:
    """The pre-tokenization regex of a Hugging Face ``pre_tokenizer`` (``problems`` gets
    what is not a byte-level BPE's)."""

    def byte_level(step: dict) -> bool:  # whether it splits with GPT-2's regex
        if step.get("add_prefix_space"):
            problems.append("ByteLevel add_prefix_space=true")
        return bool(step.get("use_regex", True))

    if not isinstance(pre, dict):
        problems.append("no pre_tokenizer")
        return None
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    types = [step.get("type") for step in steps or [] if isinstance(step, dict)]
    if types == ["ByteLevel"]:
        return GPT2_PATTERN if byte_level(steps[0]) else None
    if types == ["Split", "ByteLevel"]:
        split = steps[0]
        found = (split.get("pattern") or {}).get("Regex")
        if found is None or split.get("behavior") != "Isolated" or split.get("invert"):
            problems.append(f"a Split pre-tokenizer other than an isolating regex ({split!r})")
        if byte_level(steps[1]):
            problems.append("a Split and a ByteLevel regex both")
        return found
    problems.append(f"a {' + '.join(map(str, types))} pre-tokenizer")
    return None


def _hf_check_post_processor(step: object, problems: list[str]) -> None:
    """Note in ``problems`` a post-processor that adds tokens to an encoded text (a
    ``TemplateProcessing`` with a BOS, say): :meth:`BPETokenizer.encode` adds none."""
    if step is None:
        return
    kind = step.get("type") if isinstance(step, dict) else None
    if kind == "Sequence":
        for inner in step.get("processors") or []:
            _hf_check_post_processor(inner, problems)
    elif kind == "TemplateProcessing":
        single = step.get("single") or []
        if any(not (isinstance(item, dict) and set(item) == {"Sequence"}) for item in single):
            problems.append(f"a TemplateProcessing post-processor that adds tokens ({single!r})")
    elif kind != "ByteLevel":
        problems.append(f"a {kind} post-processor")


def _layout_from_strings(
    vocab: Mapping[str, int],
    pairs: Sequence[tuple[str, str]],
    places: Sequence[str],
    specials: Mapping[str, int],
    vocab_where: str,
) -> dict:
    """:func:`_layout_from_tables` for files that spell tokens in GPT-2's byte stand-ins."""
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

    return _layout_from_tables(token_ids, byte_pairs, places, specials, vocab_where, show=show)


def _layout_from_tables(
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
    :class:`TokenizerFileError` naming the file and the token for what does not fit.
    """
    owner: dict[int, str] = {}
    for what, token_id in [(show(t), i) for t, i in token_ids.items()] + [
        (f"special token {text!r}", i) for text, i in specials.items()
    ]:
        if not isinstance(token_id, int) or isinstance(token_id, bool) or token_id < 0:
            raise TokenizerFileError(f"{vocab_where}: {what} has id {token_id!r}, not an int >= 0")
        if token_id in owner:
            raise TokenizerFileError(
                f"{vocab_where}: id {token_id} is given to both {owner[token_id]} and {what}"
            )
        owner[token_id] = what
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


# -- the book's tokenizers ================================================================


@functools.lru_cache(maxsize=1)
def gpt2_tokenizer() -> BPETokenizer:
    """GPT-2's tokenizer, built by :class:`BPETokenizer` from OpenAI's verified tables.

    ``encoder.json`` writes each token as a string of GPT-2's byte stand-ins
    (:func:`minigpt.bpe.bytes_to_unicode`); ``vocab.bpe`` lists the 50,000 merges in
    order, and merge ``i`` makes token ``256 + i``, which we check for every merge.
    """
    encoder, pairs = read_gpt2_bpe()
    byte_of = {char: b for b, char in bytes_to_unicode().items()}
    singles = sorted((i, token) for token, i in encoder.items() if i < 256)
    byte_order = [byte_of[token] for _, token in singles]
    merges = []
    for i, (first, second) in enumerate(pairs):
        if encoder[first + second] != 256 + i:
            raise ValueError(
                f"vocab.bpe line {i + 2} makes {first + second!r}, not token {256 + i}"
            )
        merges.append((encoder[first], encoder[second]))
    return BPETokenizer(
        merges, byte_order=byte_order, special_tokens={EOT: encoder[EOT]}, name="gpt2"
    )


def shakespeare_tokenizer_path(vocab_size: int = 4096) -> Path:
    """Where :func:`shakespeare_tokenizer` keeps the tokenizer of that size."""
    return cache_dir() / "tokenizers" / f"shakespeare-{vocab_size}.json"


def shakespeare_tokenizer(vocab_size: int = 4096) -> BPETokenizer:
    """The tokenizer trained on ``load_corpus("shakespeare")``, ``<|endoftext|>`` last.

    Loaded from :func:`shakespeare_tokenizer_path` when it is there; otherwise trained
    (a few seconds) and saved atomically, so any chapter can call this first.
    """
    path = shakespeare_tokenizer_path(vocab_size)
    if path.is_file():
        try:
            tok = BPETokenizer.load(path)
            if tok.vocab_size == vocab_size and tok.eot_id == vocab_size - 1:
                return tok
            warnings.warn(f"{path} holds a different tokenizer; training again", stacklevel=2)
        except TokenizerFileError as err:
            warnings.warn(f"{err}; training again", stacklevel=2)
    tok = BPETokenizer.train(load_corpus("shakespeare"), vocab_size, name=path.stem)
    tok.metadata["corpus"] = "shakespeare"
    tok.save(path)
    return tok


PALETTE = ("#fde2a7", "#bfe3c0", "#c6dbf7", "#f6c6d0", "#e0d0f5", "#c9ece9")


class TokenView:
    """Text drawn as coloured token spans (hover a span for its id); made by :func:`show_tokens`."""

    def __init__(self, tokenizer: BPETokenizer, ids: list[int]) -> None:
        self.ids = ids
        # A token that ends mid-character shows its stray bytes as \\xNN.
        self.pieces = [
            tokenizer.token_bytes(i).decode("utf-8", errors="backslashreplace") for i in ids
        ]

    def __repr__(self) -> str:
        return "|".join(self.pieces)

    def _repr_html_(self) -> str:
        spans = []
        for n, (token_id, piece) in enumerate(zip(self.ids, self.pieces)):
            text = html.escape(piece).replace(" ", "␣").replace("\n", "↵<br>")
            spans.append(
                f'<span title="id {token_id}" style="background:{PALETTE[n % len(PALETTE)]};'
                f'padding:1px 2px;margin:0 1px;border-radius:3px;">{text}</span>'
            )
        return (
            '<div style="font-family:monospace;line-height:1.9;white-space:pre-wrap;">'
            f"{''.join(spans)}</div><small>{len(self.ids)} tokens</small>"
        )


def show_tokens(tokenizer: BPETokenizer, text: str, **policy) -> TokenView:
    """``text`` split into ``tokenizer``'s tokens, for display in a notebook (spaces are ␣)."""
    return TokenView(tokenizer, tokenizer.encode(text, **policy))

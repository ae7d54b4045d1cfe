"""The byte-level BPE tokenizer class: train, encode, decode, save, load.

A :class:`BPETokenizer` holds the merges (pair of ids -> new id, in the order learned),
the byte each of the first 256 ids stands for, the pre-tokenization regex and the
special tokens, which always come after the learned tokens. The algorithm itself
(pair counts, merges, training over word counts) is in :mod:`minigpt.bpe`; the
tokenizers the book uses (GPT-2's, Shakespeare's) are made in :mod:`minigpt.tokenizer`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import no_type_check

import regex

from minigpt.bpe import GPT2_PATTERN, Pair, bpe_word, train_merges, word_counts_of
from minigpt.tokenizer_files import (
    FILE_FORMAT,
    FILE_VERSION,
    TokenizerFileError,
    read_tokenizer_fields,
    write_json_atomically,
)

EOT = "<|endoftext|>"  # GPT-2's end-of-text token (id 50256), also used as beginning-of-text
CACHE_LIMIT = 200_000  # words kept in the per-tokenizer encode cache


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
        self._cache: dict[str, list[int]] = {}

    def __getstate__(self) -> dict:  # for worker processes: the encode cache stays behind
        return {**self.__dict__, "_cache": {}}

    # -- sizes and lookups -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens (the embedding's row count)."""
        return len(self._vocab)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def eot_id(self) -> int | None:
        """The id of ``<|endoftext|>``, or ``None`` if this tokenizer has no such token."""
        return self.special_tokens.get(EOT)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token: its text in UTF-8)."""
        self._check_ids([token_id])
        return self._vocab[token_id]

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(name={self.name!r}, vocab_size={self.vocab_size}, "
            f"merges={len(self.merges)}, special_tokens={self.special_tokens!r})"
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
        chunks = regex.findall(pattern, text) if pattern else [text]
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
        ``<|pad|>`` id 50257, so a model using it needs a 50,258-row embedding.
        """
        clash = [t for t in tokens if t in self.special_tokens]
        if clash or len(set(tokens)) != len(tokens) or not all(tokens):
            raise ValueError(f"tokens={list(tokens)!r}: each must be new, non-empty and unique")
        specials = dict(self.special_tokens)
        specials.update({t: self.vocab_size + i for i, t in enumerate(tokens)})
        return BPETokenizer(
            self.merges,
            byte_order=self.byte_order,
            special_tokens=specials,
            pattern=self.pattern,
            name=self.name,
            metadata=self.metadata,
        )

    # -- encoding ----------------------------------------------------------------------

    @no_type_check  # once per new word: keep the tests' type checker off this hot path
    def _encode_chunk(self, chunk: str) -> list[int]:
        try:
            data = chunk.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: encode it as U+FFFD, as tiktoken does
            data = chunk.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()
        byte_to_id = self._byte_to_id
        return bpe_word([byte_to_id[b] for b in data], self._ranks)

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
                raise ValueError(
                    f"text contains the special token {token!r}. Pass "
                    f"allowed_special={{{token!r}}} to encode it as id "
                    f"{self.special_tokens[token]}, or disallowed_special=() to encode it "
                    "as ordinary text"
                )
        if not allowed or not any(token in text for token in allowed):
            return self.encode_ordinary(text)
        splitter = "(" + "|".join(regex.escape(t) for t in sorted(allowed, key=len)[::-1]) + ")"
        out: list[int] = []
        for i, part in enumerate(regex.split(splitter, text)):
            if i % 2:  # the separators land at the odd positions
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

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

    def encode_batch(self, texts: Iterable[str], **policy) -> list[list[int]]:
        """:meth:`encode` each text (one cache is shared, so repeated words cost nothing)."""
        return [self.encode(text, **policy) for text in texts]

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

    def decode_bytes(self, ids: Iterable) -> bytes:
        """The bytes that ``ids`` (ints, or a 1-D integer tensor) stand for, joined."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        self._check_ids(ids)
        vocab = self._vocab
        return b"".join([vocab[i] for i in ids])

    def decode(self, ids: Iterable) -> str:
        """The text of ``ids``. Bytes that are not valid UTF-8 (ids that end in the middle
        of a character) become the replacement character U+FFFD, as in GPT-2."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- files -------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "byte_order": list(self.byte_order),
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": self.special_tokens,
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON, atomically (a reader never sees half a file)."""
        return write_json_atomically(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`; :class:`TokenizerFileError` if it is bad."""
        fields = read_tokenizer_fields(Path(path))
        try:
            return cls(**fields)
        except (TypeError, ValueError, regex.error) as err:
            raise TokenizerFileError(f"{path} is corrupt: {err}") from None

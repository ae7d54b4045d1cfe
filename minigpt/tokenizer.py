"""Byte-level BPE tokenizers: the class, its files, and the tokenizers the book uses.

* :class:`BPETokenizer` holds the merges (pair of ids -> new id, in the order learned),
  the byte each of the first 256 ids stands for, the pre-tokenization regex and the
  special tokens, which always come after the learned tokens. It trains, encodes,
  decodes, and saves itself to (and loads itself from) one JSON file. The algorithm
  itself (pair counts, merges, training over word counts) is in :mod:`minigpt.bpe`.
* :func:`gpt2_tokenizer` loads GPT-2's 50,000 merges from OpenAI's verified tables; its
  ids equal tiktoken's and Hugging Face's.
* :func:`shakespeare_tokenizer` is trained on Shakespeare's complete works once, saved
  in the cache folder, and loaded from there by the training and sampling chapters.
* :func:`show_tokens` draws text as coloured token spans in a notebook.
"""

from __future__ import annotations

import functools
import html
import json
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import no_type_check

import regex

from minigpt.assets import cache_dir, read_gpt2_bpe
from minigpt.bpe import GPT2_PATTERN, Pair, bpe_word, bytes_to_unicode, train_merges, word_counts_of
from minigpt.corpus import load_corpus
from minigpt.files import atomic_write_text, check_format

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
FILE_VERSION = 1


class TokenizerFileError(ValueError):
    """A saved tokenizer file is missing, corrupt or not a minigpt tokenizer."""


def _is_int_list(value: object, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _read_tokenizer_fields(path: Path) -> dict:
    """The keyword arguments of ``BPETokenizer(...)`` stored in ``path``, with their types checked.

    Raises :class:`TokenizerFileError` naming the file and what is wrong with it. (Whether the
    values fit together, e.g. merges that only use earlier ids, is checked by the class.)
    """
    if not path.is_file():
        raise TokenizerFileError(f"tokenizer file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerFileError(f"tokenizer file {path} is not valid JSON: {err}") from None
    check_format(
        data,
        path,
        kind="minigpt tokenizer",
        format=FILE_FORMAT,
        version=FILE_VERSION,
        error=TokenizerFileError,
    )
    missing = {"merges", "byte_order", "special_tokens", "pattern"} - set(data)
    if missing:
        raise TokenizerFileError(f"{path} lacks the fields {sorted(missing)}")
    merges, order, specials = data["merges"], data["byte_order"], data["special_tokens"]
    metadata = data.get("metadata") or {}
    checks = {
        "merges (a list of [id, id] pairs)": isinstance(merges, list)
        and all(_is_int_list(pair, 2) for pair in merges),
        "byte_order (a list of 256 ints)": _is_int_list(order, 256),
        "special_tokens (a {text: id} object)": isinstance(specials, dict)
        and all(_is_int_list([i], 1) for i in specials.values()),
        "pattern (a string or null)": data["pattern"] is None or isinstance(data["pattern"], str),
        "metadata (an object)": isinstance(metadata, dict),
    }
    bad = [field for field, ok in checks.items() if not ok]
    if bad:
        raise TokenizerFileError(f"{path} is corrupt: bad {', '.join(bad)}")
    return {
        "merges": [tuple(pair) for pair in merges],
        "byte_order": order,
        "special_tokens": specials,
        "pattern": data["pattern"],
        "name": str(data.get("name", path.stem)),
        "metadata": metadata,
    }


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
        return atomic_write_text(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`; :class:`TokenizerFileError` if it is bad."""
        fields = _read_tokenizer_fields(Path(path))
        try:
            return cls(**fields)
        except (TypeError, ValueError, regex.error) as err:
            raise TokenizerFileError(f"{path} is corrupt: {err}") from None


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

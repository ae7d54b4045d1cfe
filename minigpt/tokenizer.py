"""Byte-level BPE tokenizers: the class, its file, and the tokenizers the book uses.

* :class:`BPETokenizer` holds the merges (pair of ids -> new id, in the order learned),
  the byte each of the first 256 ids stands for, the pre-tokenization regex and the
  special tokens, which come after the learned tokens. It trains, encodes (all at once,
  or lazily from a stream with :meth:`~BPETokenizer.encode_iterable`), decodes, and saves
  itself to (and loads itself from) one JSON file. The algorithm is in :mod:`minigpt.bpe`.
* :func:`gpt2_tokenizer` (GPT-2's, from OpenAI's verified tables), :func:`shakespeare_tokenizer`
  (trained once and cached) and :func:`show_tokens` (text as coloured tokens).

Other tools' files live in :mod:`minigpt.formats`, never imported here; one numbered in
another order gives ``formats.renumbered.RenumberedTokenizer``, which renumbers at three
hooks (``_by_id``, ``_special_ids``, :meth:`_encode_chunk`). This class has one id space.
"""

from __future__ import annotations

import functools
import html
import json
import os
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import no_type_check

import regex

from minigpt.assets import cache_dir, read_gpt2_bpe
from minigpt.bpe import (
    GPT2_PATTERN,
    Pair,
    bpe_word,
    bytes_to_unicode,
    cut_stream,
    special_splitter,
    split_on,
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


class TokenizerFileError(ValueError):
    """A tokenizer file is missing, corrupt, a folder, or not of the kind expected."""


def is_int(value: object) -> bool:
    """Whether ``value`` is an int (``True`` and ``False`` are not ids)."""
    return isinstance(value, int) and not isinstance(value, bool)


def read_text_file(path: Path, kind: str) -> str:
    """The UTF-8 text of ``path``; :class:`TokenizerFileError` naming it if it is missing, a
    folder, or not UTF-8 (``kind`` says what it should be: "tiktoken", "vocab.json")."""
    if path.is_dir():
        raise TokenizerFileError(f"{kind} file {path} is a folder; give the path of the file in it")
    if not path.is_file():
        raise TokenizerFileError(f"{kind} file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TokenizerFileError(f"{kind} file {path} is not UTF-8 text: {err}") from None


def read_json_file(path: Path, kind: str) -> object:
    """:func:`read_text_file`, parsed as JSON (:class:`TokenizerFileError` if it is not)."""
    try:
        return json.loads(read_text_file(path, kind))
    except json.JSONDecodeError as err:
        raise TokenizerFileError(f"{kind} file {path} is not valid JSON: {err}") from None


def _is_int_list(value: object, length: int) -> bool:
    return isinstance(value, list) and len(value) == length and all(map(is_int, value))


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

    The layout (bytes, then merges in order, then special tokens) is what BPE needs: a
    merge's rank *is* the id it makes, which is how :func:`bpe_word` picks the next merge.
    """

    FILE_VERSION = FILE_VERSION  # what :meth:`save` writes and :meth:`load` reads

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
        self._cache: dict[str, list[int]] = {}  # chunk -> its ids
        # What encode returns and decode reads: here the layout's own ids (a subclass that
        # renumbers the ids sets its own).
        self._by_id: list = vocab  # id -> bytes
        self._special_ids = dict(self.special_tokens)  # text -> the id encode returns

    def __getstate__(self) -> dict:  # for worker processes: the encode cache stays behind
        return {**self.__dict__, "_cache": {}}

    # -- sizes and lookups -------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens (the embedding's row count)."""
        return len(self._by_id)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def eot_id(self) -> int | None:
        """The id of ``<|endoftext|>``, or ``None`` if this tokenizer has no such token."""
        return self._special_ids.get(EOT)

    @property
    def special_token_ids(self) -> dict[str, int]:
        """``{text: id}`` of the special tokens, in the ids :meth:`encode` returns."""
        return dict(self._special_ids)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for (a special token: its text in UTF-8)."""
        self._check_ids([token_id])
        return self._by_id[token_id]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, "
            f"merges={len(self.merges)}, special_tokens={self.special_token_ids!r})"
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
        parts = split_on(text, special_tokens)
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
        ``<|pad|>`` id 50257, so a model using it needs a 50,258-row embedding.
        """
        clash = [t for t in tokens if t in self.special_tokens]
        if clash or len(set(tokens)) != len(tokens) or not all(tokens):
            raise ValueError(f"tokens={list(tokens)!r}: each must be new, non-empty and unique")
        specials = dict(self.special_tokens)
        specials.update({t: len(self._vocab) + i for i, t in enumerate(tokens)})
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
                raise self._disallowed_error(token)
        return self._encode_allowed(text, allowed)

    def _disallowed_error(self, token: str) -> ValueError:
        return ValueError(
            f"text contains the special token {token!r}. Pass "
            f"allowed_special={{{token!r}}} to encode it as id {self._special_ids[token]}, "
            "or disallowed_special=() to encode it as ordinary text"
        )

    def _encode_allowed(self, text: str, allowed: set[str]) -> list[int]:
        """``text`` encoded with the special tokens in ``allowed`` as their ids."""
        if not allowed or not any(token in text for token in allowed):
            return self.encode_ordinary(text)
        out: list[int] = []
        for i, part in enumerate(special_splitter(allowed).split(text)):
            if i % 2:  # the separators land at the odd positions
                out.append(self._special_ids[part])
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

    # -- streaming ---------------------------------------------------------------------

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
        the stream reaches it. Each part of :meth:`stream_parts` is encoded as it comes.
        """
        return self._encode_parts(self._parts(texts, allowed_special, disallowed_special))

    def _encode_parts(self, parts: Iterator[str | int]) -> Iterator[int]:
        for part in parts:
            yield from self.encode_ordinary(part) if isinstance(part, str) else (part,)

    def stream_parts(
        self,
        texts: Iterable[str],
        *,
        allowed_special: str | Collection[str] = (),
        disallowed_special: str | Collection[str] = "all",
    ) -> Iterator[str | int]:
        """``"".join(texts)`` cut, lazily, where a cut cannot change the ids: each ``str``
        part's :meth:`encode_ordinary` is exactly its share of ``encode("".join(texts))``,
        and each ``int`` is an allowed special token's id. The one streaming encoder:
        :meth:`encode_iterable` encodes the parts in turn, and
        :func:`minigpt.data.tokenize_corpus` hands them to worker processes. Memory is
        bounded by the piece size plus the longest pre-token (with ``pattern=None`` the
        whole text is one); how the cuts are found: :func:`minigpt.bpe.cut_stream`.
        """
        return self._parts(texts, allowed_special, disallowed_special)

    def _parts(self, texts, allowed_special, disallowed_special) -> Iterator[str | int]:
        if isinstance(texts, str):
            raise TypeError(
                "encode_iterable expects an iterable of str pieces; use encode for a str"
            )
        allowed = self._policy_set(allowed_special, "allowed_special", set())
        disallowed = self._policy_set(disallowed_special, "disallowed_special", allowed)
        parts = cut_stream(iter(texts), self._regex, allowed, disallowed, self._disallowed_error)
        return (self._special_ids[text] if special else text for text, special in parts)

    # -- decoding ----------------------------------------------------------------------

    def _check_ids(self, ids: list) -> None:
        for position, token_id in enumerate(ids):
            if not is_int(token_id):
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
        vocab = self._by_id
        return b"".join([vocab[i] for i in ids])

    def decode(self, ids: Iterable) -> str:
        """The text of ``ids``. Bytes that are not valid UTF-8 (ids that end in the middle
        of a character) become the replacement character U+FFFD, as in GPT-2."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- its own file ------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FILE_FORMAT,
            "version": self.FILE_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "byte_order": list(self.byte_order),
            "merges": [list(pair) for pair in self.merges],
            "special_tokens": self.special_tokens,
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON with a checksum of its content, atomically (a reader
        never sees half a file, and :meth:`load` refuses a changed one)."""
        data = self.to_dict()
        data["sha256"] = digest(data)
        return atomic_write_text(path, json.dumps(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`; :class:`TokenizerFileError` if it is bad.

        The types of the fields are checked first, then whether they fit together (merges
        that only use earlier ids, ...), and the checksum last, so that a damaged field is
        named."""
        data = read_json_file(Path(path), "tokenizer")
        if cls.FILE_VERSION == FILE_VERSION and isinstance(data, dict) and data.get("version") == 3:
            raise TokenizerFileError(  # written by the formats room's RenumberedTokenizer
                f"{path} is a renumbered tokenizer (version 3, with an id map); read it with "
                "minigpt.formats.renumbered.RenumberedTokenizer.load"
            )
        check_format(
            data, Path(path), kind="minigpt tokenizer", format=FILE_FORMAT,
            version=cls.FILE_VERSION, error=TokenizerFileError,
        )  # fmt: skip
        intact = data.get("sha256") == digest({k: v for k, v in data.items() if k != "sha256"})
        try:
            tok = cls(**cls._fields_of(data, Path(path)))
        except (TypeError, ValueError, regex.error) as err:
            if isinstance(err, TokenizerFileError):
                raise
            raise TokenizerFileError(f"{path} is corrupt: {err}") from None
        if not intact:
            raise TokenizerFileError(
                f"tokenizer file {path} is corrupt: its content does not match the checksum "
                "stored in it (a changed byte or an edit). Nothing was loaded; delete it, or "
                "replace it with a good copy."
            )
        return tok

    @classmethod
    def _fields_of(cls, data: dict, path: Path) -> dict:
        """The keyword arguments of ``cls(...)`` stored in ``data``, with their types checked
        (:class:`TokenizerFileError` naming the file and the bad fields)."""
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
            and all(map(is_int, specials.values())),
            "pattern (a string or null)": data["pattern"] is None
            or isinstance(data["pattern"], str),
            "metadata (an object)": isinstance(metadata, dict),
        }
        bad = [field for field, ok in checks.items() if not ok]
        if bad:
            raise TokenizerFileError(f"{path} is corrupt: bad {', '.join(bad)}")
        name = str(data.get("name", path.stem))
        return dict(merges=[tuple(p) for p in merges], byte_order=order, special_tokens=specials,
                    pattern=data["pattern"], name=name, metadata=metadata)  # fmt: skip


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
        self.ids = ids  # a token that ends mid-character shows its stray bytes as \\xNN
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

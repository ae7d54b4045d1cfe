"""GPT-2's ``vocab.json`` + ``merges.txt``: one reader, one writer.

``vocab.json`` maps each token, written in GPT-2's printable byte stand-ins
(:func:`minigpt.bpe.bytes_to_unicode`), to its id; ``merges.txt`` has an optional
``#version`` first line, then one merge ``a b`` per line in rank order. The ids may follow
any layout: the reader then gives a :class:`~minigpt.formats.renumbered.RenumberedTokenizer`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path

from minigpt.bpe import GPT2_PATTERN
from minigpt.files import atomic_write_text
from minigpt.formats.renumbered import (
    layout_from_strings,
    named_specials,
    string_tables,
    tokenizer_from_layout,
)
from minigpt.tokenizer import (
    EOT,
    BPETokenizer,
    TokenizerFileError,
    is_int,
    read_json_file,
    read_text_file,
)

__all__ = ["read_vocab_merges", "write_vocab_merges"]


def _read_merges(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """The merges of a ``merges.txt`` as pairs of token strings, and where each is written."""
    pairs, places = [], []
    for number, line in enumerate(read_text_file(path, "merges.txt").split("\n"), 1):
        line = line.rstrip("\r")
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFileError(
                f"{path} line {number} is {line[:80]!r}, not two tokens separated by one space"
            )
        pairs.append((parts[0], parts[1]))
        places.append(f"{path} line {number}")
    return pairs, places


def read_vocab_merges(
    vocab_json_path: str | os.PathLike,
    merges_txt_path: str | os.PathLike,
    special_tokens: Collection[str] | Mapping[str, int] | None = None,
    *,
    pattern: str | None = GPT2_PATTERN,
    name: str | None = None,
) -> BPETokenizer:
    """The tokenizer of a GPT-2-style ``vocab.json`` (token string -> id) and ``merges.txt``.

    ``special_tokens``: the vocab entries that are special tokens, by text (default:
    ``<|endoftext|>`` if the vocab has it), or ``{text: id}`` to add ones it lacks. Every
    other entry must be a byte or be made by a merge, and every merge must make an entry
    of the vocab: :class:`~minigpt.tokenizer.TokenizerFileError` names the file and the
    token. The pattern is not part of the format: pass it.
    """
    vocab_path, merges_path = Path(vocab_json_path), Path(merges_txt_path)
    vocab = read_json_file(vocab_path, "vocab.json")
    if not isinstance(vocab, dict) or not all(map(is_int, vocab.values())):
        raise TokenizerFileError(
            f"{vocab_path} is not a vocab.json: it must be one JSON object of "
            "token string -> integer id"
        )
    pairs, places = _read_merges(merges_path)
    if special_tokens is None:
        special_tokens = [EOT] if EOT in vocab else []
    specials = named_specials(special_tokens, vocab, str(vocab_path))
    layout = layout_from_strings(vocab, pairs, places, specials, str(vocab_path))
    return tokenizer_from_layout(
        layout,
        str(vocab_path),
        pattern=pattern,
        name=name or vocab_path.parent.name or vocab_path.stem,
        metadata={"read_from": "vocab.json+merges.txt"},
    )


def write_vocab_merges(tok: BPETokenizer, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``folder/vocab.json`` and ``folder/merges.txt`` in GPT-2's format and ``tok``'s
    ids (special tokens go into ``vocab.json`` by text, as GPT-2's ``<|endoftext|>``; the
    pattern is not part of the format). Returns both paths."""
    vocab, merges = string_tables(tok, "vocab.json")
    folder = Path(folder)
    lines = "".join(f"{a} {b}\n" for a, b in merges)
    return (
        atomic_write_text(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False)),
        atomic_write_text(folder / "merges.txt", "#version: 0.2\n" + lines),
    )

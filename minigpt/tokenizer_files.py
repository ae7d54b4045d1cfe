"""Saved tokenizers: one JSON file each, written atomically and checked field by field on load.

The file holds everything that decides a tokenizer's output::

    {"format": "minigpt-bpe", "version": 1, "name": "shakespeare-4096",
     "pattern": "<GPT-2's regex>", "byte_order": [0, 1, ..., 255],
     "merges": [[116, 104], [32, 116], ...], "special_tokens": {"<|endoftext|>": 4095},
     "metadata": {"trained_on_chars": 5057279}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_FORMAT = "minigpt-bpe"
FILE_VERSION = 1


class TokenizerFileError(ValueError):
    """A saved tokenizer file is missing, corrupt or not a minigpt tokenizer."""


def write_json_atomically(path: Path, data: dict) -> Path:
    """Write ``data`` as JSON to ``path`` through a temporary file, so no reader sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _is_int_list(value: object, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def read_tokenizer_fields(path: Path) -> dict:
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
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        raise TokenizerFileError(f"{path} is not a minigpt tokenizer (no format={FILE_FORMAT!r})")
    if data.get("version") != FILE_VERSION:
        raise TokenizerFileError(
            f"{path} has version {data.get('version')!r}; this minigpt reads {FILE_VERSION}"
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

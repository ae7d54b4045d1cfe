"""Hugging Face's tokenizer files: ``tokenizer.json`` (and ``tokenizer_config.json``).

* :func:`read_tokenizer_json` reads the ``tokenizer.json`` of a byte-level BPE model
  (GPT-2's kind), checking the type of every field it reads.
* :func:`save_hf_tokenizer` writes both files through the ``tokenizers`` library, so that
  what transformers reads back is what that library itself would write; every written
  tokenizer is read back and checked on :data:`PROBE_TEXTS`.

One pattern rule both ways: GPT-2's pattern (:data:`minigpt.bpe.GPT2_PATTERN`) is the
``ByteLevel`` pre-tokenizer's own regex; any other is an isolating ``Split`` before a
``ByteLevel`` without one; no pattern is a ``ByteLevel`` with ``use_regex=false``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from minigpt.bpe import GPT2_PATTERN
from minigpt.formats.renumbered import layout_from_strings, string_tables, tokenizer_from_layout
from minigpt.tokenizer import BPETokenizer, TokenizerFileError, is_int, read_json_file

__all__ = [
    "PROBE_TEXTS",
    "TokenizerJsonError",
    "hf_tokenizer",
    "read_tokenizer_json",
    "save_hf_tokenizer",
]

# Texts every written tokenizer is checked on, read back by transformers (with each special
# token added): spaces, newlines, contractions, digits, accents, CJK, emoji.
PROBE_TEXTS = (
    "Hello world! I'm sure they'll say it's what we'd've done.",
    "   leading and trailing   \n\n\nnew\r\nlines\t\ttabs",
    "12345 67.89 1,000,000; CamelCase and ALLCAPS",
    "combining marks: e\u0301 n\u0303 a\u0308, caf\u00e9",
    "中文字符 and 日本語のテキスト, emoji 🤖🎉 and flags 🇬🇧",
)


def hf_tokenizer(tokenizer, model_max_length: int | None = None):
    """A ``transformers`` fast tokenizer that gives exactly the ids of ``tokenizer`` (a
    :class:`~minigpt.tokenizer.BPETokenizer`), special tokens included.

    Its vocabulary writes each token's bytes in GPT-2's printable stand-ins
    (:func:`minigpt.bpe.bytes_to_unicode`), whatever the tokenizer's byte order, with the
    tokenizer's ids (a renumbered one's too); merge ``i`` keeps rank ``i``; special tokens
    are in the vocabulary by text, as GPT-2's, so they keep their ids. Raises ValueError
    where a special token is spelt like a learned token (the vocabulary cannot hold both).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    from minigpt.tokenizer import EOT

    vocab, merges = string_tables(tokenizer, "a tokenizer.json")
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=tokenizer.pattern == GPT2_PATTERN
    )
    if tokenizer.pattern in (None, GPT2_PATTERN):
        backend.pre_tokenizer = byte_level
    else:
        split = pre_tokenizers.Split(Regex(tokenizer.pattern), behavior="isolated")
        backend.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = sorted(tokenizer.special_token_ids.items(), key=lambda kv: kv[1])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in specials])
    for text, token_id in specials:
        if backend.token_to_id(text) != token_id:
            raise ValueError(
                f"special token {text!r} got id {backend.token_to_id(text)}, not {token_id}"
            )
    eot = EOT if EOT in tokenizer.special_token_ids else None
    kwargs = {"model_max_length": model_max_length} if model_max_length else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=eot,
        eos_token=eot,
        add_prefix_space=False,
        **kwargs,
    )


def save_hf_tokenizer(tokenizer, folder: str | os.PathLike, model_max_length: int | None = None):
    """Write ``tokenizer`` (a :class:`~minigpt.tokenizer.BPETokenizer`) into ``folder`` as
    ``tokenizer.json`` and ``tokenizer_config.json``, read it back with
    ``transformers.AutoTokenizer`` and check that it gives our ids on :data:`PROBE_TEXTS`
    (ValueError naming the first text that differs). Returns the tokenizer read back.

    With GPT-2's pattern it is a ``GPT2Tokenizer``; with any other, transformers' plain
    tokenizers-backed class, which keeps the ``Split`` (``GPT2Tokenizer`` would replace it).
    """
    from transformers import AutoTokenizer

    folder = Path(folder)
    hf_tokenizer(tokenizer, model_max_length).save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = (
        "GPT2Tokenizer" if tokenizer.pattern == GPT2_PATTERN else "PreTrainedTokenizerFast"
    )
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    back = AutoTokenizer.from_pretrained(str(folder))
    texts = list(PROBE_TEXTS) + [f"a{t} b {t}{t}c" for t in tokenizer.special_tokens]
    for text in texts:
        ours = tokenizer.encode(text, allowed_special="all")
        theirs = back.encode(text, add_special_tokens=False, verbose=False)
        if ours != theirs:
            raise ValueError(
                f"the tokenizer written for transformers tokenizes {text!r} differently "
                f"(ours {ours[:8]}..., theirs {theirs[:8]}...); its pattern "
                f"{tokenizer.pattern!r} may read differently in the tokenizers library"
            )
    return back


# -- reading ===============================================================================


class TokenizerJsonError(TokenizerFileError):
    """A ``tokenizer.json`` field is missing or of the wrong JSON type (or a kind of
    tokenizer minigpt cannot reproduce); the message names the file and the field."""


def _field(obj: dict, key: str, types: tuple, path: Path, where: str, what: str):
    """``obj[key]`` (``None`` if absent), checked to be one of ``types``."""
    value = obj.get(key)
    if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
        shown = repr(value)[:60]
        raise TokenizerJsonError(
            f"{path}: {where}{key} is {shown} ({type(value).__name__}), not {what}"
        )
    return value


NULL = type(None)
OBJECT_OR_NULL = (dict, NULL)


def _hf_merges(model: dict, path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``model.merges`` (``"a b"`` strings or ``[a, b]`` lists) as pairs, and where each is."""
    merges = _field(model, "merges", (list,), path, "model.", "a list of merges")
    pairs, places = [], []
    for k, entry in enumerate(merges):
        if isinstance(entry, str):
            entry = entry.split(" ")
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and all(isinstance(p, str) and p for p in entry)
        ):
            raise TokenizerJsonError(
                f"{path}: model.merges[{k}]={merges[k]!r} is not a pair of tokens "
                '(a string "a b" or a list ["a", "b"])'
            )
        pairs.append((entry[0], entry[1]))
        places.append(f"{path} model.merges[{k}]")
    return pairs, places


def _hf_model(data: dict, path: Path, problems: list[str]) -> tuple[dict, list, list]:
    """``model.vocab`` and the merges, checked; ``problems`` gets what would change the ids."""
    model = _field(data, "model", (dict,), path, "", "an object")
    kind = model.get("type")
    if kind != "BPE":
        raise TokenizerJsonError(
            f"{path} is not a BPE tokenizer.json (its model.type is {kind!r}, not 'BPE')"
        )
    vocab = _field(model, "vocab", (dict,), path, "model.", "an object of token -> id")
    bad = next((t for t, i in vocab.items() if not is_int(i)), None)
    if bad is not None:
        raise TokenizerJsonError(f"{path}: model.vocab[{bad!r}] is {vocab[bad]!r}, not an int id")
    pairs, places = _hf_merges(model, path)
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if _field(model, key, (str, NULL), path, "model.", "a string or null"):
            problems.append(f"model.{key}={model[key]!r}")
    if _field(model, "dropout", (int, float, NULL), path, "model.", "a number or null"):
        problems.append(f"BPE dropout ({model['dropout']})")
    for key in ("byte_fallback", "ignore_merges"):
        if _field(model, key, (bool, NULL), path, "model.", "true, false or null"):
            problems.append(f"model.{key}=true")
    return vocab, pairs, places


def _hf_pattern(data: dict, path: Path, problems: list[str]) -> str | None:
    """The pre-tokenization regex of the ``pre_tokenizer`` (``problems`` gets what is not a
    byte-level BPE's)."""
    pre = _field(data, "pre_tokenizer", OBJECT_OR_NULL, path, "", "an object")
    if pre is None:
        problems.append("no pre_tokenizer")
        return None
    steps = [pre]
    if pre.get("type") == "Sequence":
        steps = _field(pre, "pretokenizers", (list,), path, "pre_tokenizer.", "a list")
    for k, step in enumerate(steps):
        if not isinstance(step, dict):
            raise TokenizerJsonError(f"{path}: pre_tokenizer step {k} is {step!r}, not an object")
    types = [step.get("type") for step in steps]

    def byte_level(step: dict) -> bool:  # whether it splits with GPT-2's regex
        if _field(step, "add_prefix_space", (bool, NULL), path, "ByteLevel.", "true or false"):
            problems.append("ByteLevel add_prefix_space=true")
        return _field(step, "use_regex", (bool, NULL), path, "ByteLevel.", "true or false") in (
            True,
            None,
        )

    if types == ["ByteLevel"]:
        return GPT2_PATTERN if byte_level(steps[0]) else None
    if types == ["Split", "ByteLevel"]:
        split = steps[0]
        found = _field(split, "pattern", OBJECT_OR_NULL, path, "Split.", "an object")
        found = (found or {}).get("Regex")
        if not isinstance(found, str) or split.get("behavior") != "Isolated" or split.get("invert"):
            problems.append(f"a Split pre-tokenizer other than an isolating regex ({split!r})")
            found = None
        if byte_level(steps[1]):
            problems.append("a Split and a ByteLevel regex both")
        return found
    problems.append(f"a {' + '.join(map(str, types))} pre-tokenizer")
    return None


def _hf_check_post_processor(step: object, path: Path, problems: list[str]) -> None:
    """Note in ``problems`` a post-processor that adds tokens to an encoded text (a
    ``TemplateProcessing`` with a BOS, say): ``BPETokenizer.encode`` adds none."""
    if step is None:
        return
    if not isinstance(step, dict):
        raise TokenizerJsonError(f"{path}: post_processor is {step!r}, not an object or null")
    kind = step.get("type")
    if kind == "Sequence":
        for inner in (
            _field(step, "processors", (list, NULL), path, "post_processor.", "a list") or []
        ):
            _hf_check_post_processor(inner, path, problems)
    elif kind == "TemplateProcessing":
        single = _field(step, "single", (list, NULL), path, "TemplateProcessing.", "a list") or []
        if any(not (isinstance(item, dict) and set(item) == {"Sequence"}) for item in single):
            problems.append(f"a TemplateProcessing post-processor that adds tokens ({single!r})")
    elif kind != "ByteLevel":
        problems.append(f"a {kind} post-processor")


def _hf_added_tokens(data: dict, vocab: dict, path: Path, problems: list[str]) -> dict[str, int]:
    """``{content: id}`` of ``added_tokens``, the special tokens (Hugging Face always splits
    them out of text)."""
    added = _field(data, "added_tokens", (list, NULL), path, "", "a list of objects") or []
    specials: dict[str, int] = {}
    for k, entry in enumerate(added):
        if not isinstance(entry, dict):
            raise TokenizerJsonError(f"{path}: added_tokens[{k}] is {entry!r}, not an object")
        content, token_id = entry.get("content"), entry.get("id")
        if not isinstance(content, str) or not is_int(token_id):
            raise TokenizerJsonError(
                f"{path}: added_tokens[{k}] lacks a content (a string) or an id (an int)"
            )
        for key in ("single_word", "lstrip", "rstrip"):
            if entry.get(key):
                problems.append(f"{key}=true on added token {content!r}")
        if content in vocab and vocab[content] != token_id:
            raise TokenizerJsonError(
                f"{path}: added token {content!r} has id {token_id}, but model.vocab "
                f"gives it id {vocab[content]}"
            )
        specials[content] = token_id
    return specials


def read_tokenizer_json(path: str | os.PathLike, *, name: str | None = None) -> BPETokenizer:
    """The tokenizer of a Hugging Face ``tokenizer.json`` of a byte-level BPE model.

    Reads ``model.vocab``, ``model.merges`` and ``added_tokens``, which become special
    tokens with their ids (encode with ``allowed_special="all"`` to match Hugging Face).
    The pre-tokenizer must be as the module says; a normalizer, BPE dropout, subword
    prefixes, byte fallback or ``ignore_merges`` are refused, since they would change the
    ids. A field of the wrong JSON type is a :class:`TokenizerJsonError` naming it.
    """
    path = Path(path)
    data = read_json_file(path, "tokenizer.json")
    if not isinstance(data, dict):
        raise TokenizerJsonError(f"{path}: the file is {type(data).__name__}, not an object")
    problems: list[str] = []
    vocab, pairs, places = _hf_model(data, path, problems)
    normalizer = _field(data, "normalizer", OBJECT_OR_NULL, path, "", "an object or null")
    if normalizer is not None:
        problems.append(f"a {normalizer.get('type')} normalizer")
    pattern = _hf_pattern(data, path, problems)
    decoder = _field(data, "decoder", OBJECT_OR_NULL, path, "", "an object or null")
    if decoder is not None and decoder.get("type") != "ByteLevel":
        problems.append(f"a {decoder.get('type')} decoder")
    _hf_check_post_processor(data.get("post_processor"), path, problems)
    specials = _hf_added_tokens(data, vocab, path, problems)
    if problems:
        raise TokenizerJsonError(
            f"{path} uses {', '.join(problems)}, which would change the ids; minigpt reads "
            "byte-level BPE files (ByteLevel pre-tokenizer and decoder, no normalizer)"
        )
    layout = layout_from_strings(vocab, pairs, places, specials, f"{path} (model.vocab)")
    return tokenizer_from_layout(
        layout,
        str(path),
        pattern=pattern,
        name=name or path.stem,
        metadata={"read_from": "tokenizer.json"},
    )

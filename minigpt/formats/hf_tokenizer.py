"""Hugging Face's tokenizer files: ``tokenizer.json`` and ``tokenizer_config.json``.

Written through the ``tokenizers`` library, so that what transformers reads back is what
that library itself would write; every written tokenizer is read back and checked on
:data:`PROBE_TEXTS`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    (:func:`minigpt.bpe.bytes_to_unicode`), whatever the tokenizer's byte order; merge
    ``i`` keeps rank ``i``. GPT-2's pattern is the ``ByteLevel`` pre-tokenizer's own; any
    other is a ``Split`` on it first. Raises ValueError where two ids have the same bytes
    (a vocabulary ``{text: id}`` cannot hold both).
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

    from minigpt.bpe import GPT2_PATTERN, bytes_to_unicode
    from minigpt.tokenizer import EOT

    stand_in = bytes_to_unicode()
    n_learned = tokenizer.vocab_size - len(tokenizer.special_tokens)
    strings = ["".join(stand_in[b] for b in tokenizer.token_bytes(i)) for i in range(n_learned)]
    vocab: dict[str, int] = {}
    for i, s in enumerate(strings):
        if s in vocab:
            raise ValueError(
                f"token ids {vocab[s]} and {i} of the tokenizer stand for the same bytes "
                f"{tokenizer.token_bytes(i)!r}; a Hugging Face vocabulary cannot hold both"
            )
        vocab[s] = i
    merges = [(strings[a], strings[b]) for a, b in tokenizer.merges]
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
    specials = sorted(tokenizer.special_tokens.items(), key=lambda kv: kv[1])
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in specials])
    for text, token_id in specials:
        if backend.token_to_id(text) != token_id:
            raise ValueError(
                f"special token {text!r} got id {backend.token_to_id(text)}, not {token_id}"
            )
    eot = EOT if EOT in tokenizer.special_tokens else None
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

    from minigpt.bpe import GPT2_PATTERN

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

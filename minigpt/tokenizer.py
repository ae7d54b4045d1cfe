"""The tokenizers the book uses, all of them :class:`~minigpt.bpe_tokenizer.BPETokenizer`.

* :func:`gpt2_tokenizer` loads GPT-2's 50,000 merges from OpenAI's verified tables; its
  ids equal tiktoken's and Hugging Face's.
* :func:`shakespeare_tokenizer` is trained on Shakespeare's complete works once, saved
  in the cache folder, and loaded from there by the training and sampling chapters.
* :func:`show_tokens` draws text as coloured token spans in a notebook.
"""

from __future__ import annotations

import functools
import html
import warnings
from pathlib import Path

from minigpt.assets import cache_dir, read_gpt2_bpe
from minigpt.bpe import bytes_to_unicode
from minigpt.bpe_tokenizer import EOT, BPETokenizer, TokenizerFileError

__all__ = [
    "EOT",
    "BPETokenizer",
    "TokenizerFileError",
    "gpt2_tokenizer",
    "shakespeare_tokenizer",
    "shakespeare_tokenizer_path",
    "show_tokens",
]


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


def _load_corpus(name: str) -> str:
    from minigpt.data import load_corpus  # imported late: minigpt.data brings in torch

    return load_corpus(name)


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
    tok = BPETokenizer.train(_load_corpus("shakespeare"), vocab_size, name=path.stem)
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

"""Hugging Face's tokenizer files (minigpt.formats.hf_tokenizer): written through the
``tokenizers`` library and read back by transformers with our ids."""

from __future__ import annotations

import pytest

from minigpt.formats.hf_tokenizer import PROBE_TEXTS, save_hf_tokenizer
from minigpt.tokenizer import EOT, BPETokenizer, gpt2_tokenizer


def test_written_gpt2_tokenizer_gives_our_ids(tmp_path):
    tok = gpt2_tokenizer()
    back = save_hf_tokenizer(tok, tmp_path, model_max_length=1024)
    assert (tmp_path / "tokenizer.json").is_file() and len(back) == 50257
    assert back.eos_token == EOT and back.eos_token_id == 50256
    for text in (*PROBE_TEXTS, "a<|endoftext|>b"):
        ids = tok.encode(text, allowed_special="all")
        assert back.encode(text, add_special_tokens=False) == ids, text
        assert back.decode(ids) == tok.decode(ids), text


def test_two_ids_with_the_same_bytes_are_refused(tmp_path):
    # Two merges of the same pair give two ids for b"ab": a {text: id} vocabulary cannot hold both.
    tok = BPETokenizer([(97, 98), (97, 98)], special_tokens={EOT: 258})
    with pytest.raises(ValueError, match="token ids 256 and 257 .* same bytes b'ab'"):
        save_hf_tokenizer(tok, tmp_path)
    assert not (tmp_path / "tokenizer.json").exists()

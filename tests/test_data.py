"""Token ids of a corpus (minigpt.data): the token cache and the training/validation windows."""

import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from small_corpus import TEXT_A, TEXT_B

from minigpt import shards as shards_mod
from minigpt.corpus import CorpusError
from minigpt.data import TokenData, load_tokens, tokenize_corpus
from minigpt.tokenizer import BPETokenizer


def test_tokens_are_the_documents_joined_by_end_of_text(
    minigpt_cache, corpus_dir, corpus_tokenizer
):
    ids = tokenize_corpus(corpus_dir, corpus_tokenizer)
    eot = corpus_tokenizer.eot_id
    expected = corpus_tokenizer.encode(TEXT_A) + [eot] + corpus_tokenizer.encode(TEXT_B)
    assert ids.dtype == np.uint16
    assert ids.tolist() == expected
    assert corpus_tokenizer.decode(ids.tolist()) == TEXT_A + "<|endoftext|>" + TEXT_B


def test_token_cache_is_reused_and_keyed_by_content(
    minigpt_cache, corpus_dir, corpus_tokenizer, monkeypatch
):
    first = tokenize_corpus(corpus_dir, corpus_tokenizer)
    assert len(list((minigpt_cache / "tokens").glob("*.bin"))) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("the cached ids should have been used")

    monkeypatch.setattr(shards_mod, "encode_pieces", no_encoding)
    again = tokenize_corpus(corpus_dir, corpus_tokenizer)
    assert isinstance(again, np.memmap)
    assert np.array_equal(first, again)
    os.utime(corpus_dir / "a.txt", ns=(1, 1))  # another time, the same content: the same cache
    copy = shutil.copytree(corpus_dir, corpus_dir.with_name("copy"))  # and in another place
    assert np.array_equal(tokenize_corpus(copy, corpus_tokenizer), first)
    (corpus_dir / "a.txt").write_text(TEXT_A + "more\n")  # changed corpus: encoded afresh
    with pytest.raises(AssertionError, match="cached ids"):
        tokenize_corpus(corpus_dir, corpus_tokenizer)


def test_parallel_tokenization_gives_the_same_ids(
    minigpt_cache, corpus_dir, corpus_tokenizer, monkeypatch
):
    monkeypatch.setattr(shards_mod, "CHUNK_BYTES", 40)  # cut documents into many pieces
    monkeypatch.setattr(shards_mod, "BATCH_BYTES", 60)  # a few to a worker's task
    monkeypatch.setattr(shards_mod, "PENDING_PER_WORKER", 1)  # and few tasks at a time
    serial = tokenize_corpus(corpus_dir, corpus_tokenizer, workers=1, cache=False)
    parallel = tokenize_corpus(corpus_dir, corpus_tokenizer, workers=2, cache=False)
    assert serial.tolist() == parallel.tolist()
    whole = (
        corpus_tokenizer.encode(TEXT_A)
        + [corpus_tokenizer.eot_id]
        + corpus_tokenizer.encode(TEXT_B)
    )
    assert serial.tolist() == whole  # cuts fall only where they change no id


def test_long_documents_are_cut_by_the_tokenizers_stream(tmp_path, corpus_tokenizer, monkeypatch):
    # Cutting at line breaks would split "x\n  y" into "x\n" + "  y": "\n", " ", " y" in
    # place of the whole's "\n ", " y". The stream's cuts change no id, wherever they fall.
    monkeypatch.setattr(shards_mod, "CHUNK_BYTES", 7)
    text = ("x\n  y  \n\n\tz" + TEXT_A + "wordswithoutspaces" * 3 + "\n   ") * 4
    path = tmp_path / "one.txt"
    path.write_text(text)
    ids = tokenize_corpus(path, corpus_tokenizer, workers=1, cache=False)
    assert ids.tolist() == corpus_tokenizer.encode(text)
    pieces = list(shards_mod.pieces(corpus_tokenizer, [text]))
    assert len(pieces) > 10 and "".join(p for p, _ in pieces) == text
    assert [last for _, last in pieces] == [False] * (len(pieces) - 1) + [True]


def test_empty_corpus_is_an_error_and_leaves_no_cache(minigpt_cache, tmp_path, corpus_tokenizer):
    (tmp_path / "blank.txt").write_text("\n   \n")
    with pytest.raises(CorpusError, match="empty"):
        tokenize_corpus(tmp_path / "blank.txt", corpus_tokenizer)
    assert not list((minigpt_cache / "tokens").glob("*"))


def test_split_windows_and_reproducible_sampling():
    data = TokenData(np.arange(1000, dtype=np.uint16), vocab_size=1000, val_fraction=0.1)
    assert data.train.size == 900 and data.val.size == 100
    a = data.sample(8, 16, torch.Generator().manual_seed(3))
    b = data.sample(8, 16, torch.Generator().manual_seed(3))
    c = data.sample(8, 16, torch.Generator().manual_seed(4))
    assert a.shape == (8, 17) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    # each window is a contiguous run of the training split (ids here equal positions)
    assert torch.equal(a - a[:, :1], torch.arange(17).expand(8, 17))
    assert int(a.max()) < 900
    val = data.fixed_windows(4, 16)
    assert torch.equal(val, data.fixed_windows(4, 16))
    assert int(val.min()) >= 900 and int(val.max()) == 999  # spread to the end of the split


def test_corpus_shorter_than_a_window_is_an_error():
    data = TokenData(np.arange(40, dtype=np.uint16), vocab_size=40, val_fraction=0.5)
    with pytest.raises(CorpusError, match="fewer than one window of n_ctx \\+ 1 = 33"):
        data.sample(1, 32, torch.Generator())
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        TokenData(np.arange(40, dtype=np.uint16), vocab_size=40, val_fraction=1.5)


def test_load_tokens_with_the_shakespeare_tokenizer():
    data = load_tokens("shakespeare")  # tokenizer trained once and cached, ids cached
    assert data.vocab_size == 4096
    assert 1_000_000 < data.tokens.size < 3_000_000
    assert int(data.tokens.max()) < 4096


def _one_cached_corpus(tmp_path, monkeypatch):
    """A small text file tokenized once: ``(its path, the tokenizer, its ids, the cache file)``."""
    from minigpt.data import tokenize_corpus

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "text.txt"
    text.write_text("Once more unto the breach, dear friends, once more;\n" * 40)
    tok = BPETokenizer.train(text.read_text(), 280)
    first = np.array(tokenize_corpus(str(text), tok))
    (cached,) = (tmp_path / "cache" / "tokens").glob("*.bin")
    return text, tok, first, cached


def test_a_zeroed_token_cache_is_never_trained_on(tmp_path, monkeypatch):
    from minigpt.data import tokenize_corpus

    text, tok, first, cached = _one_cached_corpus(tmp_path, monkeypatch)
    cached.write_bytes(bytes(cached.stat().st_size))  # zeroed, same size
    with pytest.warns(RuntimeWarning, match=r"token cache .*\.bin is broken.*checksum"):
        again = np.array(tokenize_corpus(str(text), tok))
    assert np.array_equal(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: read back without a warning
        assert np.array_equal(np.array(tokenize_corpus(str(text), tok)), first)


def test_a_token_cache_with_ids_beyond_the_vocabulary_names_the_file(tmp_path, monkeypatch):
    """Even with a checksum that matches (written by hand, or by a tokenizer with the same
    fingerprint gone wrong), ids the tokenizer does not have are never trained on."""
    import json

    from minigpt.assets import sha256_of
    from minigpt.data import tokenize_corpus

    text, tok, first, cached = _one_cached_corpus(tmp_path, monkeypatch)
    ids = np.fromfile(cached, dtype=np.uint16)
    ids[5] = 60_000  # far beyond the 280 ids
    ids.tofile(cached)
    meta_path = cached.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "sha256": sha256_of(cached)}))
    with pytest.warns(RuntimeWarning, match=rf"token cache {cached} is broken .*id 60000, beyond"):
        again = np.array(tokenize_corpus(str(text), tok))
    assert np.array_equal(first, again)


def test_validation_is_the_last_whole_documents_nearest_the_fraction():
    ids = np.arange(1000, dtype=np.uint16)
    starts = np.array([0, 300, 880, 960], dtype=np.uint64)  # four documents
    data = TokenData(ids, vocab_size=1000, val_fraction=0.1, doc_starts=starts)
    assert data.val.size == 120 and data.train.size == 880  # 880 is nearest to 900
    assert TokenData(ids, 1000, 0.03, starts).val.size == 40  # 960, nearest to 970
    assert TokenData(ids, 1000, 0.9, starts).val.size == 700  # never before the first start
    one = TokenData(ids, 1000, 0.1, np.array([0], dtype=np.uint64))
    assert one.val.size == 100  # a single document: the tail of its ids

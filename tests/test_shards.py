"""Token shards (minigpt.shards): content digests, a tokenization killed part way and resumed
with the same ids, damaged shards written again, the progress bar."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from small_corpus import articles, write_hub_dataset

from minigpt import shards as shards_mod
from minigpt.data import load_tokens, tokenize_documents
from minigpt.shards import source_digest, write_shards
from minigpt.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train("".join(articles(40) + articles(40, "en")), 320)


def test_source_digest_is_the_content_file_by_file(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("one\n")
    (folder / "sub" / "b.md").write_text("two\n")
    digest, files = source_digest(str(folder))
    assert sorted(files) == ["a.txt", "sub/b.md"]
    os.utime(folder / "a.txt", ns=(5, 5))
    assert source_digest(str(folder)) == (digest, files)  # times do not count
    (folder / "a.txt").write_text("one!\n")
    changed, changed_files = source_digest(str(folder))
    assert changed != digest and changed_files["sub/b.md"] == files["sub/b.md"]
    assert changed_files["a.txt"] != files["a.txt"]
    named, none = source_digest("someone/dataset", config="de")
    assert none == {} and named != source_digest("someone/dataset", config="en")[0]


def _write(folder, tok, docs, workers=1):
    return write_shards(folder, tok, iter(docs), dtype=np.uint16, workers=workers, progress=False)


def _joined(folder, done):
    return np.concatenate([np.fromfile(folder / f"{i:05d}.bin", np.uint16)
                           for i in range(done.n_shards)])  # fmt: skip


def test_shards_end_at_documents_and_join_to_the_whole(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(shards_mod, "SHARD_TOKENS", 300)
    docs = articles(30)
    done = _write(tmp_path / "parts", tok, docs, workers=2)
    whole = tok.encode(docs[0])
    for doc in docs[1:]:
        whole += [tok.eot_id] + tok.encode(doc)
    assert done.n_shards > 5 and done.n_documents == 30 and done.n_tokens == len(whole)
    assert _joined(tmp_path / "parts", done).tolist() == whole
    starts = np.concatenate([np.fromfile(tmp_path / "parts" / f"{i:05d}.docs", np.uint64)
                             for i in range(done.n_shards)])  # fmt: skip
    ids = np.asarray(whole)
    assert starts[0] == 0 and (ids[starts[1:].astype(int) - 1] == tok.eot_id).all()
    for i in range(done.n_shards):  # every shard but the last ends with a whole document
        record = json.loads((tmp_path / "parts" / f"{i:05d}.json").read_text())
        assert record["n_tokens"] >= 300 or i == done.n_shards - 1


def test_a_damaged_shard_and_the_ones_after_it_are_written_again(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(shards_mod, "SHARD_TOKENS", 300)
    docs = articles(20)
    folder = tmp_path / "parts"
    done = _write(folder, tok, docs)
    expected = _joined(folder, done).tolist()
    (folder / "00002.bin").write_bytes(b"\x00\x00" * 10)  # damaged
    encoded = []
    real = shards_mod.encode_pieces

    def spy(tokenizer, documents, workers):
        return real(tokenizer, (encoded.append(d) or d for d in documents), workers)

    monkeypatch.setattr(shards_mod, "encode_pieces", spy)
    again = _write(folder, tok, docs)
    assert again == done and _joined(folder, again).tolist() == expected
    first_two = sum(json.loads((folder / f"{i:05d}.json").read_text())["n_documents"]
                    for i in range(2))  # fmt: skip
    assert encoded == docs[first_two:]  # shards 0 and 1 were kept, not encoded again


_CHILD = """
import sys, time
from minigpt import shards
from minigpt.data import tokenize_documents
from minigpt.tokenizer import BPETokenizer
shards.SHARD_TOKENS = 400
commit = shards._ShardWriter.commit
def slow_commit(self):  # slow enough to be killed part way, at a random moment
    commit(self)
    time.sleep(0.02)
shards._ShardWriter.commit = slow_commit
tok = BPETokenizer.load(sys.argv[2])
tokenize_documents(sys.argv[1], tok, config="de", text_column="body", workers=2, progress=False)
"""


def test_killed_part_way_it_resumes_from_its_last_shard_with_the_same_ids(
    tmp_path, tok, monkeypatch
):
    """The whole path on a local dataset in the hub's layout: streamed through datasets,
    encoded by 2 processes, SIGKILLed at a random moment, resumed; then split and trained."""
    docs = articles(300)
    folder = write_hub_dataset(tmp_path / "wiki", {"de": docs}, shards=3)
    tok_file = tok.save(tmp_path / "tok.json")
    env = {**os.environ, "MINIGPT_CACHE": str(tmp_path / "killed"),
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder), str(tok_file)],
                             env=env, start_new_session=True)  # fmt: skip
    tokens = tmp_path / "killed" / "tokens"
    wanted = random.Random().randint(2, 20)  # finished shards before the kill: at random
    deadline = time.monotonic() + 120
    while len(list(tokens.glob("*.parts/*.json"))) < wanted and child.poll() is None:
        assert time.monotonic() < deadline, "the tokenization did not start"
        time.sleep(0.005)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "it finished before it could be killed"
    assert not list(tokens.glob("*.bin"))  # no cache: only shards
    kept = sorted(tokens.glob("*.parts/*.json"))
    skipped = sum(json.loads(p.read_text())["n_documents"] for p in kept)
    assert 0 < skipped < len(docs)

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "killed"))
    encoded = []
    real = shards_mod.encode_pieces

    def spy(tokenizer, documents, workers):
        return real(tokenizer, (encoded.append(d) or d for d in documents), workers)

    monkeypatch.setattr(shards_mod, "encode_pieces", spy)
    monkeypatch.setattr(shards_mod, "SHARD_TOKENS", 400)
    resumed = tokenize_documents(folder, tok, config="de", text_column="body", workers=2,
                                 progress=False)  # fmt: skip
    assert len(encoded) == len(docs) - skipped  # from the last finished shard, not from zero
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "whole"))
    whole = tokenize_documents(folder, tok, config="de", text_column="body", workers=1,
                               progress=False)  # fmt: skip
    assert np.array_equal(resumed.ids, whole.ids)
    assert np.array_equal(resumed.doc_starts, whole.doc_starts)
    assert resumed.provenance["sha256"] == whole.provenance["sha256"]
    assert len(whole.doc_starts) == len(docs)


def test_the_progress_bar_counts_documents_and_tokens(tmp_path, tok):
    docs = articles(12)
    out = io.StringIO()  # a file: the bar is drawn there even off a terminal
    done = write_shards(tmp_path / "parts", tok, iter(docs), dtype=np.uint16, workers=1,
                        total_documents=12, progress=out)  # fmt: skip
    err = out.getvalue()
    assert f"tokens={done.n_tokens:,}" in err
    assert "12/12" in err and "doc/s" in err and "tokens=" in err


def test_held_out_documents_are_whole_documents(tmp_path, tok, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "texts"
    folder.mkdir()
    docs = articles(20)
    for i, doc in enumerate(docs):
        (folder / f"{i:02d}.txt").write_text(doc)
    data = load_tokens(folder, tok, val_fraction=0.2)
    val_text = tok.decode(data.val.tolist())
    held_out = val_text.split("<|endoftext|>")
    assert held_out == docs[-len(held_out) :]  # the last documents, each one whole
    assert 0.1 < data.val.size / data.tokens.size < 0.3
    assert tok.decode(data.train.tolist()).endswith(docs[-len(held_out) - 1] + "<|endoftext|>")
    assert data.provenance["files"]["19.txt"] and len(data.provenance["files"]) == 20


def test_tokenize_documents_records_what_it_read(tmp_path, tok, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "one.txt"
    path.write_text("".join(articles(3)))
    first = tokenize_documents(path, tok, progress=False)
    again = tokenize_documents(path, tok, progress=False)  # from the cache
    assert first.provenance == again.provenance
    assert set(first.provenance) == {"sha256", "source_sha256", "files"}
    assert list(first.provenance["files"]) == ["one.txt"]
    assert not list(Path(tmp_path / "cache" / "tokens").glob("*.parts"))  # removed when joined

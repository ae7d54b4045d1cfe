"""Token shards: a corpus of any size tokenized once, in parallel, resumably.

:func:`write_shards` encodes a stream of documents (by several processes, in order) into
shard files of about ``SHARD_TOKENS`` ids each, in a ``.parts`` folder beside the token
cache. A shard ends only at the end of a document; its ids go to disk as they come (memory
holds a few pieces of text, never a shard or the corpus), and it counts as done once its
``.json`` record exists, written last and atomically. A tokenization killed part way (Ctrl-C,
SIGKILL, a power cut) starts again after its last done shard: the documents before it are
skipped, not encoded, and the ids come out the same as an uninterrupted run's. When the last
shard is done the shards are joined into one file, the token cache :mod:`minigpt.data` reads,
together with the start of every document (for a validation split of whole documents).

:func:`source_digest` is what keys that cache: a SHA-256 of the corpus's content, file by file.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minigpt.assets import sha256_of
from minigpt.corpus import DOCUMENT_SEPARATOR, CorpusError, corpus_files
from minigpt.files import atomic_write, atomic_write_text, fsync_folder

__all__ = ["ShardsDone", "encode_pieces", "source_digest", "write_shards"]

CHUNK_BYTES = 1_000_000  # the longest piece a long document is cut into
BATCH_BYTES = 256_000  # short pieces (documents) are handed to a worker this many at a time
PENDING_PER_WORKER = 4  # batches in flight per worker: what bounds the text held in memory
SHARD_TOKENS = 1 << 24  # ids a shard holds before it ends (at the next end of a document)
COPY_BYTES = 1 << 24  # bytes copied at a time when the shards are joined


def source_digest(name: str, **options) -> tuple[str, dict[str, str]]:
    """``(digest, {file: sha256})``: what a local corpus holds, read byte by byte.

    The same content gives the same digest wherever it lies and whatever its files' times;
    one changed byte gives another. ``files`` names each file (relative to a folder corpus)
    with its own SHA-256, so a change can be pinned to a file. For ``"shakespeare"`` and a
    hub dataset's name it is a digest of the name and ``options`` alone, and ``files`` is empty.
    """
    chosen = {k: options[k] for k in ("config", "split", "text_column") if options.get(k)}
    files = corpus_files(name)
    if files is None:
        blob = json.dumps([name, chosen], sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest(), {}
    root = Path(name)
    names = {(f.relative_to(root).as_posix() if root.is_dir() else f.name): f for f in files}
    per_file = {key: sha256_of(path) for key, path in sorted(names.items())}
    blob = json.dumps([per_file, chosen], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest(), per_file


# -- encoding, in order, with a bounded number of pieces in flight ----------------------------

_WORKER_TOKENIZER = None  # set once in each worker process


def _init_worker(tokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode(tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer.encode_ordinary(text), dtype=np.uint32)  # compact to pickle


def _encode_in_worker(texts: list[str]) -> list[np.ndarray]:
    return [_encode(_WORKER_TOKENIZER, text) for text in texts]


def _batches(items: Iterable[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    """Pieces in batches of about ``BATCH_BYTES`` (a piece longer than that is a batch alone):
    one task for a worker, so that short documents do not cost a round trip each."""
    batch: list[tuple[str, bool]] = []
    size = 0
    for item in items:
        batch.append(item)
        size += len(item[0])
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def pieces(tokenizer, documents: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Cut documents into pieces of about ``CHUNK_BYTES``; ``True`` marks a document's last piece.

    A long document is cut by the tokenizer's streaming encoder
    (:meth:`~minigpt.tokenizer.BPETokenizer.stream_parts`), only where a cut cannot change
    the ids: the pieces, encoded apart (in worker processes), give the document's ids.
    """
    for doc in documents:
        if len(doc) <= CHUNK_BYTES:
            yield doc, True
            continue
        slices = (doc[i : i + CHUNK_BYTES] for i in range(0, len(doc), CHUNK_BYTES))
        parts = tokenizer.stream_parts(slices, disallowed_special=())
        piece = next(parts)
        for after in parts:
            yield piece, False
            piece = after
        yield piece, True


def encode_pieces(
    tokenizer, documents: Iterable[str], workers: int
) -> Iterator[tuple[np.ndarray, bool]]:
    """``(ids, ends_document)`` for every piece of every document, in order.

    Documents are read lazily (a streamed dataset is never held whole in memory); with
    ``workers > 1`` the pieces are encoded by that many processes, in batches of about
    ``BATCH_BYTES``, at most ``PENDING_PER_WORKER`` batches each in flight, so memory does not
    grow with the corpus.
    """
    if workers <= 1:
        for text, ends in pieces(tokenizer, documents):
            yield _encode(tokenizer, text), ends
        return
    pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(tokenizer,))
    pending: deque = deque()
    try:
        for batch in _batches(pieces(tokenizer, documents)):
            pending.append((pool.submit(_encode_in_worker, [text for text, _ in batch]), batch))
            if len(pending) >= workers * PENDING_PER_WORKER:
                future, done = pending.popleft()
                yield from zip(future.result(), (ends for _, ends in done))
        while pending:
            future, done = pending.popleft()
            yield from zip(future.result(), (ends for _, ends in done))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def separator_ids(tokenizer) -> list[int]:
    """Ids put between documents: ``<|endoftext|>`` when the tokenizer has it, else a blank line."""
    eot = getattr(tokenizer, "eot_id", None)
    return [eot] if eot is not None else tokenizer.encode(DOCUMENT_SEPARATOR)


# -- the shards ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardsDone:
    """What the finished shards hold: ``n_tokens`` ids of ``n_documents`` documents."""

    n_shards: int
    n_tokens: int
    n_documents: int


def _record(folder: Path, i: int) -> Path:
    return folder / f"{i:05d}.json"


def _finished_shards(folder: Path, dtype: np.dtype) -> ShardsDone:
    """The shards done so far, each checked against its record; the first one that does not
    check out (and every one after it) is removed, to be written again."""
    n_tokens = n_documents = i = 0
    while True:
        try:
            record = json.loads(_record(folder, i).read_text(encoding="utf-8"))
            ids = folder / f"{i:05d}.bin"
            ok = (
                record["tokens_before"] == n_tokens
                and ids.stat().st_size == record["n_tokens"] * dtype.itemsize
                and record["sha256"] == sha256_of(ids)
                and (folder / f"{i:05d}.docs").stat().st_size == record["n_documents"] * 8
            )
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            break
        n_tokens += record["n_tokens"]
        n_documents += record["n_documents"]
        i += 1
    for stale in folder.iterdir():  # shards after the last good one, and half-written ones
        stem = stale.name.split(".")[0]
        if not stem.isdigit() or int(stem) >= i:
            stale.unlink()
    return ShardsDone(i, n_tokens, n_documents)


class _ShardWriter:
    """Writes one shard's ids to disk as they come; :meth:`commit` makes it a done shard."""

    def __init__(self, folder: Path, index: int, tokens_before: int, dtype: np.dtype):
        self.folder, self.index, self.dtype = folder, index, dtype
        self.tokens_before, self.n_tokens = tokens_before, 0
        self.doc_starts: list[int] = []
        self.partial = folder / f"{index:05d}.bin.partial"
        self.file = open(self.partial, "wb")
        self.hash = hashlib.sha256()

    def write(self, ids: np.ndarray) -> None:
        data = ids.astype(self.dtype).tobytes()
        self.file.write(data)
        self.hash.update(data)
        self.n_tokens += ids.size

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        stem = self.folder / f"{self.index:05d}"
        starts = np.asarray(self.doc_starts, dtype=np.uint64)
        atomic_write(stem.with_suffix(".docs"), lambda f: f.write(starts.tobytes()))
        os.replace(self.partial, stem.with_suffix(".bin"))
        fsync_folder(self.folder)
        record = {
            "tokens_before": self.tokens_before,
            "n_tokens": self.n_tokens,
            "n_documents": len(self.doc_starts),
            "sha256": self.hash.hexdigest(),
        }
        atomic_write_text(_record(self.folder, self.index), json.dumps(record))  # done: last

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


def write_shards(
    folder: Path,
    tokenizer,
    documents: Iterable[str],
    *,
    dtype,
    workers: int,
    total_documents: int | Callable[[], int | None] | None = None,
    progress: bool | io.TextIOBase = True,
) -> ShardsDone:
    """Encode ``documents`` into the shards of ``folder``, after the shards already done there.

    A bar shows documents per second, the tokens so far and (with ``total_documents``, or
    once a function given there returns the count) the time left: on a terminal with ``progress=True``, always when ``progress`` is a file to
    write it to. Raises :class:`~minigpt.corpus.CorpusError` for an id outside the vocabulary.
    """
    from tqdm import tqdm

    dtype = np.dtype(dtype)
    folder.mkdir(parents=True, exist_ok=True)
    done = _finished_shards(folder, dtype)
    separator = np.asarray(separator_ids(tokenizer), dtype=np.int64)
    n_tokens, n_documents, index = done.n_tokens, done.n_documents, done.n_shards
    rest = itertools.islice(documents, done.n_documents, None)  # skipped, not encoded
    count = total_documents if callable(total_documents) else lambda: total_documents
    bar = tqdm(
        total=None,
        initial=n_documents,
        unit="doc",
        desc="tokenizing",
        disable=True if progress is False else None if progress is True else False,
        file=None if isinstance(progress, bool) else progress,
    )
    writer = None
    starting = True  # the next piece starts a document
    try:
        for ids, ends in encode_pieces(tokenizer, rest, workers):
            if ids.size and int(ids.max()) >= tokenizer.vocab_size:
                raise CorpusError(f"tokenizer produced ids outside [0, {tokenizer.vocab_size})")
            if writer is None:
                writer = _ShardWriter(folder, index, n_tokens, dtype)
            if starting:
                if n_documents or writer.doc_starts:
                    writer.write(separator)
                writer.doc_starts.append(writer.tokens_before + writer.n_tokens)
            writer.write(ids)
            starting = ends
            if ends:
                if bar.total is None and count() is not None:
                    bar.total = count()
                bar.update(1)
                bar.set_postfix(tokens=f"{n_tokens + writer.n_tokens:,}", refresh=False)
            if ends and writer.n_tokens >= SHARD_TOKENS:
                writer.commit()
                n_tokens, n_documents = (
                    n_tokens + writer.n_tokens,
                    n_documents + len(writer.doc_starts),
                )
                index, writer = index + 1, None
        if writer is not None:
            writer.commit()
            n_tokens, n_documents = n_tokens + writer.n_tokens, n_documents + len(writer.doc_starts)
            index, writer = index + 1, None
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return ShardsDone(index, n_tokens, n_documents)


def join_shards(folder: Path, done: ShardsDone, path: Path, docs_path: Path) -> str:
    """Join the shards into ``path`` (the ids) and ``docs_path`` (document starts, ``uint64``),
    each atomically; returns the SHA-256 of ``path``, computed as it is written."""
    digest = hashlib.sha256()

    def copy(suffix: str, hashed: bool):
        def write(out) -> None:
            for i in range(done.n_shards):
                with open(folder / f"{i:05d}{suffix}", "rb") as f:
                    while block := f.read(COPY_BYTES):
                        out.write(block)
                        if hashed:
                            digest.update(block)

        return write

    atomic_write(path, copy(".bin", True))
    atomic_write(docs_path, copy(".docs", False))
    return digest.hexdigest()


def remove_shards(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)

"""Token data for training: tokenize a corpus once, keep it on disk, cut it into windows.

* :func:`tokenize_corpus` encodes every document of a corpus (in parallel for big ones,
  with a progress bar) and caches the ids as a flat ``uint16`` file under
  ``cache_dir()/tokens``, keyed by the corpus and a fingerprint of the tokenizer. Later
  runs memory-map that file and start at once.
* :class:`TokenData` splits the ids into training (the head) and validation (the tail),
  samples random training windows from a seeded generator, and gives a fixed set of
  validation windows, so validation losses are comparable from step to step.

The text sources themselves (Shakespeare, local files, Hugging Face datasets) and
``load_corpus`` live in :mod:`minigpt.corpus`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from minigpt.assets import cache_dir, sha256_of
from minigpt.corpus import DOCUMENT_SEPARATOR, CorpusError, is_dataset_folder, iter_documents
from minigpt.files import atomic_write, atomic_write_text
from minigpt.tokenizer import shakespeare_tokenizer

__all__ = ["TokenData", "load_tokens", "tokenize_corpus", "tokenizer_fingerprint"]

PARALLEL_BYTES = 4_000_000  # corpora bigger than this are tokenized by several processes
CHUNK_BYTES = 1_000_000  # text handed to one worker at a time
GROUP_BYTES = 64_000_000  # text read and encoded before its ids are written out


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of everything that decides a tokenizer's output (merges, bytes, specials)."""
    decisive = ("pattern", "byte_order", "merges", "special_tokens")  # not name or metadata
    state = tokenizer.to_dict()
    kept = {k: state.get(k) for k in decisive}
    if "id_map" in state:  # a tokenizer that renumbers its ids (minigpt.formats.renumbered)
        kept["id_map"] = state["id_map"]
    blob = json.dumps(kept, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def _corpus_key(name_or_path: str, max_documents: int | None, **corpus_kwargs) -> str:
    """A file-name-safe key that changes whenever the corpus does (a dataset's config, split
    or column included)."""
    path = Path(name_or_path)
    if name_or_path != "shakespeare" and path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        stamp = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        digest = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:12]
        label = f"{path.stem or 'corpus'}-{digest}"
    else:
        label = name_or_path.replace("/", "--")
    chosen = {
        k: corpus_kwargs[k] for k in ("config", "split", "text_column") if corpus_kwargs.get(k)
    }
    if chosen:  # which part of a dataset: another part is another corpus
        label += "-" + hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]
    return label if max_documents is None else f"{label}-first{max_documents}"


def _separator_ids(tokenizer) -> list[int]:
    """Ids put between documents: ``<|endoftext|>`` when the tokenizer has it, else a blank line."""
    eot = getattr(tokenizer, "eot_id", None)
    return [eot] if eot is not None else tokenizer.encode(DOCUMENT_SEPARATOR)


_WORKER_TOKENIZER = None  # set once in each worker process


def _init_worker(tokenizer) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer


def _encode_in_worker(text: str) -> list[int]:
    return _WORKER_TOKENIZER.encode_ordinary(text)


def _pieces(tokenizer, documents: Iterable[str]) -> Iterator[tuple[str, bool]]:
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


def _groups(pieces: Iterable[tuple[str, bool]]) -> Iterator[list[tuple[str, bool]]]:
    """Pieces in groups of about ``GROUP_BYTES``: what is held in memory at once."""
    group: list[tuple[str, bool]] = []
    size = 0
    for piece in pieces:
        group.append(piece)
        size += len(piece[0])
        if size >= GROUP_BYTES:
            yield group
            group, size = [], 0
    if group:
        yield group


def _encode_all(
    tokenizer, documents: Iterable[str], workers: int, total: int | None
) -> Iterator[np.ndarray]:
    """Every document's ids, with the separator between documents, piece by piece.

    Documents are read lazily (a streamed dataset is never held whole in memory) and
    encoded a group of pieces at a time, by ``workers`` processes when there are several.
    """
    from tqdm import tqdm

    separator = np.asarray(_separator_ids(tokenizer), dtype=np.int64)
    pool = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(tokenizer,))
    after_document = False
    bar = tqdm(total=total, unit="char", unit_scale=True, desc="tokenizing", disable=None)
    try:
        for group in _groups(_pieces(tokenizer, documents)):
            texts = [text for text, _ in group]
            if pool is not None:
                encoded = pool.map(_encode_in_worker, texts, chunksize=1)
            else:
                encoded = map(tokenizer.encode_ordinary, texts)
            for ids, (text, ends_document) in zip(encoded, group):
                if after_document:
                    yield separator
                yield np.asarray(ids, dtype=np.int64)
                after_document = ends_document
                bar.update(len(text))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _read_token_cache(path: Path, meta_path: Path, vocab_size: int) -> np.ndarray | None:
    """The cached ids, memory-mapped, if the cache checks out; else ``None`` (with a warning).

    The ``.json`` beside the ``.bin`` holds its length, dtype and SHA-256. A cache that
    does not match them (a truncated or changed file), or that holds an id the tokenizer
    does not have, is never used: it is encoded again.
    """
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dtype, n_tokens = np.dtype(meta["dtype"]), int(meta["n_tokens"])
        problem = None
        if path.stat().st_size != n_tokens * dtype.itemsize:
            problem = f"{path.stat().st_size} bytes, not {n_tokens} {dtype.name} ids"
        elif meta.get("sha256") != sha256_of(path):
            problem = "its content does not match the checksum in " + meta_path.name
    except (OSError, ValueError, KeyError, TypeError) as err:
        problem = f"{meta_path} cannot be read ({err})"
    if problem is None:
        ids = np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))
        if n_tokens and int(ids.max()) >= vocab_size:
            problem = f"it holds id {int(ids.max())}, beyond the tokenizer's {vocab_size} ids"
    if problem is not None:
        warnings.warn(
            f"token cache {path} is broken ({problem}); encoding the corpus again",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return ids


def tokenize_corpus(
    name_or_path: str | os.PathLike,
    tokenizer,
    *,
    max_documents: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    **corpus_kwargs,
) -> np.ndarray:
    """All token ids of a corpus as one flat array (documents joined by ``<|endoftext|>``).

    The first call encodes the corpus and caches the ids under ``cache_dir()/tokens`` as
    ``uint16`` (``uint32`` for vocabularies over 65,536), written as they come, so a large
    streamed corpus never sits whole in memory; later calls memory-map that file.

    Args:
        name_or_path: a corpus, as in :func:`minigpt.corpus.iter_documents`.
        tokenizer: a :class:`minigpt.tokenizer.BPETokenizer` (its ``stream_parts``,
            ``encode_ordinary``, ``to_dict`` and ``vocab_size`` are used).
        max_documents: read only the first documents (``None``: all).
        workers: processes that encode in parallel (default: all cores for a Hugging Face
            dataset or a corpus over 4 MB; 1 otherwise).
        cache: read and write the on-disk cache.
        **corpus_kwargs: ``config``, ``split``, ``text_column``, ``streaming`` of a Hugging
            Face dataset, ``lossy`` of a text file (:func:`minigpt.corpus.iter_documents`).
    """
    name = str(name_or_path)
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    key = f"{_corpus_key(name, max_documents, **corpus_kwargs)}-{tokenizer_fingerprint(tokenizer)}"
    path = cache_dir() / "tokens" / f"{key}.bin"
    meta_path = path.with_suffix(".json")
    if cache and path.is_file() and meta_path.is_file():
        cached = _read_token_cache(path, meta_path, tokenizer.vocab_size)
        if cached is not None:
            return cached

    documents: Iterable[str] = iter_documents(name, max_documents=max_documents, **corpus_kwargs)
    total = None
    if name == "shakespeare" or (Path(name).exists() and not is_dataset_folder(Path(name))):
        # text files, small enough to list: a known total (a dataset folder is streamed)
        documents = list(documents)
        total = sum(len(d) for d in documents)
    if workers is None:
        workers = (os.cpu_count() or 1) if total is None or total > PARALLEL_BYTES else 1
    seen_text = False

    def watched(docs: Iterable[str]) -> Iterator[str]:
        nonlocal seen_text
        for doc in docs:
            seen_text = seen_text or bool(doc.strip())
            yield doc

    documents = watched(documents)
    n_tokens = 0

    def write_ids(out) -> None:  # encode as the documents stream in; ids go straight to disk
        nonlocal n_tokens
        for ids in _encode_all(tokenizer, documents, max(1, workers), total):
            if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
                raise CorpusError(f"tokenizer produced ids outside [0, {tokenizer.vocab_size})")
            n_tokens += ids.size
            out.write(ids.astype(dtype).tobytes())
        if n_tokens == 0 or not seen_text:
            raise CorpusError(f"corpus {name!r} is empty")

    if not cache:
        buffer = io.BytesIO()
        write_ids(buffer)
        return np.frombuffer(buffer.getvalue(), dtype=dtype)
    atomic_write(path, write_ids)
    meta = {"corpus": name, "n_tokens": n_tokens, "dtype": np.dtype(dtype).name}
    meta["sha256"] = sha256_of(path)
    # Written last: its presence means the .bin is complete.
    atomic_write_text(meta_path, json.dumps(meta | {"vocab_size": tokenizer.vocab_size}))
    return np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))


@dataclass(frozen=True)
class TokenData:
    """Token ids split into training (the first part) and validation (the last part).

    Args:
        tokens: flat token ids (a memory map is fine; it is never copied whole).
        vocab_size: the tokenizer's vocabulary size.
        val_fraction: share of the ids, taken from the end, kept for validation.
    """

    tokens: np.ndarray
    vocab_size: int
    val_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction!r} must be in (0, 1)")
        if self.tokens.ndim != 1 or self.tokens.size == 0:
            raise CorpusError(f"tokens must be a non-empty flat array, got {self.tokens.shape}")

    @property
    def n_val(self) -> int:
        return max(1, int(round(self.tokens.size * self.val_fraction)))

    @property
    def train(self) -> np.ndarray:
        return self.tokens[: self.tokens.size - self.n_val]

    @property
    def val(self) -> np.ndarray:
        return self.tokens[self.tokens.size - self.n_val :]

    def _split(self, split: str, n_ctx: int) -> np.ndarray:
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        ids = self.train if split == "train" else self.val
        if ids.size < n_ctx + 1:
            raise CorpusError(
                f"the {split} split holds {ids.size} tokens, fewer than one window of "
                f"n_ctx + 1 = {n_ctx + 1}; use a longer corpus or a shorter context"
            )
        return ids

    def _windows(self, ids: np.ndarray, starts: np.ndarray, n_ctx: int) -> Tensor:
        rows = np.stack([np.asarray(ids[s : s + n_ctx + 1], dtype=np.int64) for s in starts])
        return torch.from_numpy(rows)

    def sample(
        self, n: int, n_ctx: int, generator: torch.Generator, split: str = "train"
    ) -> Int[Tensor, "batch window"]:
        """``n`` random windows of ``n_ctx + 1`` ids (inputs are ``[:, :-1]``, targets ``[:, 1:]``).

        The start of every window comes from ``generator``, so a saved generator state is a
        saved position in the data.
        """
        ids = self._split(split, n_ctx)
        starts = torch.randint(0, ids.size - n_ctx, (n,), generator=generator).numpy()
        return self._windows(ids, starts, n_ctx)

    def fixed_windows(self, n: int, n_ctx: int, split: str = "val") -> Int[Tensor, "batch window"]:
        """``n`` windows of ``n_ctx + 1`` ids spread evenly over a split: the same every call."""
        ids = self._split(split, n_ctx)
        starts = np.linspace(0, ids.size - n_ctx - 1, num=n).round().astype(np.int64)
        return self._windows(ids, starts, n_ctx)


def load_tokens(
    name_or_path: str | os.PathLike = "shakespeare",
    tokenizer=None,
    *,
    val_fraction: float = 0.05,
    **kwargs,
) -> TokenData:
    """Tokenize (or load the cached ids of) a corpus and split it for training.

    ``tokenizer`` defaults to :func:`minigpt.tokenizer.shakespeare_tokenizer` (4,096 tokens).
    """
    if tokenizer is None:
        tokenizer = shakespeare_tokenizer(4096)
    tokens = tokenize_corpus(name_or_path, tokenizer, **kwargs)
    return TokenData(tokens, tokenizer.vocab_size, val_fraction)

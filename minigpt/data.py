"""Token data for training: tokenize a corpus once, keep it on disk, cut it into windows.

* :func:`tokenize_corpus` encodes every document of a corpus (in parallel for big ones,
  with a progress bar, into resumable shards: :mod:`minigpt.shards`) and caches the ids as a
  flat ``uint16`` file under ``cache_dir()/tokens``, keyed by the corpus's content and a
  fingerprint of the tokenizer. Later runs memory-map that file and start at once.
* :class:`TokenData` splits the ids into training (the head) and validation (the last
  whole documents),
  samples random training windows from a seeded generator, and gives a fixed set of
  validation windows, so validation losses are comparable from step to step.

The text sources themselves (Shakespeare, local files, Hugging Face datasets) and
``load_corpus`` live in :mod:`minigpt.corpus`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from minigpt.assets import cache_dir, sha256_of
from minigpt.corpus import CorpusError, corpus_files, iter_documents
from minigpt.files import FileLock, atomic_write_text
from minigpt.shards import join_shards, remove_shards, source_digest, write_shards
from minigpt.tokenizer import shakespeare_tokenizer

__all__ = ["CorpusTokens", "TokenData", "load_tokens", "tokenize_corpus", "tokenize_documents",
           "tokenizer_fingerprint"]  # fmt: skip

PARALLEL_BYTES = 4_000_000  # corpora bigger than this are tokenized by several processes
FORMAT_VERSION = 2  # 2: keyed by content, with document starts; older caches are not read


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of everything that decides a tokenizer's output (merges, bytes, specials)."""
    decisive = ("pattern", "byte_order", "merges", "special_tokens")  # not name or metadata
    state = tokenizer.to_dict()
    kept = {k: state.get(k) for k in decisive}
    if "id_map" in state:  # a tokenizer that renumbers its ids (minigpt.formats.renumbered)
        kept["id_map"] = state["id_map"]
    blob = json.dumps(kept, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def _corpus_key(name: str, source: str, max_documents: int | None, corpus_kwargs: dict) -> str:
    """A file-name-safe key that changes whenever the corpus's content does (``source``, its
    digest), or the part of it read (a dataset's config, split or column, ``max_documents``,
    a lossy decode)."""
    # a local corpus is named by its content alone: the same files elsewhere are the same ids
    label = "local" if name != "shakespeare" and Path(name).exists() else name.replace("/", "--")
    chosen = {k: corpus_kwargs[k] for k in ("lossy",) if corpus_kwargs.get(k)}
    blob = json.dumps([source, chosen, max_documents], sort_keys=True).encode()
    return f"{label}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _read_token_cache(path: Path, meta_path: Path, vocab_size: int) -> tuple | None:
    """``(ids, document starts, meta)``, memory-mapped, if the cache checks out; else ``None``
    (with a warning).

    The ``.json`` beside the ``.bin`` holds its length, dtype and SHA-256. A cache that
    does not match them (a truncated or changed file), or that holds an id the tokenizer
    does not have, is never used: it is encoded again.
    """
    docs_path = path.with_suffix(".docs")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dtype, n_tokens = np.dtype(meta["dtype"]), int(meta["n_tokens"])
        n_documents = int(meta["n_documents"])
        problem = None
        if meta.get("version") != FORMAT_VERSION:
            problem = f"version {meta.get('version')!r}, not {FORMAT_VERSION}"
        elif path.stat().st_size != n_tokens * dtype.itemsize:
            problem = f"{path.stat().st_size} bytes, not {n_tokens} {dtype.name} ids"
        elif docs_path.stat().st_size != n_documents * 8:
            problem = f"{docs_path.name} does not hold {n_documents} document starts"
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
            stacklevel=4,
        )
        return None
    starts = np.fromfile(docs_path, dtype=np.uint64) if n_documents else np.zeros(0, np.uint64)
    return ids, starts, meta


@dataclass(frozen=True)
class CorpusTokens:
    """A tokenized corpus: its ``ids`` (memory-mapped), where each document starts in them,
    and where they came from (``sha256`` of the ids, the source's ``files`` and digest)."""

    ids: np.ndarray
    doc_starts: np.ndarray
    provenance: dict


def tokenize_documents(
    name_or_path: str | os.PathLike,
    tokenizer,
    *,
    max_documents: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool = True,
    **corpus_kwargs,
) -> CorpusTokens:
    """The corpus's ids with its document starts and provenance: see :func:`tokenize_corpus`."""
    name = str(name_or_path)
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    source, files = source_digest(name, **corpus_kwargs)
    key = f"{_corpus_key(name, source, max_documents, corpus_kwargs)}-"
    key += tokenizer_fingerprint(tokenizer)
    folder = cache_dir() / "tokens" if cache else Path(tempfile.mkdtemp(prefix="minigpt-tokens-"))
    path = folder / f"{key}.bin"
    meta_path = path.with_suffix(".json")
    provenance = {"source_sha256": source, "files": files}

    def cached() -> CorpusTokens | None:
        if not (cache and path.is_file() and meta_path.is_file()):
            return None
        found = _read_token_cache(path, meta_path, tokenizer.vocab_size)
        if found is None:
            return None
        ids, starts, meta = found
        return CorpusTokens(ids, starts, {"sha256": meta["sha256"], **provenance})

    if (tokens := cached()) is not None:
        return tokens
    # One process writes a corpus's shards at a time; the others (the ranks of a run on one
    # machine, say) wait, then read what it wrote.
    lock = (cache_dir() / "locks" if cache else folder) / f"tokens-{key}.lock"
    try:
        with FileLock(lock):
            if (tokens := cached()) is not None:
                return tokens
            return _tokenize_into(
                folder, key, name, tokenizer, dtype, provenance, max_documents, workers,
                progress, corpus_kwargs,
            )  # fmt: skip
    finally:
        if not cache:
            shutil.rmtree(folder, ignore_errors=True)


def _tokenize_into(
    folder, key, name, tokenizer, dtype, provenance, max_documents, workers, progress, kwargs
) -> CorpusTokens:
    """Encode the corpus into shards (after those a killed run left), join them into the
    cache ``folder/key.bin`` and its ``.docs`` and ``.json``; under the corpus's lock."""
    path = folder / f"{key}.bin"
    parts = folder / f"{key}.parts"
    total: list[int] = []  # the count of documents, once the source knows it
    documents = iter_documents(name, max_documents=max_documents, on_total=total.append, **kwargs)
    if workers is None:
        files = corpus_files(name)
        small = files is not None and sum(f.stat().st_size for f in files) <= PARALLEL_BYTES
        workers = 1 if small or name == "shakespeare" else (os.cpu_count() or 1)
    seen_text = False

    def watched(docs: Iterable[str]) -> Iterator[str]:
        nonlocal seen_text
        for doc in docs:
            seen_text = seen_text or bool(doc.strip())
            yield doc

    done = write_shards(
        parts,
        tokenizer,
        watched(documents),
        dtype=dtype,
        workers=max(1, workers),
        total_documents=lambda: total[-1] if total else None,
        progress=progress,
    )
    if done.n_tokens == 0 or not seen_text:  # (skipped documents of a resume were seen too)
        remove_shards(parts)
        raise CorpusError(f"corpus {name!r} is empty")
    sha = join_shards(parts, done, path, path.with_suffix(".docs"))
    meta = {
        "version": FORMAT_VERSION,
        "corpus": name,
        "n_tokens": done.n_tokens,
        "n_documents": done.n_documents,
        "dtype": np.dtype(dtype).name,
        "sha256": sha,
        "vocab_size": tokenizer.vocab_size,
        **provenance,
    }
    # Written last: its presence means the .bin is complete.
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta))
    remove_shards(parts)
    ids = np.memmap(path, dtype=dtype, mode="r", shape=(done.n_tokens,))
    starts = np.fromfile(path.with_suffix(".docs"), dtype=np.uint64)
    return CorpusTokens(ids, starts, {"sha256": sha, **provenance})


def tokenize_corpus(
    name_or_path: str | os.PathLike,
    tokenizer,
    *,
    max_documents: int | None = None,
    workers: int | None = None,
    cache: bool = True,
    progress: bool = True,
    **corpus_kwargs,
) -> np.ndarray:
    """All token ids of a corpus as one flat array (documents joined by ``<|endoftext|>``).

    The first call encodes the corpus into token shards (:mod:`minigpt.shards`: in parallel,
    with a progress bar, resumable after a kill) and joins them into a cache under
    ``cache_dir()/tokens`` as ``uint16`` (``uint32`` for vocabularies over 65,536), keyed by
    the corpus's content (a SHA-256 of its files) and the tokenizer's fingerprint; later
    calls memory-map that file.

    Args:
        name_or_path: a corpus, as in :func:`minigpt.corpus.iter_documents`.
        tokenizer: a :class:`minigpt.tokenizer.BPETokenizer` (its ``stream_parts``,
            ``encode_ordinary``, ``to_dict`` and ``vocab_size`` are used).
        max_documents: read only the first documents (``None``: all).
        workers: processes that encode in parallel (default: all cores for a Hugging Face
            dataset or a corpus over 4 MB; 1 otherwise).
        cache: read and write the on-disk cache (``False``: shards in a temporary folder).
        progress: a progress bar (on a terminal).
        **corpus_kwargs: ``config``, ``split``, ``text_column``, ``streaming`` of a Hugging
            Face dataset, ``lossy`` of a text file (:func:`minigpt.corpus.iter_documents`).
    """
    tokens = tokenize_documents(
        name_or_path,
        tokenizer,
        max_documents=max_documents,
        workers=workers,
        cache=cache,
        progress=progress,
        **corpus_kwargs,
    )
    return tokens.ids if cache else np.array(tokens.ids)


@dataclass(frozen=True)
class TokenData:
    """Token ids split into training (the first part) and validation (the last part).

    With ``doc_starts`` (where each document starts in ``tokens``) validation is the last
    whole documents, about ``val_fraction`` of the ids: no document is read in both splits.
    Without it (or with one document only) it is the last ``val_fraction`` of the ids.

    Args:
        tokens: flat token ids (a memory map is fine; it is never copied whole).
        vocab_size: the tokenizer's vocabulary size.
        val_fraction: share of the ids, taken from the end, kept for validation.
        doc_starts: the offset of each document's first id, ascending (``None``: unknown).
        provenance: where the ids came from (their ``sha256``, the source's ``files``), for
            the checkpoint to record (:func:`minigpt.checkpoint.data_record`).
    """

    tokens: np.ndarray
    vocab_size: int
    val_fraction: float = 0.05
    doc_starts: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction={self.val_fraction!r} must be in (0, 1)")
        if self.tokens.ndim != 1 or self.tokens.size == 0:
            raise CorpusError(f"tokens must be a non-empty flat array, got {self.tokens.shape}")

    @cached_property
    def n_val(self) -> int:
        size = self.tokens.size
        by_ids = max(1, int(round(size * self.val_fraction)))
        starts = self.doc_starts
        if starts is None or len(starts) < 2:
            return by_ids
        target = size - by_ids  # the split by ids; moved to the nearest start of a document
        i = int(np.searchsorted(starts, target))
        near = [int(starts[j]) for j in (i - 1, i) if 1 <= j < len(starts)]  # not the first
        return size - min(near, key=lambda start: abs(start - target))

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
    tokens = tokenize_documents(name_or_path, tokenizer, **kwargs)
    return TokenData(
        tokens.ids, tokenizer.vocab_size, val_fraction, tokens.doc_starts, tokens.provenance
    )

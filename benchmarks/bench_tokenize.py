"""Tokenizing a 100 MB stand-in of a hub dataset: rate, peak memory, and resume after SIGKILL.

Builds a local dataset in the Hugging Face hub's layout (``wikimedia/wikipedia``'s: a
configuration ``20231101.de`` of parquet shards, a ``text`` column) of ``--mb`` megabytes of
made-up articles, then tokenizes it with GPT-2's tokenizer through the real path
(``minigpt.data.tokenize_documents``: streamed through ``datasets``, encoded by ``--workers``
processes into shards), in child processes:

1. uninterrupted, for the rate (MB of UTF-8 text per second) and the peak memory (the largest
   sum of the proportional set sizes of the tokenizing process and its workers, sampled every
   50 ms);
2. killed with SIGKILL once ``--kill-at`` of the documents are in finished shards, then run
   again: it must encode only the documents after its last finished shard, and end with ids
   identical (SHA-256) to the uninterrupted run's.

Run ``python benchmarks/bench_tokenize.py``; ``--mb 25`` as well, or ``--files 32``, to see
that the peak memory follows the size of a parquet file (``datasets`` reads one row group at a
time), not the size of the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # small_corpus.write_hub_dataset, shared with the tests

CONFIG = "20231101.de"

CHILD = """
import json, sys
from minigpt import shards
from minigpt.data import tokenize_documents
from minigpt.tokenizer import gpt2_tokenizer
shards.SHARD_TOKENS = int(sys.argv[3])
encoded = 0
real = shards.encode_pieces
def counting(tokenizer, documents, workers):
    def counted(docs):
        global encoded
        for doc in docs:
            encoded += 1
            yield doc
    return real(tokenizer, counted(documents), workers)
shards.encode_pieces = counting
tokens = tokenize_documents(sys.argv[1], gpt2_tokenizer(), config=sys.argv[2], workers=int(sys.argv[4]),
                            progress=False)
print(json.dumps({"sha256": tokens.provenance["sha256"], "n_tokens": int(tokens.ids.size),
                  "n_documents": int(tokens.doc_starts.size), "encoded": encoded}))
"""


def make_articles(megabytes: float, seed: int = 0) -> list[str]:
    """Made-up articles of Zipf-distributed pseudo-words (a vocabulary of 20,000), of a few
    hundred to several thousand characters each, ``megabytes`` of text in all."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzäöüß"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 11))) for _ in range(20000)]
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    docs, size, i = [], 0, 0
    while size < megabytes * 1e6:
        words = rng.choices(vocab, weights, k=rng.randint(60, 1500))
        sentences = [
            " ".join(words[j : j + 12]).capitalize() + "." for j in range(0, len(words), 12)
        ]
        doc = f"Artikel {i}\n\n" + " ".join(sentences) + "\n"
        docs.append(doc)
        size += len(doc.encode("utf-8"))
        i += 1
    return docs


def tree_memory(pid: int) -> int:
    """Bytes of memory of a process and all its descendants (Linux /proc): their proportional
    set sizes, so that pages the forked workers share with their parent count once."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total


def run_child(folder, cache, shard_tokens, workers, kill_when=None):
    """The child's result (or None when killed), its wall time and its peak tree memory."""
    env = {**os.environ, "MINIGPT_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", CHILD, str(folder), CONFIG, str(shard_tokens), str(workers)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, start_new_session=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_memory(child.pid))
        if kill_when is not None and kill_when(cache):
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return None, time.perf_counter() - start, peak
        time.sleep(0.05)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"the tokenizing child failed with exit code {child.returncode}")
    return json.loads(child.stdout.read()), wall, peak


def documents_done(cache: Path) -> int:
    total = 0
    for record in (cache / "tokens").glob("*.parts/*.json"):
        try:
            total += json.loads(record.read_text())["n_documents"]
        except (OSError, ValueError, KeyError):
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100, help="megabytes of text (default 100)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard-tokens", type=int, default=1 << 21, help="ids a shard holds")
    parser.add_argument("--files", type=int, default=8, help="parquet files (default 8)")
    parser.add_argument("--kill-at", type=float, default=0.6, help="share of documents done")
    args = parser.parse_args()
    if not 0 < args.kill_at < 1:
        raise SystemExit(f"--kill-at={args.kill_at} must be in (0, 1)")
    from small_corpus import write_hub_dataset

    with tempfile.TemporaryDirectory(prefix="bench-tokenize-") as tmp:
        tmp = Path(tmp)
        docs = make_articles(args.mb)
        mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
        folder = write_hub_dataset(
            tmp / "wikipedia", {CONFIG: docs}, shards=args.files, column="text"
        )
        print(f"stand-in: {len(docs):,} documents, {mb:.1f} MB of text in {args.files} parquet "
              f"files, {args.workers} workers")  # fmt: skip
        whole, wall, peak = run_child(folder, tmp / "whole", args.shard_tokens, args.workers)
        print(f"uninterrupted: {whole['n_tokens']:,} tokens in {wall:.1f} s = {mb / wall:.2f} MB/s "
              f"(start-up included), peak memory {peak / 2**20:.0f} MiB (process + workers)")  # fmt: skip
        target = int(args.kill_at * len(docs))
        killed, wall_k, _ = run_child(folder, tmp / "resumed", args.shard_tokens, args.workers,
                                      kill_when=lambda c: documents_done(c) >= target)  # fmt: skip
        assert killed is None, "the tokenization finished before the kill"
        done = documents_done(tmp / "resumed")
        print(f"SIGKILL after {wall_k:.1f} s with {done:,} of {len(docs):,} documents in shards")
        resumed, wall_r, _ = run_child(folder, tmp / "resumed", args.shard_tokens, args.workers)
        same = resumed["sha256"] == whole["sha256"] and resumed["n_tokens"] == whole["n_tokens"]
        print(f"resumed: encoded {resumed['encoded']:,} documents (not {len(docs):,}) in "
              f"{wall_r:.1f} s; ids identical to the uninterrupted run: {same}")  # fmt: skip
        if not same or resumed["encoded"] != len(docs) - done:
            raise SystemExit("FAILED: the resumed tokenization differs")
        print(f"ok: sha256 of the ids {whole['sha256'][:16]}...")


if __name__ == "__main__":
    main()

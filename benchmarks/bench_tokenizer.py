"""Encode throughput of minigpt's GPT-2 tokenizer against tiktoken and Hugging Face, the
time to train a Shakespeare tokenizer, and how encode time grows on text without whitespace.

    python benchmarks/bench_tokenizer.py            # 1M characters of Shakespeare (~30 s)
    python benchmarks/bench_tokenizer.py --full     # the whole corpus (5M characters)
    python benchmarks/bench_tokenizer.py --skip-train --skip-long   # the encode table only

Text without whitespace (``--skip-long`` leaves it out) can be one pre-tokenized chunk of a
million bytes, so BPE's merge loop runs on that one chunk: the section gives seconds for
10k, 100k and 1M characters, and the growth per 10x more text (10x: linear).

Every encoder runs on the same text in the same process, single-threaded, best of
``--repeats``; the table gives throughput and speed relative to tiktoken (1.00 = as fast).
All encoders must produce identical ids, or the run fails. Timings on a shared machine
are noisy: compare ratios from one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import string
import time
from collections.abc import Callable

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # keep Hugging Face single-threaded

import regex  # noqa: E402
import tiktoken  # noqa: E402
import tiktoken.load  # noqa: E402
import torch  # noqa: E402

from minigpt.assets import gpt2_bpe_files  # noqa: E402
from minigpt.bpe import GPT2_PATTERN, bpe_word  # noqa: E402
from minigpt.corpus import load_corpus  # noqa: E402
from minigpt.formats.tiktoken_ranks import R50K_PATTERN  # noqa: E402
from minigpt.reference import gpt2_hf_tokenizer  # noqa: E402
from minigpt.tokenizer import EOT, BPETokenizer, gpt2_tokenizer  # noqa: E402


def tiktoken_gpt2() -> tiktoken.Encoding:
    """tiktoken's GPT-2 encoding, from the same verified files (no download)."""
    files = gpt2_bpe_files()
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(files.vocab_bpe), encoder_json_file=str(files.encoder_json)
    )
    return tiktoken.Encoding(
        "gpt2-offline", pat_str=R50K_PATTERN, mergeable_ranks=ranks, special_tokens={EOT: 50256}
    )


def best_of(fn: Callable[[], list[int]], repeats: int, before: Callable[[], None] = lambda: None):
    """(best seconds, ids) over ``repeats`` runs; ``before`` runs untimed before each."""
    best, ids = float("inf"), []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        ids = fn()
        best = min(best, time.perf_counter() - start)
    return best, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=1_000_000, help="characters of Shakespeare")
    parser.add_argument("--full", action="store_true", help="encode the whole corpus")
    parser.add_argument("--repeats", type=int, default=3, help="runs per encoder (best is kept)")
    parser.add_argument("--vocab-size", type=int, default=4096, help="size of the trained vocab")
    parser.add_argument("--skip-train", action="store_true", help="do not time training")
    parser.add_argument(
        "--skip-long", action="store_true", help="do not time text without whitespace"
    )
    args = parser.parse_args()
    if args.chars < 1 or args.repeats < 1:
        parser.error(f"--chars={args.chars} and --repeats={args.repeats} must be >= 1")

    torch.set_num_threads(1)
    corpus = load_corpus("shakespeare")
    text = corpus if args.full else corpus[: args.chars]
    ours, tik, hf = gpt2_tokenizer(), tiktoken_gpt2(), gpt2_hf_tokenizer().backend_tokenizer
    ranks = {pair: 256 + i for i, pair in enumerate(ours.merges)}
    byte_to_id = {b: i for i, b in enumerate(ours.byte_order)}

    def no_cache() -> list[int]:  # the textbook loop: BPE on every chunk, nothing remembered
        out: list[int] = []
        for chunk in regex.findall(GPT2_PATTERN, text):
            out.extend(bpe_word([byte_to_id[b] for b in chunk.encode("utf-8")], ranks))
        return out

    rows = [
        ("tiktoken (Rust)", *best_of(lambda: tik.encode_ordinary(text), args.repeats)),
        ("Hugging Face tokenizers (Rust)", *best_of(lambda: hf.encode(text).ids, args.repeats)),
        (
            "minigpt, cold word cache",
            *best_of(lambda: ours.encode_ordinary(text), args.repeats, ours.clear_cache),
        ),
        ("minigpt, warm word cache", *best_of(lambda: ours.encode_ordinary(text), args.repeats)),
        ("minigpt, no word cache", *best_of(no_cache, 1)),
    ]
    reference_ids = rows[0][2]
    for name, _, ids in rows:
        if ids != reference_ids:
            raise SystemExit(f"{name} disagrees with tiktoken: the comparison is void")

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores")
    print(f"encode {len(text):,} characters of Shakespeare -> {len(reference_ids):,} tokens")
    print("(identical ids from every encoder; best of", args.repeats, "runs, one thread)\n")
    print(f"{'encoder':34} {'seconds':>8} {'M chars/s':>10} {'vs tiktoken':>12}")
    tik_seconds = rows[0][1]
    for name, seconds, _ in rows:
        rate = len(text) / seconds / 1e6
        print(f"{name:34} {seconds:8.3f} {rate:10.2f} {tik_seconds / seconds:11.2f}x")

    if not args.skip_train:
        start = time.perf_counter()
        trained = BPETokenizer.train(corpus, args.vocab_size)
        seconds = time.perf_counter() - start
        print(
            f"\ntrain a {args.vocab_size:,}-token BPE on all of Shakespeare "
            f"({len(corpus):,} characters, {len(trained.merges):,} merges): {seconds:.1f} s"
        )

    if not args.skip_long:
        long_chunks(ours, tik, args.repeats)


LONG_SIZES = (10_000, 100_000, 1_000_000)


def long_chunks(ours: BPETokenizer, tik: tiktoken.Encoding, repeats: int) -> None:
    """Encode text without whitespace, 10k to 1M characters: time and growth per 10x."""
    rng = random.Random(0)
    kinds = {  # each a single chunk: BPE's merge loop runs on all of it at once
        "random letters": lambda n: "".join(rng.choices(string.ascii_letters, k=n)),
        "one letter repeated": lambda n: "a" * n,
    }
    print(
        "\ntext without whitespace: one chunk of n bytes (identical ids; best of", repeats, "runs)"
    )
    header = "".join(f"{n:>10,}" for n in LONG_SIZES)
    print(f"{'text':20} {'encoder':9}{header}   growth per 10x")
    for kind, make in kinds.items():
        texts = [make(n) for n in LONG_SIZES]
        timings: dict[str, list[float]] = {"minigpt": [], "tiktoken": []}
        for text in texts:
            tik_seconds, tik_ids = best_of(lambda t=text: tik.encode_ordinary(t), repeats)
            our_seconds, our_ids = best_of(
                lambda t=text: ours.encode_ordinary(t), repeats, ours.clear_cache
            )
            if our_ids != tik_ids:
                raise SystemExit(f"minigpt disagrees with tiktoken on {len(text):,} {kind}")
            timings["minigpt"].append(our_seconds)
            timings["tiktoken"].append(tik_seconds)
        for name, seconds in timings.items():
            cells = "".join(f"{t:9.3f}s" for t in seconds)
            growth = ", ".join(f"{b / a:.1f}x" for a, b in zip(seconds, seconds[1:]))
            print(f"{kind:20} {name:9}{cells}   {growth}")


if __name__ == "__main__":
    main()

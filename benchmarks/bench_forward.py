"""Forward-pass time of minigpt's GPT against Hugging Face's GPT2LMHeadModel and the
TransformerLens bridge, all with the same GPT-2 small weights, in one run.

    python benchmarks/bench_forward.py                 # short: 1 x 128 and 2 x 256 tokens
    python benchmarks/bench_forward.py --full          # adds 8 x 1024 (slow on a small CPU)
    python benchmarks/bench_forward.py --device cuda --full

Each row is the median of ``--repeats`` timed runs after one warm-up, under
``torch.inference_mode()``; the ratio is against Hugging Face at the same shape (< 1 is faster).
Timings on a shared machine are noisy: compare ratios from the same run only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minigpt.device import resolve_device  # noqa: E402
from minigpt.model import GPT  # noqa: E402
from minigpt.reference import _boot_bridge, gpt2_hf_tokenizer, random_gpt2_hf  # noqa: E402


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, after one warm-up run."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        fn()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    parser.add_argument("--full", action="store_true", help="also time batch 8 x 1024 tokens")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (default 5)")
    parser.add_argument("--no-bridge", action="store_true", help="skip the TransformerLens bridge")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be at least 1")

    device = resolve_device(args.device)
    hf = random_gpt2_hf().to(device).eval()
    ours = {impl: GPT.from_hf(hf, attn_impl=impl).eval() for impl in ("sdpa", "einsum")}
    runners = {
        "hf": lambda t: hf(t).logits,
        "minigpt sdpa": lambda t: ours["sdpa"](t),
        "minigpt einsum": lambda t: ours["einsum"](t),
    }
    if not args.no_bridge:
        bridge = _boot_bridge(hf, gpt2_hf_tokenizer(), device)
        runners["tl bridge"] = lambda t: bridge(t)

    shapes = [(1, 128), (2, 256)] + ([(8, 1024)] if args.full else [])
    gen = torch.Generator().manual_seed(0)
    print(
        f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"HF attention: {hf.config._attn_implementation}, median of {args.repeats}"
    )
    print(
        f"{'model':<16}{'batch x pos':>12}{'ms':>10}{'tokens/s':>12}{'vs hf':>8}{'max |dlogit|':>14}"
    )
    for batch, pos in shapes:
        tokens = torch.randint(0, hf.config.vocab_size, (batch, pos), generator=gen).to(device)
        with torch.inference_mode():
            expected = runners["hf"](tokens)
        base = None
        for name, run in runners.items():
            seconds = timed(lambda run=run, t=tokens: run(t), device, args.repeats)
            base = seconds if name == "hf" else base
            with torch.inference_mode():
                err = (run(tokens) - expected).abs().max().item()
            print(
                f"{name:<16}{f'{batch} x {pos}':>12}{seconds * 1e3:>10.1f}"
                f"{batch * pos / seconds:>12,.0f}{seconds / base:>8.2f}{err:>14.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

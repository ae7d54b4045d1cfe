"""Forward-pass time of minigpt's GPT against Hugging Face's GPT2LMHeadModel and the
TransformerLens bridge, all with the same GPT-2 small weights, in one run.

    python benchmarks/bench_forward.py                 # short: 1 x 128 and 2 x 256 tokens
    python benchmarks/bench_forward.py --full          # adds 8 x 1024 (slow on a small CPU)
    python benchmarks/bench_forward.py --device cuda --full
    python benchmarks/bench_forward.py --full --models hf,sdpa --repeats 3

Each row is the median of ``--repeats`` timed runs after one warm-up, under
``torch.inference_mode()``, with the models' runs interleaved; the ratio is against Hugging Face
at the same shape (< 1 is faster). Timings on a shared machine are noisy: compare ratios from the
same run only. ``max |dlogit|`` is the largest difference from Hugging Face's logits.
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
from minigpt.formats.hf_model import from_hf  # noqa: E402
from minigpt.reference import _boot_bridge, gpt2_hf_tokenizer, random_gpt2_hf  # noqa: E402


def time_interleaved(
    runners: dict, tokens: torch.Tensor, device: torch.device, repeats: int
) -> dict[str, float]:
    """Median seconds per runner. Runs alternate between models (after one warm-up each), so
    that a busy spell on a shared machine slows every model, not just the one being timed."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times: dict[str, list[float]] = {name: [] for name in runners}
    with torch.inference_mode():
        for run in runners.values():
            run(tokens)
        sync()
        for _ in range(repeats):
            for name, run in runners.items():
                start = time.perf_counter()
                run(tokens)
                sync()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    parser.add_argument("--full", action="store_true", help="also time batch 8 x 1024 tokens")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (default 5)")
    parser.add_argument(
        "--models",
        default="hf,sdpa,einsum,bridge",
        help="comma-separated subset of hf,sdpa,einsum,bridge (default: all; hf is always run)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} must be at least 1")

    device = resolve_device(args.device)
    hf = random_gpt2_hf().to(device).eval()
    wanted = set(args.models.split(",")) | {"hf"}
    unknown = wanted - {"hf", "sdpa", "einsum", "bridge"}
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from hf,sdpa,einsum,bridge")
    runners = {"hf": lambda t: hf(t).logits}
    for impl in ("sdpa", "einsum"):
        if impl in wanted:
            model = from_hf(hf, attn_impl=impl).eval()
            runners[f"minigpt {impl}"] = lambda t, model=model: model(t)
    if "bridge" in wanted:
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
        seconds = time_interleaved(runners, tokens, device, args.repeats)
        for name, run in runners.items():
            with torch.inference_mode():
                err = (run(tokens) - expected).abs().max().item()
            print(
                f"{name:<16}{f'{batch} x {pos}':>12}{seconds[name] * 1e3:>10.1f}"
                f"{batch * pos / seconds[name]:>12,.0f}{seconds[name] / seconds['hf']:>8.2f}"
                f"{err:>14.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tokens per second of batch-1 greedy generation with GPT-2 small.

Compares, in one run and on the same weights and prompt (rows interleaved, best of
``--repeats``, so that load from other processes falls on every row alike): our ``generate`` with the
key/value cache, our ``generate`` without it, Hugging Face ``generate(do_sample=False)``
and TransformerLens's ``bridge.generate(do_sample=False)``. Every row must produce the
same tokens (checked); the table gives seconds (best of ``--repeats``), tokens/s and the
speed relative to ours with the cache.

    python benchmarks/bench_generate.py                     # 200 new tokens on CPU
    python benchmarks/bench_generate.py --threads 1         # a CPU shared with other jobs

On a CPU that other processes also use, pass ``--threads 1``: with more threads than free
cores, every small matrix product waits on a descheduled thread (measured here: a 768x768
matrix-vector product took 48 ms with 2 threads on a loaded 2-core machine, 1 ms with 1).
    python benchmarks/bench_generate.py --device cuda --repeats 5
    python benchmarks/bench_generate.py --new-tokens 50 --skip bridge
"""

from __future__ import annotations

import argparse
import time

import torch


def timed_once(fn, device: torch.device) -> tuple[float, torch.Tensor]:
    """Wall time of one call (synchronising a GPU around it), and its output."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per row")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, ...")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["uncached", "hf", "bridge"], help="leave a row out")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from minigpt.formats.hf_model import from_hf
    from minigpt.reference import load_reference
    from minigpt.sample import generate

    torch.set_grad_enabled(False)
    ref = load_reference(device=args.device)
    device = ref.device
    model = from_hf(ref.hf_model).eval()
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens), generator=gen).to(device)
    n = args.new_tokens

    def hf(k):
        return ref.hf_model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                     max_new_tokens=k, min_new_tokens=k, do_sample=False,
                                     pad_token_id=50256)  # fmt: skip

    def bridge(k):
        return ref.bridge.generate(prompt, max_new_tokens=k, do_sample=False, stop_at_eos=False,
                                   verbose=False, return_type="tokens")  # fmt: skip

    rows = {
        "minigpt, KV cache": lambda k: generate(model, prompt, k, temperature=0),
        "minigpt, no cache": lambda k: generate(
            model, prompt, k, temperature=0, use_kv_cache=False
        ),
        "Hugging Face generate": hf,
        "TransformerLens bridge": bridge,
    }
    skip = {"uncached": "minigpt, no cache", "hf": "Hugging Face generate",
            "bridge": "TransformerLens bridge"}  # fmt: skip
    for key in args.skip:
        rows.pop(skip[key])

    print(f"GPT-2 small ({ref.weights} weights) on {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch 1, prompt {args.prompt_tokens} tokens, "
          f"{n} new tokens, greedy, best of {args.repeats}")  # fmt: skip
    for fn in rows.values():
        fn(4)  # warm up (allocations, first-call overheads)
    results = {name: float("inf") for name in rows}
    outputs = {}
    for _ in range(args.repeats):  # interleaved: load on a shared machine hits every row alike
        for name, fn in rows.items():
            seconds, out = timed_once(lambda fn=fn: fn(n), device)
            results[name], outputs[name] = min(results[name], seconds), out.to("cpu")
    base = results["minigpt, KV cache"]
    print(f"{'implementation':<24} {'seconds':>8} {'tokens/s':>9} {'vs ours+cache':>14}")
    for name, seconds in results.items():
        print(f"{name:<24} {seconds:>8.2f} {n / seconds:>9.1f} {base / seconds:>13.2f}x")
    reference_tokens = outputs["minigpt, KV cache"]
    same = {name: torch.equal(out, reference_tokens) for name, out in outputs.items()}
    print("same tokens as minigpt+cache: " + ", ".join(f"{k}: {v}" for k, v in same.items()))
    if "minigpt, no cache" in results:
        print(f"cache speed-up: {results['minigpt, no cache'] / base:.1f}x")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

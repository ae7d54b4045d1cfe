"""Tokens per second of batch-1 greedy generation with GPT-2 small, against the memory limit.

Compares, in one run and on the same weights and prompt (rows interleaved, best of
``--repeats``, so that load from other processes falls on every row alike): our ``generate`` with the
key/value cache, our ``generate`` without it, Hugging Face ``generate(do_sample=False)``
and TransformerLens's ``bridge.generate(do_sample=False)``; and, where the device multiplies
bf16 natively (``minigpt.precision``) or with ``--bf16``, ours and Hugging Face's with bf16
weights. Every float32 row must produce the same tokens (checked).

A cached decode step reads every weight once (all but the embeddings, of which it reads a
row) and the cache, so its speed is bounded by memory bandwidth. The same run measures the
read bandwidth in every round, over a tensor of as many bytes as a step of that row's dtype
reads (a sum, a matrix-vector and a vector-matrix product; the fastest counts), and prints
each row's tokens/s as a fraction of that ceiling: ``bandwidth / bytes read per token``.

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
import copy
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


def read_bandwidth(device: torch.device):
    """A function ``measure(nbytes)`` of the bytes/s this machine reads from a float32 tensor
    of ``nbytes``: the fastest of a sum, a matrix-vector and a vector-matrix product over it.

    The tensor has the size of what a decode step reads, so whatever part of it the CPU's
    caches hold counts in the ceiling as it does in the step (this machine's L3 cache is
    480 MB, GPT-2 small's float32 weights 495 MB, its bf16 weights half that).
    """
    tensors = {}

    def measure(nbytes: float) -> float:
        rows = max(1, int(nbytes) // 4 // 4096)
        if rows not in tensors:
            tensors[rows] = (torch.randn(rows, 4096, device=device),
                             torch.randn(4096, device=device), torch.randn(rows, device=device))  # fmt: skip
        matrix, vector, row_vector = tensors[rows]
        best = float("inf")
        for fn in (matrix.sum, lambda: matrix @ vector, lambda: row_vector @ matrix):
            for _ in range(3):
                seconds, _ = timed_once(fn, device)
                best = min(best, seconds)
        return matrix.numel() * 4 / best

    return measure


def bytes_per_token(model, prompt_tokens: int, new_tokens: int) -> float:
    """What one cached decode step reads: every weight but the embeddings (one row each, not
    counted), and the keys and values of the cache at its mean length over the run."""
    weights = sum(
        p.numel() * p.element_size()
        for name, p in model.named_parameters()
        if name not in ("embed.W_E", "pos_embed.W_pos")
    )
    cfg, size = model.cfg, next(model.parameters()).element_size()
    mean_length = prompt_tokens + new_tokens / 2
    return weights + 2 * cfg.n_layers * mean_length * cfg.d_model * size


def products_alone(model, prompt):
    """``k`` decode steps' matrix-vector products and nothing else (the same calls on the
    same prepared weights as :func:`minigpt.decode_step.decode_step`): the bound that the
    kernels themselves put on a step, against which the rest of the step is overhead."""
    from minigpt.decode_step import DecodeWeights

    prep = DecodeWeights(model)
    x = {d: torch.randn(1, d, dtype=prep.dtype, device=prompt.device)
         for d in (model.cfg.d_model, model.cfg.d_mlp)}  # fmt: skip
    matrices = [(w, b) for layer in prep.layers for w, b in (layer[2:4], layer[4:6], layer[8:10],
                layer[10:12])] + [(prep.W_U, prep.b_U)]  # fmt: skip
    d_in = 1 if prep.transposed else 0  # W[d_out, d_in] or W[d_in, d_out]
    inputs = [x[w.shape[d_in]] for w, _ in matrices]

    def run(k):
        for _ in range(k):
            for (w, b), v in zip(matrices, inputs):
                prep.product(v, w, b)
        return prompt

    return run


def _rows(args, ref, model, prompt):
    """The rows of the table: name -> (function of a token count, our model of its dtype)."""
    from minigpt.sample import generate

    def hf_of(hf_model):
        return lambda k: hf_model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                           max_new_tokens=k, min_new_tokens=k, do_sample=False,
                                           pad_token_id=50256)  # fmt: skip

    def bridge(k):
        return ref.bridge.generate(prompt, max_new_tokens=k, do_sample=False, stop_at_eos=False,
                                   verbose=False, return_type="tokens")  # fmt: skip

    rows = {
        "minigpt, KV cache": (lambda k: generate(model, prompt, k, temperature=0), model),
        "minigpt, no cache": (
            lambda k: generate(model, prompt, k, temperature=0, use_kv_cache=False), None),
        "Hugging Face generate": (hf_of(ref.hf_model), model),
        "TransformerLens bridge": (bridge, model),
    }  # fmt: skip
    skip = {"uncached": "minigpt, no cache", "hf": "Hugging Face generate",
            "bridge": "TransformerLens bridge"}  # fmt: skip
    for key in args.skip:
        rows.pop(skip[key])
    rows[PRODUCTS] = (products_alone(model, prompt), model)
    if args.bf16:
        model16 = copy.deepcopy(model).to(torch.bfloat16)
        rows["minigpt, KV cache, bf16"] = (
            lambda k: generate(model16, prompt, k, temperature=0),
            model16,
        )
        if "hf" not in args.skip:
            hf16 = copy.deepcopy(ref.hf_model).to(torch.bfloat16)
            rows["Hugging Face generate, bf16"] = (hf_of(hf16), model16)
        rows[PRODUCTS + ", bf16"] = (products_alone(model16, prompt), model16)
    return rows  # fmt: skip


PRODUCTS = "minigpt, products alone"  # a bound, not a generator: its outputs are not tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per row")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, ...")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["uncached", "hf", "bridge"], help="leave a row out")  # fmt: skip
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 rows (default: where bf16 is native)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from minigpt.formats.hf_model import from_hf
    from minigpt.precision import bf16_support
    from minigpt.reference import load_reference

    torch.set_grad_enabled(False)
    ref = load_reference(device=args.device)
    device = ref.device
    support = bf16_support(device)
    args.bf16 = support.native if args.bf16 is None else args.bf16
    model = from_hf(ref.hf_model).eval()
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 50257, (1, args.prompt_tokens), generator=gen).to(device)
    n = args.new_tokens
    rows = _rows(args, ref, model, prompt)

    print(f"GPT-2 small ({ref.weights} weights) on {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch 1, prompt {args.prompt_tokens} tokens, "
          f"{n} new tokens, greedy, best of {args.repeats}")  # fmt: skip
    print(f"bf16 on this machine: {'native' if support.native else 'NOT native'}: "
          f"{support.reason}")  # fmt: skip
    measure = read_bandwidth(device)
    # One ceiling per working set (float32 and bf16 steps read different amounts).
    sizes = {bytes_per_token(m, args.prompt_tokens, n) for _, m in rows.values() if m is not None}
    for fn, _ in rows.values():
        fn(4)  # warm up (allocations, first-call overheads)
    results = {name: float("inf") for name in rows}
    outputs, bandwidth = {}, {size: measure(size) for size in sizes}
    for _ in range(args.repeats):  # interleaved: load on a shared machine hits every row alike
        for name, (fn, _) in rows.items():
            seconds, out = timed_once(lambda fn=fn: fn(n), device)
            results[name], outputs[name] = min(results[name], seconds), out.to("cpu")
        bandwidth = {size: max(bw, measure(size)) for size, bw in bandwidth.items()}
    _print_table(results, rows, n, args.prompt_tokens, bandwidth)
    fp32 = [name for name in results if "bf16" not in name and not name.startswith(PRODUCTS)]
    reference_tokens = outputs["minigpt, KV cache"]
    same = {name: torch.equal(outputs[name], reference_tokens) for name in fp32}
    print("same tokens as minigpt+cache: " + ", ".join(f"{k}: {v}" for k, v in same.items()))
    if "minigpt, KV cache, bf16" in outputs:
        new16, new32 = outputs["minigpt, KV cache, bf16"][0, -n:], reference_tokens[0, -n:]
        agree = int((new16 == new32).cumprod(0).sum())
        print(f"bf16 weights: the first {agree} of {n} greedy tokens equal float32's")
    if "minigpt, no cache" in results:
        print(f"cache speed-up: {results['minigpt, no cache'] / results['minigpt, KV cache']:.1f}x")
    return 0 if all(same.values()) else 1


def _print_table(results, rows, n: int, prompt_tokens: int, bandwidth: dict) -> None:
    base = results["minigpt, KV cache"]
    print("read bandwidth (best round) over as many bytes as a step reads: " + ", ".join(
        f"{bw / 1e9:.1f} GB/s over {size / 1e6:.0f} MB" for size, bw in sorted(bandwidth.items())
    ) + "; ceiling = bandwidth / bytes read per token")  # fmt: skip
    print(f"{'implementation':<30} {'seconds':>8} {'tokens/s':>9} {'MB/token':>9} "
          f"{'ceiling':>8} {'of ceiling':>10} {'vs ours+cache':>14}")  # fmt: skip
    for name, seconds in results.items():
        tok_s, model = n / seconds, rows[name][1]
        if model is None:  # without the cache a step reads more than the weights
            mb, ceiling, frac = "n/a", "n/a", "n/a"
        else:
            per_token = bytes_per_token(model, prompt_tokens, n)
            mb, top = f"{per_token / 1e6:.0f}", bandwidth[per_token] / per_token
            ceiling, frac = f"{top:.1f}", f"{100 * tok_s / top:.0f}%"
        print(f"{name:<30} {seconds:>8.2f} {tok_s:>9.1f} {mb:>9} {ceiling:>8} {frac:>10} "
              f"{base / seconds:>13.2f}x")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())

"""Training throughput: tokens per second and model FLOPs utilisation (MFU).

Runs a few optimizer steps of the same model, on the same random batches, four ways:

* ``minigpt.train``: our loop (``TrainRun.optimizer_step``: seeded windows, autocast,
  clipping, AdamW, schedule), with fused attention (``sdpa``);
* ``plain loop``: a bare nanoGPT-style step (forward, cross-entropy, backward, clip,
  AdamW) on the same model: the peer our loop must not be slower than;
* ``plain loop, einsum attention``: the teaching path of chapter 3;
* ``plain loop, HF GPT2LMHeadModel``: Hugging Face's model of the same shape.

FLOPs per token follow the PaLM/nanoGPT estimate: ``6 N + 12 L H Q T`` with ``N`` the
parameters that take part in matrix products (all but the embedding lookups), ``L``
layers, ``H`` heads, ``Q`` head width and ``T`` the context. MFU is achieved FLOP/s over
the device's peak (``--peak-tflops``; defaults known for some GPUs, none for CPUs).

    python benchmarks/bench_train.py                      # CPU, tiny preset, ~1 minute
    python benchmarks/bench_train.py --preset gpt2 --device cuda --batch-size 16
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.data import TokenData
from minigpt.device import resolve_device
from minigpt.formats.gpt2_weights import config_to_hf
from minigpt.model import GPT
from minigpt.presets import get_preset
from minigpt.train import TrainRun, precision_for

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}  # bf16 dense


def flops_per_token(model: GPT, n_ctx: int) -> float:
    cfg = model.cfg
    lookups = model.embed.W_E.numel() + model.pos_embed.W_pos.numel()
    n_matmul = sum(p.numel() for p in model.parameters()) - lookups
    return 6 * n_matmul + 12 * cfg.n_layers * cfg.n_heads * cfg.d_head * n_ctx


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, warmup: int, steps: int) -> float:
    """Seconds per step, after ``warmup`` untimed steps (compilation happens there)."""
    for _ in range(warmup):
        step()
    _sync(device)
    if steps == 0:
        return 0.0
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def plain_step(model, optimizer, batches, device, autocast_dtype, hf: bool = False):
    """A nanoGPT-style step: nothing but forward, loss, backward, clip and update."""
    it = iter(batches)

    def step():
        windows = next(it).to(device, non_blocking=True)
        x, y = windows[:, :-1], windows[:, 1:]
        ctx = (
            torch.autocast(device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with ctx:
            logits = model(x).logits if hf else model(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="model shape (default: tiny)")
    parser.add_argument("--vocab", type=int, help="vocabulary size (default: the preset's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default: preset's)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds over the variants; the median counts"
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile (default: on for CUDA)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, help="device peak, for MFU")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the HF model")
    return parser.parse_args()


def _print_table(results: dict[str, float], tokens_per_step: int, flops: float, peak) -> None:
    base = results["plain loop (sdpa)"]
    print(
        f"{'variant':34} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'vs plain':>9}"
    )
    for name, seconds in results.items():
        tok_s = tokens_per_step / seconds
        achieved = tok_s * flops / 1e12
        mfu = f"{100 * achieved / peak:5.1f}%" if peak else "   n/a"
        print(
            f"{name:34} {seconds * 1e3:9.1f} {tok_s:10,.0f} {achieved:8.3f} {mfu:>6} "
            f"{base / seconds:8.2f}x"
        )
    print("\n'vs plain' > 1 means faster than the plain nanoGPT-style loop on our model (sdpa).")


def _print_header(device, preset, cfg, vocab, batch, autocast_dtype, compile_, fused) -> None:
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    print(
        f"device {device} ({where}), "
        f"torch {torch.__version__}, preset {preset.name}: d_model {cfg.d_model}, {cfg.n_layers} layers, "
        f"vocab {vocab}, context {cfg.n_ctx}, batch {batch}, autocast {autocast_dtype}, compile {compile_}, "
        f"fused AdamW {fused}"
    )


# main runs a little past 80 lines: the variants are closures over one run's settings (model
# shape, batches, device, precision), and they read best side by side, in one place.
def main() -> None:
    args = _parse_args()

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    vocab = args.vocab or (4096 if preset.tokenizer.startswith("shakespeare") else 50257)
    cfg = preset.model_config(vocab)
    n_ctx = cfg.n_ctx
    batch = args.batch_size or preset.train.batch_size // preset.train.grad_accum
    compile_ = device.type == "cuda" if args.compile is None else args.compile
    autocast_dtype, _ = precision_for(device, "auto")
    train_cfg = preset.train.replace(
        batch_size=batch,
        grad_accum=1,
        n_ctx=n_ctx,
        compile=compile_,
        warmup_steps=1,
        max_steps=10**6,
        profile=False,
        tensorboard=False,
    )
    gen = torch.Generator().manual_seed(0)
    total_steps = args.warmup + args.repeats * args.steps
    batches = [
        torch.randint(0, vocab, (batch, n_ctx + 1), generator=gen) for _ in range(total_steps)
    ]
    data = TokenData(np.random.default_rng(0).integers(0, vocab, 200_000).astype(np.uint16), vocab)
    fused = device.type == "cuda"

    def fresh(attn_impl: str = "sdpa") -> GPT:
        torch.manual_seed(0)
        return GPT(cfg, attn_impl=attn_impl).to(device)

    def adamw(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused or None)

    def maybe_compile(model):
        return torch.compile(model) if compile_ else model

    variants = {}

    def ours():
        run = TrainRun(fresh(), data, train_cfg, out_dir=None, device=device, meta=None)
        return lambda: run.optimizer_step()

    variants["minigpt.train (sdpa)"] = ours
    for impl in ("sdpa", "einsum"):

        def plain(impl=impl):
            model = fresh(impl)
            return plain_step(maybe_compile(model), adamw(model), batches, device, autocast_dtype)

        variants[f"plain loop ({impl})"] = plain
    if not args.skip_hf:

        def hf():
            from transformers import GPT2LMHeadModel

            torch.manual_seed(0)  # the same shape as ours, tied as GPT-2, no dropout
            model = GPT2LMHeadModel(config_to_hf(cfg, tied=True, eot_id=vocab - 1)).to(device)
            return plain_step(
                maybe_compile(model), adamw(model), batches, device, autocast_dtype, hf=True
            )

        variants["plain loop (HF GPT2LMHeadModel)"] = hf

    flops = flops_per_token(fresh(), n_ctx)
    peak = peak_tflops(device, args.peak_tflops)
    _print_header(device, preset, cfg, vocab, batch, autocast_dtype, compile_, fused)
    print(
        f"{flops / 1e6:.1f} MFLOPs per token; {args.warmup} warmup steps, then {args.repeats} "
        f"rounds of {args.steps} timed steps per variant (median round)\n"
    )
    # Variants take turns, round after round, so a burst of load elsewhere on the machine
    # hits them all alike; each one's median round counts.
    steps = {name: build() for name, build in variants.items()}
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        time_steps(step, device, args.warmup, 0)
    for _ in range(args.repeats):
        for name, step in steps.items():
            rounds[name].append(time_steps(step, device, 0, args.steps))
    results = {name: float(np.median(times)) for name, times in rounds.items()}
    _print_table(results, batch * n_ctx, flops, peak)


if __name__ == "__main__":
    main()

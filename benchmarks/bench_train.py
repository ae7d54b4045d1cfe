"""Training throughput: tokens per second and model FLOPs utilisation (MFU).

Runs a few optimizer steps of the same model, on the same random batches, several ways:

* ``minigpt.train``: our loop (``TrainRun.optimizer_step``: seeded windows, autocast,
  clipping, AdamW, schedule), with fused attention (``sdpa``);
* ``plain loop``: a bare nanoGPT-style step (forward, cross-entropy, backward, clip,
  AdamW) on the same model: the peer our loop must not be slower than;
* ``plain loop, einsum attention``: the teaching path of chapter 3;
* ``plain loop, HF GPT2LMHeadModel``: Hugging Face's model of the same shape;
* the same in bf16 autocast (ours and Hugging Face's), where the device multiplies bf16
  natively (``minigpt.precision``) or with ``--bf16``; ``--compile`` adds torch.compile rows
  and says after how many steps the compile time is paid back.

Every loop uses fused AdamW where torch has it (CUDA, and CPUs since torch 2.4). FLOPs per
token follow the PaLM/nanoGPT estimate: ``6 N + 12 L H Q T`` with ``N`` the parameters
that take part in matrix products (all but the embedding lookups), ``L`` layers, ``H``
heads, ``Q`` head width and ``T`` the context. The same run measures the device's matrix
product rate on the model's own MLP shape (``batch * T`` by ``d_model`` by ``d_mlp``), in
float32 and bf16, and gives each step's FLOP/s as a fraction of it ("of GEMM").

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
from minigpt.precision import bf16_support
from minigpt.presets import get_preset
from minigpt.train import TrainRun

DTYPES = (torch.float32, torch.bfloat16)
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


def gemm_flops(device: torch.device, m: int, k: int, n: int, dtype: torch.dtype):
    """A function that times one ``[m, k] @ [k, n]`` product on ``device`` (FLOP/s, best of 5)."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)

    def measure() -> float:
        best = float("inf")
        for _ in range(6):
            _sync(device)
            start = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - start)
        return 2 * m * k * n / best

    return measure


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
        "--repeats", type=int, default=5, help="rounds over the variants; the median counts"
    )
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast rows (default: where bf16 is native)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
    parser.add_argument("--peak-tflops", type=float, help="device peak, for MFU")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the HF model")
    parser.add_argument(
        "--loss-steps",
        type=int,
        default=0,
        help="also train the preset on its corpus this many steps in float32 and in bf16 "
        "and compare the losses (default: 0, not done)",
    )
    return parser.parse_args()


def _print_table(results, tokens_per_step: int, flops: float, gemm: dict, peak) -> None:
    base = results["plain loop (sdpa)"]
    print(
        f"{'variant':40} {'ms/step':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'of GEMM':>8} "
        f"{'MFU':>6} {'vs plain':>9} {'vs HF':>6}"
    )
    for name, seconds in results.items():
        bf16 = "bf16" in name
        tok_s = tokens_per_step / seconds
        achieved = tok_s * flops
        mfu = f"{100 * achieved / (peak * 1e12):5.1f}%" if peak else "   n/a"
        hf = results.get("plain loop (HF GPT2LMHeadModel)" + (", bf16" if bf16 else ""))
        vs_hf = f"{hf / seconds:5.2f}x" if hf else "   n/a"
        of_gemm = 100 * achieved / gemm[torch.bfloat16 if bf16 else torch.float32]
        print(
            f"{name:40} {seconds * 1e3:8.1f} {tok_s:9,.0f} {achieved / 1e9:8.1f} "
            f"{of_gemm:7.1f}% {mfu:>6} {base / seconds:8.2f}x {vs_hf:>6}"
        )
    print(
        "\n'vs plain' > 1: faster than the plain loop on our model (sdpa, float32); 'vs HF' > 1:"
        " faster than Hugging Face's model in the same loop and precision; 'of GEMM': FLOP/s"
        " over the measured matrix-product rate of the same precision."
    )


def _print_header(device, preset, cfg, vocab, batch, support, gemm) -> None:
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads"
    )
    print(
        f"device {device} ({where}), torch {torch.__version__}, preset {preset.name}: d_model "
        f"{cfg.d_model}, {cfg.n_layers} layers, vocab {vocab}, context {cfg.n_ctx}, batch {batch}"
    )
    print(
        f"GEMM [{batch * cfg.n_ctx}x{cfg.d_model}] @ [{cfg.d_model}x{cfg.d_mlp}]: float32 "
        f"{gemm[torch.float32] / 1e9:.0f} GFLOP/s, bf16 {gemm[torch.bfloat16] / 1e9:.0f} GFLOP/s "
        f"({gemm[torch.bfloat16] / gemm[torch.float32]:.2f}x)"
    )
    case = "native" if support.native else "NOT native (emulated)"
    print(f"bf16 on this machine: {case}: {support.reason}")


def _run_rounds(steps: dict, device, warmup: int, repeats: int, n: int) -> tuple[dict, dict]:
    """Median seconds per step of each variant (or FLOP/s of each GEMM probe, a function
    named ``GEMM ...``), and the seconds each variant's warm-up steps took.

    Variants and probes take turns, round after round, so that a burst of load elsewhere on
    the machine hits them all alike."""
    warm = {}
    for name, step in steps.items():
        start = time.perf_counter()
        if name.startswith("GEMM"):
            step()
        else:
            time_steps(step, device, warmup, 0)
        warm[name] = time.perf_counter() - start
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            probe = name.startswith("GEMM")
            rounds[name].append(step() if probe else time_steps(step, device, 0, n))
    return {name: float(np.median(times)) for name, times in rounds.items()}, warm


def _print_compile_payback(results: dict, warm: dict, warmup: int) -> None:
    """After how many steps each compiled row's compile time is paid back (a second run
    compiles faster: torch keeps compiled graphs in a cache on disk)."""
    for name in [n for n in results if "torch.compile" in n]:
        eager = name.replace(", torch.compile", "")
        saved = results[eager] - results[name]
        extra = warm[name] - warm[eager]  # the compile time, beyond the same warm-up steps
        if saved <= 0:
            print(f"{name}: compiling took {extra:.0f} s and the step is not faster: it never pays")
        else:
            print(
                f"{name}: compiling took {extra:.0f} s, {saved * 1e3:.1f} ms saved a step: pays "
                f"for itself after {extra / saved:,.0f} steps"
            )


def compare_losses(preset: str, steps: int, device: torch.device) -> None:
    """Train the preset on its corpus from the same seed in float32 and in bf16 autocast and
    print the two runs' final training loss (mean of the last 10 steps) and validation loss."""
    from minigpt.presets import plan_run
    from minigpt.train import train

    results = {}
    for precision in ("float32", "bfloat16"):
        changes = {"max_steps": steps, "precision": precision, "eval_interval": steps}
        plan = plan_run(preset, train_changes=changes)
        model, data = plan.materialize()
        start = time.perf_counter()
        run = train(model, data, plan.train, device=device, progress=False)
        seconds = time.perf_counter() - start
        val = [r["val_loss"] for r in run.history if "val_loss" in r][-1]
        results[precision] = (float(np.mean(run.losses[-10:])), val, seconds)
        print(
            f"{precision:9} {steps} steps of {preset}: train loss {results[precision][0]:.4f}, "
            f"val loss {val:.4f}, {seconds:.0f} s"
        )
    (t32, v32, s32), (t16, v16, s16) = results["float32"], results["bfloat16"]
    print(
        f"bf16 - float32: train loss {t16 - t32:+.4f}, val loss {v16 - v32:+.4f} "
        f"({100 * (v16 - v32) / v32:+.2f}%); bf16 took {s16 / s32:.2f}x the time"
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
    support = bf16_support(device)
    with_bf16 = support.native if args.bf16 is None else args.bf16
    train_cfg = preset.train.replace(
        batch_size=batch,
        grad_accum=1,
        n_ctx=n_ctx,
        compile=False,
        fused_adamw=True,
        precision="float32",
        warmup_steps=1,
        max_steps=10**6,
        profile=False,
        tensorboard=False,
    )
    gen = torch.Generator().manual_seed(0)
    total_steps = args.warmup + args.repeats * args.steps  # each variant reads its own copy
    batches = [
        torch.randint(0, vocab, (batch, n_ctx + 1), generator=gen) for _ in range(total_steps)
    ]
    data = TokenData(np.random.default_rng(0).integers(0, vocab, 200_000).astype(np.uint16), vocab)

    def fresh(attn_impl: str = "sdpa") -> GPT:
        torch.manual_seed(0)
        return GPT(cfg, attn_impl=attn_impl).to(device)

    def hf_model():
        from transformers import GPT2LMHeadModel

        torch.manual_seed(0)  # the same shape as ours, tied as GPT-2, no dropout
        return GPT2LMHeadModel(config_to_hf(cfg, tied=True, eot_id=vocab - 1)).to(device)

    def plain(make, dtype=None, compile_=False, hf=False):
        def build():
            model = make()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            stepped = torch.compile(model) if compile_ else model
            return plain_step(stepped, optimizer, batches, device, dtype, hf=hf)

        return build

    def ours():
        run = TrainRun(fresh(), data, train_cfg, out_dir=None, device=device, meta=None)
        return lambda: run.optimizer_step()

    variants = {
        "minigpt.train (sdpa)": ours,
        "plain loop (sdpa)": plain(fresh),
        "plain loop (einsum)": plain(lambda: fresh("einsum")),
    }
    if not args.skip_hf:
        variants["plain loop (HF GPT2LMHeadModel)"] = plain(hf_model, hf=True)
    if with_bf16:
        variants["plain loop (sdpa), bf16"] = plain(fresh, torch.bfloat16)
        if not args.skip_hf:
            variants["plain loop (HF GPT2LMHeadModel), bf16"] = plain(
                hf_model, torch.bfloat16, hf=True
            )
    if args.compile:
        variants["plain loop (sdpa), torch.compile"] = plain(fresh, compile_=True)
        if not args.skip_hf:
            variants["plain loop (HF GPT2LMHeadModel), torch.compile"] = plain(
                hf_model, compile_=True, hf=True
            )

    rows = batch * n_ctx
    steps = {f"GEMM {dt}": gemm_flops(device, rows, cfg.d_model, cfg.d_mlp, dt) for dt in DTYPES}
    steps.update({name: build() for name, build in variants.items()})
    flops = flops_per_token(fresh(), n_ctx)
    results, warm = _run_rounds(steps, device, args.warmup, args.repeats, args.steps)
    gemm = {dt: results.pop(f"GEMM {dt}") for dt in DTYPES}
    _print_header(device, preset, cfg, vocab, batch, support, gemm)
    print(
        f"{flops / 1e6:.1f} MFLOPs per token; {args.warmup} warmup steps, then {args.repeats} "
        f"rounds of {args.steps} timed steps per variant (median round)\n"
    )
    _print_table(results, rows, flops, gemm, peak_tflops(device, args.peak_tflops))
    _print_compile_payback(results, warm, args.warmup)
    if args.loss_steps:
        print()
        compare_losses(args.preset, args.loss_steps, device)


if __name__ == "__main__":
    main()

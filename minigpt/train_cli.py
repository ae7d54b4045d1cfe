"""``minigpt-train`` (also ``python -m minigpt.train``): train a preset from the command line.

Examples::

    python -m minigpt.train --preset tiny --out runs/tiny          # ~25 s on 2 CPU cores
    python -m minigpt.train --preset tiny --out runs/tiny --resume  # after Ctrl-C
    python -m minigpt.train --preset tiny --out runs/tiny --export runs/tiny-hf  # + HF folder
    torchrun --nproc_per_node 2 -m minigpt.train --preset seed --out runs/seed

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains data-parallel: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

import torch

from minigpt.checkpoint import CheckpointError
from minigpt.corpus import CorpusError
from minigpt.device import resolve_device
from minigpt.formats.hf_model import save_pretrained
from minigpt.presets import PRESETS, plan_run
from minigpt.settings import add_flags, flag_changes
from minigpt.train import TrainConfig, TrainingDiverged, train

EXIT_INTERRUPTED = 130  # the shell's code for "stopped by Ctrl-C" (the checkpoint is saved)


def build_parser() -> argparse.ArgumentParser:
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    parser = argparse.ArgumentParser(
        prog="minigpt-train",
        description="Train a GPT on next-token prediction. Writes OUT/checkpoint.pt and "
        "OUT/metrics.jsonl (one JSON object per line: step, loss, lr, grad_norm, tokens_per_s, "
        "and val_loss/val_ppl where evaluated). Ctrl-C saves a checkpoint and exits with code "
        f"{EXIT_INTERRUPTED}; run again with --resume and the same arguments to continue.",
        epilog=f"Presets: {presets}.",
    )
    arg = parser.add_argument
    arg("--preset", default="tiny", help="model + data + settings (default: tiny)")
    arg("--data", help="corpus: 'shakespeare', a text file or folder, or a Hugging Face dataset")
    arg(
        "--data-config",
        help="the dataset's configuration (e.g. 20231101.de of wikimedia/wikipedia)",
    )
    arg("--data-split", help="the dataset's split to train on (default: train)")
    arg("--text-column", help="the dataset's column of text (default: text)")
    arg(
        "--lossy",
        action="store_true",
        help="read text files that are not UTF-8 with U+FFFD for their bad bytes (default: "
        "refuse them, naming the file and the offset of the first bad byte)",
    )
    arg("--tokenizer", help="'gpt2' or 'shakespeare-<vocab size>' (default: the preset's)")
    arg("--out", type=Path, help="output folder (default: runs/<preset>)")
    arg("--resume", action="store_true", help="continue the run saved in --out")
    arg("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    arg("--max-documents", type=int, help="read only this many documents of the corpus")
    arg("--no-progress", action="store_true", help="no progress bar")
    arg(
        "--tokenize-only",
        action="store_true",
        help="tokenize the corpus into the cache and stop (before a run on many processes, "
        "whose ranks would otherwise wait for it)",
    )
    arg("--debug", action="store_true", help="on an error, print the whole traceback")
    arg(
        "--export",
        type=Path,
        metavar="DIR",
        help="when training finishes, write the model and its tokenizer to DIR as a Hugging "
        "Face GPT-2 folder (for transformers' GPT2LMHeadModel and AutoTokenizer)",
    )
    # The training settings: one option per TrainConfig field declared with flag().
    add_flags(
        parser.add_argument_group("training settings"), TrainConfig, " (default: the preset's)"
    )
    return parser


def _init_distributed(device_arg: str):
    """Join the torchrun group when there is one; returns the device of this process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return resolve_device(device_arg)
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def run(args) -> int:
    device = None if args.tokenize_only else _init_distributed(args.device)
    plan = plan_run(
        args.preset,
        tokenizer=args.tokenizer,
        data=args.data,
        data_options={
            "config": args.data_config,
            "split": args.data_split,
            "text_column": args.text_column,
            "lossy": args.lossy or None,
        },
        train_changes=flag_changes(args, TrainConfig),
    )
    out = args.out or Path("runs") / plan.preset.name
    if args.export is not None and args.export.exists() and not args.export.is_dir():
        raise ValueError(f"--export {args.export} exists and is not a folder")
    model, data = plan.materialize(max_documents=args.max_documents, progress=not args.no_progress)
    if args.tokenize_only:
        print(f"minigpt-train: {data.tokens.size:,} tokens of {plan.data!r} are in the cache")
        return 0
    n_params = sum(p.numel() for p in model.parameters())
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        print(
            f"minigpt-train: {plan.preset.name}, {n_params / 1e6:.2f}M parameters, {device}, "
            f"{data.tokens.size:,} tokens of {plan.data!r} -> {out}"
        )
        print(f"  {dataclasses.asdict(plan.model)}")
    result = train(
        model,
        data,
        plan.train,
        out_dir=out,
        resume=args.resume,
        device=device,
        progress=not args.no_progress,
        meta=plan.run_meta(data),
    )
    last = result.history[-1] if result.history else {}
    if rank0:
        val = f", val_loss {last['val_loss']:.4f}" if "val_loss" in last else ""
        print(
            f"minigpt-train: {result.status} at step {result.step}, "
            f"loss {last.get('loss', float('nan')):.4f}{val}; checkpoint in {out}"
        )
        if args.export is not None and result.status == "finished":
            save_pretrained(model, args.export, tokenizer=plan.tokenizer)
            print(f"minigpt-train: exported the model and its tokenizer to {args.export}")
        elif args.export is not None:
            print(f"minigpt-train: not exported to {args.export} (the run did not finish)")
    return 0 if result.status == "finished" else EXIT_INTERRUPTED


def _interrupt(signum, frame):
    """Ctrl-C outside the training loop (which saves and stops on its own): stop now, and
    ignore further presses while stopping, so that the exit is one line, not a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``minigpt-train`` / ``python -m minigpt.train``: see ``--help``."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        code = run(args)
        if code == EXIT_INTERRUPTED:  # stopped on Ctrl-C and saved: more presses change nothing
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return code
    except KeyboardInterrupt:  # a second Ctrl-C in the loop, or one before or after it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the process is exiting: ignore more
        print("minigpt-train: interrupted before a checkpoint could be saved; the checkpoints "
              "already saved are untouched", file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
    except (ValueError, OSError, CorpusError, CheckpointError, TrainingDiverged) as err:
        if args.debug:
            raise
        print(f"minigpt-train: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if signal.getsignal(signal.SIGINT) is _interrupt:  # not interrupted: as it was
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main())

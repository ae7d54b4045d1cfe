"""``minigpt-train`` (also ``python -m minigpt.train``): train a preset from the command line.

Examples::

    python -m minigpt.train --preset tiny --out runs/tiny          # ~2 min on 2 CPU cores
    python -m minigpt.train --preset tiny --out runs/tiny --resume  # after Ctrl-C
    python -m minigpt.train --preset tiny --out runs/tiny --export runs/tiny-hf  # + HF folder
    torchrun --nproc_per_node 2 -m minigpt.train --preset seed --out runs/seed

Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains data-parallel: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from minigpt.checkpoint import CheckpointError
from minigpt.corpus import CorpusError
from minigpt.device import resolve_device
from minigpt.formats.hf_model import save_pretrained
from minigpt.presets import PRESETS, plan_run
from minigpt.train import TrainConfig, TrainingDiverged, allowed, check_setting, train

EXIT_INTERRUPTED = 130  # the shell's code for "stopped by Ctrl-C" (the checkpoint is saved)


class FlagError(ValueError):
    """A flag with a value it does not allow: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line naming the flag, instead of the usage and a line
        raise FlagError(message)


def build_parser() -> argparse.ArgumentParser:
    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    parser = _Parser(
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
    arg("--tokenizer", help="'gpt2' or 'shakespeare-<vocab size>' (default: the preset's)")
    arg("--out", type=Path, help="output folder (default: runs/<preset>)")
    arg("--resume", action="store_true", help="continue the run saved in --out")
    arg("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    _training_flags(parser)
    arg("--max-documents", type=int, help="read only this many documents of the corpus")
    arg("--no-progress", action="store_true", help="no progress bar")
    arg("--debug", action="store_true", help="on an error, print the whole traceback")
    arg(
        "--export",
        type=Path,
        metavar="DIR",
        help="when training finishes, write the model and its tokenizer to DIR as a Hugging "
        "Face GPT-2 folder (for transformers' GPT2LMHeadModel and AutoTokenizer)",
    )
    return parser


def _flag_fields():
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag")]


def _parse_as(f):
    """argparse's ``type=`` for the field ``f``: the value, or an error naming what is allowed."""
    kind = int if f.type.startswith("int") else float

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed(f)}") from None
        if check_setting(f, value) is not None:
            raise argparse.ArgumentTypeError(f"{text} is not {allowed(f)}")
        return value

    return parse


def _training_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~minigpt.train.TrainConfig` field declared as one, with its help
    and allowed values from the field; unset flags keep the preset's value."""
    for f in _flag_fields():
        name, help = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if f.type.startswith("bool"):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, help=help)
        elif f.metadata["choices"]:
            parser.add_argument(name, choices=f.metadata["choices"], help=help)
        else:
            parser.add_argument(
                name, type=_parse_as(f), help=f"{help}; {allowed(f).removesuffix(' or None')}"
            )


def _train_changes(args) -> dict:
    """The TrainConfig fields the flags set (None: the preset's value)."""
    return {f.name: getattr(args, f.name) for f in _flag_fields()}


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
    device = _init_distributed(args.device)
    plan = plan_run(
        args.preset, tokenizer=args.tokenizer, data=args.data, train_changes=_train_changes(args)
    )
    out = args.out or Path("runs") / plan.preset.name
    if args.export is not None and args.export.exists() and not args.export.is_dir():
        raise ValueError(f"--export {args.export} exists and is not a folder")
    model, data = plan.materialize(max_documents=args.max_documents)
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
        meta=plan.meta,
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


def main(argv: list[str] | None = None) -> int:
    """``minigpt-train`` / ``python -m minigpt.train``: see ``--help``."""
    try:
        args = build_parser().parse_args(argv)
    except FlagError as err:
        print(f"minigpt-train: error: {err}", file=sys.stderr)
        return 2
    try:
        return run(args)
    except (ValueError, OSError, CorpusError, CheckpointError, TrainingDiverged) as err:
        if args.debug:
            raise
        print(f"minigpt-train: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, ValueError) else 1
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())

"""``minigpt-generate "prompt"`` (also ``python -m minigpt.generate``): text from a minigpt
model, streamed as it comes.

The model is the reference GPT-2 small (real weights when they can be had, else seeded
random ones; ``--weights``), the chapter-6 Shakespeare model (``--model shakespeare``), or
a training checkpoint (``--model path/to/checkpoint.pt``). Every knob of
:class:`minigpt.sample.Sampler` is a flag; the sampler is built once from them and carried
through :func:`minigpt.sample.stream`. ``--num-beams`` switches to beam search.

Examples::

    python -m minigpt.generate "The meaning of life is" --temperature 0.8 --top-p 0.95
    python -m minigpt.generate "ROMEO:" --model shakespeare --max-new-tokens 200 --seed 1
    python -m minigpt.generate "Hello" --temperature 0 --num-beams 4
"""

from __future__ import annotations

import argparse
import codecs
import signal
import sys
import time
from pathlib import Path

import torch

from minigpt.beam import beam_search
from minigpt.checkpoint import CHECKPOINT_NAME, CheckpointError, read_checkpoint
from minigpt.data import tokenizer_fingerprint
from minigpt.device import resolve_device
from minigpt.formats.hf_model import from_hf
from minigpt.precision import DTYPES, describe, generation_precision
from minigpt.presets import get_tokenizer
from minigpt.reference import ReferenceUnavailable, load_reference
from minigpt.sample import Sampler, stream
from minigpt.tokenizer import TokenizerFileError
from minigpt.train import SEEDS
from minigpt.zoo import shakespeare_model

EXIT_INTERRUPTED = 130  # the shell's code for "stopped by Ctrl-C"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minigpt-generate",
        description="Generate text with a minigpt model, streaming it to the terminal.",
    )
    p.add_argument("prompt", nargs="?", default="", help="text to continue (default: empty)")
    p.add_argument(
        "--model",
        default="reference",
        help="'reference' (GPT-2 small), 'shakespeare' (chapter 6) or a checkpoint.pt path",
    )
    p.add_argument(
        "--weights",
        choices=["auto", "pretrained", "random"],
        default=None,
        help="reference weights (default $MINIGPT_WEIGHTS, else auto)",
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer for a checkpoint: 'gpt2' or 'shakespeare-<vocab size>' "
        "(default: the one recorded in the checkpoint)",
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, mps, ...")
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="weights' dtype; auto: bfloat16 where the device multiplies it natively (a GPU "
        "from capability 8.0), else float32",
    )
    g = p.add_argument_group("sampling")
    g.add_argument("--max-new-tokens", type=int, default=100)
    g.add_argument("--temperature", type=float, default=1.0, help="0 is greedy")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--min-p", type=float, default=None)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--frequency-penalty", type=float, default=0.0)
    g.add_argument("--presence-penalty", type=float, default=0.0)
    g.add_argument(
        "--stop-token",
        type=int,
        action="append",
        default=None,
        help="token id that ends generation (repeatable; default: <|endoftext|>)",
    )
    g.add_argument(
        "--stop-string",
        action="append",
        default=None,
        help="text that ends generation once generated (repeatable)",
    )
    g.add_argument("--no-cache", action="store_true", help="recompute every position each step")
    g.add_argument("--context-overflow", choices=["slide", "stop"], default="slide")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    g.add_argument(
        "--num-samples", type=int, default=1, help="independent samples, one after another"
    )
    b = p.add_argument_group("beam search")
    b.add_argument("--num-beams", type=int, default=1, help="> 1: beam search (not streamed)")
    b.add_argument("--length-penalty", type=float, default=1.0)
    p.add_argument("--quiet", action="store_true", help="no model banner or speed line on stderr")
    p.add_argument("--debug", action="store_true", help="on an error, print the whole traceback")
    return p  # fmt: skip


def load_model(name: str, weights: str | None, tokenizer_name: str | None, device):
    """``(GPT in eval mode, tokenizer, note)`` for ``--model``."""
    if name == "reference":
        ref = load_reference(weights=weights, device=device)
        model = from_hf(ref.hf_model)
        return model.eval(), get_tokenizer(tokenizer_name or "gpt2"), ref.summary()
    if name == "shakespeare":
        model, tokenizer = shakespeare_model(device, progress=True)
        return model, tokenizer, "The chapter-6 model, trained on Shakespeare."
    path = Path(name)
    if not path.exists():
        raise SystemExit(
            f"--model {name!r}: expected 'reference', 'shakespeare' or a checkpoint file"
        )
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    ckpt = read_checkpoint(path, map_location=device or "cpu")  # read and verified once
    meta = ckpt.meta
    tokenizer = get_tokenizer(tokenizer_name or meta.get("tokenizer", "gpt2"))
    model = ckpt.build_model(device or "cpu").eval()
    if tokenizer.vocab_size != model.cfg.d_vocab:
        raise SystemExit(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's d_vocab is "
            f"{model.cfg.d_vocab}; pass the right --tokenizer"
        )
    trained_with = meta.get("tokenizer_fingerprint")
    if trained_with is not None and trained_with != tokenizer_fingerprint(tokenizer):
        raise SystemExit(
            f"{path} was trained with another tokenizer than {tokenizer.name!r} (fingerprint "
            f"{trained_with}, this one {tokenizer_fingerprint(tokenizer)}): its ids would mean "
            "other text; pass the tokenizer it was trained with (--tokenizer)"
        )
    return model, tokenizer, f"Checkpoint {path}."


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids, after ``<|endoftext|>`` when the tokenizer has it (so "" works)."""
    ids = tokenizer.encode(prompt)
    bos = getattr(tokenizer, "eot_id", None)
    return [bos, *ids] if bos is not None else ids


class TextStream:
    """Turns token ids into text as they arrive, never splitting a multi-byte character."""

    def __init__(self, tokenizer, out):
        self.tokenizer, self.out = tokenizer, out
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, ids: list[int], final: bool = False) -> None:
        data = self.tokenizer.decode_bytes(ids)
        self.out.write(self.utf8.decode(data, final=final))
        self.out.flush()


def _check_counts(args) -> None:
    """The flags that count something, or seed the generator, against their ranges."""
    for flag, value in (("--num-samples", args.num_samples), ("--num-beams", args.num_beams)):
        if value < 1:
            raise ValueError(f"{flag}={value} must be an integer >= 1")
    last = SEEDS.high - (args.num_samples - 1)  # sample i is seeded with --seed + i
    if not SEEDS.admits(args.seed) or args.seed > last:
        raise ValueError(f"--seed={args.seed} must be an integer >= 0 and <= {last}")


def _write_samples(args, model, tokenizer, ids: list[int], sampler: Sampler, device) -> None:
    """Write ``--num-samples`` continuations of ``ids`` to stdout, each as it is generated."""
    tokens = torch.tensor([ids], device=device)
    eot = getattr(tokenizer, "eot_id", None)
    stops = args.stop_token if args.stop_token is not None else ([eot] if eot is not None else [])
    prompt_ids = ids[1:] if ids[0] == eot else ids
    out = sys.stdout
    for sample in range(args.num_samples):
        if args.num_samples > 1:
            out.write(f"\n--- sample {sample + 1} ---\n")
        text = TextStream(tokenizer, out)
        text.write(prompt_ids)
        start, count = time.perf_counter(), 0
        if args.num_beams > 1:
            result = beam_search(model, tokens, args.num_beams, args.max_new_tokens,
                                 length_penalty=args.length_penalty, eos_token_id=stops,
                                 use_kv_cache=not args.no_cache)  # fmt: skip
            new = result[0, len(ids) :].tolist()
            count = len(new)
            text.write([t for t in new if t not in stops])
        else:
            generator = torch.Generator(device=device).manual_seed(args.seed + sample)
            for step in stream(
                model, tokens, args.max_new_tokens, sampler, stop_tokens=stops,
                stop_strings=args.stop_string, decode=tokenizer.decode,
                use_kv_cache=not args.no_cache, context_overflow=args.context_overflow,
                generator=generator,
            ):  # fmt: skip
                token = int(step[0])
                count += 1
                if token not in stops:
                    text.write([token])
        text.write([], final=True)
        out.write("\n")
        seconds = time.perf_counter() - start
        if not args.quiet:
            print(f"[{count} tokens in {seconds:.2f} s, {count / seconds:.1f} tokens/s]",
                  file=sys.stderr)  # fmt: skip


def _interrupt(signum, frame):
    """Ctrl-C: stop now, and ignore further presses while stopping (one line, no traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """``minigpt-generate`` / ``python -m minigpt.generate``: see ``--help``."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        code = _run(args)
    except KeyboardInterrupt:  # presses from now on are ignored: the process is exiting
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout.write("\n")
        print(f"minigpt-generate: interrupted (exit code {EXIT_INTERRUPTED})", file=sys.stderr)
        return EXIT_INTERRUPTED
    signal.signal(signal.SIGINT, previous)
    return code


def _run(args) -> int:
    try:
        device = resolve_device(args.device)
        _check_counts(args)
        sampler = Sampler(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            repetition_penalty=args.repetition_penalty,
            frequency_penalty=args.frequency_penalty,
            presence_penalty=args.presence_penalty,
        )
        model, tokenizer, note = load_model(args.model, args.weights, args.tokenizer, device)
        where = next(model.parameters()).device
        chosen = generation_precision(where, args.precision)
        model = model.to(DTYPES[chosen])
        note += f"\nWeights in {describe(where, args.precision, chosen)}."
        ids = encode_prompt(tokenizer, args.prompt)
    except ReferenceUnavailable as err:  # name the flag the user typed, not the library's argument
        if args.weights:
            err = (f"--weights {args.weights}, but the real GPT-2 weights cannot be had: "
                   f"{getattr(err, 'reason', err)} Fill the Hugging Face cache where the hub is "
                   "reachable, or use --weights random.")  # fmt: skip
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # say what is wrong, without a traceback
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (CheckpointError, TokenizerFileError, OSError) as err:  # a file that cannot be used
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(note, file=sys.stderr)
    if not ids:
        print("error: the prompt is empty and the tokenizer has no <|endoftext|>", file=sys.stderr)
        return 2
    try:
        _write_samples(args, model, tokenizer, ids, sampler, device)
    except ValueError as err:  # e.g. a prompt longer than the context
        sys.stdout.write("\n")
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

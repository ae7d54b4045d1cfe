"""The command line ``python -m minigpt.generate``, on a tiny checkpoint with GPT-2's tokenizer."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from minigpt.checkpoint import CheckpointError, save_atomic
from minigpt.config import GPTConfig
from minigpt.generate_cli import TextStream, main
from minigpt.model import GPT


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A 1-layer GPT with GPT-2's vocabulary, saved the way training saves it."""
    from minigpt.checkpoint import FORMAT, VERSION, save_atomic
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=40)
    model = GPT(cfg).eval()
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    state = {"format": FORMAT, "version": VERSION, "model_config": asdict(cfg),
             "model": model.state_dict(), "meta": {"tokenizer": "gpt2"}}  # fmt: skip
    save_atomic(state, path)
    return path, model


@pytest.fixture(scope="module")
def tokenizer():
    from minigpt.tokenizer import gpt2_tokenizer

    return gpt2_tokenizer()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_greedy_output_is_the_prompt_plus_generate(capsys, checkpoint, tokenizer):
    from minigpt.sample import generate

    path, model = checkpoint
    code, out, err = run(capsys, "Hello world", "--model", path, "--temperature", 0,
                         "--max-new-tokens", 12, "--stop-token", 0)  # fmt: skip
    assert code == 0, err
    prompt = [50256, *tokenizer.encode("Hello world")]
    expected = generate(model, torch.tensor([prompt]), 12, temperature=0, stop_tokens=[0])
    new = [t for t in expected[0, len(prompt) :].tolist() if t != 0]
    assert out == "Hello world" + tokenizer.decode(new) + "\n"
    assert "tokens/s]" in err  # the speed line goes to stderr, never into the text


def test_seeds_make_samples_reproducible(capsys, checkpoint):
    path, _ = checkpoint
    outs = [run(capsys, "A", "--model", path, "--seed", s, "--max-new-tokens", 15, "--quiet")[1]
            for s in (3, 3, 4)]  # fmt: skip
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_beam_search_flag_matches_the_library(capsys, checkpoint, tokenizer):
    from minigpt.beam import beam_search

    path, model = checkpoint
    code, out, _ = run(capsys, "The", "--model", path, "--num-beams", 3, "--max-new-tokens", 8,
                       "--quiet")  # fmt: skip
    assert code == 0
    prompt = [50256, *tokenizer.encode("The")]
    best = beam_search(model, torch.tensor([prompt]), 3, 8, eos_token_id=[50256])
    new = [t for t in best[0, len(prompt) :].tolist() if t != 50256]
    assert out == "The" + tokenizer.decode(new) + "\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "0"], "top_p"),
        (["--top-k", "0"], "top_k"),
        (["--stop-token", "60000"], "stop_tokens"),
    ],
)
def test_bad_flags_are_a_clear_error(capsys, checkpoint, flags, message):
    code, _, err = run(capsys, "Hi", "--model", checkpoint[0], "--quiet", *flags)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_a_prompt_longer_than_the_context_is_a_clear_error(capsys, checkpoint):
    code, _, err = run(capsys, "word " * 60, "--model", checkpoint[0], "--quiet")
    assert code == 2 and "n_ctx=40" in err


def test_unknown_model_is_refused(checkpoint):
    with pytest.raises(SystemExit, match="checkpoint file"):
        main(["Hi", "--model", "no/such/file.pt"])


def test_text_stream_never_splits_a_character(tokenizer):
    text = "naïve café: ✓ 東京"
    ids = tokenizer.encode(text)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # some ids are partial characters
    out = io.StringIO()
    stream = TextStream(tokenizer, out)
    for i in ids:
        stream.write([i])
        assert "\ufffd" not in out.getvalue()
    stream.write([], final=True)
    assert out.getvalue() == text


def test_module_runs_as_a_script():
    result = subprocess.run([sys.executable, "-m", "minigpt.generate", "--help"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    for flag in ("--top-p", "--min-p", "--num-beams", "--stop-string", "--no-cache"):
        assert flag in result.stdout


def test_weights_pretrained_unreachable_names_the_flag(capsys, monkeypatch):
    """The error names --weights, the flag the user typed, not an environment variable."""
    import minigpt.reference as reference

    monkeypatch.delenv("MINIGPT_WEIGHTS", raising=False)
    monkeypatch.setattr(reference, "load_pretrained_hf", lambda: (None, "No copy here (test)."))
    code, out, err = run(capsys, "hi", "--weights", "pretrained", "--max-new-tokens", "1")
    assert code == 2 and out == ""
    assert err.startswith("error: --weights pretrained, but the real GPT-2 weights cannot be had")
    assert "No copy here (test)." in err and "--weights random" in err
    assert "MINIGPT_WEIGHTS" not in err


@pytest.mark.parametrize("flag", ["--num-samples", "--num-beams"])
def test_zero_samples_or_beams_is_a_clear_error(capsys, checkpoint, flag):
    code, out, err = run(capsys, "Hi", "--model", checkpoint[0], "--quiet", flag, 0)
    assert code == 2 and out == ""
    assert err == f"error: {flag}=0 must be an integer >= 1\n"


def _saved_model(tmp_path, meta):
    from dataclasses import asdict

    from minigpt.checkpoint import FORMAT, VERSION

    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=40)
    state = {"format": FORMAT, "version": VERSION, "model_config": asdict(cfg),
             "model": GPT(cfg).state_dict(), "meta": meta}  # fmt: skip
    return save_atomic(state, tmp_path / "checkpoint.pt")


def test_generate_refuses_a_non_checkpoint_in_one_line(tmp_path, capsys):
    from minigpt.generate_cli import main

    path = tmp_path / "notes.txt"
    path.write_text("not a model")
    assert main(["hi", "--model", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt cannot be read" in err and "Traceback" not in err
    with pytest.raises(CheckpointError):  # --debug: the whole story
        main(["hi", "--model", str(path), "--debug"])


def test_generate_compares_the_tokenizer_fingerprint_as_resume_does(tmp_path, capsys):
    from minigpt.generate_cli import main

    path = _saved_model(tmp_path, {"tokenizer": "gpt2", "tokenizer_fingerprint": "0123456789ab"})
    with pytest.raises(SystemExit, match="trained with another tokenizer than 'gpt2'"):
        main(["hi", "--model", str(path), "--max-new-tokens", "2"])


def test_an_unknown_device_is_one_line_not_a_traceback(capsys):
    code, out, err = run(capsys, "hi", "--device", "tpu")
    assert code == 2 and out == ""
    assert err.startswith("error: device='tpu'") and "Traceback" not in err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"d_mlp": 128}, "shape blocks.0.mlp.W_in (32, 64) vs (32, 128)"),
        ({"n_ctx": 80}, "shape pos_embed.W_pos (40, 32) vs (80, 32)"),
        ({"foreign": "ln_final.extra"}, "foreign ln_final.extra"),
        ({"missing": "unembed.b_U"}, "missing unembed.b_U"),
        ({"no_config": True}, "has no model config"),
    ],
)
def test_a_checkpoint_whose_tensors_do_not_fit_is_one_line(tmp_path, capsys, changes, message):
    from dataclasses import asdict

    from minigpt.checkpoint import FORMAT, VERSION

    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=40)
    tensors = GPT(cfg).state_dict()
    if "foreign" in changes:
        tensors[changes["foreign"]] = torch.zeros(3)
    if "missing" in changes:
        del tensors[changes["missing"]]
    stored = {k: v for k, v in changes.items() if k in ("d_mlp", "n_ctx")}
    state = {"format": FORMAT, "version": VERSION, "model": tensors, "meta": {"tokenizer": "gpt2"}}
    if "no_config" not in changes:
        state["model_config"] = asdict(cfg.replace(**stored))
    path = save_atomic(state, tmp_path / "checkpoint.pt")
    code, out, err = run(capsys, "hi", "--model", path, "--max-new-tokens", "2")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err and message in err


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_out_of_range_names_the_flag_and_the_range(capsys, checkpoint, seed):
    code, out, err = run(capsys, "hi", "--model", checkpoint[0], "--seed", seed)
    assert code == 2 and out == ""
    assert err == f"error: --seed={seed} must be an integer >= 0 and <= {2**64 - 1}\n"
    code, _, err = run(capsys, "hi", "--model", checkpoint[0], "--seed", 2**64 - 1,
                       "--num-samples", 2)  # fmt: skip
    assert code == 2 and f"must be an integer >= 0 and <= {2**64 - 2}" in err  # seed + 1 too


def test_ctrl_c_pressed_twice_exits_130_with_one_line(checkpoint):
    import os
    import signal
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "minigpt.generate_cli", "hi", "--model", str(checkpoint[0]),
           "--max-new-tokens", "1000000", "--quiet", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.read(1)  # it is generating
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == 130, text
    assert text == "minigpt-generate: interrupted (exit code 130)\n"


def test_precision_flag_gives_bf16_weights_and_says_so(capsys, checkpoint, tokenizer):
    from minigpt.sample import generate

    path, model = checkpoint
    code, out, err = run(capsys, "Hello", "--model", path, "--temperature", 0,
                         "--max-new-tokens", 4, "--stop-token", 0, "--precision", "bfloat16")  # fmt: skip
    assert code == 0, err
    assert "Weights in bfloat16 (asked for; bf16 " in err
    prompt = torch.tensor([[50256, *tokenizer.encode("Hello")]])
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    expected = generate(model16, prompt, 4, temperature=0, stop_tokens=[0])
    new = [t for t in expected[0, prompt.shape[1] :].tolist() if t != 0]
    assert out == "Hello" + tokenizer.decode(new) + "\n"
    code, _, err = run(capsys, "Hello", "--model", path, "--max-new-tokens", 1)
    assert code == 0 and "Weights in float32 (chosen by auto; " in err  # a CPU: float32

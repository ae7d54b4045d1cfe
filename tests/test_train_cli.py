"""The command line ``minigpt-train`` (minigpt.train_cli): a run, its resumption, bad flags."""

import numpy as np
import pytest
import torch

from minigpt.checkpoint import read_metrics
from minigpt.train_cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # micro models: see conftest.py


def test_cli(tmp_path, capsys):
    from minigpt.train_cli import main

    text = tmp_path / "text.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun.\n" * 60)
    out = tmp_path / "run"
    args = ["--data", str(text), "--out", str(out), "--batch-size", "2", "--n-ctx", "16",
            "--eval-interval", "2", "--warmup-steps", "1", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args + ["--max-steps", "3", "--checkpoint-interval", "2"]) == 0
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2, 3]
    assert main(args + ["--max-steps", "3"]) == 1  # no --resume: refuses to overwrite
    assert "already holds a checkpoint" in capsys.readouterr().err
    # A resume must keep max_steps: the cosine schedule is laid out over it.
    assert main(args + ["--max-steps", "4", "--resume"]) == 1
    assert "max_steps: 3 vs 4 (the cosine schedule" in capsys.readouterr().err
    assert main(args + ["--max-steps", "3", "--resume"]) == 0  # already finished: nothing to do
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2, 3]
    assert main(["--preset", "huge"]) == 2
    assert (
        "preset='huge' is unknown; choose one of tiny, seed, seed-de, gpt2"
        in capsys.readouterr().err
    )
    assert main(["--device", "tpu", "--out", str(tmp_path / "x")]) == 2
    assert "device='tpu'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--resume" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--max-steps", "0"], "--max-steps=0 must be a positive integer"),
        (["--seed", "-1"], "--seed=-1 must be an integer >= 0 and <= 18446744073709551615"),
        (["--seed", str(2**64)], f"--seed={2**64} must be an integer >= 0 and <= {2**64 - 1}"),
        (["--lr", "1.5"], "--lr=1.5 must be a finite number > 0 and < 1"),
        (["--preset", "huge"], "preset='huge'"),
    ],
)
def test_a_bad_flag_value_exits_2_with_one_line_naming_it(tmp_path, capsys, flags, named):
    # GPT-2's tokenizer: nothing to train or read from the cache before the check fails.
    args = ["--tokenizer", "gpt2", "--device", "cpu", "--out", str(tmp_path / "run"), *flags]
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("minigpt-train: error: ") and named in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "run").exists()  # refused before anything was written


def _run_args(tmp_path) -> list[str]:
    text = tmp_path / "text.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun.\n" * 60)
    return ["--data", str(text), "--out", str(tmp_path / "run"), "--batch-size", "2",
            "--n-ctx", "16", "--warmup-steps", "1", "--no-progress", "--device", "cpu"]  # fmt: skip


def test_resume_of_a_folder_that_does_not_exist_creates_nothing(tmp_path, capsys):
    args = _run_args(tmp_path)
    assert main(args + ["--max-steps", "2", "--resume"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0] == (
        f"minigpt-train: error: nothing to resume: there is no {tmp_path / 'run' / 'checkpoint.pt'}."
        " Nothing was created."
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda s: s["model_config"].update(d_mlp=1024), "d_mlp: checkpoint 1024 vs model 512"),
        (lambda s: s["model_config"].update(n_ctx=32), "n_ctx: checkpoint 32 vs model 128"),
        (lambda s: s["model"].update({"blocks.0.extra": torch.zeros(2)}), "foreign blocks.0.extra"),
        (lambda s: s["model"].pop("ln_final.b"), "missing ln_final.b"),
        (lambda s: s.pop("model_config"), "has no model config"),
    ],
)
def test_resume_of_a_checkpoint_that_does_not_fit_is_one_line(tmp_path, capsys, tamper, message):
    from minigpt.checkpoint import load_checkpoint, save_atomic

    args = _run_args(tmp_path) + ["--max-steps", "2"]
    assert main(args) == 0
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    tamper(state)
    save_atomic(state, path)  # a checksum that matches: only the layout is wrong
    capsys.readouterr()
    assert main(args + ["--resume"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("minigpt-train: error: ") and str(path) in lines[0]
    assert message in lines[0]


def test_ctrl_c_pressed_twice_exits_130_with_one_line(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "minigpt.train_cli", *_run_args(tmp_path), "--max-steps", "100000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().startswith("minigpt-train: tiny")  # it has started
        metrics, waited = tmp_path / "run" / "metrics.jsonl", 0.0
        while waited < 60 and (not metrics.is_file() or metrics.read_text().count("\n") < 2):
            time.sleep(0.05)  # until step 1 is logged: the press lands in the training loop
            waited += 0.05
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
    said = [line for line in (out + err).splitlines() if "interrupted" in line]
    assert len(said) == 1, out + err
    assert (tmp_path / "run" / "checkpoint.pt").is_file() or "untouched" in said[0]


def test_the_training_options_are_the_train_config_flag_fields():
    import dataclasses

    from minigpt.train import TrainConfig
    from minigpt.train_cli import build_parser

    flags = [f.name for f in dataclasses.fields(TrainConfig) if f.metadata["flag"]]
    assert flags == ["max_steps", "batch_size", "grad_accum", "n_ctx", "lr", "warmup_steps",
                     "eval_interval", "checkpoint_interval", "seed", "precision", "compile",
                     "profile", "tensorboard"]  # fmt: skip
    parser = build_parser()
    args = parser.parse_args([])
    assert all(getattr(args, name) is None for name in flags)  # unset: the preset's value
    help_text = parser.format_help()
    for name in flags:
        assert "--" + name.replace("_", "-") in help_text
    assert "--no-compile" in help_text and "seed of the data order" in help_text


def test_a_dataset_named_by_config_and_column_trains_and_resumes_only_on_it(
    hub_layout_dataset, tmp_path, capsys, minigpt_cache
):
    """--data with --data-config and --text-column, on a local folder in the hub's layout: the
    whole path wikimedia/wikipedia 20231101.de would take, only the location differs."""
    from minigpt.checkpoint import read_checkpoint

    folder, _ = hub_layout_dataset
    out = tmp_path / "run"
    args = ["--data", str(folder), "--data-config", "de", "--text-column", "body",
            "--tokenizer", "gpt2", "--out", str(out), "--device", "cpu", "--n-ctx", "16",
            "--batch-size", "2", "--warmup-steps", "1", "--no-progress"]  # fmt: skip
    assert main([*args, "--max-steps", "2"]) == 0
    assert "tokens of" in capsys.readouterr().out
    meta = read_checkpoint(out / "checkpoint.pt").meta
    assert meta["data_options"] == {"config": "de", "text_column": "body"}
    other = [("en" if a == "de" else a) for a in args]
    assert main([*other, "--max-steps", "2", "--resume"]) == 1
    assert "data_options" in capsys.readouterr().err  # another part of the dataset: refused


def _micro_args(text, out):
    return ["--data", str(text), "--out", str(out), "--tokenizer", "gpt2", "--batch-size", "2",
            "--n-ctx", "16", "--eval-interval", "2", "--warmup-steps", "1", "--max-steps", "2",
            "--no-progress", "--device", "cpu"]  # fmt: skip


def test_resume_on_a_corpus_whose_content_changed_is_refused_naming_the_file(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("Now is the winter of our discontent.\n" * 40)
    (folder / "b.txt").write_text("Made glorious summer by this sun of York.\n" * 40)
    out = tmp_path / "run"
    args = _micro_args(folder, out)
    assert main(args) == 0
    capsys.readouterr()
    from minigpt.checkpoint import read_checkpoint

    assert read_checkpoint(out / "checkpoint.pt").meta["data_record"]["files"].keys() == {
        "a.txt",
        "b.txt",
    }
    (folder / "b.txt").write_text("Made glorious summer by this son of York.\n" * 40)  # one byte
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"trained on other data: {folder / 'b.txt'} changed since" in err
    assert "a.txt" not in err
    (folder / "b.txt").write_text("Made glorious summer by this sun of York.\n" * 40)  # as it was
    assert main([*args, "--resume"]) == 0  # the same content again: resumed


def test_a_file_that_is_not_utf8_is_refused_unless_lossy(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "latin1.txt"
    text.write_bytes("Caf\u00e9 au lait, s'il vous pla\u00eet.\n".encode("latin-1") * 40)
    assert main(_micro_args(text, tmp_path / "run")) == 1
    err = capsys.readouterr().err
    assert f"{text} is not UTF-8 text: byte 3 (0xe9)" in err
    assert main([*_micro_args(text, tmp_path / "run"), "--lossy"]) == 0


def test_the_german_wikipedia_preset_on_a_local_copy_in_the_hubs_layout(
    tmp_path, capsys, monkeypatch
):
    """``--preset seed-de`` with only the location changed: configuration 20231101.de of a
    folder laid out as wikimedia/wikipedia, streamed, tokenized in parallel, trained on."""
    from small_corpus import articles, write_hub_dataset

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "wikipedia"
    texts = {"20231101.de": articles(60), "20231101.en": articles(10, "en")}
    write_hub_dataset(folder, texts, shards=2, column="text")
    out = tmp_path / "run"
    args = ["--preset", "seed-de", "--data", str(folder), "--out", str(out), "--batch-size", "2",
            "--n-ctx", "16", "--max-steps", "2", "--warmup-steps", "1", "--eval-interval", "1",
            "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "seed-de" in printed and "finished at step 2" in printed
    from minigpt.checkpoint import read_checkpoint

    meta = read_checkpoint(out / "checkpoint.pt").meta
    assert meta["data_options"] == {"config": "20231101.de"}
    assert "20231101.de/train-00000-of-00002.parquet" in meta["data_record"]["files"]
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]


@pytest.mark.slow  # GPT-2 small's init, one step and a 1.5 GB checkpoint: about 20-40 s
def test_the_gpt2_preset_on_a_local_copy_of_openwebtext(tmp_path, capsys, monkeypatch):
    """``--preset gpt2`` with only the location changed: a folder laid out as
    Skylion007/openwebtext (one configuration, a ``text`` column), streamed, tokenized with
    GPT-2's tokenizer and trained on by GPT-2 small itself, for one step of one short window
    (the recipe's batch is for a GPU)."""
    from small_corpus import articles, write_hub_dataset

    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    folder = write_hub_dataset(tmp_path / "openwebtext", {"plain_text": articles(12, "en")},
                               shards=2, column="text")  # fmt: skip
    out = tmp_path / "run"
    args = ["--preset", "gpt2", "--data", str(folder), "--out", str(out), "--batch-size", "1",
            "--grad-accum", "1", "--n-ctx", "16", "--max-steps", "1", "--warmup-steps", "1",
            "--eval-interval", "1", "--no-compile", "--no-progress", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert "finished at step 1" in capsys.readouterr().out
    from minigpt.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(out / "checkpoint.pt")
    cfg = checkpoint.model_config
    assert (cfg.n_layers, cfg.d_model, cfg.d_vocab) == (12, 768, 50257)  # GPT-2 small
    assert "plain_text/train-00000-of-00002.parquet" in checkpoint.meta["data_record"]["files"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_loopback_reach_the_losses_of_one_node_with_two_processes(tmp_path):
    """``torchrun --nnodes 2`` (a rendezvous on 127.0.0.1, one process a node, gloo on CPU)
    against ``--nproc-per-node 2`` on one node: the same global batch, split the same way
    between the two ranks, so the same losses up to the order of float sums (1e-5)."""
    import os
    import subprocess
    import sys

    text = tmp_path / "text.txt"
    text.write_text("Now is the winter of our discontent\nMade glorious summer by this sun.\n" * 60)
    env = {**os.environ, "MINIGPT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}  # fmt: skip
    train = ["-m", "minigpt.train", *_micro_args(text, "OUT"), "--max-steps", "3",
             "--batch-size", "4"]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node"]

    def args_for(out):
        return [str(out) if a == "OUT" else a for a in train]

    one_node, two_nodes, port = tmp_path / "one-node", tmp_path / "two-nodes", str(_free_port())
    launches = [[*torchrun, "2", "--standalone", *args_for(one_node)]] + [
        [*torchrun, "1", "--nnodes", "2", "--node-rank", str(rank), "--master-addr",
         "127.0.0.1", "--master-port", port, *args_for(two_nodes)]
        for rank in (0, 1)
    ]  # fmt: skip
    runs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for cmd in launches
    ]  # fmt: skip  (all at once: they wait on imports, not cores)
    outputs = [run.communicate(timeout=300)[0].decode()[-2000:] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    losses = {
        out.name: [r["loss"] for r in read_metrics(out) if r["step"] > 0]
        for out in (one_node, two_nodes)
    }
    assert len(losses["one-node"]) == 3
    np.testing.assert_allclose(losses["two-nodes"], losses["one-node"], rtol=1e-5)


def test_tokenize_only_fills_the_cache_and_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "text.txt"
    text.write_text("Now is the winter of our discontent.\n" * 40)
    out = tmp_path / "run"
    assert main([*_micro_args(text, out), "--tokenize-only"]) == 0
    assert "tokens of" in capsys.readouterr().out
    assert not out.exists()
    (cached,) = (tmp_path / "cache" / "tokens").glob("*.bin")
    assert cached.stat().st_size > 0

"""The command line ``minigpt-train`` (minigpt.train_cli): a run, its resumption, bad flags."""

import pytest

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
    assert "preset='huge' is unknown; choose one of tiny, seed, gpt2" in capsys.readouterr().err
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

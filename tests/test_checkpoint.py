"""Training checkpoints and metrics files (minigpt.checkpoint): saved atomically, loaded with
``weights_only=True``, refused (naming the file) when they are not minigpt's, and checked
against the model they are loaded into."""

from __future__ import annotations

import os
import pickle
from dataclasses import asdict

import pytest
import torch

from minigpt.checkpoint import (
    FORMAT,
    VERSION,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
    read_metrics,
    save_atomic,
    truncate_metrics,
)
from minigpt.config import GPTConfig
from minigpt.model import GPT

CFG = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, n_layers=1, n_ctx=8, d_vocab=20)


def checkpoint_of(model: GPT, **extra) -> dict:
    return {"format": FORMAT, "version": VERSION, "model_config": asdict(model.cfg),
            "model": model.state_dict(), **extra}  # fmt: skip


def test_save_then_load_round_trips_the_state(tmp_path):
    torch.manual_seed(0)
    model = GPT(CFG)
    state = checkpoint_of(model, step=7, meta={"data": "x"}, rng=[torch.arange(3)], lr=0.5)
    path = save_atomic(state, tmp_path / "run" / "checkpoint.pt")
    assert path == tmp_path / "run" / "checkpoint.pt"
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no staging file left
    loaded = load_checkpoint(path)
    assert set(loaded) == set(state)
    assert (loaded["step"], loaded["meta"], loaded["lr"]) == (7, {"data": "x"}, 0.5)
    assert torch.equal(loaded["rng"][0], torch.arange(3))
    assert loaded["model"].keys() == state["model"].keys()
    for name, tensor in state["model"].items():
        assert torch.equal(loaded["model"][name], tensor), name
    again = model_from_checkpoint(path)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert again.cfg == CFG


def test_save_replaces_an_older_checkpoint(tmp_path):
    model = GPT(CFG)
    path = tmp_path / "checkpoint.pt"
    save_atomic(checkpoint_of(model, step=1), path)
    save_atomic(checkpoint_of(model, step=2), path)
    assert load_checkpoint(path)["step"] == 2


CALLS: list[str] = []


def _record(what: str) -> str:
    CALLS.append(what)
    return what


class Smuggler:
    """Unpickling this runs ``_record``: code hidden in a file."""

    def __reduce__(self):
        return (_record, ("code ran",))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"model": {"w": torch.zeros(2)}}, "is not a minigpt training checkpoint"),
        ({"format": "minigpt-bpe", "version": VERSION}, "is not a minigpt training checkpoint"),
        ({"format": FORMAT, "version": VERSION + 1}, f"version {VERSION + 1}; this minigpt reads"),
        ([1, 2, 3], "is not a minigpt training checkpoint"),
        ("text", "cannot be read"),
        ("empty", "cannot be read"),
        ("code", None),  # the wording differs between torch versions; the path is named
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content == "text":
        path.write_text("step,loss\n1,2.5\n")
    elif content == "empty":
        path.write_bytes(b"")
    elif content == "code":
        torch.save({"format": FORMAT, "version": VERSION, "payload": Smuggler()}, path)
    else:
        torch.save(content, path)
    CALLS.clear()
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert CALLS == []  # nothing in the file ran


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*nowhere\.pt does not exist"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        model_from_checkpoint(tmp_path / "nowhere.pt")


def test_check_model_config_names_every_field_that_differs(tmp_path):
    save_atomic(checkpoint_of(GPT(CFG)), tmp_path / "c.pt")
    ckpt = read_checkpoint(tmp_path / "c.pt")
    ckpt.check_model_config(CFG)  # the same config: no error
    other = CFG.replace(d_mlp=64, n_ctx=16)
    with pytest.raises(CheckpointError) as info:
        ckpt.check_model_config(other)
    text = str(info.value)
    assert str(tmp_path / "c.pt") in text
    assert "d_mlp: checkpoint 32 vs model 64" in text and "n_ctx: checkpoint 8 vs model 16" in text
    assert "d_model" not in text  # only the fields that differ


def test_read_metrics_from_the_file_or_its_folder(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 0, "loss": 4.0}\n\n{"step": 1, "loss": 3.5, "val_loss": 3.6}\n'
    )
    records = [{"step": 0, "loss": 4.0}, {"step": 1, "loss": 3.5, "val_loss": 3.6}]
    assert read_metrics(tmp_path) == records
    assert read_metrics(tmp_path / "metrics.jsonl") == records
    with pytest.raises(CheckpointError, match=r"metrics file .*other does not exist"):
        read_metrics(tmp_path / "other")


def test_truncate_metrics_drops_the_records_after_the_last_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(f'{{"step": {s}, "loss": {5 - s}}}\n' for s in range(6)))
    truncate_metrics(path, 3)
    assert read_metrics(path) == [{"step": s, "loss": 5 - s} for s in range(4)]
    truncate_metrics(tmp_path / "missing.jsonl", 3)  # nothing to truncate: nothing made
    assert not (tmp_path / "missing.jsonl").exists()


def _state() -> dict:
    from minigpt.checkpoint import FORMAT, VERSION

    marker = torch.full((64,), 1234.5678)  # bytes that are easy to find in the file
    return {"format": FORMAT, "version": VERSION, "model": {"W": marker}, "meta": {}}


def test_flipped_bytes_inside_a_tensor_are_refused_naming_the_file(tmp_path):
    path = save_atomic(_state(), tmp_path / "checkpoint.pt")
    assert torch.equal(load_checkpoint(path)["model"]["W"], _state()["model"]["W"])
    data = bytearray(path.read_bytes())
    at = data.find(torch.full((64,), 1234.5678).numpy().tobytes())
    assert at > 0
    data[at + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.pt is corrupt.*delete it"):
        load_checkpoint(path)


def test_a_pickle_with_code_is_refused_without_advising_to_unpickle_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "minigpt-train", "payload": Evil()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "weights_only=False" not in str(info.value)
    assert "not loaded" in str(info.value)


def test_not_a_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match=r"checkpoint .*notes\.txt cannot be read"):
        load_checkpoint(path)
    pickled = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, pickled)
    with pytest.raises(CheckpointError, match=r"other\.pt is not a minigpt training checkpoint"):
        load_checkpoint(pickled)


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "loss": 4.1}\n{"step": 1, "loss": 4.0}\n{"step": 2, "lo')
    with pytest.warns(RuntimeWarning, match="dropped its last line"):
        assert [r["step"] for r in read_metrics(path)] == [0, 1]
    with pytest.warns(RuntimeWarning):
        truncate_metrics(path, 1)
    assert [r["step"] for r in read_metrics(path)] == [0, 1]  # and no warning any more


def test_a_bad_metrics_line_in_the_middle_names_the_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        '{"step": 0, "loss": 4.1}\n{"step": 1, "lo{"step": 2}\n{"step": 3, "loss": 1}\n'
    )
    with pytest.raises(CheckpointError, match=r"metrics file .*metrics\.jsonl, line 2"):
        read_metrics(path)


def test_pickle_module_is_what_torch_raises_for_refused_globals(tmp_path):
    """The check above relies on torch raising pickle.UnpicklingError for a refused global."""

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.pt"
    torch.save(Evil(), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_a_checkpoint_round_trips_through_the_checkpoint_dataclass(tmp_path):
    torch.manual_seed(0)
    model = GPT(CFG)
    written = Checkpoint(CFG, model.state_dict(), step=7, meta={"tokenizer": "gpt2"})
    written.save(tmp_path / "c.pt")
    ckpt = read_checkpoint(tmp_path / "c.pt")
    assert (ckpt.model_config, ckpt.step, ckpt.meta) == (CFG, 7, {"tokenizer": "gpt2"})
    assert ckpt.path == tmp_path / "c.pt" and ckpt.train_config is None
    rebuilt = ckpt.build_model()
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name
    with pytest.raises(CheckpointError, match=r"c\.pt holds a model but not the state .*resumed"):
        ckpt.require_training_state()


def _tensors(**changes):
    """A model's tensors with some replaced (a tensor) or dropped (None)."""
    tensors = GPT(CFG).state_dict()
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value
    return tensors


@pytest.mark.parametrize(
    ("config", "tensors", "message"),
    [
        ({**asdict(CFG), "d_mlp": 64}, _tensors(), "shape blocks.0.mlp.W_in (16, 32) vs (16, 64)"),
        ({**asdict(CFG), "n_ctx": 16}, _tensors(), "shape pos_embed.W_pos (8, 16) vs (16, 16)"),
        (asdict(CFG), _tensors(extra__W=torch.zeros(2)), "foreign extra.W"),
        (asdict(CFG), _tensors(ln_final__b=None), "missing ln_final.b"),
        (None, _tensors(), "has no model config"),
        ({**asdict(CFG), "d_mlp": -1}, _tensors(), "model config minigpt cannot use"),
        (asdict(CFG), {}, "holds no model tensors"),
    ],
)
def test_tensors_that_do_not_fit_the_config_are_refused_naming_the_file(
    tmp_path, config, tensors, message
):
    path = tmp_path / "misfit.pt"
    state = {"format": FORMAT, "version": VERSION, "model": tensors}
    save_atomic(state if config is None else {**state, "model_config": config}, path)
    with pytest.raises(CheckpointError) as info:
        model_from_checkpoint(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_changed_token_data_is_refused_naming_the_changed_file(tmp_path):
    from minigpt.checkpoint import DATA_KEY, Checkpoint, data_record

    then = data_record({"sha256": "a" * 64, "files": {"x.txt": "1" * 64, "y.txt": "2" * 64}})
    now = data_record({"sha256": "b" * 64, "files": {"x.txt": "1" * 64, "y.txt": "3" * 64}})
    assert data_record({}) == {}  # ids made in memory: nothing to record
    ckpt = Checkpoint(CFG, {}, meta={"data": str(tmp_path), DATA_KEY: then})
    ckpt.check_meta({"data": str(tmp_path), DATA_KEY: then})  # the same data: fine
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'y.txt'} changed since") as err:
        ckpt.check_meta({"data": str(tmp_path), DATA_KEY: now})
    assert "x.txt" not in str(err.value)
    hub = Checkpoint(CFG, {}, meta={"data": "o/d", DATA_KEY: data_record({"sha256": "a" * 64})})
    with pytest.raises(
        CheckpointError, match=r"token ids of 'o/d' differ \(sha256 a{12} then, b{12} now"
    ):
        hub.check_meta({"data": "o/d", DATA_KEY: data_record({"sha256": "b" * 64})})
    Checkpoint(CFG, {}, meta={"data": "o/d"}).check_meta({"data": "o/d", DATA_KEY: now})

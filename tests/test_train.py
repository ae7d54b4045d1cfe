"""The training loop (minigpt.train): schedule, loss, resumption, failures, DDP, profiling.

Everything runs on micro models (d_model 32, 1-2 layers, vocabulary 64) so the file stays quick.
"""

import json
import math
import os
import signal

import numpy as np
import pytest
import torch

from minigpt.checkpoint import CheckpointError, load_checkpoint, read_metrics
from minigpt.config import GPTConfig
from minigpt.data import TokenData
from minigpt.files import FileLock
from minigpt.model import GPT
from minigpt.train import TrainConfig, TrainingDiverged, lm_loss, lr_at, param_groups, train

MICRO = GPTConfig(d_model=32, n_heads=2, d_head=16, d_mlp=128, n_layers=1, n_ctx=16, d_vocab=64)
CFG = TrainConfig(
    max_steps=8, batch_size=4, lr=1e-2, warmup_steps=2, eval_interval=4, eval_windows=4
)


pytestmark = pytest.mark.usefixtures("one_thread")  # micro models: see conftest.py


def micro_data(n_tokens: int = 4000, seed: int = 0) -> TokenData:
    rng = np.random.default_rng(seed)
    # A learnable stream: mostly "next id = id + 1", with some noise.
    ids = (np.arange(n_tokens) + (rng.random(n_tokens) < 0.1) * rng.integers(0, 64, n_tokens)) % 64
    return TokenData(ids.astype(np.uint16), vocab_size=64)


def micro_model(seed: int = 0, cfg: GPTConfig = MICRO) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg)


def losses_of(out_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out_dir)]


def test_learning_rate_warms_up_linearly_then_decays_to_min_lr():
    cfg = TrainConfig(max_steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(4, cfg) == pytest.approx(5e-4)
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(55, cfg) == pytest.approx(5.5e-4)  # halfway down the cosine
    assert lr_at(100, cfg) == pytest.approx(1e-4)
    after = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(after, after[1:]))


def test_weight_decay_only_on_matrices():
    model = micro_model()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {"embed.W_E", "blocks.0.attn.W_Q", "blocks.0.mlp.W_in", "unembed.W_U"} <= decayed
    assert not any(n.endswith((".w", ".b")) or ".b_" in n for n in decayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_initial_loss_is_close_to_log_vocab_size():
    cfg = MICRO.replace(d_model=64, d_head=32, d_vocab=4096)
    tokens = torch.randint(0, 4096, (4, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = lm_loss(micro_model(cfg=cfg)(tokens[:, :-1]), tokens[:, 1:])
    assert abs(float(loss) - math.log(4096)) < 0.05  # ln 4096 = 8.318


def test_loss_and_every_gradient_match_hugging_face():
    from transformers import GPT2Config, GPT2LMHeadModel

    from minigpt.formats.gpt2_weights import hf_to_tl_state_dict
    from minigpt.formats.hf_model import from_hf

    torch.manual_seed(0)
    hf_cfg = GPT2Config(
        vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    hf = GPT2LMHeadModel(hf_cfg).eval()
    ours = from_hf(hf)
    tokens = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    hf_loss = hf(input_ids=tokens, labels=tokens).loss  # HF shifts the labels itself
    our_loss = lm_loss(ours(tokens[:, :-1]), tokens[:, 1:])
    torch.testing.assert_close(our_loss, hf_loss, atol=1e-6, rtol=1e-6)
    hf_loss.backward()
    our_loss.backward()
    hf_grads = {n: p.grad for n, p in hf.named_parameters()}
    expected = hf_to_tl_state_dict(hf_grads, n_layers=2, n_heads=2)
    got = {n: p.grad for n, p in ours.named_parameters()}
    # GPT-2 ties the unembedding to the embedding: its one gradient is the sum of both uses.
    got["embed.W_E"] = got["embed.W_E"] + got.pop("unembed.W_U").T
    expected.pop("unembed.W_U")
    expected.pop("unembed.b_U")  # GPT-2 has no output bias; ours stays a parameter
    got.pop("unembed.b_U")
    assert set(got) == set(expected)
    for name in sorted(expected):
        torch.testing.assert_close(
            got[name], expected[name], atol=1e-6, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_tiny_model_overfits_a_single_batch():
    window = np.random.default_rng(0).integers(0, 64, 17).astype(np.uint16)
    data = TokenData(np.concatenate([window, window]), vocab_size=64, val_fraction=0.5)
    cfg = TrainConfig(max_steps=80, batch_size=2, lr=2e-2, warmup_steps=5, eval_interval=80,
                      eval_windows=1, weight_decay=0.0)  # fmt: skip
    result = train(micro_model(), data, cfg, progress=False)
    assert result.history[0]["loss"] > 3.5  # ~ln 64 at the start
    assert result.losses[-1] < 0.05
    assert result.history[-1]["val_loss"] < 0.05  # the validation window is the same window


def test_metrics_jsonl_and_checkpoint(tmp_path):
    result = train(micro_model(), micro_data(), CFG, out_dir=tmp_path, progress=False)
    assert result.status == "finished" and result.step == 8
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(9))
    assert all("loss" in r for r in records)
    assert [r["step"] for r in records if "val_loss" in r] == [0, 4, 8]
    assert records[-1]["val_loss"] < records[0]["val_loss"] - 0.3  # it learns
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 8 and set(state) >= {"model", "optimizer", "scheduler", "rng"}


def test_interrupted_then_resumed_run_equals_uninterrupted_bitwise(tmp_path):
    full = train(micro_model(), micro_data(), CFG, out_dir=tmp_path / "full", progress=False)
    assert full.status == "finished"

    def ctrl_c_at_step_3(step, record, model):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does

    cut = train(micro_model(), micro_data(), CFG, out_dir=tmp_path / "cut", progress=False,
                callback=ctrl_c_at_step_3)  # fmt: skip
    assert cut.status == "interrupted" and cut.step == 3
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 3
    other = micro_model(seed=99)  # the weights must come from the checkpoint
    resumed = train(other, micro_data(), CFG, out_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.status == "finished" and resumed.step == 8
    assert losses_of(tmp_path / "cut") == losses_of(tmp_path / "full")  # exact float equality
    for (name, a), b in zip(
        full_state(tmp_path / "full").items(), full_state(tmp_path / "cut").values()
    ):
        assert torch.equal(a, b), name


def full_state(out_dir):
    return load_checkpoint(out_dir / "checkpoint.pt")["model"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_checkpoint(tmp_path):
    def poison_at_step_3(step, record, model):
        if step == 3:
            with torch.no_grad():
                model.blocks[0].mlp.W_in.fill_(float("nan"))

    cfg = CFG.replace(checkpoint_interval=1)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 4.*last good checkpoint"):
        train(micro_model(), micro_data(), cfg, out_dir=tmp_path, progress=False,
              callback=poison_at_step_3)  # fmt: skip
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_new_run_never_overwrites_a_checkpoint(tmp_path):
    short = CFG.replace(max_steps=2)
    train(micro_model(), micro_data(), short, out_dir=tmp_path, progress=False, meta={"data": "a"})
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        train(micro_model(), micro_data(), CFG, out_dir=tmp_path, progress=False)
    wider = micro_model(cfg=MICRO.replace(d_mlp=64))
    with pytest.raises(CheckpointError, match="d_mlp: checkpoint 128 vs model 64"):
        train(wider, micro_data(), short, out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(CheckpointError, match="lr: 0.01 vs 0.02"):
        train(micro_model(), micro_data(), short.replace(lr=0.02), out_dir=tmp_path, resume=True,
              progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="other data \\(data: 'a' vs 'b'\\)"):
        train(micro_model(), micro_data(), short, out_dir=tmp_path, resume=True, progress=False,
              meta={"data": "b"})  # fmt: skip
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_gradient_accumulation_gives_the_same_losses():
    one = train(micro_model(), micro_data(), CFG, progress=False).losses
    four = train(micro_model(), micro_data(), CFG.replace(grad_accum=4), progress=False).losses
    np.testing.assert_allclose(four, one, rtol=1e-4)


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        target = out_dir if rank == 0 else f"{out_dir}-rank{rank}"
        train(micro_model(), micro_data(), CFG, out_dir=target, progress=False)
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    single = train(micro_model(), micro_data(), CFG, progress=False)
    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = [loss for step, loss in losses_of(out) if step > 0]
    np.testing.assert_allclose(ddp, single.losses, rtol=1e-4)
    assert not (tmp_path / "ddp-rank1").exists()  # only rank 0 writes


def test_profiler_trace_and_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    cfg = CFG.replace(max_steps=6, profile=True, tensorboard=True)
    train(micro_model(), micro_data(), cfg, out_dir=tmp_path, progress=False)
    assert list((tmp_path / "profile").glob("*.pt.trace.json"))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    holder = FileLock(out / ".lock")
    assert holder.acquire(wait=False)
    try:
        with pytest.raises(CheckpointError, match=r"in use by another training run \(process"):
            train(micro_model(), micro_data(), CFG, out_dir=out, progress=False)
        assert not (out / "checkpoint.pt").exists() and not (out / "metrics.jsonl").exists()
    finally:
        holder.release()
    result = train(micro_model(), micro_data(), CFG, out_dir=out, progress=False)
    assert result.status == "finished"  # free again once the first holder let go
    second = FileLock(out / ".lock")
    assert second.acquire(wait=False)  # and the finished run released it
    second.release()


def test_resuming_with_other_max_steps_is_refused_with_the_reason(tmp_path):
    train(micro_model(), micro_data(), CFG, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"max_steps: 8 vs 12 \(the cosine schedule"):
        train(micro_model(), micro_data(), CFG.replace(max_steps=12), out_dir=tmp_path,
              resume=True, progress=False)  # fmt: skip
    # The losses of 8 resumed to 12 would not be those of a 12-step run: the schedule moves.
    assert lr_at(5, CFG) != lr_at(5, CFG.replace(max_steps=12))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"grad_clip": math.nan}, "grad_clip=nan"),
        ({"weight_decay": math.inf}, "weight_decay=inf"),
        ({"weight_decay": math.nan}, "weight_decay=nan"),
        ({"lr": math.nan}, "lr=nan"),
        ({"warmup_steps": 9}, "warmup_steps=9 exceeds max_steps=8"),
    ],
)
def test_train_config_refuses_values_that_would_mislead(changes, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        CFG.replace(**changes)


def test_a_fractional_n_ctx_is_a_named_error_not_a_type_error_later():
    """Outside the tests' runtime type checker (which would catch it first), as a user runs it."""
    import subprocess
    import sys

    code = "from minigpt.train import TrainConfig; TrainConfig(n_ctx=2.5)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "ValueError: TrainConfig.n_ctx=2.5 must be None or a positive integer" in done.stderr


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_torch_cannot_take_is_refused_naming_the_range(seed):
    with pytest.raises(
        ValueError, match=rf"TrainConfig.seed={seed} must be an integer >= 0 and <= "
    ):
        CFG.replace(seed=seed)
    CFG.replace(seed=2**64 - 1)  # the largest one torch takes

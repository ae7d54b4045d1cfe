"""What the chapters and the tools that run them call (minigpt.notebook): ``setup``, the
book's kernel profile, sharing the cores between processes, and timing."""

from __future__ import annotations

import logging
import os
import shutil
from types import SimpleNamespace

import pytest
import torch

import minigpt.notebook as notebook
from minigpt.notebook import best_time, setup, share_cores, use_book_kernel_profile


@pytest.fixture
def torch_threads():
    """Put torch's thread count back after a test that changes it."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_share_cores_keeps_a_thread_count_that_is_already_set(monkeypatch, torch_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert share_cores(2) == 3
    assert os.environ["OMP_NUM_THREADS"] == "3" and torch.get_num_threads() == torch_threads


@pytest.mark.parametrize(
    ("cores", "processes", "threads"), [(8, 2, 4), (8, 3, 2), (2, 4, 1), (4, 0, 4)]
)
def test_share_cores_divides_the_cores_between_processes(
    monkeypatch, torch_threads, cores, processes, threads
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # restored after the test
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert share_cores(processes) == threads
    assert os.environ["OMP_NUM_THREADS"] == str(threads)  # the chapters' kernels inherit it
    assert torch.get_num_threads() == threads


def test_best_time_is_the_fastest_of_the_repeats(monkeypatch):
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(notebook, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    durations = iter([0.5, 0.2, 0.3, 0.9])
    calls = []

    def work():
        calls.append(1)
        clock.now += next(durations)

    assert best_time(work) == pytest.approx(0.2)  # three runs by default
    assert len(calls) == 3
    assert best_time(lambda: None, repeats=5) == 0.0


def test_use_book_kernel_profile_writes_a_fresh_profile_and_points_ipython_at_it(monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", "/somewhere/else")  # restored after the test
    first = use_book_kernel_profile()
    second = use_book_kernel_profile()
    try:
        assert first != second  # a fresh folder every time
        assert os.environ["IPYTHONDIR"] == str(second)
        assert sorted(p.name for p in second.iterdir()) == ["profile_default"]
        config = second / "profile_default" / "ipython_kernel_config.py"
        assert [p.name for p in config.parent.iterdir()] == ["ipython_kernel_config.py"]
        namespace: dict = {}
        exec(compile(config.read_text(encoding="utf-8"), str(config), "exec"), namespace)
        logger = logging.getLogger("IPKernelApp")
        added = [f for f in logger.filters if type(f).__name__ == "_DropLoopbackTcpNotice"]
        try:
            assert len(added) == 1  # the profile adds one filter to the kernel's logger

            def record(message):
                return logging.LogRecord("IPKernelApp", logging.WARNING, "", 0, message, (), None)

            drop = added[0]
            assert not drop.filter(record("Kernel is running over TCP without encryption."))
            assert drop.filter(record("Kernel died; restarting"))  # every other message stays
        finally:
            for f in added:
                logger.removeFilter(f)
    finally:
        for folder in (first, second):
            shutil.rmtree(folder, ignore_errors=True)


def test_setup_seeds_says_the_device_and_sets_the_plotly_renderer(capsys, monkeypatch):
    import plotly.graph_objects as go
    import plotly.io as pio

    monkeypatch.setenv("MINIGPT_DEVICE", "cpu")
    before = pio.renderers.default
    try:
        assert setup(seed=3) == torch.device("cpu")
        drawn = torch.rand(4)
        torch.manual_seed(3)
        assert torch.equal(drawn, torch.rand(4))
        assert capsys.readouterr().out == f"minigpt: running on cpu (torch {torch.__version__})\n"
        assert pio.renderers.default == notebook.RENDERER
        bundle = pio.renderers[notebook.RENDERER].to_mimebundle(
            go.Figure(go.Bar(y=[1, 2])).to_dict()
        )
        assert set(bundle) == {"application/vnd.plotly.v1+json", "text/html"}
        assert "cdn" not in bundle["text/html"].lower()  # the book ships plotly.js itself
    finally:
        pio.renderers.default = before

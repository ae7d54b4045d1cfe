"""One call at the top of every chapter: ``from minigpt.notebook import setup; setup()``.

It makes figures work the same in JupyterLab and in the static site (offline in both),
keeps runs deterministic, and says which device the chapter runs on.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from minigpt.device import best_device

RENDERER = "minigpt"


def _register_plotly_renderer() -> None:
    """A plotly renderer that works offline in JupyterLab and in the built book.

    Each figure is emitted twice in one output: as plotly's own MIME type (drawn by
    JupyterLab's bundled plotly extension) and as an HTML ``<div>`` plus a small script
    that draws it with the page's ``Plotly`` (the book ships plotly.js itself; no CDN).
    """
    import plotly.io as pio
    from plotly.io._base_renderers import MimetypeRenderer
    from plotly.utils import PlotlyJSONEncoder

    class BookRenderer(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            html = pio.to_html(
                fig_dict,
                include_plotlyjs=False,
                full_html=False,
                validate=False,
                config={"responsive": True, "displaylogo": False},
            )
            payload = json.loads(json.dumps(fig_dict, cls=PlotlyJSONEncoder))
            return {"application/vnd.plotly.v1+json": payload, "text/html": html}

    pio.renderers[RENDERER] = BookRenderer()
    pio.renderers.default = RENDERER


def _quiet_known_warnings() -> None:
    """Silence the one harmless warning every chapter would otherwise show.

    Hugging Face's libraries import ``tqdm.auto``, which warns "IProgress not found" in a
    kernel without ipywidgets; progress bars then fall back to plain text, which is what
    the book wants (widgets would need JavaScript from a CDN in the static site).
    """
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)


def setup(seed: int = 0) -> torch.device:
    """Prepare a chapter: plotly renderer, seeded RNG, the device it will run on."""
    _register_plotly_renderer()
    _quiet_known_warnings()
    torch.manual_seed(seed)
    device = best_device()
    print(f"minigpt: running on {device} (torch {torch.__version__})")
    return device


# -- for the tools that run the chapters (nbmake in tests/conftest.py, the site build) ---

_KERNEL_CONFIG = """\
# Written by minigpt.notebook.use_book_kernel_profile() for the kernels that run the book.
import logging


class _DropLoopbackTcpNotice(logging.Filter):
    def filter(self, record):
        return "Kernel is running over TCP without encryption" not in record.getMessage()


logging.getLogger("IPKernelApp").addFilter(_DropLoopbackTcpNotice())
"""


def use_book_kernel_profile() -> Path:
    """Give the kernels this process starts a fresh IPython profile; returns its folder.

    The chapters then run the same on every machine, whatever a reader keeps in
    ``~/.ipython`` (startup scripts, extensions), as they do on a fresh one. The profile
    drops one message: ipykernel 7 logs "Kernel is running over TCP without encryption"
    at every start, once per chapter, although the book's kernels talk only over the
    loopback interface with every message signed. Every other kernel message is kept.
    Sets ``$IPYTHONDIR``, which child processes inherit.
    """
    folder = Path(tempfile.mkdtemp(prefix="minigpt-ipython-"))
    profile = folder / "profile_default"
    profile.mkdir()
    (profile / "ipython_kernel_config.py").write_text(_KERNEL_CONFIG, encoding="utf-8")
    os.environ["IPYTHONDIR"] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def share_cores(processes: int) -> int:
    """Torch threads for each of ``processes`` processes that share this machine's cores.

    Each of pytest-xdist's workers would otherwise start torch with one thread per core,
    and two workers on two cores then fight over them (a GPT-2 forward pass measured 15x
    slower). Sets ``$OMP_NUM_THREADS``, which the kernels that run the chapters inherit,
    unless it is already set; returns the number of threads.
    """
    if "OMP_NUM_THREADS" in os.environ:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // max(1, processes))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    return threads


def best_time(fn, repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``fn()``, in seconds (the least disturbed by a busy machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# -- figures the chapters share ---------------------------------------------------------

ATTENTION_VIEW = "minigpt-attention-view"  # layout.meta of the view; the browser test finds it


def attention_view(patterns: dict[str, torch.Tensor], tokens: list[str], title: str):
    """An interactive attention view: one button per head, hover a cell to read it.

    ``patterns`` maps a head's name (``"1.3"``) to its pattern ``[query_pos, key_pos]`` on
    one sequence; ``tokens`` labels the positions. Each head is one heatmap of the figure and
    the buttons show one at a time; hovering a cell shows the query token, the key token
    and the weight. It is a plain plotly figure, so it draws offline like every other.
    """
    import plotly.graph_objects as go

    labels = [f"{i}: {t}" for i, t in enumerate(tokens)]
    fig = go.Figure()
    for index, (name, pattern) in enumerate(patterns.items()):
        fig.add_heatmap(
            z=pattern.detach().cpu().tolist(),
            x=labels,
            y=labels,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            name=f"head {name}",
            visible=index == 0,
            hovertemplate=(
                f"head {name}<br>query %{{y}}<br>key %{{x}}<br>weight %{{z:.3f}}<extra></extra>"
            ),
        )
    n = len(patterns)
    buttons = [
        dict(
            label=f"head {name}",
            method="restyle",
            args=[{"visible": [i == index for i in range(n)]}],
        )
        for index, name in enumerate(patterns)
    ]
    fig.update_layout(
        title=dict(text=title, y=0.98, yanchor="top"),
        meta=ATTENTION_VIEW,
        height=600,
        margin=dict(t=120),
        updatemenus=[
            dict(
                type="buttons",
                direction="right",
                buttons=buttons,
                x=0,
                y=1.02,
                xanchor="left",
                yanchor="bottom",
            )
        ],
        xaxis=dict(title="key", showticklabels=False),
        yaxis=dict(title="query", showticklabels=False, autorange="reversed"),
    )
    return fig

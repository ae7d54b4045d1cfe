"""One call at the top of every chapter: ``from minigpt.notebook import setup; setup()``.

It makes figures work the same in JupyterLab and in the static site (offline in both),
keeps runs deterministic, and says which device the chapter runs on.
"""

from __future__ import annotations

import json
import warnings

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

"""What the chapters say of trained GPT-2 is checked, and the checks can fail.

With ``MINIGPT_WEIGHTS=pretrained`` the chapters take their ``if ref.pretrained:`` branches
and print sentences about what trained GPT-2 does. Each such sentence goes through
``minigpt.reference.check_claim`` (or ``Reference.check_gpt2_small``) in the cell that
measures it. Here every chapter runs with a stand-in: a folder of *random* weights with
GPT-2 small's config, handed to the book as its pretrained GPT-2 through
``$MINIGPT_GPT2_PATH``. A build on such weights must not publish those sentences: every
cell that checks a claim has to stop with ``ClaimFailed``.

With OpenAI's weights the same cells run the same code and pass.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
CLAIM_CALL = re.compile(r"\bcheck_claim\(|\.check_gpt2_small\(")
STAND_IN_SEED = 1234  # not the offline reference's seed: another random GPT-2 entirely


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def test_every_chapter_that_speaks_of_trained_gpt2_checks_it():
    """A chapter with a pretrained branch must back it with at least one checked claim."""
    for path in CHAPTERS:
        cells = code_cells(path)
        branches = [c for c in cells if "ref.pretrained" in c]
        if branches:
            assert any(CLAIM_CALL.search(c) for c in cells), (
                f"{path.name} has `if ref.pretrained` branches but checks no claim"
            )


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory) -> Path:
    """GPT-2 small's architecture and config, random weights: not GPT-2, posing as it."""
    from minigpt.reference import random_gpt2_hf

    folder = tmp_path_factory.mktemp("stand-in-gpt2")
    random_gpt2_hf(seed=STAND_IN_SEED).save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "chapter",
    [p for p in CHAPTERS if any(CLAIM_CALL.search(c) for c in code_cells(p))],
    ids=lambda p: p.stem,
)
def test_claims_fail_on_random_weights_posing_as_gpt2(chapter, stand_in, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MINIGPT_WEIGHTS", "pretrained")
    monkeypatch.setenv("MINIGPT_GPT2_PATH", str(stand_in))
    nb = nbformat.read(chapter, as_version=4)
    last_claim = max(i for i, c in enumerate(nb.cells) if CLAIM_CALL.search(c.source))
    nb.cells = nb.cells[: last_claim + 1]  # nothing after the last claim is needed here
    client = NotebookClient(
        nb,
        timeout=600,
        allow_errors=True,  # run every cell, so that each claim is seen to fail on its own
        kernel_name="python3",
        resources={"metadata": {"path": str(chapter.parent)}},
    )
    client.execute()

    def errors(cell) -> list[str]:
        return [o["ename"] for o in cell.get("outputs", []) if o["output_type"] == "error"]

    claim_cells = [c for c in nb.cells if c.cell_type == "code" and CLAIM_CALL.search(c.source)]
    assert claim_cells
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert not errors(first), f"{chapter.name} did not even start: {errors(first)}"
    published = [
        c.source.strip().splitlines()[0] + f" ... -> {errors(c) or 'no error'}"
        for c in claim_cells
        if errors(c) != ["ClaimFailed"]
    ]
    assert not published, (
        f"{chapter.name}: with random weights posing as GPT-2, these cells did not stop with "
        "ClaimFailed:\n" + "\n".join(published)
    )

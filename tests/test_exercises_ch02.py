"""The chapter-02 check accepts the right embedding and names the typical wrong ones."""

from types import SimpleNamespace

import pytest
import torch

from minigpt.exercises.ch02 import check_embed


class FakeBridge:
    """Stands in for the reference's bridge: GPT-2-like shapes, small, with the three hooks."""

    def __init__(self, d_vocab=5000, n_ctx=64, d_model=8):
        gen = torch.Generator().manual_seed(1)
        self.W_E = torch.randn(d_vocab, d_model, generator=gen)
        self.W_pos = torch.randn(n_ctx, d_model, generator=gen)

    def tl_parameters(self):
        return {"embed.W_E": self.W_E, "pos_embed.W_pos": self.W_pos}

    def run_with_cache(self, tokens, names_filter=None):
        embed = self.W_E[tokens]
        pos = self.W_pos[: tokens.shape[1]].expand_as(embed)
        cache = {"hook_embed": embed, "hook_pos_embed": pos}
        cache["blocks.0.hook_resid_pre"] = embed + pos
        return None, cache


FAKE = SimpleNamespace(
    bridge=FakeBridge(), to_tokens=lambda text: torch.tensor([[999, 464, 3797, 3332, 319]])
)


def right(tokens, W_E, W_pos):
    return W_E[tokens] + W_pos[: tokens.shape[1]]


def test_accepts_a_right_answer(capsys):
    check_embed(right, FAKE)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, diagnosis",
    [
        (lambda tokens, W_E, W_pos: W_E[tokens], "positions forgotten"),
        (lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[tokens], "token id was used"),
        (lambda tokens, W_E, W_pos: W_E.T[tokens] + W_pos[: tokens.shape[1]], "W_E.T"),
        (
            lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[: tokens.shape[1]].flip(0),
            "positions reversed",
        ),
        (
            lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[1 : tokens.shape[1] + 1],
            "off by one",
        ),
        (
            lambda tokens, W_E, W_pos: W_E[tokens] + W_pos[: tokens.shape[0]][:, None],
            "batch index was used",
        ),
    ],
)
def test_diagnoses_typical_mistakes(wrong, diagnosis):
    with pytest.raises(AssertionError, match=f"Likely cause: .*{diagnosis}"):
        check_embed(wrong, FAKE)


def test_names_the_shape_and_errors():
    with pytest.raises(AssertionError, match="shape"):
        check_embed(lambda tokens, W_E, W_pos: right(tokens, W_E, W_pos)[0], FAKE)
    with pytest.raises(AssertionError, match="missing `return`"):
        check_embed(lambda tokens, W_E, W_pos: None, FAKE)


def test_transposed_W_E_on_gpt2_sized_weights_is_an_index_error():
    """On the small case W_E.T runs; on GPT-2's shapes it raises, and the check says why."""

    def transposed(tokens, W_E, W_pos):
        if W_E.shape[0] == W_E.shape[1]:  # behave on the small square case
            return right(tokens, W_E, W_pos)
        return W_E.T[tokens] + W_pos[: tokens.shape[1]]

    with pytest.raises(AssertionError, match=r"GPT-2's weights.*IndexError.*not W_E\.T"):
        check_embed(transposed, FAKE)


def test_a_mistake_only_on_real_shapes_is_located():
    def drops_last(tokens, W_E, W_pos):
        out = right(tokens, W_E, W_pos)
        if tokens.shape[1] == 5:
            out = out.clone()
            out[0, 4] = W_E[tokens[0, 4]]
        return out

    with pytest.raises(AssertionError, match="batch row 0, position 4"):
        check_embed(drops_last, FAKE)


def test_against_the_reference(reference, capsys):
    check_embed(right, reference)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="positions forgotten"):
        check_embed(lambda tokens, W_E, W_pos: W_E[tokens], reference)

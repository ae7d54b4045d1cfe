import math

import pytest
import torch

from minigpt.exercises.ch04 import check_gelu, check_mlp


def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def test_accepts_right_answers(capsys):
    check_gelu(gelu)
    check_mlp(lambda x, W_in, b_in, W_out, b_out: gelu(x @ W_in + b_in) @ W_out + b_out)
    assert capsys.readouterr().out.count("Correct") == 2


def test_rejects_wrong_answers():
    with pytest.raises(AssertionError, match="exact GELU"):
        check_gelu(torch.nn.functional.gelu)
    with pytest.raises(AssertionError, match="ReLU"):
        check_gelu(torch.relu)
    with pytest.raises(AssertionError, match="expected 0.5"):
        check_gelu(lambda x: x * torch.sigmoid(1.702 * x))  # another approximation
    with pytest.raises(AssertionError, match="exact GELU"):
        check_mlp(
            lambda x, W_in, b_in, W_out, b_out: (
                torch.nn.functional.gelu(x @ W_in + b_in) @ W_out + b_out
            )
        )
    with pytest.raises(AssertionError, match="b_in"):
        check_mlp(lambda x, W_in, b_in, W_out, b_out: gelu(x @ W_in) @ W_out + b_out)

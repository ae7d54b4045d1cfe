import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.config import GPTConfig
from minigpt.exercises.ch04 import check_gelu, check_mlp
from minigpt.mlp import MLP


def gelu(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def mlp_forward(x, W_in, b_in, W_out, b_out):
    return gelu(x @ W_in + b_in) @ W_out + b_out


@pytest.fixture(scope="module")
def reference():
    """A stand-in for the reference: activations and parameters of a small MLP whose biases
    are not zero, under TransformerLens's names for layer 0."""
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64, n_layers=2, n_ctx=8, d_vocab=10)
    mlp = MLP(cfg)
    with torch.no_grad():
        for p in mlp.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(2, 5, cfg.d_model)
    acts = {}
    with torch.no_grad():
        out = mlp(x, acts=acts)
    cache = {
        "blocks.0.ln2.hook_out": x,
        "blocks.0.mlp.hook_pre": acts["hook_pre"],
        "blocks.0.mlp.hook_post": acts["hook_post"],
        "blocks.0.hook_mlp_out": out,
    }
    params = {f"blocks.0.mlp.{k}": v.detach() for k, v in mlp.named_parameters()}
    return cache, params


def test_accepts_right_answers(capsys, reference):
    check_gelu(gelu)
    check_gelu(gelu, reference[0])
    check_gelu(lambda x: F.gelu(x, approximate="tanh"))
    check_mlp(mlp_forward, *reference)
    assert capsys.readouterr().out.count("Correct") == 4


@pytest.mark.parametrize(
    ("wrong", "diagnosis"),
    [
        (F.gelu, "exact GELU"),
        (torch.relu, "ReLU"),
        (lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * x)), "cubic term"),
        (lambda x: x * torch.sigmoid(1.702 * x), "sigmoid approximation"),
        (lambda x: gelu(x) * 1.01, "largest error"),
    ],
)
def test_gelu_diagnoses(wrong, diagnosis, reference):
    with pytest.raises(AssertionError, match=diagnosis):
        check_gelu(wrong)
    with pytest.raises(AssertionError, match=diagnosis):
        check_gelu(lambda x: wrong(x) if x.ndim == 3 else gelu(x), reference[0])


def test_gelu_wrong_shape():
    with pytest.raises(AssertionError, match="shape"):
        check_gelu(lambda x: gelu(x)[:-1])


@pytest.mark.parametrize(
    ("wrong", "diagnosis"),
    [
        (lambda x, W_in, b_in, W_out, b_out: gelu(x @ W_in) @ W_out + b_out, "b_in is missing"),
        (lambda x, W_in, b_in, W_out, b_out: gelu(x @ W_in + b_in) @ W_out, "b_out is missing"),
        (
            lambda x, W_in, b_in, W_out, b_out: F.gelu(x @ W_in + b_in) @ W_out + b_out,
            "exact GELU",
        ),
        (
            lambda x, W_in, b_in, W_out, b_out: torch.relu(x @ W_in + b_in) @ W_out + b_out,
            "ReLU",
        ),
        (
            lambda x, W_in, b_in, W_out, b_out: gelu(x @ W_in.T + b_in) @ W_out.T + b_out,
            "no transpose",
        ),
        (
            lambda x, W_in, b_in, W_out, b_out: gelu(gelu(x @ W_in + b_in) @ W_out + b_out),
            "GELU after W_out",
        ),
    ],
)
def test_mlp_diagnoses(wrong, diagnosis, reference):
    with pytest.raises(AssertionError, match=diagnosis):
        check_mlp(wrong, *reference)


def test_mlp_failure_names_the_hook(reference):
    def off(x, W_in, b_in, W_out, b_out):
        return mlp_forward(x, W_in, b_in, W_out, b_out) + 0.1

    with pytest.raises(AssertionError, match="blocks.0.hook_mlp_out"):
        check_mlp(off, *reference)


def test_mlp_finds_a_wrong_gelu_that_a_small_W_out_hides(reference):
    """With GPT-2's small W_out the exact GELU's output is within tolerance; the hidden
    layer still gives it away."""
    cache, params = reference
    params = {**params, "blocks.0.mlp.W_out": params["blocks.0.mlp.W_out"] * 1e-3}
    post = cache["blocks.0.mlp.hook_post"]
    W_out, b_out = params["blocks.0.mlp.W_out"], params["blocks.0.mlp.b_out"]
    cache = {**cache, "blocks.0.hook_mlp_out": post @ W_out + b_out}
    check_mlp(mlp_forward, cache, params)

    def exact(x, W_in, b_in, W_out, b_out):
        return F.gelu(x @ W_in + b_in) @ W_out + b_out

    with pytest.raises(AssertionError, match="output is within tolerance.*exact GELU"):
        check_mlp(exact, cache, params)

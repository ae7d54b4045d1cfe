import pytest
import torch

from minigpt.block import TransformerBlock
from minigpt.config import GPTConfig
from minigpt.exercises.ch05 import (
    check_block,
    check_gpt_forward,
    check_layer_norm,
    check_parameter_count,
)
from minigpt.exercises.solutions.ch05 import gpt_forward
from minigpt.model import GPT


def layer_norm(x, w, b, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return centred / (centred.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def block_forward(resid_pre, ln1, attn, ln2, mlp):
    resid_mid = resid_pre + attn(ln1(resid_pre))
    return resid_mid + mlp(ln2(resid_mid))


def count(cfg):
    d, m = cfg.d_model, cfg.d_mlp
    block = 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d
    return cfg.d_vocab * d + cfg.n_ctx * d + cfg.n_layers * block + 2 * d


@pytest.fixture(scope="module")
def reference():
    """A stand-in for the reference: one block with no trivial parameter, its activations
    and parameters under TransformerLens's names for layer 0. The residual stream is small
    (std ~0.03, like GPT-2's embeddings), so that where eps goes matters."""
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=2, n_ctx=8, d_vocab=10)
    block = TransformerBlock(cfg, layer=0)
    with torch.no_grad():
        for name, p in block.named_parameters():
            if name.endswith(".w"):
                p.normal_(1, 0.2)
            elif name.startswith(("ln", "mlp.b", "attn.b")):
                p.normal_(0, 0.05)
            else:
                p.normal_(0, 0.2)
    x = torch.randn(2, 6, cfg.d_model) * 0.03
    acts = {}
    with torch.no_grad():
        block(x, acts=acts)
        acts["ln1.hook_out"] = block.ln1(x)
    cache = {f"blocks.0.{k}": v for k, v in acts.items()}
    params = {f"blocks.0.{k}": v.detach() for k, v in block.named_parameters()}
    return cache, params


def test_accepts_right_answers(capsys, reference):
    check_layer_norm(layer_norm, *reference)
    check_layer_norm(
        lambda x, w, b, eps: torch.nn.functional.layer_norm(x, (32,), w, b, eps), *reference
    )
    check_block(block_forward, *reference)
    check_parameter_count(count)
    assert capsys.readouterr().out.count("Correct") == 4


def _centred(x):
    return x - x.mean(-1, keepdim=True)


@pytest.mark.parametrize(
    ("wrong", "diagnosis"),
    [
        (
            lambda x, w, b, eps: (
                _centred(x) / (_centred(x).var(-1, keepdim=True) + eps).sqrt() * w + b
            ),
            "unbiased variance",
        ),
        (
            lambda x, w, b, eps: (
                _centred(x) / (_centred(x).std(-1, unbiased=False, keepdim=True) + eps) * w + b
            ),
            "eps added to the standard deviation",
        ),
        (
            lambda x, w, b, eps: (
                _centred(x) / _centred(x).pow(2).mean(-1, keepdim=True).sqrt() * w + b
            ),
            "eps is missing",
        ),
        (
            lambda x, w, b, eps: x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b,
            "RMSNorm",
        ),
        (lambda x, w, b, eps: layer_norm(x, 1, 0, eps), "gain and the shift are missing"),
        (lambda x, w, b, eps: layer_norm(x, w, 0, eps), "shift is missing"),
        (lambda x, w, b, eps: layer_norm(x, 1, b, eps), "gain is missing"),
        (lambda x, w, b, eps: layer_norm(x, b, w, eps), "swapped"),
        (lambda x, w, b, eps: layer_norm(x, w, b, eps)[:, :-1], "shape"),
    ],
)
def test_layer_norm_diagnoses(wrong, diagnosis, reference):
    with pytest.raises(AssertionError, match=diagnosis):
        check_layer_norm(wrong, *reference)


def no_first_residual(x, ln1, attn, ln2, mlp):
    mid = attn(ln1(x))
    return mid + mlp(ln2(mid))


def post_ln(x, ln1, attn, ln2, mlp):
    mid = ln1(x + attn(x))
    return ln2(mid + mlp(mid))


@pytest.mark.parametrize(
    ("wrong", "diagnosis"),
    [
        (post_ln, "post-LN"),
        (lambda x, ln1, attn, ln2, mlp: ln1(x + attn(x)) + mlp(ln2(ln1(x + attn(x)))), "post-LN"),
        (no_first_residual, "first residual"),
        (
            lambda x, ln1, attn, ln2, mlp: mlp(ln2(x + attn(ln1(x)))),
            "second residual is missing",
        ),
        (
            lambda x, ln1, attn, ln2, mlp: (x + attn(ln1(x))) + mlp(ln1(x + attn(ln1(x)))),
            "ln1 is used twice",
        ),
        (lambda x, ln1, attn, ln2, mlp: x + attn(ln1(x)), "called once"),
        (lambda x, ln1, attn, ln2, mlp: block_forward(x, ln1, attn, ln2, mlp) * 1.1, "resid_post"),
    ],
)
def test_block_diagnoses(wrong, diagnosis, reference):
    with pytest.raises(AssertionError, match=diagnosis):
        check_block(wrong, *reference)


def test_parameter_count_diagnoses():
    with pytest.raises(AssertionError, match="W_U and b_U"):
        check_parameter_count(lambda cfg: count(cfg) + cfg.d_model * cfg.d_vocab + cfg.d_vocab)
    with pytest.raises(AssertionError, match="off by"):
        check_parameter_count(lambda cfg: count(cfg) - 2 * cfg.d_model)  # forgot ln_final


def forward(
    tokens,
    params,
    n_layers,
    layer_norm,
    block_forward,
    attention,
    mlp,
    *,
    positions=True,
    final_ln=True,
    b_U=1,
    attn_layer=None,
    ln2_name="ln2",
    blocks=None,
    chain=True,
):
    """A GPT forward with one of the usual slips switched on."""

    def parts(layer):
        p = f"blocks.{layer}."
        return (
            lambda x: layer_norm(x, params[p + "ln1.w"], params[p + "ln1.b"]),
            lambda x: attention(x, layer if attn_layer is None else attn_layer),
            lambda x: layer_norm(x, params[p + ln2_name + ".w"], params[p + ln2_name + ".b"]),
            lambda x: mlp(x, layer),
        )

    embed = params["embed.W_E"][tokens]
    if positions:
        embed = embed + params["pos_embed.W_pos"][: tokens.shape[1]]
    resid = embed
    for layer in range(n_layers if blocks is None else blocks):
        resid = block_forward(resid if chain else embed, *parts(layer))
    w, b = params["ln_final.w"], params["ln_final.b"]
    if final_ln == "torch":
        resid = torch.nn.functional.layer_norm(resid, w.shape, w, b, 1e-5)
    elif final_ln:
        resid = layer_norm(resid, w, b)
    return resid @ params["unembed.W_U"] + b_U * params["unembed.b_U"]


@pytest.fixture(scope="module")
def model_reference():
    """A stand-in for the reference: a 3-layer GPT with no trivial parameter (b_U included),
    its activations on a batch of tokens and its parameters under TransformerLens's names."""
    torch.manual_seed(0)
    cfg = GPTConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64, n_layers=3, n_ctx=8, d_vocab=20)
    model = GPT(cfg, attn_impl="einsum")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1 if name.endswith(".w") else 0, 0.2)
    tokens = torch.randint(0, cfg.d_vocab, (2, 7))
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    params = {k: v.detach() for k, v in model.named_parameters()}
    return tokens, cache, params


def test_gpt_forward_accepts_right_answers(capsys, model_reference):
    check_gpt_forward(lambda *args: gpt_forward(*args), *model_reference)
    check_gpt_forward(forward, *model_reference, layer_norm, block_forward)

    def torch_final_ln(*args):  # the final LayerNorm not through the one handed in
        return forward(*args, final_ln="torch")

    check_gpt_forward(torch_final_ln, *model_reference)
    assert capsys.readouterr().out.count("Correct") == 3


@pytest.mark.parametrize(
    ("slip", "diagnosis"),
    [
        ({"positions": False}, "blocks.0.hook_resid_pre.*position embeddings are missing"),
        ({"final_ln": False}, "ln_final.hook_normalized.*final LayerNorm is missing"),
        ({"b_U": 0}, "hook_unembed.*b_U is missing"),
        ({"b_U": 2}, "hook_unembed.*b_U is added twice"),
        ({"attn_layer": 0}, r"blocks.1.hook_resid_mid.*attention\(x, 0\)"),
        ({"ln2_name": "ln1"}, "blocks.0.hook_resid_post.*ln2 is layer_norm.*blocks.0.ln1.w"),
        ({"blocks": 2}, "block_forward ran 2 times"),
        ({"chain": False}, "blocks.1.hook_resid_pre.*reads the embeddings"),
    ],
)
def test_gpt_forward_diagnoses(slip, diagnosis, model_reference):
    def wrong(*args):
        return forward(*args, **slip)

    with pytest.raises(AssertionError, match=diagnosis):
        check_gpt_forward(wrong, *model_reference)


def test_gpt_forward_must_go_through_block_forward(model_reference):
    def no_blocks(tokens, params, n_layers, layer_norm, block_forward, attention, mlp):
        return forward(tokens, params, 0, layer_norm, block_forward, attention, mlp)

    with pytest.raises(AssertionError, match="never called the block_forward"):
        check_gpt_forward(no_blocks, *model_reference)

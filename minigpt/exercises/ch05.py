"""Checks for the exercises of chapter 05 (LayerNorm and the whole model)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from minigpt.analysis import parameter_count
from minigpt.attention import Attention
from minigpt.compare import compare_tensors
from minigpt.config import GPTConfig
from minigpt.exercises.diagnose import close, matching_mistake
from minigpt.exercises.exercise import exercise
from minigpt.exercises.solutions import ch05 as solutions
from minigpt.formats.gpt2_weights import load_tl_parameters
from minigpt.layernorm import LayerNorm
from minigpt.mlp import MLP

LN_ATOL, LN_RTOL = 1e-5, 1e-4  # float32 LayerNorms agree to ~1e-6; the usual slips miss by more
BLOCK_ATOL, BLOCK_RTOL = 1e-4, 1e-3  # the book's tolerances for activations


def _diagnose(got: Tensor, candidates: list[tuple[Tensor, str]], atol: float, rtol: float):
    return matching_mistake(got, candidates, close(atol, rtol))


def _wrong_normalizations(x: Tensor, eps: float) -> list[tuple[Tensor, str]]:
    """What the usual slips give before the gain and the shift."""
    centred = x - x.mean(-1, keepdim=True)
    var = centred.pow(2).mean(-1, keepdim=True)
    return [
        (
            centred / (centred.var(-1, unbiased=True, keepdim=True) + eps).sqrt(),
            "the unbiased variance (divide by d_model - 1, as x.var() and x.std() do by "
            "default); LayerNorm uses the biased one: the mean of the squares, over d_model",
        ),
        (
            centred / (var.sqrt() + eps),
            f"eps added to the standard deviation; it goes inside the square root, added to "
            f"the variance: sqrt(var + eps), eps = {eps:g}",
        ),
        (centred / var.sqrt(), f"eps is missing: divide by sqrt(var + eps), eps = {eps:g}"),
        (
            x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt(),
            "the mean is not subtracted (that is RMSNorm): centre x first",
        ),
        (
            centred / (var + eps),
            "divided by the variance; divide by its square root, sqrt(var + eps)",
        ),
    ]


@exercise(solutions.layer_norm)
def check_layer_norm(
    layer_norm: Callable, cache: Mapping[str, Tensor], params: Mapping[str, Tensor], layer: int = 0
) -> None:
    """Check ``layer_norm(x, w, b, eps) -> [batch, pos, d_model]`` against the reference's
    first LayerNorm of block ``layer``.

    ``cache`` holds the reference's activations and ``params`` its parameters under
    TransformerLens's names. The input is ``blocks.{layer}.hook_resid_pre``, with the gain
    and shift ``blocks.{layer}.ln1.w``, ``.b`` and ``eps = 1e-5``. Called with gain 1 and
    shift 0, ``layer_norm`` returns the normalized vector, which must be ``ln1.hook_normalized``;
    the divisor it implies (centred x / normalized) must be ``ln1.hook_scale``; the full output
    must be ``ln1.hook_out``. Tolerance: atol 1e-5, rtol 1e-4.
    """
    name = f"blocks.{layer}.ln1"
    x = cache[f"blocks.{layer}.hook_resid_pre"]
    w, b = params[f"{name}.w"].detach(), params[f"{name}.b"].detach()
    eps = 1e-5
    ones, zeros = torch.ones_like(w), torch.zeros_like(b)
    with torch.no_grad():
        got = layer_norm(x, w, b, eps)
        got_norm = layer_norm(x, ones, zeros, eps)
    expected = cache[f"{name}.hook_out"]
    normalized, scale = cache[f"{name}.hook_normalized"], cache[f"{name}.hook_scale"]
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(x.shape):
        shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"expected the shape of x, {list(x.shape)}, got {shape}")

    row = compare_tensors(f"{name}.hook_normalized", got_norm, normalized, LN_ATOL, LN_RTOL)
    if not row.passed:
        swapped = (torch.ones_like(x), "w and b are swapped: w is the gain, b the shift")
        cause = _diagnose(got_norm, [*_wrong_normalizations(x, eps), swapped], LN_ATOL, LN_RTOL)
        raise AssertionError(
            f"called with gain 1 and shift 0: {row.describe()}. Likely cause: "
            f"{cause or 'expected (x - mean) / sqrt(biased variance + eps), over the last axis'}"
        )
    centred = x - x.mean(-1, keepdim=True)
    implied = (centred * got_norm).sum(-1, keepdim=True) / got_norm.pow(2).sum(-1, keepdim=True)
    row = compare_tensors(f"{name}.hook_scale", implied, scale, LN_ATOL, LN_RTOL)
    if not row.passed:
        raise AssertionError(f"the divisor your normalization implies is off: {row.describe()}")
    row = compare_tensors(f"{name}.hook_out", got, expected, LN_ATOL, LN_RTOL)
    if not row.passed:
        cause = _diagnose(
            got,
            [
                (normalized, "the gain and the shift are missing: normalized * w + b"),
                (normalized * w, "the shift is missing: normalized * w + b"),
                (normalized + b, "the gain is missing: normalized * w + b"),
            ],
            LN_ATOL,
            LN_RTOL,
        )
        raise AssertionError(
            f"the normalized vector ({name}.hook_normalized) is right but the output is not: "
            f"{row.describe()}. Likely cause: {cause or 'the last step is normalized * w + b'}"
        )
    print(
        f"Correct: your LayerNorm gives the reference's {name}.hook_scale, hook_normalized "
        f"and hook_out (atol {LN_ATOL:g}, rtol {LN_RTOL:g})."
    )


class _Spy(torch.nn.Module):
    """Wraps one part of a block and records what it was called with."""

    def __init__(self, part: torch.nn.Module, label: str):
        super().__init__()
        self.part, self.label, self.inputs = part, label, []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x)
        return self.part(x)


def _block_parts(params: Mapping[str, Tensor], layer: int):
    """ln1, attn, ln2 and mlp of block ``layer``, with its weights; the shapes are read off
    the weights (``W_Q[n_heads, d_model, d_head]``, ``W_in[d_model, d_mlp]``)."""
    n_heads, d_model, d_head = params[f"blocks.{layer}.attn.W_Q"].shape
    d_mlp = params[f"blocks.{layer}.mlp.W_in"].shape[1]
    cfg = GPTConfig(
        d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, n_layers=layer + 1
    )
    parts = {"ln1": LayerNorm(cfg), "attn": Attention(cfg, layer=layer), "ln2": LayerNorm(cfg)}
    parts["mlp"] = MLP(cfg)
    for label, part in parts.items():
        load_tl_parameters(part, dict(params), prefix=f"blocks.{layer}.{label}.")
    return parts


@exercise(solutions.block_forward)
def check_block(
    block: Callable,
    cache: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    layer: int = 0,
) -> None:
    """Check ``block(resid_pre, ln1, attn, ln2, mlp) -> resid_post`` on the reference.

    The four parts are minigpt's modules with block ``layer``'s weights from ``params``
    (TransformerLens names), each called on one tensor. The checker records what each part
    is called with: ``ln2``'s input must be ``blocks.{layer}.hook_resid_mid`` and the output
    ``hook_resid_post``, to atol 1e-4, rtol 1e-3; the order of the calls tells pre-LN from
    post-LN and a reused LayerNorm.
    """
    p = f"blocks.{layer}"
    x = cache[f"{p}.hook_resid_pre"]
    mid, post = cache[f"{p}.hook_resid_mid"], cache[f"{p}.hook_resid_post"]
    parts = {k: v.to(x.device) for k, v in _block_parts(params, layer).items()}
    spies = {label: _Spy(part, label) for label, part in parts.items()}
    with torch.no_grad():
        got = block(x, spies["ln1"], spies["attn"], spies["ln2"], spies["mlp"])
        attn_out, mlp_out = cache[f"{p}.hook_attn_out"], cache[f"{p}.hook_mlp_out"]
        ln1, ln2, attn, mlp = parts["ln1"], parts["ln2"], parts["attn"], parts["mlp"]
        post_ln_mid = ln1(x + attn(x))
        post_ln = ln2(post_ln_mid + mlp(post_ln_mid))
        calls = {label: len(spy.inputs) for label, spy in spies.items()}

    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(x.shape):
        shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"expected resid_post of shape {list(x.shape)}, got {shape}")
    row = compare_tensors(f"{p}.hook_resid_post", got, post, BLOCK_ATOL, BLOCK_RTOL)
    if row.passed and calls == {"ln1": 1, "attn": 1, "ln2": 1, "mlp": 1}:
        print(
            f"Correct: your block gives the reference's {p}.hook_resid_mid (what ln2 reads) "
            f"and {p}.hook_resid_post (atol {BLOCK_ATOL:g}, rtol {BLOCK_RTOL:g})."
        )
        return
    where = f"{row.describe()}; calls: {calls}"
    if calls["ln1"] >= 2 and calls["ln2"] == 0:
        cause = "ln1 is used twice: the MLP reads ln2(resid_mid), with ln2's own gain and shift"
    elif calls["ln2"] >= 2 and calls["ln1"] == 0:
        cause = "ln2 is used twice: attention reads ln1(resid_pre)"
    elif torch.allclose(got, post_ln, atol=BLOCK_ATOL, rtol=BLOCK_RTOL) or (
        spies["attn"].inputs and torch.equal(spies["attn"].inputs[0], x)
    ):
        cause = (
            "that is the post-LN order (LayerNorm after the addition, as in the original "
            "Transformer); GPT-2 is pre-LN: resid_pre + attn(ln1(resid_pre)), then "
            "resid_mid + mlp(ln2(resid_mid))"
        )
    elif any(calls[k] != 1 for k in calls):
        cause = f"each part should be called once, in the order ln1, attn, ln2, mlp: {calls}"
    elif not torch.allclose(spies["ln2"].inputs[0], mid, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
        got_mid = spies["ln2"].inputs[0]
        mid_row = compare_tensors(f"{p}.hook_resid_mid", got_mid, mid, BLOCK_ATOL, BLOCK_RTOL)
        where = mid_row.describe()
        if torch.allclose(got_mid, attn_out, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
            cause = "the first residual is missing: resid_mid = resid_pre + attn(ln1(resid_pre))"
        else:
            cause = "resid_mid = resid_pre + attn(ln1(resid_pre)) is what ln2 should read"
    elif torch.allclose(got, mlp_out, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
        cause = "the second residual is missing: resid_post = resid_mid + mlp(ln2(resid_mid))"
    elif torch.allclose(got, mid, atol=BLOCK_ATOL, rtol=BLOCK_RTOL):
        cause = "the MLP's output is not added: resid_post = resid_mid + mlp(ln2(resid_mid))"
    else:
        cause = "resid_mid is right, so look at resid_post = resid_mid + mlp(ln2(resid_mid))"
    raise AssertionError(f"{where}. Likely cause: {cause}")


def _sublayers(params: Mapping[str, Tensor]) -> tuple[Callable, Callable]:
    """``attention(x, layer)`` and ``mlp(x, layer)``: block ``layer``'s attention and MLP
    (minigpt's modules with the weights in ``params``, TransformerLens names), each a function
    of one ``[batch, pos, d_model]`` tensor."""
    n_layers = _count_layers(params)
    n_heads, d_model, d_head = params["blocks.0.attn.W_Q"].shape
    d_mlp = params["blocks.0.mlp.W_in"].shape[1]
    cfg = GPTConfig(d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp, n_layers=n_layers)
    device = params["blocks.0.attn.W_Q"].device
    attns, mlps = [], []
    for layer in range(n_layers):
        attn, mlp = Attention(cfg, layer=layer).to(device), MLP(cfg).to(device)
        load_tl_parameters(attn, dict(params), prefix=f"blocks.{layer}.attn.")
        load_tl_parameters(mlp, dict(params), prefix=f"blocks.{layer}.mlp.")
        attns.append(attn.eval())
        mlps.append(mlp.eval())
    return (lambda x, layer: attns[layer](x)), (lambda x, layer: mlps[layer](x))


def _count_layers(params: Mapping[str, Tensor]) -> int:
    n = 0
    while f"blocks.{n}.ln1.w" in params:
        n += 1
    return n


class _Watched:
    """The four pieces handed to the reader's ``gpt_forward``, each recording what it sees:
    per ``block_forward`` call its input, what reaches ``ln2`` (resid_mid), its output, the
    layers it asked attention and the MLP for and the LayerNorms it ran; and the LayerNorms
    run outside any block."""

    def __init__(self, layer_norm: Callable, block_forward: Callable, attention, mlp):
        self._layer_norm, self._block_forward = layer_norm, block_forward
        self._attention, self._mlp = attention, mlp
        self.blocks: list[dict] = []
        self.outside: list[dict] = []  # LayerNorms outside blocks, with the blocks run so far
        self._inside = 0

    def layer_norm(self, x, w, b, *args, **kwargs):
        out = self._layer_norm(x, w, b, *args, **kwargs)
        call = {"x": x, "w": w, "b": b, "out": out, "after": len(self.blocks)}
        (self.blocks[-1]["norms"] if self._inside else self.outside).append(call)
        return out

    def block_forward(self, resid_pre, ln1, attn, ln2, mlp):
        record = {"pre": resid_pre, "mid": None, "post": None, "attn": [], "mlp": [], "norms": []}
        self.blocks.append(record)

        def watched_ln2(x):
            if record["mid"] is None:
                record["mid"] = x
            return ln2(x)

        self._inside += 1
        try:
            out = self._block_forward(resid_pre, ln1, attn, watched_ln2, mlp)
        finally:
            self._inside -= 1
        record["post"] = out
        return out

    def attention(self, x, layer):
        if self._inside:
            self.blocks[-1]["attn"].append(layer)
        return self._attention(x, layer)

    def mlp(self, x, layer):
        if self._inside:
            self.blocks[-1]["mlp"].append(layer)
        return self._mlp(x, layer)


def _param_name(t: object, params: Mapping[str, Tensor], names: list[str]) -> str:
    """Which of ``names`` in ``params`` the tensor ``t`` is (by identity, then by value)."""
    for name in names:
        if t is params[name]:
            return name
    for name in names:
        p = params[name]
        if isinstance(t, Tensor) and t.shape == p.shape and torch.equal(t, p):
            return name
    return "a tensor that is no LayerNorm's weight"


def _stream_differs(name: str, got: object, expected: Tensor):
    """The comparison row of one hook when ``got`` differs from it, else None."""
    if not isinstance(got, Tensor):
        raise AssertionError(f"{name}: expected a tensor, got {type(got).__name__}")
    row = compare_tensors(name, got, expected, BLOCK_ATOL, BLOCK_RTOL)
    return None if row.passed else row


def _embedding_cause(got: Tensor, tokens: Tensor, W_E: Tensor, W_pos: Tensor, cache) -> str:
    from minigpt.exercises.ch02 import EMBED_MISTAKES

    if close(BLOCK_ATOL, BLOCK_RTOL)(got, cache["hook_embed"]):
        return (
            "it is hook_embed alone, so hook_pos_embed is what differs: the position "
            "embeddings are missing; the stream starts as W_E[tokens] + W_pos[:pos]"
        )

    def same(got, wrong):
        try:
            return close(BLOCK_ATOL, BLOCK_RTOL)(got, wrong(tokens, W_E, W_pos))
        except (IndexError, RuntimeError):  # this mistake is not possible here
            return False

    return matching_mistake(got, EMBED_MISTAKES, same) or (
        "the stream starts as hook_embed + hook_pos_embed = W_E[tokens] + W_pos[:pos]"
    )


def _block_cause(L: int, record: dict, hook: str, params: Mapping[str, Tensor], n_layers: int):
    """Why block ``L``'s resid_mid (``hook == "mid"``) or resid_post (``"post"``) is off."""
    part, ln, ln_index = ("attention", "ln1", 0) if hook == "mid" else ("mlp", "ln2", 1)
    asked = record["attn" if hook == "mid" else "mlp"]
    if asked and asked != [L]:
        return f"block {L} asked for {part}(x, {asked[0]}): pass the block's own index, {L}"
    norms = record["norms"]
    names = [
        f"blocks.{i}.{n}.{wb}" for i in range(n_layers) for n in ("ln1", "ln2") for wb in "wb"
    ] + ["ln_final.w", "ln_final.b"]
    if len(norms) > ln_index:
        w = _param_name(norms[ln_index]["w"], params, names)
        b = _param_name(norms[ln_index]["b"], params, names)
        if (w, b) != (f"blocks.{L}.{ln}.w", f"blocks.{L}.{ln}.b"):
            return (
                f"block {L}'s {ln} is layer_norm(x, {w}, {b}): use blocks.{L}.{ln}.w and "
                f"blocks.{L}.{ln}.b"
            )
    return (
        f"block {L}'s {ln} should be layer_norm(x, params['blocks.{L}.{ln}.w'], "
        f"params['blocks.{L}.{ln}.b']) and its {part} {part}(x, {L})"
    )


@exercise(solutions.gpt_forward)
def check_gpt_forward(
    gpt_forward: Callable,
    tokens: Tensor,
    cache: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    layer_norm: Callable = solutions.layer_norm,
    block_forward: Callable = solutions.block_forward,
) -> None:
    """Check ``gpt_forward(tokens, params, n_layers, layer_norm, block_forward, attention,
    mlp) -> logits[batch, pos, d_vocab]`` on the reference, hook by hook.

    ``cache`` holds the reference's activations on ``tokens`` and ``params`` its parameters
    (TransformerLens names). The checker hands the reader's function ``layer_norm`` and
    ``block_forward`` (the reader's own, given here) and ``attention(x, layer)`` and
    ``mlp(x, layer)`` (minigpt's modules, :func:`_sublayers`), all watched, and compares in
    order: what the first block reads with ``blocks.0.hook_resid_pre`` (= ``hook_embed +
    hook_pos_embed``); each block's input, what reaches its ``ln2`` and its output with
    ``hook_resid_pre``, ``hook_resid_mid`` and ``hook_resid_post``; the final LayerNorm's
    input normalized (``ln_final.hook_normalized``) and its output; the logits
    (``hook_unembed``). The first that differs is named, with the likely cause.

    GPT-2's ``b_U`` is all zeros, so a missing bias would go unseen: the reader's function gets
    ``params`` with ``b_U`` replaced by a nonzero vector, and the same vector is added to the
    reference's logits. Tolerance: atol 1e-4, rtol 1e-3, as for every activation in the book.
    """
    n_layers = _count_layers(params)
    params = {k: v.detach() for k, v in params.items()}
    b_U = params["unembed.b_U"]
    shift = torch.linspace(-1, 1, b_U.shape[0], device=b_U.device, dtype=b_U.dtype)
    params["unembed.b_U"] = b_U + shift
    expected_logits = cache["hook_unembed"] + shift
    W_E, W_pos, W_U = params["embed.W_E"], params["pos_embed.W_pos"], params["unembed.W_U"]
    attention, mlp = _sublayers(params)
    watched = _Watched(layer_norm, block_forward, attention, mlp)
    with torch.no_grad():
        got = gpt_forward(
            tokens,
            params,
            n_layers,
            watched.layer_norm,
            watched.block_forward,
            watched.attention,
            watched.mlp,
        )
    if not isinstance(got, Tensor) or tuple(got.shape) != tuple(expected_logits.shape):
        shape = list(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(
            f"expected logits [batch, pos, d_vocab] = {list(expected_logits.shape)}, got {shape}"
        )
    blocks = watched.blocks
    if not blocks:
        raise AssertionError(
            "your gpt_forward never called the block_forward it is given: each of the "
            f"{n_layers} blocks is resid = block_forward(resid, ln1, attn, ln2, mlp), and "
            "the check watches those calls to compare the stream hook by hook"
        )

    def fail(row, cause: str) -> AssertionError:
        return AssertionError(
            f"the first hook that differs is {row.describe()}. Likely cause: {cause}"
        )

    # The embeddings: what block 0 reads.
    row = _stream_differs(
        "blocks.0.hook_resid_pre", blocks[0]["pre"], cache["blocks.0.hook_resid_pre"]
    )
    if row:
        raise fail(row, _embedding_cause(blocks[0]["pre"], tokens, W_E, W_pos, cache))
    for L, record in enumerate(blocks[:n_layers]):
        p = f"blocks.{L}"
        if L:
            row = _stream_differs(
                f"{p}.hook_resid_pre", record["pre"], cache[f"{p}.hook_resid_pre"]
            )
            if row:
                if close(BLOCK_ATOL, BLOCK_RTOL)(record["pre"], cache["blocks.0.hook_resid_pre"]):
                    cause = (
                        f"block {L} reads the embeddings: each block reads the stream the "
                        "block before wrote, resid = block_forward(resid, ...)"
                    )
                else:
                    cause = f"block {L} should read what block {L - 1} returned"
                raise fail(row, cause)
        if record["mid"] is None:
            raise AssertionError(f"block {L}'s ln2 was never called: resid_mid never reached it")
        for hook in ("mid", "post"):
            name = f"{p}.hook_resid_{hook}"
            row = _stream_differs(name, record[hook], cache[name])
            if row:
                raise fail(row, _block_cause(L, record, hook, params, n_layers))
    last = f"blocks.{n_layers - 1}.hook_resid_post"
    if len(blocks) != n_layers:
        raise AssertionError(
            f"block_forward ran {len(blocks)} times; the model has {n_layers} blocks, one "
            "call each: for layer in range(n_layers)"
        )

    # The final LayerNorm: the LayerNorms run after the last block.
    ln_w, ln_b = params["ln_final.w"], params["ln_final.b"]
    normalized = cache["ln_final.hook_normalized"]
    ln_out = normalized * ln_w + ln_b
    finals = [call for call in watched.outside if call["after"] == n_layers]
    if len(finals) > 1:
        raise AssertionError(
            f"layer_norm ran {len(finals)} times after the last block; the final LayerNorm "
            "runs once, on the last block's output"
        )
    if finals:
        call = finals[0]
        names = ["ln_final.w", "ln_final.b"] + [
            f"blocks.{i}.{n}.{wb}" for i in range(n_layers) for n in ("ln1", "ln2") for wb in "wb"
        ]
        w, b = _param_name(call["w"], params, names), _param_name(call["b"], params, names)
        ones, zeros = torch.ones_like(ln_w), torch.zeros_like(ln_b)
        with torch.no_grad():
            got_normalized = solutions.layer_norm(call["x"], ones, zeros)
        row = _stream_differs("ln_final.hook_normalized", got_normalized, normalized)
        if row:
            raise fail(row, f"the final LayerNorm reads the last block's output, {last}")
        row = _stream_differs("ln_final.hook_out", call["out"], ln_out)
        if row:
            cause = (
                f"the final LayerNorm is layer_norm(x, {w}, {b}): use ln_final.w and ln_final.b"
                if (w, b) != ("ln_final.w", "ln_final.b")
                else "ln_final.hook_normalized * ln_final.w + ln_final.b"
            )
            raise fail(row, cause)

    # The logits.
    row = compare_tensors("hook_unembed", got, expected_logits, BLOCK_ATOL, BLOCK_RTOL)
    if not row.passed:
        resid = cache[last]
        b_U = params["unembed.b_U"]
        cause = _diagnose(
            got,
            [
                (
                    resid @ W_U + b_U,
                    "the final LayerNorm is missing: the unembedding reads ln_final of the last "
                    "block's output, not the stream itself",
                ),
                (ln_out @ W_U, "b_U is missing: the logits are ln_final(resid) @ W_U + b_U"),
                (ln_out @ W_U + 2 * b_U, "b_U is added twice: once, after W_U"),
                (
                    normalized @ W_U + b_U,
                    "the final LayerNorm lacks its gain and shift (ln_final.w, ln_final.b)",
                ),
            ],
            BLOCK_ATOL,
            BLOCK_RTOL,
        )
        if cause and cause.startswith("the final LayerNorm is missing"):
            row = compare_tensors(
                "ln_final.hook_normalized", resid, normalized, BLOCK_ATOL, BLOCK_RTOL
            )
        elif cause is None:
            cause = "the logits are ln_final(resid) @ W_U + b_U"
        raise fail(row, cause)
    final = "ln_final.hook_normalized, " if finals else ""
    print(
        f"Correct: your GPT gives the reference's blocks.L.hook_resid_pre, hook_resid_mid and "
        f"hook_resid_post for all {n_layers} blocks, {final}and the logits (with a nonzero "
        f"b_U; atol {BLOCK_ATOL:g}, rtol {BLOCK_RTOL:g})."
    )


@exercise(solutions.count_parameters)
def check_parameter_count(count_parameters: Callable) -> None:
    """Check ``count_parameters(cfg) -> int``: the parameters of a GPT-2-style model with the
    unembedding tied to the embedding (no extra weights, no output bias), as in GPT-2."""
    configs = [
        GPTConfig.gpt2_small(),
        GPTConfig(d_model=64, n_heads=4, d_head=16, d_mlp=200, n_layers=3, n_ctx=32, d_vocab=1000),
    ]
    for cfg in configs:
        expected = sum(parameter_count(cfg, tied_unembed=True).values())
        got = int(count_parameters(cfg))
        if got == expected + cfg.d_model * cfg.d_vocab + cfg.d_vocab:
            raise AssertionError(
                f"{cfg}: you counted W_U and b_U; GPT-2 reuses W_E as the unembedding"
            )
        if got != expected:
            raise AssertionError(
                f"for {cfg}: got {got:,}, expected {expected:,} (off by {got - expected:,})"
            )
    print("Correct: 124,439,808 for GPT-2 small, and right for another shape too.")

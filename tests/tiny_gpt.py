"""A tiny GPT-2 shared by the generation tests (sample, decoding, beam): ours and Hugging
Face's with the same weights. The ``tiny`` fixture (conftest.py) builds it once per file."""

import torch

EOS = 96  # the end token of the tiny model's 97-token vocabulary


def make_tiny():
    """A 2-layer GPT-2 with a 97-token vocabulary: ``(ours, Hugging Face's)``, same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from minigpt.formats.hf_model import from_hf

    torch.manual_seed(0)
    config = GPT2Config(n_embd=64, n_head=4, n_layer=2, n_positions=48, vocab_size=97,
                        bos_token_id=EOS, eos_token_id=EOS)  # fmt: skip
    hf = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        hf.transformer.wte.weight[EOS] *= 4  # make the end token likely enough to be chosen
    return from_hf(hf).eval(), hf


def prompts(batch: int = 3, pos: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, EOS, (batch, pos), generator=torch.Generator().manual_seed(seed))

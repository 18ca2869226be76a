"""GPT2LMHeadModel construction and the shared bits around it (loss, FLOPs, loading),
so that every checkpoint loads with AutoModelForCausalLM.from_pretrained."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ModelConfig


def build_model(mc: ModelConfig, vocab_size: int, eos_id: int, pad_id: int):
    from transformers import AutoModelForCausalLM, GPT2Config

    quiet_transformers()
    cfg = GPT2Config(
        vocab_size=ModelConfig.padded_vocab(vocab_size),
        n_positions=mc.n_positions, n_embd=mc.n_embd, n_layer=mc.n_layer, n_head=mc.n_head,
        resid_pdrop=mc.dropout, embd_pdrop=mc.dropout, attn_pdrop=mc.dropout,
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=pad_id,
    )
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    set_generation_defaults(model, eos_id, pad_id)
    return model


def set_generation_defaults(model, eos_id: int, pad_id: int) -> None:
    gc = model.generation_config
    gc.eos_token_id, gc.pad_token_id, gc.bos_token_id = eos_id, pad_id, eos_id
    gc.do_sample, gc.top_k, gc.top_p, gc.temperature = True, 40, 0.95, 0.9


def quiet_transformers() -> None:
    """No per-call progress bars ('Loading weights', 'Writing model shards') in our output."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def load_model(path: str | Path, dtype: torch.dtype | None = None):
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    kwargs = {"attn_implementation": "sdpa"}
    if dtype is not None:
        kwargs["dtype"] = dtype
    return AutoModelForCausalLM.from_pretrained(str(path), **kwargs)


def lm_loss(model, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of next-token prediction; targets of -1 are ignored."""
    logits = model(input_ids=x.clamp(min=0)).logits
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.reshape(-1),
                           ignore_index=-1, reduction=reduction)


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(model, n_ctx: int) -> float:
    """Training FLOPs per token, 6N + attention (nanoGPT / PaLM appendix B)."""
    c = model.config
    n = count_params(model) - c.n_positions * c.n_embd  # position table does no matmul work
    return 6 * n + 12 * c.n_layer * c.n_embd * n_ctx


def peak_flops(device: torch.device) -> float | None:
    """bf16 dense peak of the card, for MFU. Hopper uses 790 TFLOP/s, the rate measured
    for large bf16 matmuls on the H200 in DESIGN.md, so MFUs compare with its table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in (("H200", 790), ("H100", 790), ("A100", 312), ("L4", 121), ("4090", 165), ("A10", 125)):
        if key in name:
            return tflops * 1e12
    return None

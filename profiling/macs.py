"""Multiply-accumulates and parameters of a module at one input size, counted by PyTorch itself."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def count_macs(module: nn.Module, example: torch.Tensor) -> int:
    """MACs of one forward on `example` (FlopCounterMode counts 2 FLOPs per multiply-accumulate)."""
    with FlopCounterMode(display=False) as counter:
        module(example)
    return counter.get_total_flops() // 2


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

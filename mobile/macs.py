"""Multiply-accumulates and parameters of a module at one input size, counted by PyTorch itself
(`torch.utils.flop_counter.FlopCounterMode`, 2 FLOPs per multiply-accumulate; bias additions are not counted)."""

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


@torch.no_grad()
def macs_by_layer(module: nn.Module, example: torch.Tensor) -> list[tuple[str, int]]:
    """MACs of each module's own operations (its count minus its submodules'), from FlopCounterMode's per-module
    counts; modules in `named_modules()` order, named as there (the root as its class name), those with none left
    out. The values add up to `count_macs`."""
    with FlopCounterMode(display=False) as counter:
        module(example)
    root = type(module).__name__
    totals = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items() if name != "Global"}
    rows = []
    for name, sub in module.named_modules():
        key = f"{root}.{name}" if name else root
        children = sum(totals.get(f"{key}.{child}", 0) for child, _ in sub.named_children())
        own = (totals.get(key, 0) - children) // 2
        if own:
            rows.append((name or root, own))
    return rows


@torch.no_grad()
def registered_costs(num_classes: int = 1000) -> list[tuple[str, int, int, int]]:
    """(arch, parameters, MACs, resolution) of every registered model at width 1.0 as a single-resolution network at
    its default resolution (built on the meta device: shapes only, nothing allocated)."""
    from .models import create_model, list_models, trained_resolutions

    rows = []
    for arch in list_models():
        resolution = trained_resolutions(None, "single")[0]
        with torch.device("meta"):
            model = create_model(arch, "single", (resolution,), num_classes=num_classes).eval()
            rows.append((arch, count_params(model), count_macs(model, torch.zeros(1, 3, resolution, resolution)),
                         resolution))
    return rows

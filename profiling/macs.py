"""Multiply-accumulates and parameters of a module at one input size, counted by PyTorch itself
(`torch.utils.flop_counter.FlopCounterMode`, 2 FLOPs per multiply-accumulate; bias additions are not counted)."""

from __future__ import annotations

import dataclasses

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


@dataclasses.dataclass(frozen=True)
class MacsConfig:
    checkpoint: str
    resolutions: tuple[int, ...] | None = None  # default: the checkpoint's training resolutions
    by_layer: bool = False


@dataclasses.dataclass(frozen=True)
class MacsRow:
    resolution: int
    macs: int
    params: int
    layers: list[tuple[str, int]] | None  # with `by_layer`


def checkpoint_macs(config: MacsConfig) -> list[MacsRow]:
    """MACs and parameters of a checkpoint's network baked at each resolution (BN folded, as `convert` counts)."""
    from resflex.convert.bake import bake
    from resflex.mobile.checkpoint import load_checkpoint
    from resflex.mobile.layers import check_resolutions

    model, _ = load_checkpoint(config.checkpoint)
    resolutions = config.resolutions or model.config.resolutions
    check_resolutions(resolutions)
    rows = []
    for r in resolutions:
        baked = bake(model, r, bn="fold")  # BN rule and scale code do not change the count
        x = torch.zeros(1, 3, r, r)
        rows.append(MacsRow(r, count_macs(baked, x), count_params(baked),
                            macs_by_layer(baked, x) if config.by_layer else None))
    return rows


def format_macs(rows: list[MacsRow]) -> str:
    """Markdown: MMACs and parameters per resolution, then (if counted) a per-layer table per resolution."""
    lines = ["| resolution | MMACs | params |", "|---:|---:|---:|"]
    lines += [f"| {r.resolution} | {r.macs / 1e6:.3f} | {r.params:,} |" for r in rows]
    for r in rows:
        if r.layers is not None:
            lines += ["", f"{r.resolution}px by layer:", "| layer | MACs | share |", "|---|---:|---:|"]
            lines += [f"| {name} | {macs:,} | {100 * macs / r.macs:.1f}% |" for name, macs in r.layers]
    return "\n".join(lines)

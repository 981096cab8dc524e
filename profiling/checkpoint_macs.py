"""`resflex macs`: MACs and parameters of a checkpoint's network at each resolution, as `convert` bakes it."""

from __future__ import annotations

import dataclasses

import torch

from resflex.convert.bake import bake
from resflex.mobile.checkpoint import load_checkpoint
from resflex.mobile.layers import check_resolutions
from resflex.mobile.macs import count_macs, count_params, macs_by_layer


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

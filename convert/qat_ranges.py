"""Activation ranges learned by `train --qat` (`resflex.mobile.checkpoint.qat_ranges`) placed on an exported graph's
quantization points (`convert --calib-from qat`).

A QAT range belongs to a point: the model input (`INPUT_POINT`) or the output of a module, named by its FQN — a
conv-BN(-activation) unit, a residual block, a classifier (`resflex.mobile.qat`). Baking keeps module names, and
both exporters that take ranges record, per graph value, the modules it was computed in (ExecuTorch: a node's
`nn_module_stack`; ONNX: the TorchScript exporter's scoped node names). A module's output is the *last* value
computed inside it (its final ReLU6, its residual Add, its Linear), so each point maps to the last value in graph
order owned by its module. The quantizer's other points (e.g. a global-pool output ONNX Runtime quantizes on its
own) keep their image calibration; exporters count both kinds (`RangeUse`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping

from resflex.mobile.qat import INPUT_POINT

CALIB_FROM = ("auto", "qat", "images")  # `convert --calib-from`; auto = qat when the checkpoint has ranges


@dataclasses.dataclass(frozen=True)
class RangeUse:
    """How many of an int8 artifact's activation quantization points took QAT ranges and how many were calibrated
    on images, summed over its entries."""

    from_qat: int = 0
    from_images: int = 0

    def __add__(self, other: "RangeUse") -> "RangeUse":
        return RangeUse(self.from_qat + other.from_qat, self.from_images + other.from_images)


def last_values_of(values: Iterable[tuple[str, Collection[str]]], points: Iterable[str]) -> dict[str, str]:
    """{value: point} for the value each module point's output is — the last value, in graph order, whose owner
    modules include the point's FQN. `values`: (value name, FQNs of the modules it was computed in), in graph order.
    INPUT_POINT is not placed here (each exporter knows its input)."""
    wanted = set(points) - {INPUT_POINT}
    last: dict[str, str] = {}
    for name, owners in values:
        for fqn in wanted.intersection(owners):
            last[fqn] = name
    return {value: point for point, value in last.items()}


def checked_ranges(ranges: Mapping[int, Mapping[str, tuple[float, float]]] | None, resolutions: Iterable[int],
                   checkpoint: str) -> Mapping[int, Mapping[str, tuple[float, float]]]:
    """`ranges` if it has QAT ranges for every resolution converted, else a ValueError naming the checkpoint."""
    if not ranges or not any(ranges.values()):
        raise ValueError(f"--calib-from qat: {checkpoint} holds no QAT activation ranges (train it with "
                         "`resflex train --qat`, or convert with --calib-from images)")
    missing = sorted({r for r in resolutions if not ranges.get(r)}, reverse=True)
    if missing:
        raise ValueError(f"--calib-from qat: {checkpoint} has QAT activation ranges for "
                         f"{sorted((r for r in ranges if ranges[r]), reverse=True)} px, not for {missing} px "
                         "(convert those with --calib-from images)")
    return ranges

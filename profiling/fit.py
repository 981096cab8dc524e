"""Latency model: latency_p50 ≈ a + b · GMACs, fitted per device × runtime × precision × compute unit × threads.

Pure numpy, so the selector's tooling can refit without torch. The error reported with a fit is the mean
absolute relative error |predicted − measured| / measured over the measured resolutions, computed
**leave-one-out** when there are ≥ 3 resolutions (each point predicted by the line fitted to the others — how
well the model estimates a resolution it has not seen) and **in-sample** with 2 (a line through 2 points fits
them exactly, so that error is 0 and says nothing about unseen resolutions). Groups with fewer than 2 distinct
MAC counts get no model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from resflex.mobile.bundle.schema import LUT, Latency, LatencyModel


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of y ≈ intercept + slope · x; needs ≥ 2 distinct x."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"fit_line: x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if len(np.unique(x)) < 2:
        raise ValueError(f"fit_line: need at least 2 distinct x values, got {x.tolist()}")
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)


def fit_error(x: Sequence[float], y: Sequence[float]) -> tuple[float, str]:
    """(mean absolute relative error, "leave-one-out" | "in-sample") of the line fit, see the module docstring."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) >= 3 and all(len(np.unique(np.delete(x, i))) >= 2 for i in range(len(x))):
        errors = []
        for i in range(len(x)):
            a, b = fit_line(np.delete(x, i), np.delete(y, i))
            errors.append(abs(a + b * x[i] - y[i]) / y[i])
        return float(np.mean(errors)), "leave-one-out"
    a, b = fit_line(x, y)
    return float(np.mean(np.abs(a + b * x - y) / y)), "in-sample"


def fit_latency_models(lut: LUT, latencies: Mapping[tuple, Sequence[Latency]]) -> list[LatencyModel]:
    """One `LatencyModel` per runtime × precision × compute unit × threads, from one device's latencies keyed by
    `OperatingPoint.key()` (MACs from the LUT's operating points)."""
    groups: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for op in lut.operating_points:
        for lat in latencies.get(op.key(), ()):
            groups[(lat.runtime, op.precision, op.compute_unit, lat.threads)].append((op.macs / 1e9, lat.p50_ms))
    models = []
    for (runtime, precision, unit, threads), points in groups.items():
        gmacs, p50 = zip(*sorted(points))
        if len(set(gmacs)) < 2:
            continue
        intercept, slope = fit_line(gmacs, p50)
        error, _ = fit_error(gmacs, p50)
        models.append(LatencyModel(runtime, precision, unit, threads, intercept, slope, error, len(points)))
    return models

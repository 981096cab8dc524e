"""Latency statistics from timed runs, the same on the host and on a phone: p50/p90/p99 by linear interpolation
between order statistics (numpy's default `percentile` method), never a tool's mean; achieved GFLOP/s = 2 · MACs / p50.
"""

from __future__ import annotations

from collections.abc import Sequence

from resflex.mobile.bundle.schema import Latency


def percentile(samples: Sequence[float], q: float) -> float:
    """q-th percentile with linear interpolation between order statistics (numpy's default method)."""
    if not len(samples):
        raise ValueError("percentile of no samples")
    xs = sorted(float(x) for x in samples)
    rank = (len(xs) - 1) * q / 100.0
    lo = int(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


def latency_from_samples(runtime: str, threads: int, samples_ms: Sequence[float], macs: int,
                         peak_bytes: int | None = None) -> Latency:
    """A `Latency` from per-run times in milliseconds (and the process's peak resident bytes, where known)."""
    p50 = percentile(samples_ms, 50)
    return Latency(runtime=runtime, threads=threads, runs=len(samples_ms), p50_ms=p50,
                   p90_ms=percentile(samples_ms, 90), p99_ms=percentile(samples_ms, 99),
                   peak_memory_mb=None if peak_bytes is None else peak_bytes / 1e6,
                   gflops=2.0 * macs / (p50 * 1e-3) / 1e9 if p50 > 0 else None)

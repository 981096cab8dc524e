"""Golden vectors for the selector: cases the Python reference, the Kotlin port and the Swift port replay.

    python tests/golden/selector_golden.py tests/golden/selector_golden.json

(then copy the file into the ports' test resources, see README.md here). `emit_golden(path)` writes `{"kind": "resflex.selector_golden", "schema_version": "1.0", "cases": [...]}`; each
case is {name, description, lut (a full lut.json document), device, policy (every field explicit), steps, and
optionally compute_units (artifact file → the units it is offered on)}, and each step is {state, observed_ms,
expected}. Replaying a case: build `Selector(lut, device, policy, compute_units)`; for each step,
`d = choose(state)` must equal `expected` (resolution, backend, precision, compute_unit, index, unit_class,
latency_source and reason exactly; predicted_ms and budget_ms, rounded to 6 decimals, within 1e-6); then, if
observed_ms is not null, `observe(d, observed_ms)`.

JSON has no NaN or infinities: in `state` and `observed_ms` the strings "NaN", "Infinity" and "-Infinity" stand
for those doubles (`decode`); every other value, including other strings and null, is passed through unchanged
(the selector must treat it as a bad sensor value). The file is deterministic (sorted keys, one space indent,
floats as Python's shortest repr), so re-emitting gives byte-identical content.

Every step states what it is meant to show (`want`: the operating point and reason codes it must contain);
`golden_document()` refuses to emit a case whose decision does not show it, so the file cannot silently drift
from its intent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resflex.mobile.bundle import schema
from resflex.mobile.selector import Decision, DeviceState, Policy, Selector

GOLDEN_KIND, GOLDEN_VERSION = "resflex.selector_golden", "1.0"
STATE_FIELDS = ("battery", "charging", "power_save", "thermal", "thermal_scale", "cpu_load")
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

# --------------------------------------------------------------------------- lookup tables

PHONE_RESOLUTIONS = (224, 192, 160, 128)
# (backend, precision, unit, runtime, latency ms per resolution, top-1, energy mJ, latency model (a, b))
PHONE_ROWS = (
    ("executorch", "fp32", "XNNPACK", "executorch", (40.0, 30.0, 21.0, 14.0), (0.72, 0.70, 0.67, 0.62),
     (160.0, 120.0, 84.0, 56.0), (1.5, 128.0)),
    ("executorch", "int8", "XNNPACK", "executorch", (22.0, 16.5, 11.5, 7.5), (0.71, 0.69, 0.66, 0.61),
     (70.0, 52.0, 36.0, 24.0), (0.8, 70.0)),
    ("tflite", "fp16", "GPU", "tflite", (36.0, 27.0, 19.5, 13.5), (0.719, 0.699, 0.669, 0.619),
     (60.0, 45.0, 32.0, 22.0), (4.0, 106.0)),
)


def _macs(resolution: int, macs_224: float = 300e6) -> int:
    return int(round(macs_224 * resolution * resolution / (224 * 224)))


def phone_lut(*, energy: bool = False, measured: bool = True, models: bool = False,
              one_thread: bool = False) -> schema.LUT:
    """A small hand-made phone LUT (device "phone"): 4 resolutions × {ExecuTorch fp32 and int8 on XNNPACK (CPU),
    TFLite fp16 on the GPU}. `one_thread` adds 1-thread XNNPACK entries 2.5× slower than the 4-thread ones."""
    points, latency_models = [], []
    for backend, precision, unit, runtime, lat, top1, mj, (a, b) in PHONE_ROWS:
        artifact = {"executorch": f"executorch/model_{precision}.pte", "tflite": f"tflite/model_{precision}.tflite"}
        for i, r in enumerate(PHONE_RESOLUTIONS):
            entries = []
            if measured:
                threads = 1 if unit == "GPU" else 4
                entries.append(schema.Latency(runtime, threads, 50, lat[i], lat[i] * 1.1, lat[i] * 1.2,
                                         energy_mj=mj[i] if energy else None))
                if one_thread and unit != "GPU":
                    entries.append(schema.Latency(runtime, 1, 50, lat[i] * 2.5, lat[i] * 2.75, lat[i] * 3.0,
                                             energy_mj=mj[i] * 1.5 if energy else None))
            points.append(schema.OperatingPoint(
                resolution=r, backend=schema.Backend(backend), precision=schema.Precision(precision), compute_unit=unit,
                artifact=artifact[backend], entry=f"forward_{r}" if backend == "executorch" else f"serving_{r}",
                macs=_macs(r), params=2_200_000, artifact_bytes=9_000_000, artifact_resolutions=4, top1=top1[i],
                top1_data=schema.DataIdentity("imagenet", "val", 50000),
                latency={"phone": entries} if entries else {}))
        if models:
            latency_models.append(schema.LatencyModel(runtime, schema.Precision(precision), unit, 4 if unit != "GPU" else 1,
                                                 a, b, 0.05, 4))
    device = schema.Device({"model": "Example Phone", "soc": "Example SoC"}, latency_models=latency_models)
    return schema.LUT(points, devices={"phone": device})


_EXTENSIONS = {"executorch": "pte", "tflite": "tflite", "onnx": "onnx", "coreml": "mlpackage"}


def op(resolution: int, kind: tuple, top1: float, ms: float | None = None, mj: float | None = None, *,
       entries: tuple = (), macs: int | None = None, stage_scales: list | None = None) -> schema.OperatingPoint:
    """One hand-made operating point of a "phone" LUT; kind = (backend, precision, compute unit). Its latency on
    "phone" is one entry of `ms` (and energy `mj`), 1 thread on a GPU, else 4, or the given `entries`
    ((runtime, threads, p50 ms, energy mJ or None), ...)."""
    backend, precision, unit = kind
    if ms is not None:
        entries = ((schema.BACKEND_RUNTIMES[schema.Backend(backend)], 1 if unit == "GPU" else 4, ms, mj),)
    return schema.OperatingPoint(
        resolution=resolution, backend=schema.Backend(backend), precision=schema.Precision(precision), compute_unit=unit,
        artifact=f"{backend}/model_{precision}.{_EXTENSIONS[backend]}", entry=f"forward_{resolution}",
        macs=_macs(resolution) if macs is None else macs, params=2_200_000, artifact_bytes=9_000_000,
        artifact_resolutions=4, top1=top1, top1_data=schema.DataIdentity("imagenet", "val", 50000),
        latency={"phone": [schema.Latency(rt, threads, 50, p50, p50 * 1.1, p50 * 1.2, energy_mj=e)
                           for rt, threads, p50, e in entries]} if entries else {},
        stage_scales=stage_scales)


def points_lut(*points: schema.OperatingPoint, models: tuple = ()) -> schema.LUT:
    """A "phone" LUT of these points (in this order) and latency models."""
    device = schema.Device({"model": "Example Phone", "soc": "Example SoC"}, latency_models=list(models))
    return schema.LUT(list(points), devices={"phone": device})


def demo_lut(resolutions=(224, 192, 160, 128, 96), device: str = "phone") -> schema.LUT:
    """A realistic-sized LUT for benchmarks: resolutions × {ExecuTorch, TFLite, ONNX} × {fp32, int8} × every
    compute unit of the backend (ExecuTorch XNNPACK; TFLite CPU, GPU, NNAPI; ONNX CPU), all measured."""
    speed = {("executorch", "XNNPACK"): 1.0, ("tflite", "CPU"): 1.15, ("tflite", "GPU"): 0.9,
             ("tflite", "NNAPI"): 0.6, ("onnx", "CPUExecutionProvider"): 1.3}
    points = []
    for (backend, unit), s in speed.items():
        for precision in ("fp32", "int8"):
            for r in resolutions:
                gmacs = _macs(r) / 1e9
                ms = (1.0 + gmacs * (120.0 if precision == "fp32" else 65.0)) * s
                top1 = 0.72 - 0.1 * (1 - r / 224) ** 2 * 4 - (0.008 if precision == "int8" else 0.0)
                points.append(schema.OperatingPoint(
                    r, schema.Backend(backend), schema.Precision(precision), unit, f"{backend}/model_{precision}", f"e{r}",
                    _macs(r), 2_200_000, 9_000_000, len(resolutions), top1=round(top1, 4),
                    latency={device: [schema.Latency(schema.BACKEND_RUNTIMES[schema.Backend(backend)], 4, 50, round(ms, 3), round(ms * 1.1, 3),
                                                round(ms * 1.2, 3), energy_mj=round(ms * (2.5 if unit in (
                                                    "GPU", "NNAPI") else 3.5), 3))]}))
    return schema.LUT(points, devices={device: schema.Device({"model": "bench phone"})})


# --------------------------------------------------------------------------- cases


@dataclasses.dataclass(frozen=True)
class Step:
    state: dict
    observe: Any = None  # a number, a special string, None, or a function of the Decision (recorded rounded)
    want_point: tuple | None = None  # (resolution, backend, precision, compute_unit[, stage_scales tuple])
    want_codes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    description: str
    lut: schema.LUT
    device: str
    policy: Policy
    steps: tuple[Step, ...]
    compute_units: dict | None = None  # artifact → the units manifest.json offers it on (Selector's compute_units)


def S(**fields) -> dict:
    """A full sensor state: a healthy phone unless told otherwise."""
    state = {"battery": 0.8, "charging": False, "power_save": False, "thermal": 0, "thermal_scale": "normalized",
             "cpu_load": 0.0}
    state.update(fields)
    return state


def true_factor(cpu: float, accelerator: float = 1.0) -> Callable[[Decision], float]:
    """Observed latency of a phone whose real speed differs from the LUT by these factors."""
    return lambda d: d.model_ms * (cpu if d.unit_class == "cpu" else accelerator)


def exact(d: Decision) -> float:
    return d.model_ms


I8, F32, GPU = ("executorch", "int8", "XNNPACK"), ("executorch", "fp32", "XNNPACK"), ("tflite", "fp16", "GPU")


def P(resolution: int, kind: tuple) -> tuple:
    return (resolution, *kind)


# probe_backoff: frame → (point, codes) it must show; 1, 3 then 7 frames of hold_hysteresis before each probe.
_BACKOFF_WANTS = {
    0: (P(224, I8), ("initial",)), 1: (P(192, I8), ("deadline_miss_step_down",)),
    3: (P(192, GPU), ("step_up", "accelerator")), 11: (P(192, GPU), ("hold_hysteresis",)),
    12: (P(224, I8), ("step_up",)), 13: (P(192, GPU), ("deadline_miss_step_down",)),
    **{n: (P(192, GPU), ("hold_hysteresis",)) for n in range(19, 22)},
    22: (P(224, I8), ("step_up",)), 23: (P(192, GPU), ("deadline_miss_step_down",)),
    **{n: (P(192, GPU), ("hold_hysteresis",)) for n in range(28, 35)},
    35: (P(224, I8), ("step_up",)), 36: (P(192, GPU), ("deadline_miss_step_down",)),
}


# probe_backoff_cap: required calm frames 2, 4, then 6 = backoff_max_frames (doubling would give 8), and 6 again
# (not 12) after the capped probe fails too: 1, 3, 5 then 5 frames of hold_hysteresis before each probe.
_HOLD_HYSTERESIS = (11, 19, 20, 21, 28, 29, 30, 31, 32, 38, 39, 40, 41, 42)
_CAP_WANTS = {
    **{n: (P(192, GPU), ("hold",)) for n in range(4, 45)},
    **{n: (P(192, GPU), ("hold_hysteresis",)) for n in _HOLD_HYSTERESIS},
    0: (P(224, I8), ("initial",)), 1: (P(192, I8), ("deadline_miss_step_down",)),
    2: (P(192, I8), ("hold_hysteresis",)), 3: (P(192, GPU), ("step_up", "accelerator")),
    **{n: (P(224, I8), ("step_up",)) for n in (12, 22, 33, 43)},
    **{n: (P(192, GPU), ("deadline_miss_step_down",)) for n in (13, 23, 34, 44)},
}

# Kinds of the hand-made tie-break LUTs (backend, precision, compute unit).
F16 = ("executorch", "fp16", "XNNPACK")
TFL32 = ("tflite", "fp32", "CPU")
ONNX32, ONNX16 = ("onnx", "fp32", "CPUExecutionProvider"), ("onnx", "fp16", "CPUExecutionProvider")


def switch_rate_cases() -> list[Case]:
    """The rules that keep the switch rate low (issue 16): a deadline miss the sensors do not explain is noise
    until miss_frames misses in a row; one the sensors explain steps down at once; a step up needs its calm
    frames to want one and the same point; a step up undone within probe_window_frames doubles the wait and a
    calm window halves it again."""
    phone, default = phone_lut(), Policy()
    noisy = (34.0, exact, 34.0, exact, exact, 34.0, exact, 34.0, exact, exact, 34.0, exact)
    burst = S(cpu_load=0.8)
    return [
        Case("miss_noise_holds", "isolated deadline misses (34 ms > 33) of a point predicted to fit with margin "
             "(22 ms) are latency noise: it never switches", phone, "phone", default,
             (Step(S(), noisy[0], P(224, I8), ("initial",)),
              *[Step(S(), o, P(224, I8), ("hold",)) for o in noisy[1:]])),
        Case("miss_explained_by_sensors", "a busy CPU (load 0.6) puts the 224 px point within the margin of its "
             "budget (31.4 of 33 ms): its first deadline miss steps down at once", phone, "phone", default,
             (Step(S(cpu_load=0.6), 34.0, P(224, I8), ("initial", "cpu_load_slowdown")),
              Step(S(cpu_load=0.6), exact, None, ("deadline_miss_step_down", "cpu_load_slowdown")),
              Step(S(cpu_load=0.6), exact, None, ("hold", "cpu_load_slowdown")))),
        Case("step_up_one_target", "cooling from thermal level 3 through 2 to 0: the 3 calm frames that wanted "
             "192 px do not count for 224 px, which waits for 5 calm frames of its own, then one switch",
             phone, "phone", default,
             (Step(S(thermal=3), exact, P(128, GPU), ("initial", "accelerator")),
              *[Step(S(thermal=2), exact, P(128, GPU), ("hold_hysteresis",))] * 3,
              *[Step(S(), exact, P(128, GPU), ("hold_hysteresis",))] * 4,
              Step(S(), exact, P(224, I8), ("step_up", "fits_budget")),
              Step(S(), exact, P(224, I8), ("hold",)))),
        Case("probe_window_backoff", "recurring load bursts: a step up undone within the probe window (6 frames) "
             "doubles the calm frames the next one needs (2 → 4); a window without a step down halves them (→ 2)",
             phone, "phone", Policy(hysteresis_frames=2, probe_window_frames=6, backoff_max_frames=8),
             (Step(S(), exact, P(224, I8), ("initial",)),
              Step(burst, exact, P(192, GPU), ("step_down_no_fit", "accelerator")),
              Step(S(), exact, P(192, GPU), ("hold_hysteresis",)),
              Step(S(), exact, P(224, I8), ("step_up",)),
              *[Step(S(), exact, P(224, I8), ("hold",))] * 2,
              Step(burst, exact, P(192, GPU), ("step_down_no_fit",)),
              *[Step(S(), exact, P(192, GPU), ("hold_hysteresis",))] * 3,
              Step(S(), exact, P(224, I8), ("step_up",)),
              *[Step(S(), exact, P(224, I8), ("hold",))] * 6,
              Step(burst, exact, P(192, GPU), ("step_down_no_fit",)),
              Step(S(), exact, P(192, GPU), ("hold_hysteresis",)),
              Step(S(), exact, P(224, I8), ("step_up",)))),
    ]


def tie_cases() -> list[Case]:
    """Cases in which a rule of the docstring that usually does not matter decides the point or the reason: the
    key-rank tie-break, energy as pick()'s third tie key, the choice of a point's latency entry or latency model,
    the Pareto filter (strict, with measured energy; without energy, with MACs) and the backoff_max_frames cap."""
    default = Policy()
    # Tied points (same top-1, latency and MACs) in three groups; the lowest key sits between others in LUT
    # order, so neither "first found" nor "last found" gives it. 224 px: the backend decides before the precision
    # (executorch/fp32 < onnx/fp16 < tflite/fp32); 160 px: the precision (fp16 < fp32 < int8); 96 px: the
    # resolution, then the stage scales compared as lists ([0.75, 1.0] < [1.0] < [1.0, 0.5]); the 112 px point
    # with stages scaled to 0.5 costs as many MACs.
    trios = points_lut(
        op(224, TFL32, 0.72, 20.0), op(224, F32, 0.72, 20.0), op(224, ONNX16, 0.72, 20.0),
        op(160, F32, 0.67, 12.0), op(160, F16, 0.67, 12.0), op(160, I8, 0.67, 12.0),
        *[op(96, I8, 0.55, 6.0, stage_scales=s) for s in ([1.0], [0.75, 1.0], [1.0, 0.5])],
        op(112, I8, 0.55, 6.0, macs=_macs(96), stage_scales=[0.5, 0.5]))
    # A CPU point and a GPU point of equal top-1 and MACs: equally fast at thermal level 2 (10 × 1.3 = 13 ms), the
    # CPU point faster when cool. The GPU point has the lower key (fp16 < fp32) but comes second in candidate order.
    cpu_gpu = points_lut(op(224, TFL32, 0.72, 10.0), op(224, GPU, 0.72, 13.0))
    # CPU/GPU pairs of equal top-1 that are equally fast at thermal level 2 (224 px: 10 × 1.3 = 13 ms) and 3
    # (128 px: 5 × 1.6 = 8 ms); the GPU points need less energy but have the higher keys.
    energy_pairs = points_lut(op(224, F32, 0.72, 10.0, 100.0), op(224, GPU, 0.72, 13.0, 60.0),
                              op(128, I8, 0.62, 5.0, 30.0), op(128, GPU, 0.62, 8.0, 20.0))
    # The 224 px point's entries: only the 2-thread "executorch" one (10 ms, 30 mJ) makes it cheaper than the
    # 192 px point (40 mJ); each other entry loses one tie-break (lowest p50, then fewer threads, then runtime).
    entries = points_lut(
        op(224, F32, 0.72, entries=(("executorch", 4, 10.0, 50.0), ("executorch", 1, 30.0, 10.0),
                                    ("executorch-nightly", 2, 10.0, 55.0), ("executorch", 2, 10.0, 30.0),
                                    ("executorch-vulkan", 2, 10.0, 60.0))),
        op(192, F32, 0.71, 8.0, 40.0))
    # Latency models for fp32 on XNNPACK: the 4-thread one predicts lowest (224 px: 16 ms, 160 px: 8.65 ms); the
    # 1-thread one has fewer threads but predicts more, the negative-intercept one predicts ≤ 0 (skipped), the
    # 8-thread one comes last; the int8 model does not apply to fp32 points. (Models whose predictions tie give the
    # same latency, so their thread / runtime tie-break cannot change a decision.)
    models = points_lut(
        op(224, F32, 0.72), op(160, F32, 0.67),
        models=tuple(schema.LatencyModel("executorch", schema.Precision(precision), "XNNPACK", threads, a, b, 0.05, 4)
                     for precision, threads, a, b in (("fp32", 1, 2.0, 100.0), ("fp32", 2, -12.0, 30.0),
                                                      ("fp32", 4, 1.0, 50.0), ("int8", 4, 0.5, 10.0),
                                                      ("fp32", 8, 3.0, 80.0))))
    # Measured energy: two 224 px points identical in top-1, latency and energy (both kept), a third one equal but
    # for more energy (dominated by energy alone; had it been kept, it would never be picked) and a 192 px point as
    # slow, less accurate but cheaper (kept only because energy counts).
    pareto = points_lut(op(224, F32, 0.72, 20.0, 80.0), op(224, ONNX32, 0.72, 20.0, 80.0),
                        op(224, TFL32, 0.72, 20.0, 90.0), op(192, F32, 0.71, 20.0, 60.0))
    # MACs as the energy proxy: the 192 px ONNX point is slower and less accurate than the 224 px ExecuTorch one, so
    # it is dropped although it has fewer MACs (energy counts in the Pareto filter only when measured).
    pareto_macs = points_lut(op(224, F32, 0.72, 20.0), op(192, ONNX32, 0.71, 22.0))
    hot_low = S(thermal=2, battery=0.15)
    return [
        Case("key_rank_ties", "three groups of tied points: the lowest OperatingPoint.key() wins in pick() "
             "(accuracy mode), in pick() (energy mode) and in fastest", trios, "phone", default,
             (Step(S(), None, P(224, F32), ("initial", "fits_budget")),
              Step(hot_low, None, P(160, F16), ("step_down_no_fit", "battery_low", "energy_preferred")),
              Step(S(thermal=3, battery=0.05, power_save=True), None, (96, *I8, (0.75, 1.0)),
                   ("none_fit_fallback_fastest", "over_budget")))),
        Case("key_rank_prefer", "a CPU and a GPU point tie at thermal level 2: the lower key (the GPU point, second "
             "in candidate order) is up, and prefer(up, current) takes it, in accuracy and in energy mode (a probe "
             "window of one frame, so the three step ups need not back off)",
             cpu_gpu, "phone", Policy(probe_window_frames=1),
             (Step(S(), None, P(224, TFL32), ("initial", "fits_budget")),
              *[Step(S(thermal=2), None, P(224, TFL32), ("hold_hysteresis", "thermal_tightened"))] * 4,
              Step(S(thermal=2), None, P(224, GPU), ("step_up", "accelerator")),
              *[Step(S(), None, P(224, GPU), ("hold_hysteresis", "accelerator"))] * 4,
              Step(S(), None, P(224, TFL32), ("step_up", "fits_budget")),
              *[Step(hot_low, None, P(224, TFL32), ("hold_hysteresis", "energy_preferred"))] * 4,
              Step(hot_low, None, P(224, GPU), ("step_up", "energy_preferred", "accelerator")))),
        Case("step_up_back_off", "the key_rank_prefer sequence with the default probe window: a step up within the "
             "window of the previous one doubles the calm frames the next needs (5 → 10), so two equally good "
             "points cannot trade places every few frames", cpu_gpu, "phone", default,
             (Step(S(), None, P(224, TFL32), ("initial", "fits_budget")),
              *[Step(S(thermal=2), None, P(224, TFL32), ("hold_hysteresis", "thermal_tightened"))] * 4,
              Step(S(thermal=2), None, P(224, GPU), ("step_up", "accelerator")),
              *[Step(S(), None, P(224, GPU), ("hold_hysteresis", "accelerator"))] * 4,
              Step(S(), None, P(224, TFL32), ("step_up", "fits_budget")),
              *[Step(hot_low, None, P(224, TFL32), ("hold_hysteresis", "energy_preferred"))] * 9,
              Step(hot_low, None, P(224, GPU), ("step_up", "energy_preferred", "accelerator")))),
        Case("energy_breaks_ties", "equal top-1 and predicted latency on the CPU and the GPU: the lower energy "
             "decides pick() (after top-1 and predicted), prefer(up, current) and fastest (after predicted and "
             "top-1), not the key", energy_pairs, "phone", default,
             (Step(S(thermal=2), None, P(224, GPU), ("initial", "fits_budget", "accelerator")),
              *[Step(S(), None, P(224, GPU), ("hold_hysteresis", "accelerator"))] * 4,
              Step(S(), None, P(224, F32), ("step_up", "fits_budget")),
              *[Step(S(thermal=2), None, P(224, F32), ("hold_hysteresis", "thermal_tightened"))] * 4,
              Step(S(thermal=2), None, P(224, GPU), ("step_up", "accelerator")),
              Step(S(thermal=3, battery=0.05, power_save=True), None, P(128, GPU),
                   ("none_fit_fallback_fastest", "over_budget", "accelerator")))),
        Case("measured_entry_choice", "several measurements of one point: the lowest p50 (ties: fewer threads, then "
             "runtime name by code point) gives its latency and energy, which decides the energy-mode pick",
             entries, "phone", default,
             (Step(S(battery=0.15), None, P(224, F32), ("initial", "fits_budget", "energy_preferred")),)),
        Case("latency_model_choice", "several latency models apply: the lowest prediction > 0 (not the fewest "
             "threads, not the first or last listed, not another precision's) puts 224 px over a 12 ms budget",
             models, "phone", Policy(latency_budget_ms=12.0),
             (Step(S(), None, P(160, F32), ("initial", "fits_budget", "estimated_latency")),)),
        Case("pareto_energy_strict", "measured energy: identical points are both kept (the key decides), and a "
             "slower, less accurate but cheaper point is kept and preferred on a low battery", pareto, "phone",
             default,
             (Step(S(), None, P(224, F32), ("initial", "fits_budget")),
              *[Step(S(battery=0.15), None, P(224, F32), ("hold_hysteresis", "energy_preferred"))] * 4,
              Step(S(battery=0.15), None, P(192, F32), ("step_up", "energy_preferred")))),
        Case("pareto_macs_metric", "no measured energy: a slower, less accurate point is dropped although it has "
             "fewer MACs, so a low battery cannot prefer it", pareto_macs, "phone", default,
             (Step(S(battery=0.15), None, P(224, F32), ("initial", "fits_budget", "energy_preferred")),)),
        Case("probe_backoff_cap", "the calm frames before a probe double (2, 4) up to backoff_max_frames = 6 "
             "(not 8) and stay there (not 12) after the capped probe fails too", phone_lut(), "phone",
             Policy(slowdown_relax=0.05, hysteresis_frames=2, backoff_max_frames=6, miss_frames=1,
                    probe_window_frames=2),
             tuple(Step(S(), true_factor(1.8), *_CAP_WANTS[n]) for n in range(45))),
    ]


# Resizable Networks: a real `resflex search` of a tiny resizable network (tiny_cnn, --method resizable, resolutions
# 32,24, scales 1,0.75,0.5, 4 epochs on 512 synthetic images; `resflex search --samples 500`): its configuration front
# and the two input-resolution-only points, as (resolution, stage scales, top-1, MACs). Their phone latency is a
# stated line, 2 ms + 200 ms per million MACs (the tiny net's MACs scaled to a phone-sized model's milliseconds).
RESIZABLE_SEARCH = (
    (24, [0.5, 0.5], 0.566, 40872), (32, [0.5, 0.5], 0.612, 72624), (32, [0.75, 0.75], 0.614, 111504),
    (32, [0.75, 1.0], 0.62, 147792), (32, [1.0, 1.0], 0.61, 165936), (24, [1.0, 1.0], 0.562, 93360),
)


def resizable_lut() -> schema.LUT:
    """The searched configurations as ExecuTorch int8 points of one 6-method artifact (entries named as
    `resflex convert --configs` names them)."""
    points = []
    for r, scales, top1, macs in RESIZABLE_SEARCH:
        tag = f"{r}_s" + "_".join(f"{s:g}".replace(".", "p") for s in scales)
        p = op(r, I8, top1, round(2.0 + 200.0 * macs / 1e6, 3), macs=macs, stage_scales=scales)
        points.append(dataclasses.replace(p, entry=f"forward_{tag}", artifact_resolutions=len(RESIZABLE_SEARCH),
                                          top1_data=schema.DataIdentity("synthetic", "val", 500)))
    return points_lut(*points)


def resizable_cases() -> list[Case]:
    """Stage-scale operating points: the selector chooses among spatial configurations like among resolutions."""
    lut, default = resizable_lut(), Policy()

    def R(resolution, *scales):
        return (resolution, *I8, scales)

    return [
        Case("resizable_budget", "searched stage-scale configurations: within 33 ms the most accurate is 32 px with "
             "stages at 0.75 and 1 (not the slower, less accurate full 32 px network)",
             lut, "phone", default,
             (Step(S(), exact, R(32, 0.75, 1.0), ("initial", "fits_budget")),)),
        Case("resizable_tight_budget", "an 18 ms budget: the 32 px configuration with both stages at 0.5", lut,
             "phone", Policy(latency_budget_ms=18.0),
             (Step(S(), exact, R(32, 0.5, 0.5), ("initial", "fits_budget")),)),
        Case("resizable_thermal", "heat steps down through the stage-scale configurations (32 px at 0.5, 0.5, then "
             "24 px at 0.5, 0.5); cool again, after 5 calm frames the step up goes to 32 px at 0.75, 0.75 and stays",
             lut, "phone", default,
             (Step(S(), exact, R(32, 0.75, 1.0), ("initial", "fits_budget")),
              Step(S(thermal=2), exact, R(32, 0.5, 0.5), ("step_down_no_fit", "thermal_tightened")),
              Step(S(thermal=3), exact, R(24, 0.5, 0.5), ("step_down_no_fit", "thermal_tightened")),
              *[Step(S(), exact, R(24, 0.5, 0.5), ("hold_hysteresis",))] * 4,
              Step(S(), exact, R(32, 0.75, 0.75), ("step_up", "fits_budget")),
              Step(S(), exact, R(32, 0.75, 0.75), ("hold",)))),
    ]


def cases() -> list[Case]:
    phone, energy_phone = phone_lut(), phone_lut(energy=True)
    default = Policy()
    out = [
        Case("budget_fits", "default 33 ms budget, healthy phone: the most accurate point that fits",
             phone, "phone", default, (Step(S(), exact, P(224, I8), ("initial", "fits_budget")),)),
        Case("budget_tight", "12 ms budget: a smaller resolution", phone, "phone",
             Policy(latency_budget_ms=12.0), (Step(S(), exact, P(160, I8), ("initial", "fits_budget")),)),
        Case("budget_exact", "a budget equal to a point's latency fits it (predicted ≤ budget)", phone, "phone",
             Policy(latency_budget_ms=22.0), (Step(S(), None, P(224, I8), ("initial", "fits_budget")),)),
        Case("budget_none_fit", "5 ms budget: nothing fits, the fastest point", phone, "phone",
             Policy(latency_budget_ms=5.0),
             (Step(S(), None, P(128, I8), ("none_fit_fallback_fastest", "over_budget")),
              Step(S(), None, P(128, I8), ("none_fit_hold", "over_budget")))),
        Case("min_top1_filters", "min top-1 0.69 within 20 ms: the 192 px int8 point, not a faster less "
             "accurate one", phone, "phone", Policy(latency_budget_ms=20.0, min_top1=0.69),
             (Step(S(), exact, P(192, I8), ("initial", "fits_budget")),)),
        Case("min_top1_unreachable", "min top-1 0.715 cannot be met within 33 ms: the fastest point", phone,
             "phone", Policy(min_top1=0.715),
             (Step(S(), None, P(128, I8), ("none_fit_fallback_fastest", "below_min_top1")),)),
    ]
    for scale, levels, points in (
            ("normalized", (0, 1, 2, 3), (P(224, I8), P(224, I8), P(192, I8), P(128, GPU))),
            ("android", (0, 1, 2, 3, 4, 5, 6), (P(224, I8), P(224, I8), P(192, I8), *[P(128, GPU)] * 4)),
            ("ios", (0, 1, 2, 3), (P(224, I8), P(224, I8), P(192, I8), P(128, GPU)))):
        steps = tuple(Step(S(thermal=t, thermal_scale=scale), exact, p,
                           ("thermal_tightened", "thermal_cpu_slowdown") if t else ("fits_budget",))
                      for t, p in zip(levels, points))
        out.append(Case(f"thermal_{scale}", f"every {scale} thermal level, hotter each frame: the budget shrinks "
                        "and the CPU slows, down to the GPU at the hottest level", phone, "phone", default, steps))
    out += [
        Case("thermal_cooling_hysteresis", "hot, then nominal: the step up waits for 5 calm frames", phone,
             "phone", default,
             (Step(S(thermal=3), exact, P(128, GPU), ("initial", "accelerator")),
              *[Step(S(), exact, P(128, GPU), ("hold_hysteresis",))] * 4,
              Step(S(), exact, P(224, I8), ("step_up", "fits_budget")),
              Step(S(), exact, P(224, I8), ("hold",)))),
        Case("deadline_miss", "one deadline miss of a point predicted to fit with margin is noise (hold); a second "
             "in a row (miss_frames 2) steps down; calm frames step back up after 5",
             phone, "phone", default,
             (Step(S(), 34.0, P(224, I8), ("initial",)),
              Step(S(), 34.0, P(224, I8), ("hold",)),
              Step(S(), exact, P(192, I8), ("deadline_miss_step_down",)),
              *[Step(S(), exact, P(192, I8), ("hold_hysteresis",))] * 4,
              Step(S(), exact, P(224, I8), ("step_up",)))),
        Case("feedback_throttling", "sensors say nominal but the CPU runs 1.8× slower: the second deadline miss in "
             "a row steps down, straight to the GPU: the slowdown learnt from the two timings alone makes it the "
             "best point that fits, and it stays there",
             phone, "phone", default,
             (Step(S(), true_factor(1.8), P(224, I8), ("initial",)),
              Step(S(), true_factor(1.8), P(224, I8), ("hold", "throttle_detected")),
              Step(S(), true_factor(1.8), P(192, GPU), ("deadline_miss_step_down", "throttle_detected",
                                                        "accelerator")),
              *[Step(S(), true_factor(1.8), P(192, GPU), ("hold", "throttle_detected"))] * 8)),
        Case("probe_backoff", "a step up that has to be undone at once doubles the calm frames the next one "
             "needs (2, 4, 8 = backoff_max_frames): the CPU runs 1.8× slower and its slowdown relaxes fast (every "
             "miss steps down: miss_frames 1; probe window 2 frames)", phone, "phone",
             Policy(slowdown_relax=0.05, hysteresis_frames=2, backoff_max_frames=8, miss_frames=1,
                    probe_window_frames=2),
             tuple(Step(S(), true_factor(1.8), *_BACKOFF_WANTS.get(n, (None, ()))) for n in range(37))),
        Case("cpu_load_to_accelerator", "a busy CPU (load 0.8) moves the work to the GPU; back on the CPU after "
             "the load ends and 5 calm frames", phone, "phone", default,
             (Step(S(), exact, P(224, I8), ("initial",)),
              Step(S(cpu_load=0.8), exact, P(192, GPU), ("step_down_no_fit", "cpu_load_slowdown", "accelerator")),
              *[Step(S(), exact, P(192, GPU), ("hold_hysteresis",))] * 4,
              Step(S(), exact, P(224, I8), ("step_up",)))),
        Case("battery_low", "battery 15 %, not charging: tighter budget, lower energy preferred (energy_mj)",
             energy_phone, "phone", default,
             (Step(S(battery=0.15), exact, None, ("initial", "battery_low", "energy_preferred")),)),
        Case("battery_critical", "battery 5 %: tighter still", energy_phone, "phone", default,
             (Step(S(battery=0.05), exact, None, ("initial", "battery_critical", "energy_preferred")),)),
        Case("battery_charging", "battery 5 % but charging: no battery rule", energy_phone, "phone", default,
             (Step(S(battery=0.05, charging=True), exact, P(224, I8), ("initial", "fits_budget", "charging")),)),
        Case("battery_draining", "battery falls from 30 % to 5 % frame by frame (MACs as the energy proxy)",
             phone, "phone", default,
             tuple(Step(S(battery=b), exact, None, codes) for b, codes in (
                 (0.3, ("initial",)), (0.2, ("battery_low",)), (0.15, ("battery_low",)),
                 (0.1, ("battery_critical",)), (0.05, ("battery_critical",))))),
        Case("power_save", "power-save mode: tighter budget, lower energy preferred", energy_phone, "phone",
             default, (Step(S(power_save=True), exact, None, ("initial", "power_save", "energy_preferred")),)),
        Case("latency_model_fallback", "no measured latency on this device: the device's latency model",
             phone_lut(measured=False, models=True), "phone", default,
             (Step(S(), exact, None, ("initial", "estimated_latency")),
              Step(S(thermal=2), exact, None, ("estimated_latency",)))),
        Case("macs_fallback", "a device the LUT does not know: latency from MACs at 10 GMAC/s", phone,
             "unprofiled_phone", Policy(fallback_gmacs_per_s=10.0),
             (Step(S(), None, P(224, F32), ("initial", "estimated_latency_macs")),
              Step(S(thermal=3), None, None, ("step_down_no_fit", "estimated_latency_macs")))),
        Case("policy_one_thread", "policy threads = 1: the 1-thread XNNPACK latencies (2.5× slower) decide",
             phone_lut(one_thread=True), "phone", Policy(threads=1),
             (Step(S(), exact, P(192, GPU), ("initial", "accelerator")),)),
        Case("bad_sensors", "NaN, infinities, negative, out-of-range, null, wrong types and unknown names fall "
             "back to conservative values", phone, "phone", default,
             (Step(S(battery="NaN"), None, None, ("bad_sensor:battery", "battery_low")),
              Step(S(thermal="Infinity"), None, None, ("bad_sensor:thermal", "thermal_tightened")),
              Step(S(thermal=-1), None, None, ("bad_sensor:thermal",)),
              Step(S(thermal=1.5), None, None, ("bad_sensor:thermal",)),
              Step(S(thermal=9, thermal_scale="android"), None, None, ("bad_sensor:thermal",)),
              Step(S(thermal="NaN", thermal_scale="ios"), None, None, ("bad_sensor:thermal",)),
              Step(S(thermal_scale="kelvin"), None, None, ("bad_sensor:thermal_scale",)),
              Step(S(battery=-0.5), None, None, ("bad_sensor:battery",)),
              Step(S(battery=1.5), None, None, ("bad_sensor:battery",)),
              Step(S(battery=None), None, None, ("bad_sensor:battery",)),
              Step(S(charging=None, battery=0.05), None, None, ("bad_sensor:charging", "battery_critical")),
              Step(S(charging="yes"), None, None, ("bad_sensor:charging",)),
              Step(S(power_save=None), None, None, ("bad_sensor:power_save", "power_save")),
              Step(S(cpu_load="-Infinity"), None, None, ("bad_sensor:cpu_load", "cpu_load_slowdown")),
              Step(S(cpu_load=2.0), None, None, ("bad_sensor:cpu_load",)),
              Step(S(cpu_load="NaN", thermal=None, battery="Infinity"), None, None,
                   ("bad_sensor:thermal", "bad_sensor:battery", "bad_sensor:cpu_load")))),
        Case("bad_observations", "non-finite, negative, zero or non-numeric measurements are ignored", phone,
             "phone", default,
             (Step(S(), "NaN", P(224, I8), ("initial",)),
              Step(S(), "Infinity", P(224, I8), ("hold",)),
              Step(S(), -5.0, P(224, I8), ("hold",)),
              Step(S(), 0.0, P(224, I8), ("hold",)),
              Step(S(), "fast", P(224, I8), ("hold",)),
              Step(S(), "-Infinity", P(224, I8), ("hold",)),
              Step(S(), None, P(224, I8), ("hold",)))),
    ]
    return out + tie_cases() + resizable_cases() + switch_rate_cases() + compute_unit_cases()


TFL8_CPU, TFL8_GPU = ("tflite", "int8", "CPU"), ("tflite", "int8", "GPU")
CPU_ONLY_INT8 = "tflite/model_int8_cpu.tflite"


def compute_unit_cases() -> list[Case]:
    """An artifact offered on some compute units only (TFLite int8's CPU-only artifact: bias scales the GPU
    delegate would misread): a LUT point of it on another unit is never chosen, however fast or accurate."""
    cpu_only = lambda point: dataclasses.replace(point, artifact=CPU_ONLY_INT8)  # noqa: E731
    lut = points_lut(cpu_only(op(224, TFL8_CPU, 0.71, 30.0)), cpu_only(op(224, TFL8_GPU, 0.71, 8.0)),
                     cpu_only(op(160, TFL8_CPU, 0.66, 16.0)), op(160, TFL8_GPU, 0.66, 12.0))
    units = {CPU_ONLY_INT8: ["CPU"], "tflite/model_int8.tflite": ["GPU", "NNAPI"]}
    return [Case("cpu_only_artifact_never_on_gpu", "the CPU-only artifact's 224 px point on GPU is faster at equal "
                 "top-1 but never chosen: CPU 224 px while it fits, then the other artifact's GPU 160 px under load",
                 lut, "phone", Policy(), (
                     Step(S(), exact, P(224, TFL8_CPU), ("initial", "fits_budget")),
                     Step(S(cpu_load=0.9, thermal=2), None, P(160, TFL8_GPU), ("step_down_no_fit", "accelerator"))),
                 compute_units=units)]


# --------------------------------------------------------------------------- encoding, emitting, replaying


def decode(value: Any) -> Any:
    """The golden file's encoding of non-finite numbers: "NaN", "Infinity", "-Infinity" → doubles."""
    return _SPECIAL.get(value, value) if isinstance(value, str) else value


def state_from_json(data: dict) -> DeviceState:
    return DeviceState(**{k: decode(data[k]) for k in STATE_FIELDS})


def expected_of(d: Decision) -> dict:
    p = d.point
    return {"index": d.index, "resolution": p.resolution, "backend": p.backend.value,
            "precision": p.precision.value, "compute_unit": p.compute_unit, "unit_class": d.unit_class,
            "latency_source": d.latency_source, "predicted_ms": round(d.predicted_ms, 6),
            "budget_ms": round(d.budget_ms, 6), "reason": list(d.reason)}


def _run_case(case: Case) -> dict:
    sel = Selector(case.lut, case.device, case.policy, case.compute_units)
    steps = []
    for n, step in enumerate(case.steps):
        d = sel.choose(state_from_json(step.state))
        point = d.point.key()[:len(step.want_point or ())]  # a want_point may name the stage scales too
        missing = [c for c in step.want_codes if c not in d.reason]
        if (step.want_point is not None and point != step.want_point) or missing:
            raise AssertionError(f"golden case {case.name!r} step {n}: got {point} {list(d.reason)}, meant "
                                 f"{step.want_point} with {list(step.want_codes)}")
        observed = step.observe(d) if callable(step.observe) else step.observe
        if isinstance(observed, float) and math.isfinite(observed):
            observed = round(observed, 3)
        if observed is not None:
            sel.observe(d, decode(observed))
        steps.append({"state": dict(step.state), "observed_ms": observed, "expected": expected_of(d)})
    units = {} if case.compute_units is None else {"compute_units": case.compute_units}
    return {"name": case.name, "description": case.description, "lut": schema.to_dict(case.lut), "device": case.device,
            "policy": case.policy.to_dict(), "steps": steps, **units}


def golden_document() -> dict:
    return {"kind": GOLDEN_KIND, "schema_version": GOLDEN_VERSION,
            "encoding": 'non-finite numbers in state and observed_ms are the strings "NaN", "Infinity", '
                        '"-Infinity"; predicted_ms and budget_ms are rounded to 6 decimals',
            "cases": [_run_case(c) for c in cases()]}


def dumps(document: dict) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


def emit_golden(path: str | Path) -> Path:
    """Write the golden vectors (atomically) and return the path."""
    path = Path(path)
    text = dumps(golden_document())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def replay(document: dict) -> list[str]:
    """Replay every case through the Python selector; the list of mismatches (empty when all agree)."""
    problems = []
    for case in document["cases"]:
        sel = Selector(schema.from_dict(schema.LUT, case["lut"], f"case {case['name']}"), case["device"],
                       Policy.from_dict(case["policy"], source=f"case {case['name']} policy"),
                       case.get("compute_units"))
        for n, step in enumerate(case["steps"]):
            d = sel.choose(state_from_json(step["state"]))
            got, want = expected_of(d), step["expected"]
            for k, v in want.items():
                ok = abs(got[k] - v) <= 1e-6 if k in ("predicted_ms", "budget_ms") else got[k] == v
                if not ok:
                    problems.append(f"{case['name']} step {n}: {k} is {got[k]!r}, expected {v!r}")
            if step["observed_ms"] is not None:
                sel.observe(d, decode(step["observed_ms"]))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Write the golden vectors to FILE: not a folder, in a folder that exists (exit 2 with the reason otherwise)."""
    parser = argparse.ArgumentParser(prog="selector_golden.py", description="write the selector's golden vectors")
    parser.add_argument("file", type=Path, help="output JSON file, e.g. tests/golden/selector_golden.json")
    path = parser.parse_args(argv).file
    problem = ("is a folder; give a file name" if path.is_dir() else
               f"the folder {path.parent} does not exist (create it first)" if not path.parent.is_dir() else None)
    if problem:
        print(f"selector_golden.py: error: {path}: {problem}", file=sys.stderr)
        return 2
    print(f"golden vectors: {emit_golden(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The runtime selector: which operating point should the app run now?

Pure Python (no torch, no numpy, no math beyond + − × ÷ min max), so the Kotlin (android_demo/) and Swift
(ios_demo/) ports can follow this docstring line by line and replay the golden vectors
(`tests/golden/selector_golden.json`, written by `tests/golden/selector_golden.py`) with identical decisions.

    sel = Selector.from_bundle("bundles/demo", device="host", policy={"latency_budget_ms": 33})
    d = sel.choose(DeviceState(battery=0.42, charging=False, power_save=False, thermal=1, cpu_load=0.6))
    sel.observe(d, measured_ms=21.7)

All arithmetic is IEEE double, in the order written below; counters are integers.

1. Candidates (once, at construction; `Selector(lut, device, policy, compute_units)`)
   First, a point whose artifact is in `compute_units` (artifact file → the units manifest.json offers it on,
   `ArtifactInfo.compute_units`; e.g. TFLite int8's CPU-only artifact: ["CPU"]) and whose compute_unit is not in
   that list is dropped: it is never a candidate, dominates nothing and does not count for the energy metric.
   For each remaining operating point i of `lut.operating_points` (LUT order):
   - class: "accelerator" if its compute_unit is in `policy.accelerator_units`, else "cpu" (unknown units
     count as CPU: heat and load slow them).
   - base latency (ms) and its source, first that applies:
     a. "measured": the entries `latency[device]` whose runtime equals `policy.runtime` (if set) and whose
        threads equal `policy.threads` (if set), keeping only finite p50_ms > 0; the one with the lowest
        p50_ms (ties: fewer threads, then runtime name) gives base = p50_ms and energy_mj (if finite ≥ 0).
     b. "model": the device's `latency_models` with the point's precision and compute_unit (and runtime /
        threads equal to the policy's where set); prediction = intercept_ms + ms_per_gmac × (macs / 1e9);
        the lowest finite prediction > 0 (ties: fewer threads, then runtime name).
     c. "macs": base = max(macs, 1) / (policy.fallback_gmacs_per_s × 1e6).
     A device missing from the LUT simply has no measurements (b and c apply).
   - top1: the point's top1, or 0.0 when it is None or not finite (unknown accuracy ranks last).
   - energy: energy_mj when every point got a measured energy_mj ("energy_mj" metric), else float(max(macs, 1))
     for every point ("macs" metric, a proxy).
   - key rank: the position of the point when all points are sorted by `OperatingPoint.key()` =
     (resolution, backend, precision, compute_unit, stage_scales), compared lexicographically (strings by
     code point, stage_scales as a list of numbers, absent = empty). It is the last tie-break everywhere.
   Pareto filter, within each class separately (all adjustments below scale a whole class by one factor, so
   a point dominated inside its class stays dominated): drop point p if some q of the same class has
   q.top1 ≥ p.top1 and q.base ≤ p.base (and q.energy ≤ p.energy when the metric is "energy_mj") with at
   least one of them strictly better. Identical points are both kept.

2. Sensors → one clean state (`choose` never raises on sensor input; each fallback adds "bad_sensor:<field>")
   - thermal_scale: "normalized" (0–3), "android" (PowerManager.THERMAL_STATUS_NONE…SHUTDOWN, 0–6) or
     "ios" (ProcessInfo.ThermalState nominal…critical, 0–3). Normalised level:
         level | normalized | android                          | ios
           0   |     0      | 0 NONE                           | 0 nominal
           1   |     1      | 1 LIGHT                          | 1 fair
           2   |     2      | 2 MODERATE                       | 2 serious
           3   |     3      | 3 SEVERE, 4 CRITICAL, 5 EMERGENCY, 6 SHUTDOWN | 3 critical
     A number above the scale's maximum (or +∞) → 3. Anything else that is not a whole number in range
     (NaN, −∞, negative, fractional, None, bool, text) → `policy.unknown_thermal` (default 2, serious).
     An unknown thermal_scale → "bad_sensor:thermal_scale" and level `policy.unknown_thermal`.
   - battery: a fraction in [0, 1]; anything else (NaN, ±∞, negative, > 1, None, bool) → `policy.battery_low`
     (treated as low, not critical).
   - charging: True/False; anything else → False (battery rules apply).
   - power_save: True/False; anything else → True.
   - cpu_load: a fraction in [0, 1]; anything else → 1.0.
   (Numbers are Python int/float, never bool. In the golden file, "NaN", "Infinity" and "-Infinity" strings
   stand for those doubles; any other value is passed through as is.)

3. Effective budget and predictions (every `choose`)
       budget = latency_budget_ms × thermal_budget[level]
       if not charging and battery ≤ battery_critical: budget = budget × battery_critical_budget;
           slack = energy_slack_critical                                       ("battery_critical")
       elif not charging and battery ≤ battery_low:  budget = budget × battery_low_budget;
           slack = energy_slack_low                                            ("battery_low")
       else slack = 0.0
       if power_save: budget = budget × power_save_budget; slack = max(slack, energy_slack_power_save)
       factor[cpu] = thermal_cpu_factor[level] / (1.0 − cpu_load × cpu_load_k) × slowdown[cpu]
       factor[accelerator] = slowdown[accelerator]           (heat and load do not slow GPU/NPU units)
       model_ms(p) = base(p) × (factor without slowdown), predicted(p) = base(p) × factor[class(p)]
   p fits a limit L when predicted(p) ≤ L and top1(p) ≥ min_top1.

4. Picking from a set S of candidates, pick(S):
   - slack = 0 ("accuracy mode"): highest top1; ties: lowest predicted, lowest energy, lowest key rank.
   - slack > 0 ("energy mode", reason "energy_preferred"): best = highest top1 in S; among those with
     top1 ≥ best − slack: lowest energy; ties: highest top1, lowest predicted, lowest key rank.
   prefer(a, b) = pick({a, b}).  fastest = over all candidates: lowest predicted; ties: highest top1,
   lowest energy, lowest key rank.  target = pick(candidates that fit budget), or none.

5. Hysteresis (state: current candidate, calm counter, the step-up point the calm frames wanted (none at
   first), miss counter, last measured ms, required calm frames (starts at hysteresis_frames), probe window
   (frames left, starts at 0)), first rule that applies:
   a. no current point: target if any ("initial"), else fastest ("none_fit_fallback_fastest").
   b. current does not fit budget: target if any ("step_down_no_fit"); else fastest
      ("none_fit_fallback_fastest") if predicted(fastest) < predicted(current) × (1 − hysteresis_margin),
      else keep the current ("none_fit_hold": no flapping between near-equal points when nothing fits).
   c. miss counter ≥ miss_frames (step 6: consecutive deadline misses of the current point; a miss the
      sensors explain counts as miss_frames at once): miss counter = 0, then pick(candidates that fit budget
      and predict < predicted(current) × (1 − hysteresis_margin)) if any ("deadline_miss_step_down"), else
      keep the current ("deadline_miss_hold").
   d. otherwise up = pick(candidates that fit budget × (1 − hysteresis_margin)). If up exists, differs from
      the current and prefer(up, current) = up: frame_ms = the current point's last measured ms since the
      previous choose, else its predicted ms; calm = 0 if frame_ms > budget × (1 − hysteresis_margin), else
      calm + 1 if up is the step-up point the calm frames wanted, else 1; the step-up point wanted = up;
      move to up when calm ≥ required ("step_up"), else keep the current ("hold_hysteresis").
      Otherwise calm = 0 and keep the current ("hold"). (So a step up needs `required` consecutive frames
      that all want that very point and have margin: one switch to the best point, not a stair of them
      while the feedback settles.)
   Any switch resets calm and the miss counter to 0; a, b and c set calm to 0. Every choose clears last ms.
   Back-off: if the probe window is open (> 0) and this action is "step_down_no_fit",
   "none_fit_fallback_fastest", "deadline_miss_step_down" or another "step_up" (two equally accurate points
   whose unobserved slowdowns relax in turn would otherwise trade places every few frames), the step up failed:
   required = min(required × 2, backoff_max_frames) and the window closes (0); otherwise the window shrinks by one and,
   when it reaches 0, required = max(required ÷ 2 (integer division), hysteresis_frames). Then, if the
   action is "step_up", the window opens at probe_window_frames. (A step up that is undone within the
   window — about a minute at 30 fps — is retried ever later, and the wait shrinks again only one calm
   window at a time, so a point that does not really fit, e.g. on a throttled CPU or between recurring
   background-load bursts, is not probed every few frames: the switch rate stays low.)

6. Feedback (`observe(decision, measured_ms)`; ALERT-style slowdown per class)
   Ignored (returns False) unless measured_ms is a finite number > 0 that a double holds (so 10**400 is ignored)
   and decision.model_ms is finite > 0. Otherwise, for the decision's class c:
       miss = measured_ms > decision.budget_ms
       ratio = min(max(measured_ms / decision.model_ms, slowdown_min), slowdown_max)
       slowdown[c] = (1 − ema_alpha) × slowdown[c] + ema_alpha × ratio
       slowdown[other] = (1 − slowdown_relax) × slowdown[other] + slowdown_relax × 1.0   (slow decay of
           the class not observed, so a cooled CPU is tried again)
   Slowdowns start at 1.0; model_ms excludes the slowdown, so it learns what the sensors do not explain.
   If the decision is the current point: last ms = measured_ms, and the miss counter becomes 0 if not miss;
   else max(counter + 1, miss_frames) if decision.model_ms > decision.budget_ms × (1 − hysteresis_margin)
   (the sensors alone put the point within the margin of its budget: the miss is explained, step down at
   once); else counter + 1 (a point predicted to fit with margin missed: latency noise until miss_frames
   misses in a row say otherwise; stepping down on one noisy frame would only flap, measured in
   bench/simulate_bench.py).

7. Reason: a list of codes — first the rule of step 5, then in this order those that apply: "fits_budget"
   (predicted ≤ budget and top1 ≥ min_top1) or else "over_budget" and/or "below_min_top1";
   "thermal_tightened" (thermal_budget[level] < 1); "thermal_cpu_slowdown" (thermal_cpu_factor[level] > 1);
   "cpu_load_slowdown" (cpu_load × cpu_load_k > 0); "battery_critical" | "battery_low"; "charging";
   "power_save"; "energy_preferred" (slack > 0); "throttle_detected" (the larger of the two slowdowns
   ≥ throttle_report); "accelerator" (chosen point is of the accelerator class); "estimated_latency"
   (source "model") | "estimated_latency_macs" (source "macs"); then "bad_sensor:<field>" for thermal_scale,
   thermal, battery, charging, power_save, cpu_load, in that order.

Policy defaults (`Policy()`; a bundle may carry `selector_policy.json` overriding any of them; the app's
dict overrides both — see `Policy.from_dict`):
    latency_budget_ms 33.0, min_top1 0.0, runtime None, threads None,
    thermal_budget (1.0, 0.9, 0.75, 0.5), thermal_cpu_factor (1.0, 1.1, 1.3, 1.6),
    battery_low 0.2, battery_critical 0.1, battery_low_budget 0.85, battery_critical_budget 0.6,
    power_save_budget 0.8, energy_slack_low 0.02, energy_slack_critical 0.05, energy_slack_power_save 0.02,
    cpu_load_k 0.5, accelerator_units (GPU, NNAPI, CPU_AND_GPU, CPU_AND_NE, ALL),
    ema_alpha 0.3, slowdown_min 0.5, slowdown_max 4.0, slowdown_relax 0.005, throttle_report 1.2,
    hysteresis_frames 5, hysteresis_margin 0.1, backoff_max_frames 320, miss_frames 2,
    probe_window_frames 1800, fallback_gmacs_per_s 5.0, unknown_thermal 2.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .bundle.io import POLICY_FILE, Bundle
from .bundle.schema import LUT, OperatingPoint, SchemaError, read_json_data

POLICY_KIND, POLICY_VERSION = "resflex.selector_policy", "1.0"
CPU, ACCELERATOR = 0, 1
CLASS_NAMES = ("cpu", "accelerator")
_INF = float("inf")
_STEP_DOWNS = ("step_down_no_fit", "none_fit_fallback_fastest", "deadline_miss_step_down")
THERMAL_SCALES = {"normalized": (0, 1, 2, 3), "android": (0, 1, 2, 3, 3, 3, 3), "ios": (0, 1, 2, 3)}


@dataclasses.dataclass(frozen=True)
class Policy:
    """The app's budget plus the declarative table that tightens it (defaults in the module docstring)."""

    latency_budget_ms: float = 33.0
    min_top1: float = 0.0
    runtime: str | None = None
    threads: int | None = None
    thermal_budget: tuple[float, ...] = (1.0, 0.9, 0.75, 0.5)
    thermal_cpu_factor: tuple[float, ...] = (1.0, 1.1, 1.3, 1.6)
    battery_low: float = 0.2
    battery_critical: float = 0.1
    battery_low_budget: float = 0.85
    battery_critical_budget: float = 0.6
    power_save_budget: float = 0.8
    energy_slack_low: float = 0.02
    energy_slack_critical: float = 0.05
    energy_slack_power_save: float = 0.02
    cpu_load_k: float = 0.5
    accelerator_units: tuple[str, ...] = ("GPU", "NNAPI", "CPU_AND_GPU", "CPU_AND_NE", "ALL")
    ema_alpha: float = 0.3
    slowdown_min: float = 0.5
    slowdown_max: float = 4.0
    slowdown_relax: float = 0.005
    throttle_report: float = 1.2
    hysteresis_frames: int = 5
    hysteresis_margin: float = 0.1
    backoff_max_frames: int = 320
    miss_frames: int = 2
    probe_window_frames: int = 1800
    fallback_gmacs_per_s: float = 5.0
    unknown_thermal: int = 2

    def __post_init__(self):
        for name in ("thermal_budget", "thermal_cpu_factor", "accelerator_units"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self, source: str = "policy") -> None:
        """Refuse a table that would make the selector inconsistent (e.g. critical looser than low)."""
        def bad(field, expected):
            value = getattr(self, field)
            shown = f"an integer of about {int(value.bit_length() * 0.30103)} digits" if \
                isinstance(value, int) and abs(value) > 10**60 else repr(value)[:80]
            raise SchemaError(f"{source}: {field} = {shown}, expected {expected}")

        def number(field, lo, hi, lo_open=False, hi_open=False):
            v, lo_v, hi_v = getattr(self, field), getattr(self, str(lo), lo), getattr(self, str(hi), hi)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or \
                    (v <= lo_v if lo_open else v < lo_v) or (v >= hi_v if hi_open else v > hi_v):
                bad(field, f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")

        number("latency_budget_ms", 0.0, 1e9, lo_open=True)
        number("min_top1", 0.0, 1.0)  # a top-1 fraction: above 1 no point could ever qualify
        if self.runtime is not None and not isinstance(self.runtime, str):
            bad("runtime", "a runtime name or null")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= 4096):
            bad("threads", "a positive integer (at most 4096) or null")
        for field, lo, hi, order in (("thermal_budget", 0.0, 1.0, -1), ("thermal_cpu_factor", 1.0, 1e6, 1)):
            v = getattr(self, field)
            if not isinstance(v, tuple) or len(v) != 4 or any(
                    isinstance(x, bool) or not isinstance(x, (int, float)) or not (lo <= x <= hi) or
                    (lo == 0.0 and x == 0.0) for x in v):
                bad(field, f"4 numbers (normalised thermal levels 0..3) in {'(0' if lo == 0 else '[1'}, {hi}]")
            if any((v[i + 1] - v[i]) * order < 0 for i in range(3)):
                bad(field, "non-increasing" if order < 0 else "non-decreasing from level 0 to 3")
        number("battery_critical", 0.0, 1.0)
        number("battery_low", "battery_critical", 1.0)
        number("battery_low_budget", 0.0, 1.0, lo_open=True)
        number("battery_critical_budget", 0.0, "battery_low_budget", lo_open=True)
        number("power_save_budget", 0.0, 1.0, lo_open=True)
        number("energy_slack_low", 0.0, 1.0)
        number("energy_slack_critical", "energy_slack_low", 1.0)
        number("energy_slack_power_save", 0.0, 1.0)
        number("cpu_load_k", 0.0, 1.0, hi_open=True)
        if not isinstance(self.accelerator_units, tuple) or not all(isinstance(u, str) for u in self.accelerator_units):
            bad("accelerator_units", "a list of compute unit names")
        number("ema_alpha", 0.0, 1.0, lo_open=True)
        number("slowdown_min", 0.0, 1.0, lo_open=True)
        number("slowdown_max", 1.0, 1e6)
        number("slowdown_relax", 0.0, 1.0)
        number("throttle_report", 1.0, 1e6)
        if isinstance(self.hysteresis_frames, bool) or not isinstance(self.hysteresis_frames, int) \
                or not 1 <= self.hysteresis_frames <= 10**6:
            bad("hysteresis_frames", "a positive integer (at most 1000000)")
        if isinstance(self.backoff_max_frames, bool) or not isinstance(self.backoff_max_frames, int) \
                or not self.hysteresis_frames <= self.backoff_max_frames <= 10**9:
            bad("backoff_max_frames", "an integer ≥ hysteresis_frames (at most 1000000000)")
        for field, hi in (("miss_frames", 10**6), ("probe_window_frames", 10**9)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                bad(field, f"a positive integer (at most {hi})")
        number("hysteresis_margin", 0.0, 1.0, hi_open=True)
        number("fallback_gmacs_per_s", 0.0, 1e9, lo_open=True)
        if type(self.unknown_thermal) is not int or self.unknown_thermal not in (0, 1, 2, 3):
            bad("unknown_thermal", "a normalised thermal level 0, 1, 2 or 3")

    def to_dict(self) -> dict:
        """Every field explicit (lists for tuples), plus kind and schema_version."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
        return {"kind": POLICY_KIND, "schema_version": POLICY_VERSION, **d}

    @classmethod
    def from_dict(cls, data: Any, base: Policy | None = None, source: str = "policy") -> Policy:
        """`base` (default: `Policy()`) with the fields of `data` replaced; unknown fields are refused. Every error is
        a `SchemaError` (a ValueError) naming `source` and the field."""
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: expected a JSON object of policy fields, got {type(data).__name__}")
        data = dict(data)
        if data.pop("kind", POLICY_KIND) != POLICY_KIND:
            raise SchemaError(f"{source}: kind must be {POLICY_KIND!r}")
        version = data.pop("schema_version", POLICY_VERSION)
        if not isinstance(version, str) or not re.fullmatch(rf"{POLICY_VERSION.split('.')[0]}\.\d+", version, re.ASCII):
            raise SchemaError(f"{source}: schema_version {str(version)[:40]!r} is not supported (expected "
                              f"\"{POLICY_VERSION.split('.')[0]}.MINOR\")")
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(str(k)[:60] for k in set(data) - set(fields))
        if unknown:
            raise SchemaError(f"{source}: unknown policy field(s) {unknown}; known: {', '.join(sorted(fields))}")

        def as_float(v):
            if isinstance(v, int) and not isinstance(v, bool):
                try:
                    return float(v)
                except OverflowError:
                    return v  # validate() names it as out of range
            return v

        for name, value in data.items():
            if isinstance(value, list):
                value = tuple(as_float(v) for v in value) if "float" in fields[name] else tuple(value)
            data[name] = as_float(value) if fields[name].startswith("float") else value
        try:
            return dataclasses.replace(base or DEFAULT_POLICY, **data)
        except (ValueError, TypeError) as e:
            raise SchemaError(f"{source}: {str(e).removeprefix('policy: ')}") from None


DEFAULT_POLICY = Policy()


class DeviceState(NamedTuple):
    """What the phone's sensors say now (immutable). Values are not validated here: `choose` sanitises them."""

    battery: Any = 1.0  # fraction 0..1
    charging: Any = False
    power_save: Any = False
    thermal: Any = 0  # on `thermal_scale`
    cpu_load: Any = 0.0  # fraction 0..1 of the CPU busy with other work
    thermal_scale: Any = "normalized"  # normalized (0–3) | android (0–6) | ios (0–3)


class Decision(NamedTuple):
    """One choice (immutable): the operating point, why, and what it was expected to cost."""

    index: int  # position in lut.operating_points
    point: OperatingPoint
    predicted_ms: float  # includes the feedback slowdown
    model_ms: float  # the same without the slowdown (what `observe` divides by)
    budget_ms: float  # effective budget after thermal / battery / power-save tightening
    unit_class: str  # "cpu" | "accelerator"
    latency_source: str  # "measured" | "model" | "macs"
    reason: tuple[str, ...]

    @property
    def key(self) -> tuple:
        return self.point.key()

    def to_dict(self) -> dict:
        p = self.point
        return {"resolution": p.resolution, "backend": p.backend.value, "precision": p.precision.value,
                "compute_unit": p.compute_unit, "stage_scales": p.stage_scales, "index": self.index,
                "top1": p.top1, "predicted_ms": self.predicted_ms, "model_ms": self.model_ms,
                "budget_ms": self.budget_ms, "unit_class": self.unit_class, "latency_source": self.latency_source,
                "reason": list(self.reason)}


def _finite(x: Any) -> bool:
    """A finite int or float (bool is not a number here)."""
    t = type(x)
    if t is float or t is int:
        return x - x == 0
    return not isinstance(x, bool) and isinstance(x, (int, float)) and x - x == 0


def _num(x: Any) -> float:
    """A number as a double: an int too large for one is +∞ (or −∞), so it never fits a budget."""
    try:
        return float(x)
    except OverflowError:
        return _INF if x > 0 else -_INF


def base_latency(op: OperatingPoint, device: str, lut: LUT, policy: Policy) -> tuple[float, str, float | None]:
    """(base ms, source, energy_mj or None) following step 1 of the module docstring."""
    best = None
    for e in op.latency.get(device, ()):
        if (policy.runtime is not None and e.runtime != policy.runtime) or \
                (policy.threads is not None and e.threads != policy.threads) or not _finite(e.p50_ms) or e.p50_ms <= 0:
            continue
        if best is None or (e.p50_ms, e.threads, e.runtime) < (best.p50_ms, best.threads, best.runtime):
            best = e
    if best is not None:
        energy = best.energy_mj if _finite(best.energy_mj) and best.energy_mj >= 0 else None
        return float(best.p50_ms), "measured", energy
    dev = lut.devices.get(device)
    best_ms, best_tie = None, None
    for m in dev.latency_models if dev else ():
        if m.precision != op.precision or m.compute_unit != op.compute_unit or \
                (policy.runtime is not None and m.runtime != policy.runtime) or \
                (policy.threads is not None and m.threads != policy.threads):
            continue
        ms = _num(m.intercept_ms) + _num(m.ms_per_gmac) * (_num(op.macs) / 1e9)
        if _finite(ms) and ms > 0 and (best_ms is None or (ms, m.threads, m.runtime) < (best_ms, *best_tie)):
            best_ms, best_tie = ms, (m.threads, m.runtime)
    if best_ms is not None:
        return float(best_ms), "model", None
    return _num(max(op.macs, 1)) / (policy.fallback_gmacs_per_s * 1e6), "macs", None


class Selector:
    """Chooses an operating point per frame from a LUT, a device id and a `Policy` (module docstring)."""

    def __init__(self, lut: LUT, device: str, policy: Policy | None = None,
                 compute_units: Mapping[str, Sequence[str]] | None = None):
        if not isinstance(lut, LUT):
            raise TypeError(f"lut: expected a resflex.mobile.bundle.schema.LUT, got {type(lut).__name__}")
        if not lut.operating_points:
            raise SchemaError("lut: no operating points to choose from (every backend failed in `resflex convert`?)")
        self.lut, self.device, self.policy = lut, device, policy or DEFAULT_POLICY
        points = lut.operating_points
        units = compute_units or {}
        offered = [op.artifact not in units or op.compute_unit in units[op.artifact] for op in points]
        if not any(offered):
            raise SchemaError("lut: no operating point is on a compute unit its artifact is offered on "
                              f"(compute_units: {dict(units)})")
        infos = [base_latency(op, device, lut, self.policy) for op in points]
        metric = "energy_mj" if all(e is not None for (_, _, e), ok in zip(infos, offered) if ok) else "macs"
        order = sorted(range(len(points)), key=lambda i: _sort_key(points[i]))
        key_rank = [0] * len(points)
        for rank, i in enumerate(order):
            key_rank[i] = rank
        cls = [ACCELERATOR if op.compute_unit in self.policy.accelerator_units else CPU for op in points]
        top1 = [op.top1 if _finite(op.top1) else 0.0 for op in points]
        energy = [e if metric == "energy_mj" else _num(max(op.macs, 1)) for op, (_, _, e) in zip(points, infos)]
        base = [b for b, _, _ in infos]
        use_energy = metric == "energy_mj"

        def dominated(p: int) -> bool:
            for q in range(len(points)):
                if q == p or cls[q] != cls[p] or not offered[q]:
                    continue
                if top1[q] >= top1[p] and base[q] <= base[p] and (not use_energy or energy[q] <= energy[p]) and \
                        (top1[q] > top1[p] or base[q] < base[p] or (use_energy and energy[q] < energy[p])):
                    return True
            return False

        keep = sorted((i for i in range(len(points)) if offered[i] and not dominated(i)), key=lambda i: (cls[i], i))
        self.energy_metric = metric
        self.sources = [s for _, s, _ in infos]  # per LUT point: "measured" | "model" | "macs"
        self.energy = {i: energy[i] for i in keep}  # per candidate (LUT index), in the energy_metric's unit
        # Candidate arrays, parallel: CPU class first, then accelerators, each in LUT order.
        self._idx = keep
        self._cls = [cls[i] for i in keep]
        self._base = [base[i] for i in keep]
        self._top1 = [top1[i] for i in keep]
        self._energy = [energy[i] for i in keep]
        self._rank = [key_rank[i] for i in keep]
        self._n = len(keep)
        self._n_cpu = self._cls.count(CPU)
        # Per class, candidate positions in the static orders the scans of _pick and _fastest rely on.
        by_class = [[c for c in range(self._n) if self._cls[c] == k] for k in (CPU, ACCELERATOR)]
        self._by_top1 = [sorted(o, key=lambda c: (-self._top1[c], self._base[c], self._energy[c], self._rank[c]))
                         for o in by_class if o]
        self._by_base = [sorted(o, key=lambda c: (self._base[c], -self._top1[c], self._energy[c], self._rank[c]))
                         for o in by_class if o]
        self.reset()

    @classmethod
    def from_bundle(cls, bundle: str | Path, device: str = "host", policy: Policy | dict | None = None) -> Selector:
        """Read `bundle/lut.json` (and the optional `bundle/selector_policy.json`, over the defaults). A `Policy`
        is used as is; a dict overrides single fields of the bundle's policy."""
        table, base = read_bundle(bundle)
        if isinstance(policy, Policy):
            return cls(table, device, policy)
        return cls(table, device, Policy.from_dict(policy or {}, base, "policy overrides") if policy else base)

    @property
    def candidates(self) -> list[int]:
        """Indices into lut.operating_points of the Pareto-optimal points the selector chooses among."""
        return list(self._idx)

    @property
    def slowdown(self) -> dict[str, float]:
        return {"cpu": self._slow[CPU], "accelerator": self._slow[ACCELERATOR]}

    def reset(self) -> None:
        """Forget the current point, the feedback and the hysteresis counters."""
        self._slow = [1.0, 1.0]
        self._state, self._terms = None, None
        self._current = -1  # candidate position
        self._calm = 0
        self._misses = 0
        self._up = -1
        self._last_ms = None
        self._required = self.policy.hysteresis_frames
        self._window = 0
        self.switches = 0

    # ------------------------------------------------------------------ sensors

    def sanitize(self, s: DeviceState) -> tuple[int, float, bool, bool, float, list[str]]:
        """(thermal level 0–3, battery, charging, power_save, cpu_load, bad-sensor codes) — step 2."""
        p, bad = self.policy, []
        scale = THERMAL_SCALES.get(s.thermal_scale) if isinstance(s.thermal_scale, str) else None
        t = s.thermal
        if scale is None:
            bad.append("bad_sensor:thermal_scale")
            level = p.unknown_thermal
        elif type(t) is int and 0 <= t < len(scale):
            level = scale[t]
        elif _finite(t) and t >= 0 and t == int(t) and t < len(scale):
            level = scale[int(t)]
        else:
            bad.append("bad_sensor:thermal")
            level = 3 if (not isinstance(t, bool) and isinstance(t, (int, float)) and t > len(scale) - 1) \
                else p.unknown_thermal
        battery = s.battery
        if not (_finite(battery) and 0 <= battery <= 1):
            bad.append("bad_sensor:battery")
            battery = p.battery_low
        charging = s.charging
        if not isinstance(charging, bool):
            bad.append("bad_sensor:charging")
            charging = False
        power_save = s.power_save
        if not isinstance(power_save, bool):
            bad.append("bad_sensor:power_save")
            power_save = True
        load = s.cpu_load
        if not (_finite(load) and 0 <= load <= 1):
            bad.append("bad_sensor:cpu_load")
            load = 1.0
        return level, float(battery), charging, power_save, float(load), bad

    # ------------------------------------------------------------------ choosing

    def _pick(self, pred: list[float], slack: float, limit: float, below: float = _INF) -> int:
        """Step 4: pick(candidates with predicted ≤ limit, predicted < below and top1 ≥ min_top1), or -1.

        Scans each class's candidates in a fixed order (top-1 descending) and stops early; the result is the
        same as the plain minimum over the set defined in the module docstring (ports may use plain loops)."""
        top1, energy, rank, min_top1 = self._top1, self._energy, self._rank, self.policy.min_top1
        best = -1
        if slack <= 0:
            for order in self._by_top1:
                first = None
                for c in order:
                    t = top1[c]
                    if t < min_top1 or (first is not None and t != first):
                        break  # lower top-1 from here on
                    pc = pred[c]
                    if pc <= limit and pc < below:
                        first = t
                        if best < 0 or (-t, pc, energy[c], rank[c]) < (-top1[best], pred[best], energy[best],
                                                                      rank[best]):
                            best = c
            return best
        best_top1 = None
        for order in self._by_top1:
            for c in order:
                if top1[c] < min_top1:
                    break
                if pred[c] <= limit and pred[c] < below:
                    if best_top1 is None or top1[c] > best_top1:
                        best_top1 = top1[c]
                    break
        if best_top1 is None:
            return -1
        floor = best_top1 - slack
        for order in self._by_top1:
            for c in order:
                t = top1[c]
                if t < floor or t < min_top1:
                    break
                pc = pred[c]
                if pc <= limit and pc < below and (best < 0 or (energy[c], -t, pc, rank[c]) < (
                        energy[best], -top1[best], pred[best], rank[best])):
                    best = c
        return best

    def _prefer(self, a: int, b: int, pred: list[float], slack: float) -> int:
        """pick({a, b}) of step 4 (both fit)."""
        top1, energy, rank = self._top1, self._energy, self._rank
        if slack <= 0 or min(top1[a], top1[b]) < max(top1[a], top1[b]) - slack:
            return a if (-top1[a], pred[a], energy[a], rank[a]) < (-top1[b], pred[b], energy[b], rank[b]) else b
        return a if (energy[a], -top1[a], pred[a], rank[a]) < (energy[b], -top1[b], pred[b], rank[b]) else b

    def _fastest(self, pred: list[float]) -> int:
        """Lowest predicted; ties: highest top1, lowest energy, lowest key rank (early exit per class)."""
        top1, energy, rank = self._top1, self._energy, self._rank
        best = -1
        for order in self._by_base:
            p0 = pred[order[0]]
            for c in order:
                if pred[c] != p0:
                    break
                if best < 0 or (pred[c], -top1[c], energy[c], rank[c]) < (pred[best], -top1[best], energy[best],
                                                                          rank[best]):
                    best = c
        return best

    def _conditions(self, state: DeviceState):
        """Step 3: budget, energy slack, battery code, model factors and predictions for a state."""
        if state is not self._state:  # the same (frozen) state object again: its sensor terms are cached
            self._state, self._terms = state, self._state_terms(state)
        level, charging, power_save, load, bad, budget, slack, battery_code, model_factor = self._terms
        fc, fa = model_factor[CPU] * self._slow[CPU], self._slow[ACCELERATOR]
        base, n_cpu = self._base, self._n_cpu
        pred = [b * fc for b in base[:n_cpu]] + [b * fa for b in base[n_cpu:]]
        return level, charging, power_save, load, bad, budget, slack, battery_code, model_factor, pred

    def _state_terms(self, state: DeviceState):
        p = self.policy
        level, battery, charging, power_save, load, bad = self.sanitize(state)
        budget = p.latency_budget_ms * p.thermal_budget[level]
        battery_code = None
        slack = 0.0
        if not charging and battery <= p.battery_critical:
            budget = budget * p.battery_critical_budget
            slack, battery_code = p.energy_slack_critical, "battery_critical"
        elif not charging and battery <= p.battery_low:
            budget = budget * p.battery_low_budget
            slack, battery_code = p.energy_slack_low, "battery_low"
        if power_save:
            budget = budget * p.power_save_budget
            slack = max(slack, p.energy_slack_power_save)
        model_factor = (p.thermal_cpu_factor[level] / (1.0 - load * p.cpu_load_k), 1.0)
        return level, charging, power_save, load, bad, budget, slack, battery_code, model_factor

    def predict(self, state: DeviceState) -> tuple[float, dict[int, float]]:
        """(effective budget, {LUT index: predicted ms}) of the candidates for a state, with the current
        feedback; changes nothing."""
        c = self._conditions(state)
        return c[5], dict(zip(self._idx, c[9]))

    def choose(self, state: DeviceState) -> Decision:
        """The operating point for the next frame (steps 2–5, 7 of the module docstring). Never raises on
        sensor values."""
        p = self.policy
        level, charging, power_save, load, bad, budget, slack, battery_code, model_factor, pred = \
            self._conditions(state)
        cls, base, top1, min_top1 = self._cls, self._base, self._top1, p.min_top1
        cur = self._current

        if cur < 0 or not (pred[cur] <= budget and top1[cur] >= min_top1):
            action = "initial" if cur < 0 else "step_down_no_fit"
            chosen = self._pick(pred, slack, budget)
            if chosen < 0:
                chosen, action = self._fastest(pred), "none_fit_fallback_fastest"
                if cur >= 0 and not pred[chosen] < pred[cur] * (1.0 - p.hysteresis_margin):
                    chosen, action = cur, "none_fit_hold"
            self._calm = 0
        elif self._misses >= p.miss_frames:
            chosen = self._pick(pred, slack, budget, below=pred[cur] * (1.0 - p.hysteresis_margin))
            action = "deadline_miss_step_down"
            if chosen < 0:
                chosen, action = cur, "deadline_miss_hold"
            self._calm, self._misses = 0, 0
        else:
            margin_limit = budget * (1.0 - p.hysteresis_margin)
            up = self._pick(pred, slack, margin_limit)
            chosen, action = cur, "hold"
            if up >= 0 and up != cur and self._prefer(up, cur, pred, slack) == up:
                frame_ms = self._last_ms if self._last_ms is not None else pred[cur]
                if frame_ms > margin_limit:
                    self._calm = 0
                else:
                    self._calm = self._calm + 1 if up == self._up else 1  # calm frames that want this very point
                self._up = up
                if self._calm >= self._required:
                    chosen, action = up, "step_up"
                else:
                    action = "hold_hysteresis"
            else:
                self._calm = 0
        if chosen != cur:
            if cur >= 0:
                self.switches += 1
            self._calm, self._misses = 0, 0
        self._current, self._last_ms = chosen, None
        if self._window > 0:
            if action in _STEP_DOWNS or action == "step_up":  # the last step up was undone or superseded
                self._required, self._window = min(self._required * 2, p.backoff_max_frames), 0
            else:
                self._window -= 1
                if self._window == 0:
                    self._required = max(self._required // 2, p.hysteresis_frames)
        if action == "step_up":
            self._window = p.probe_window_frames

        k = cls[chosen]
        reason = [action]
        if pred[chosen] <= budget and top1[chosen] >= min_top1:
            reason.append("fits_budget")
        else:
            if pred[chosen] > budget:
                reason.append("over_budget")
            if top1[chosen] < min_top1:
                reason.append("below_min_top1")
        if p.thermal_budget[level] < 1:
            reason.append("thermal_tightened")
        if p.thermal_cpu_factor[level] > 1:
            reason.append("thermal_cpu_slowdown")
        if load * p.cpu_load_k > 0:
            reason.append("cpu_load_slowdown")
        if battery_code:
            reason.append(battery_code)
        if charging:
            reason.append("charging")
        if power_save:
            reason.append("power_save")
        if slack > 0:
            reason.append("energy_preferred")
        if max(self._slow[CPU], self._slow[ACCELERATOR]) >= p.throttle_report:
            reason.append("throttle_detected")
        if k == ACCELERATOR:
            reason.append("accelerator")
        index = self._idx[chosen]
        source = self.sources[index]
        if source == "model":
            reason.append("estimated_latency")
        elif source == "macs":
            reason.append("estimated_latency_macs")
        reason.extend(bad)
        return Decision(index, self.lut.operating_points[index], pred[chosen], base[chosen] * model_factor[k],
                        budget, CLASS_NAMES[k], source, tuple(reason))

    def observe(self, decision: Decision, measured_ms: Any) -> bool:
        """Feed back the measured latency of a decision (step 6); False if the measurement was ignored."""
        if not _finite(measured_ms) or measured_ms <= 0:
            return False
        try:
            measured_ms = float(measured_ms)
        except OverflowError:
            return False
        if not (_finite(decision.model_ms) and decision.model_ms > 0):
            return False
        p = self.policy
        k = ACCELERATOR if decision.unit_class == CLASS_NAMES[ACCELERATOR] else CPU
        miss = measured_ms > decision.budget_ms
        ratio = min(max(measured_ms / decision.model_ms, p.slowdown_min), p.slowdown_max)
        self._slow[k] = (1.0 - p.ema_alpha) * self._slow[k] + p.ema_alpha * ratio
        self._slow[1 - k] = (1.0 - p.slowdown_relax) * self._slow[1 - k] + p.slowdown_relax * 1.0
        if self._current >= 0 and self._idx[self._current] == decision.index:
            self._last_ms = float(measured_ms)
            if not miss:
                self._misses = 0
            elif decision.model_ms > decision.budget_ms * (1.0 - p.hysteresis_margin):
                self._misses = max(self._misses + 1, p.miss_frames)  # the sensors explain it: not noise
            else:
                self._misses += 1
        return True


def _sort_key(op: OperatingPoint) -> tuple:
    return (op.resolution, op.backend.value, op.precision.value, op.compute_unit, tuple(op.stage_scales or ()))


def read_bundle(bundle: str | Path) -> tuple[LUT, Policy]:
    """(validated LUT, the bundle's policy over the defaults) through the one bundle reader (`Bundle.open`, without
    artifact checks: the selector opens no artifact): no symlinks, no folders where files belong, and lut.json
    consistent with manifest.json where the bundle has one."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise FileNotFoundError(f"{bundle}: not a bundle directory (expected lut.json inside)")
    opened = Bundle.open(bundle, verify=False)
    policy = DEFAULT_POLICY if opened.policy is None else Policy.from_dict(opened.policy, None,
                                                                           str(bundle / POLICY_FILE))
    return opened.lut, policy


def load_policy(path: str | Path, base: Policy | None = None) -> Policy:
    """A policy JSON file (any subset of the fields, over `base` or the defaults)."""
    return Policy.from_dict(read_json_data(path, "policy file"), base, str(path))

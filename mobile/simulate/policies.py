"""What is simulated — the operating points the phone can run (`SimPoint`) — and the four policies that pick one
every frame, as objects with one interface (`SimPolicy`): `choose` a point from the state the phone reports,
`observe` the inference time, and say what a switch to a point costs (`switch_ms`)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import ClassVar

from ..bundle.schema import BACKEND_RUNTIMES, LUT, OperatingPoint
from ..selector import DeviceState, Policy, Selector, base_latency
from .phone import Phone


@dataclasses.dataclass(frozen=True)
class SimPoint:
    """One simulated operating point with the numbers the phone model needs."""

    index: int  # in the bundle's lut.operating_points
    op: OperatingPoint
    unit_class: str  # "cpu" | "accelerator"
    base_ms: float  # cool, idle latency
    source: str  # "measured" | "model" | "macs"
    energy_j: float  # per inference
    load_file_ms: float  # one-model-per-resolution: load this point's file
    switch_ms: float  # resflex: switch to this point inside the loaded bundle

    @property
    def label(self) -> str:
        o = self.op
        scales = f" s{','.join(f'{x:g}' for x in o.stage_scales)}" if o.stage_scales else ""  # Resizable Networks
        return f"{o.resolution}px{scales} {o.backend.value} {o.precision.value} {o.compute_unit}"


def _switch_costs(table: LUT, device: str, op: OperatingPoint, phone: Phone) -> tuple[float, float]:
    """(load_file_ms, switch_loaded_ms) of the point's runtime × precision on the device, or the defaults."""
    dev = table.devices.get(device)
    runtime = BACKEND_RUNTIMES[op.backend]
    costs = [c for c in (dev.switch_costs if dev else ()) if c.runtime == runtime and c.precision == op.precision]
    good = lambda v: isinstance(v, float) and math.isfinite(v) and v >= 0  # noqa: E731
    load = min((c.load_file_ms for c in costs if good(c.load_file_ms)), default=phone.default_load_file_ms)
    switch = min((c.switch_loaded_ms for c in costs if good(c.switch_loaded_ms)), default=0.0)
    return load, switch


def simulated_points(table: LUT, device: str, policy: Policy, phone: Phone, points: str,
                     source: str = "lut.json") -> tuple[list[SimPoint], dict[str, str]]:
    """The points the phone can run (package docstring: `points`) and, for the others, why not."""
    chosen, excluded = [], {}
    for i, op in enumerate(table.operating_points):
        base, how, energy_mj = base_latency(op, device, table, policy)
        sp = SimPoint(i, op, "accelerator" if op.compute_unit in policy.accelerator_units else "cpu", base, how,
                      0.0, *_switch_costs(table, device, op, phone))
        if op.top1 is None or not math.isfinite(op.top1):
            excluded[sp.label] = "top-1 unknown"
            continue
        if points == "measured" and how != "measured":
            excluded[sp.label] = f"no measured latency on {device!r}"
            continue
        energy_j = energy_mj / 1e3 if energy_mj is not None else \
            phone.active_w(sp.unit_class) * base / 1e3 + phone.e_per_mac_j * op.macs
        chosen.append(dataclasses.replace(sp, energy_j=energy_j))
    if not chosen:
        why = Counter(excluded.values()).most_common()
        hint = "; profile the device (`resflex profile`) or pass --points all" if points == "measured" else ""
        raise ValueError(f"{source}: no operating point to simulate on device {device!r} "
                         f"({'; '.join(f'{n}× {w}' for w, n in why)}){hint}")
    return chosen, excluded


def largest(points: list[SimPoint]) -> SimPoint:
    return min(points, key=lambda p: (-p.op.top1, p.base_ms, p.op.key()))


def smallest(points: list[SimPoint]) -> SimPoint:
    return min(points, key=lambda p: (p.base_ms, -p.op.top1, p.op.key()))


# --------------------------------------------------------------------------- the policies


class SimPolicy:
    """A policy on one run: a fresh instance per scenario (it may keep state, e.g. a selector's history).

    `points` are the simulated points (their `index` is their place in `lut.operating_points`, the simulated LUT),
    `device` the LUT's device and `policy` the selector's policy with the frame budget."""

    name: ClassVar[str]
    needs_state: ClassVar[bool] = False  # whether `choose` reads the device state (else it gets None)

    def __init__(self, points: list[SimPoint], lut: LUT, device: str, policy: Policy):
        self.points = points

    def choose(self, state: DeviceState | None) -> SimPoint:
        raise NotImplementedError

    def observe(self, inference_ms: float) -> None:
        """The inference time of the point just chosen (a model load or switch is not an inference)."""

    def switch_ms(self, point: SimPoint) -> float:
        """Time to the first result at `point` when the previous frame ran another point (one inference
        included): a switch inside the loaded bundle."""
        return point.switch_ms


class AlwaysLargest(SimPolicy):
    """The most accurate simulated point, every frame."""

    name = "always-largest"

    def __init__(self, points, lut, device, policy):
        super().__init__(points, lut, device, policy)
        self.point = largest(points)

    def choose(self, state):
        return self.point


class AlwaysSmallest(AlwaysLargest):
    """The fastest simulated point, every frame."""

    name = "always-smallest"

    def __init__(self, points, lut, device, policy):
        SimPolicy.__init__(self, points, lut, device, policy)
        self.point = smallest(points)


class Resflex(SimPolicy):
    """`Selector.choose` every frame with the state the phone reports, `observe(measured)` after it; every point
    of the bundle is loaded at start-up, so a switch costs the runtime's `switch_loaded_ms`."""

    name = "resflex"
    needs_state = True

    def __init__(self, points, lut, device, policy):
        super().__init__(points, lut, device, policy)
        self.by_index = {p.index: p for p in points}
        self.selector = Selector(lut, device, policy)
        self.decision = None

    def choose(self, state):
        self.decision = self.selector.choose(state)
        return self.by_index[self.decision.index]

    def observe(self, inference_ms):
        self.selector.observe(self.decision, inference_ms)


class OneModelPerResolution(Resflex):
    """The same selector, but the app holds one model file at a time: a switch loads the new point's file first
    (`load_file_ms`). An app paying a load per switch steps up less eagerly, so this baseline gets its own
    hysteresis tuned to that cost (`tuned_hysteresis`); stepping down (no fit, a deadline missed) stays immediate."""

    name = "one-model-per-resolution"
    AMORTIZE = 10  # wait until the frames spent calm are ≥ 10 × the load they would pay for: ≤ 10 % overhead

    def __init__(self, points, lut, device, policy):
        super().__init__(points, lut, device, tuned_hysteresis(policy, points, self.AMORTIZE))

    def switch_ms(self, point):
        return point.load_file_ms


def tuned_hysteresis(policy: Policy, points: list[SimPoint], amortize: float) -> Policy:
    """`policy` with `hysteresis_frames` (calm frames before a step up) raised so that the frame time waited is at
    least `amortize` × the median model-load time of the points, and the back-off cap and probe window raised to
    match."""
    loads = sorted(p.load_file_ms for p in points)
    frames = math.ceil(amortize * loads[len(loads) // 2] / policy.latency_budget_ms)
    calm = max(policy.hysteresis_frames, frames)
    return dataclasses.replace(policy, hysteresis_frames=calm, backoff_max_frames=max(policy.backoff_max_frames, calm),
                               probe_window_frames=max(policy.probe_window_frames, calm))


POLICY_CLASSES: dict[str, type[SimPolicy]] = {p.name: p for p in (AlwaysLargest, AlwaysSmallest, Resflex,
                                                                  OneModelPerResolution)}
POLICIES = tuple(POLICY_CLASSES)

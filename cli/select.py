"""`resflex select`: one decision of the runtime selector (`resflex.mobile.selector`) for one device state, as a
frozen config and one verb, and its text view."""

from __future__ import annotations

import dataclasses

from resflex.mobile.selector import Decision, DeviceState, Policy, Selector, load_policy, read_bundle


@dataclasses.dataclass(frozen=True)
class SelectConfig:
    """`resflex select`: one decision for one device state."""

    bundle: str
    device: str = "host"
    battery: float = 1.0
    charging: bool = False
    power_save: bool = False
    thermal: float = 0
    thermal_scale: str = "normalized"
    cpu_load: float = 0.0
    budget_ms: float | None = None
    min_top1: float | None = None
    policy_file: str | None = None


def select_once(config: SelectConfig) -> tuple[Selector, Decision]:
    """Build the selector from the bundle (+ policy file, + budget/min_top1) and make one decision."""
    table, policy = read_bundle(config.bundle)
    if config.policy_file:
        policy = load_policy(config.policy_file, policy)
    overrides = {k: v for k, v in (("latency_budget_ms", config.budget_ms), ("min_top1", config.min_top1))
                 if v is not None}
    if overrides:
        policy = Policy.from_dict(overrides, policy, "command line")
    selector = Selector(table, config.device, policy)
    state = DeviceState(battery=config.battery, charging=config.charging, power_save=config.power_save,
                        thermal=config.thermal, cpu_load=config.cpu_load, thermal_scale=config.thermal_scale)
    return selector, selector.choose(state)


def format_decision(selector: Selector, d: Decision) -> str:
    """The decision as `resflex select` prints it: the point, the prediction, the candidates, the reasons."""
    p = d.point
    top1 = "unknown" if p.top1 is None else f"{p.top1:.3f}"
    estimated = {"measured": "measured", "model": "latency model", "macs": "estimated from MACs"}[d.latency_source]
    scales = f" · stage scales {','.join(f'{x:g}' for x in p.stage_scales)}" if p.stage_scales else ""
    return (f"operating point: {p.resolution} px{scales} · {p.backend.value} · {p.precision.value} · {p.compute_unit} "
            f"(LUT index {d.index}, top-1 {top1})\n"
            f"predicted:       {d.predicted_ms:.3f} ms ({estimated}, {d.unit_class}) · budget {d.budget_ms:.3f} ms\n"
            f"candidates:      {len(selector.candidates)} Pareto-optimal of {len(selector.lut.operating_points)} "
            f"on device {selector.device!r}\n"
            f"reason:          {', '.join(d.reason)}")

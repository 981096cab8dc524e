"""The simulation: its configuration, the frame loop that runs one policy on one scenario's trace, and
`simulate`, which runs every scenario under every policy (package docstring)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path

from ..bundle.schema import LUT
from ..selector import DeviceState, Policy, read_bundle
from .phone import Phone
from .policies import POLICY_CLASSES, SimPoint, SimPolicy, largest, simulated_points
from .scenarios import DEFAULT_SCENARIOS, SCENARIOS, Scenario, Trace, make_trace

POINT_SETS = ("measured", "all")


MAX_FPS, MAX_MINUTES = 240.0, 24 * 60.0  # bounds: a frame-by-frame trace must fit in memory (~4 M frames)


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    bundle: str
    scenarios: tuple[str | Scenario, ...] = DEFAULT_SCENARIOS  # names in SCENARIOS, or Scenario objects
    device: str | None = None  # default: "host" if profiled, else the LUT's only device
    budget_ms: float | None = None  # default: phone.budget_factor × the always-largest point's cool latency
    fps: float = 30.0
    seed: int = 0
    minutes: float | None = None  # stretch every scenario to this length
    points: str = "measured"  # "measured" | "all" (package docstring)
    phone: Phone = Phone()

    def __post_init__(self):
        if isinstance(self.scenarios, (str, Scenario)):
            object.__setattr__(self, "scenarios", (self.scenarios,))
        object.__setattr__(self, "scenarios", tuple(self.scenarios))
        if not self.scenarios:
            raise ValueError(f"scenarios: expected at least one of: {', '.join(SCENARIOS)}")
        for s in self.scenarios:
            if not isinstance(s, Scenario) and s not in SCENARIOS:
                raise ValueError(f"unknown scenario {s!r}; expected one of: {', '.join(SCENARIOS)}")
        names = [self.scenario(i).name for i in range(len(self.scenarios))]
        if len(set(names)) != len(names):
            raise ValueError(f"scenarios: {names} names a scenario twice")
        if self.points not in POINT_SETS:
            raise ValueError(f"points: {self.points!r}, expected one of: {', '.join(POINT_SETS)}")
        for name, value in (("fps", self.fps), ("budget_ms", self.budget_ms), ("minutes", self.minutes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or
                                      not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name}: {value!r}, expected a positive number")
        if not 1 <= self.fps <= MAX_FPS:
            raise ValueError(f"fps: {self.fps!r}, expected 1 to {MAX_FPS} frames per second")
        if self.minutes is not None and self.minutes > MAX_MINUTES:
            raise ValueError(f"minutes: {self.minutes!r}, expected at most {MAX_MINUTES} (a phone battery's day); "
                             "the simulation keeps every frame in memory")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: {self.seed!r}, expected an integer")

    def scenario(self, i: int) -> Scenario:
        s = self.scenarios[i]
        s = s if isinstance(s, Scenario) else SCENARIOS[s]
        return s.scaled(self.minutes) if self.minutes else s


@dataclasses.dataclass
class PolicyRun:
    """One policy on one scenario: metrics plus per-frame series (for the plots)."""

    policy: str
    metrics: dict
    t_min: list[float]
    resolution: list[float]  # of the point run (NaN: frame skipped)
    latency_ms: list[float]  # with any switch cost (NaN: frame skipped)
    temp_c: list[float]
    thermal: list[int]  # Android status 0–6
    battery_pct: list[float]


@dataclasses.dataclass
class ScenarioResult:
    scenario: Scenario
    load: list[float]  # background CPU load per frame (shared by the policies)
    runs: dict[str, PolicyRun]


@dataclasses.dataclass
class SimulationResult:
    config: SimulateConfig
    device: str
    budget_ms: float
    points: list[SimPoint]
    excluded: dict[str, str]  # label → why it is not simulated
    policy: Policy  # the selector's, with the budget
    scenarios: list[ScenarioResult]


def _pick_device(table: LUT, device: str | None, bundle: Path, points: str) -> str:
    if device is not None:
        if device not in table.devices and points == "measured":
            known = ", ".join(table.devices) or "none (run `resflex profile` first, or pass --points all)"
            raise ValueError(f"device {device!r} is not in {bundle / 'lut.json'}; devices there: {known}")
        return device
    if "host" in table.devices or (not table.devices and points == "all"):
        return "host"
    if len(table.devices) == 1:
        return next(iter(table.devices))
    if not table.devices:
        raise ValueError(f"{bundle / 'lut.json'} has no profiled device: run `resflex profile {bundle}` first, or "
                         "pass --points all --device ID to simulate estimated latencies")
    raise ValueError(f"{bundle / 'lut.json'} has several devices ({', '.join(table.devices)}); "
                     "choose one with --device")


def _run(policy_class: type[SimPolicy], scenario: Scenario, trace: Trace, points: list[SimPoint], lut: LUT,
         device: str, policy: Policy, budget_ms: float, fps: float, phone: Phone) -> PolicyRun:
    """One policy on one scenario's trace, one frame at a time (the phone model: `resflex.mobile.simulate.phone`)."""
    chooser = policy_class(points, lut, device, policy)
    dt = 1.0 / fps
    capacity = phone.capacity_j
    battery_j = scenario.battery_start * capacity
    temp = scenario.phases[0].ambient_c if scenario.start_temp_c is None else scenario.start_temp_c
    cpu_w = phone.active_w("cpu")
    current: SimPoint | None = None
    busy_until = 0.0
    served = late = skipped = switches = ran = 0
    top1_sum = latency_sum = inference_j = 0.0
    used: Counter = Counter()
    empty_at = None
    t_min, res_s, lat_s, temp_s, th_s, bat_s = [], [], [], [], [], []
    peak = temp
    for k, ph_i in enumerate(trace.phase):
        ph = scenario.phases[ph_i]
        t = k * dt
        load = trace.load[k]
        throttle = phone.throttle(temp)
        status = phone.android_status(temp)
        battery = battery_j / capacity
        charging = ph.charging
        energy = (ph.base_w + load * phone.load_full_w / throttle) * dt
        latency = math.nan
        if t + 1e-9 >= busy_until:
            state = None
            if chooser.needs_state:
                power_save = scenario.power_save_below is not None and not charging and \
                    battery < scenario.power_save_below
                state = DeviceState(battery=min(max(battery, 0.0), 1.0), charging=charging, power_save=power_save,
                                    thermal=status, cpu_load=load, thermal_scale="android")
            point = chooser.choose(state)
            extra_ms = 0.0
            if point is not current:
                if current is not None:
                    switches += 1
                    extra_ms = max(chooser.switch_ms(point) - point.base_ms, 0.0)
                    energy += cpu_w * extra_ms / 1e3
                current = point
            slow = throttle * phone.load_factor(load) if point.unit_class == "cpu" else 1.0
            inference_ms = point.base_ms * slow * math.exp(phone.jitter_sigma * trace.z[k])
            latency = extra_ms + inference_ms
            busy_until = t + latency / 1e3
            energy += point.energy_j
            inference_j += point.energy_j
            chooser.observe(inference_ms)
            ran += 1
            latency_sum += latency
            used[point.label] += 1
            if latency <= budget_ms:
                served += 1
                top1_sum += point.op.top1
            else:
                late += 1
        else:
            skipped += 1
        charge = phone.charge_w(battery) if charging else 0.0
        battery_j = min(battery_j + charge * dt - energy, capacity)
        temp = phone.next_temp(temp, ph.ambient_c, energy / dt + (phone.charge_loss_w if charging else 0.0), dt)
        peak = max(peak, temp)
        t_min.append((t + dt) / 60.0)
        res_s.append(float(current.op.resolution) if latency == latency else math.nan)
        lat_s.append(latency)
        temp_s.append(temp)
        th_s.append(status)
        bat_s.append(100.0 * max(battery_j, 0.0) / capacity)
        if battery_j <= 0.0:
            empty_at = (t + dt) / 60.0
            break
    frames = len(t_min)
    minutes = frames * dt / 60.0
    start_j, end_j = scenario.battery_start * capacity, max(battery_j, 0.0)
    drain_w = (start_j - end_j) / (minutes * 60.0)
    to_empty = empty_at if empty_at is not None else (end_j / drain_w / 60.0 if drain_w > 0 else None)
    metrics = {
        "frames": frames, "served": served, "late": late, "skipped": skipped,
        "mean_top1": top1_sum / served if served else None,
        "miss_rate": (late + skipped) / frames if frames else None,
        "battery_start_pct": 100.0 * scenario.battery_start, "battery_end_pct": 100.0 * end_j / capacity,
        "minutes": minutes, "emptied": empty_at is not None, "minutes_to_empty": to_empty,
        "switches": switches, "switches_per_min": switches / minutes if minutes else 0.0,
        "mean_latency_ms": latency_sum / ran if ran else None,
        "inference_j": inference_j, "mean_power_w": (start_j - end_j) / (minutes * 60.0) if minutes else None,
        "peak_temp_c": peak,
        "points_used": {label: n / ran for label, n in sorted(used.items(), key=lambda x: (-x[1], x[0]))},
    }
    return PolicyRun(policy_class.name, metrics, t_min, res_s, lat_s, temp_s, th_s, bat_s)


def simulate(config: SimulateConfig) -> SimulationResult:
    """Run every scenario of the config under the four policies (package docstring)."""
    bundle = Path(config.bundle)
    table, policy = read_bundle(bundle)
    device = _pick_device(table, config.device, bundle, config.points)
    points, excluded = simulated_points(table, device, policy, config.phone, config.points, str(bundle / "lut.json"))
    budget = config.budget_ms or config.phone.budget_factor * largest(points).base_ms
    policy = Policy.from_dict({"latency_budget_ms": budget}, policy, "simulate")
    sim_lut = dataclasses.replace(table, operating_points=[p.op for p in points])
    # The selector's decisions index the simulated LUT; map them back to the bundle's indices.
    local = [dataclasses.replace(p, index=j) for j, p in enumerate(points)]
    results = []
    for i in range(len(config.scenarios)):
        scenario = config.scenario(i)
        trace = make_trace(scenario, config.fps, config.seed)
        runs = {name: _run(cls, scenario, trace, local, sim_lut, device, policy, budget, config.fps, config.phone)
                for name, cls in POLICY_CLASSES.items()}
        results.append(ScenarioResult(scenario, trace.load, runs))
    return SimulationResult(config, device, budget, points, excluded, policy, results)

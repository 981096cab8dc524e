"""`resflex simulate`: a trace-driven phone that shows whether choosing the operating point per frame pays off.

    result = simulate(SimulateConfig(bundle="bundle", scenarios=("steady", "gaming", "low_battery")))
    write_outputs(result, "sim/")   # summary.md, summary.json, one PNG + SVG per scenario

A scenario is a declarative list of phases (duration, ambient temperature, background CPU load with seeded random
bursts, screen/idle power, charger on/off). The simulation steps one camera frame at a time (1/fps) and runs the
same trace (same seed: same load bursts, same latency jitter) under four policies:

    always-largest            the most accurate simulated point (ties: lowest cool latency, then LUT key)
    always-smallest           the fastest simulated point (lowest cool latency; ties: highest top-1, then key)
    resflex                   `Selector.choose` every frame with the state the phone reports, `observe(measured)`
    one-model-per-resolution  its own Selector (same rules, same inputs), but the app holds one model file at a
                              time: every switch of operating point loads another file first

Operating points simulated (`points`): "measured" (default) keeps the points with a measured latency on the
device (the phone's cool latencies are then the LUT's own numbers); "all" adds the others, simulated with the
selector's estimate rule (latency model, else MACs). Points with unknown top-1 are left out either way (their
frames could not be scored); both lists are in summary.json. The selector sees only the simulated points.

Assumption: the LUT's absolute p50 latencies on the device are the phone's latencies when cool and idle (host
latencies of a small model are far below a 33 ms frame). So the default budget (`budget_ms`) is 1.2 × the
always-largest point's cool latency: when cool it fits with 20 % margin, so the trade-off is visible; pass
`--budget-ms` for a real app's budget.

The phone (`Phone`, every constant below; change them only for physical reasons, never to favour a policy):

Latency of a frame (ms) = base × throttle(T) × load_factor(load) × jitter, where
    base         the point's LUT p50 on the device (lowest p50 among its runtime × threads entries, the selector's
                 rule; for "all", the selector's estimate)
    throttle(T)  = min(1 + throttle_per_k × max(T − throttle_start_c, 0), throttle_max): DVFS lowers the CPU clock
                 above 39 °C, 4 %/K, at most 3× — CPU points only; GPU/NPU units (the policy's accelerator_units)
                 sit in cooler islands with their own governors and are not throttled here
    load_factor  = 1 / (1 − load_share × load): background work time-shares the CPU; with 8 cores the scheduler
                 still finds a core part of the time, so at 100 % load an inference gets 40 % of one (2.5×) —
                 CPU points only
    jitter       = exp(jitter_sigma × z), z ~ N(0, 1) seeded per frame (σ 0.05: ±5 % run-to-run noise)
A switch of operating point costs, on the frame that switches, the time to the first result at the new point:
resflex — the runtime × precision's `switch_loaded_ms` from the device's switch costs in the LUT (all bundle
artifacts are loaded at start-up; no cost if not measured); one-model-per-resolution — its `load_file_ms` (default
`default_load_file_ms` = 100 ms: a small model file read, parsed and its delegate initialised on a phone). Those
times include one inference, so the frame's extra time is max(cost − the point's cool p50, 0), spent on the CPU at
`p_active_w["cpu"]`.
A frame whose latency (with any switch cost) exceeds the budget is a deadline miss: its late result is dropped
(not served). Frames that arrive while the previous one still runs (latency > 1/fps, e.g. a model load) are
skipped and also missed. Mean top-1 averages the point's LUT top-1 over frames served; miss rate = missed /
frames while the phone is on.

Energy per inference (J) = the LUT's measured energy_mj where the device has it, else
    p_active_w[class] × base / 1000 + e_per_mac_j × MACs
with p_active_w = {cpu: 2.0 W (one big core at full clock with its memory traffic), accelerator: 0.8 W} and
e_per_mac_j = 5 pJ (operand movement to DRAM). It uses the cool latency: throttling lowers the clock and its power
together, and time-sharing stretches the wall time but not the inference's own cycles.
Power over a frame period: the phase's base_w (screen + camera + idle SoC: 1.5 W indoors, 2.0–2.2 W with a bright
screen) + background load × load_full_w (4 W: a game's CPU + GPU at 100 %) / throttle(T) (throttling caps the
background's power too) + inference energy / period.
Battery: capacity_j = 4000 mAh × 3.85 V = 55 440 J. A charger puts charger_w = 10 W into the battery (tapering
linearly to 0 from 80 % to 100 %) and dissipates charge_loss_w = 1.0 W in the phone (≈ 90 % efficient; a hot
phone's charge-current limiting is not modelled); the battery never exceeds full. At 0 J the phone switches off:
that policy's run ends there (minutes to empty).
Temperature: one lumped node (the phone's "virtual skin", which Android's thermal HAL throttles on),
dT/dt = (P_dissipated × r_th_k_per_w − (T − T_ambient)) / tau_s with r_th = 5 K/W (4–5 W of gaming settle 20–25 K
above ambient) and tau = 150 s (≈ 7 min to settle), integrated exactly per frame (P held over the frame);
P_dissipated = all power drawn + charger loss. It starts at the first phase's ambient (or the scenario's
start_temp_c). The app is told the Android thermal status (0–6, `thermal_scale="android"`): LIGHT at 39 °C,
MODERATE 42, SEVERE 45, CRITICAL 48, EMERGENCY 52, SHUTDOWN 56 (status = number of thresholds reached; skin-level
thresholds of the kind phones' thermal HALs use; nothing shuts down here); the selector normalises it (0–3).
Battery saver: on while the battery is below the scenario's power_save_below and no charger is connected (only
the flag the app sees; the phone's own clock caps under battery saver are not modelled).

What the app sees each frame (the resflex and one-model policies): `DeviceState(battery fraction, charging,
power_save, Android thermal status, cpu_load = the background load now, thermal_scale="android")`, and after the
inference `observe(decision, inference ms)` (a model load or switch is not an inference: it is not fed back). The
selector's policy is the bundle's selector_policy.json (or the defaults) with latency_budget_ms = the budget. A
frame skipped while busy makes no decision.

Reported per scenario × policy: mean top-1 over frames served, deadline-miss rate, battery left (%), minutes to
empty (reached, or projected from the run's mean net drain; none while charging more than it uses), switches per
minute, mean latency of the frames run, inference energy, peak temperature, and the share of each point used.
Deterministic for a seed: the trace is drawn from `random.Random` seeded with (seed, scenario name).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import Counter
from pathlib import Path

from .lut import LUT, OperatingPoint, read_json
from .selector import POLICY_FILE, DEFAULT_POLICY, DeviceState, Policy, Selector, base_latency, load_policy

POLICIES = ("always-largest", "always-smallest", "resflex", "one-model-per-resolution")
POINT_SETS = ("measured", "all")
RUNTIME_OF_BACKEND = {"executorch": "executorch", "tflite": "tflite", "onnx": "onnxruntime", "coreml": "coreml"}


@dataclasses.dataclass(frozen=True)
class Phone:
    """The simulated phone's physical constants (module docstring)."""

    capacity_j: float = 4.0 * 3.85 * 3600.0  # 4000 mAh × 3.85 V
    charger_w: float = 10.0
    charge_taper_from: float = 0.8
    charge_loss_w: float = 1.0
    p_active_w: tuple[tuple[str, float], ...] = (("cpu", 2.0), ("accelerator", 0.8))
    e_per_mac_j: float = 5e-12
    load_full_w: float = 4.0
    load_share: float = 0.6
    r_th_k_per_w: float = 5.0
    tau_s: float = 150.0
    throttle_start_c: float = 39.0
    throttle_per_k: float = 0.04
    throttle_max: float = 3.0
    android_thresholds_c: tuple[float, ...] = (39.0, 42.0, 45.0, 48.0, 52.0, 56.0)
    jitter_sigma: float = 0.05
    default_load_file_ms: float = 100.0
    budget_factor: float = 1.2

    def active_w(self, unit_class: str) -> float:
        return dict(self.p_active_w)[unit_class]

    def throttle(self, temp_c: float) -> float:
        return min(1.0 + self.throttle_per_k * max(temp_c - self.throttle_start_c, 0.0), self.throttle_max)

    def load_factor(self, load: float) -> float:
        return 1.0 / (1.0 - self.load_share * load)

    def android_status(self, temp_c: float) -> int:
        return sum(temp_c >= t for t in self.android_thresholds_c)

    def charge_w(self, battery: float) -> float:
        if battery <= self.charge_taper_from:
            return self.charger_w
        return self.charger_w * max(1.0 - battery, 0.0) / (1.0 - self.charge_taper_from)

    def next_temp(self, temp_c: float, ambient_c: float, power_w: float, dt_s: float) -> float:
        """Exact step of dT/dt = (P·R_th − (T − T_amb)) / τ with P held for dt."""
        equilibrium = ambient_c + power_w * self.r_th_k_per_w
        return equilibrium + (temp_c - equilibrium) * math.exp(-dt_s / self.tau_s)


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of a scenario with constant conditions (bursts of background load are drawn at random)."""

    name: str
    minutes: float
    ambient_c: float = 25.0
    load: float = 0.1  # background CPU load between bursts, fraction 0..1
    burst_per_min: float = 0.0  # mean rate of load bursts (Poisson)
    burst_load: float = 0.0  # a burst adds U(0.5, 1) × this
    burst_s: float = 0.0  # a burst lasts U(0.5, 1.5) × this
    base_w: float = 1.5  # screen + camera + idle SoC
    charging: bool = False


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    phases: tuple[Phase, ...]
    battery_start: float = 0.8
    power_save_below: float | None = None  # battery saver below this fraction (unplugged)
    start_temp_c: float | None = None  # default: the first phase's ambient

    @property
    def minutes(self) -> float:
        return sum(p.minutes for p in self.phases)

    def scaled(self, minutes: float) -> Scenario:
        """The same phases stretched to `minutes` in all."""
        k = minutes / self.minutes
        return dataclasses.replace(self, phases=tuple(dataclasses.replace(p, minutes=p.minutes * k)
                                                      for p in self.phases))


_LIGHT = dict(load=0.10, burst_per_min=2.0, burst_load=0.3, burst_s=4.0)
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("steady", "Steady use: a cool room (22 °C), light background work with short bursts",
             (Phase("steady", 10.0, ambient_c=22.0, **_LIGHT),)),
    Scenario("gaming", "Gaming burst: a heavy game beside the app heats the phone, then it cools down",
             (Phase("light use", 2.0, **_LIGHT),
              Phase("game", 6.0, load=0.75, burst_per_min=6.0, burst_load=0.2, burst_s=5.0, base_w=2.0),
              Phase("cool-down", 6.0, load=0.05, burst_per_min=1.0, burst_load=0.3, burst_s=4.0)),
             battery_start=0.7),
    Scenario("low_battery", "Low battery, no charger: starts at 15 %, battery saver on below 20 %",
             (Phase("unplugged", 30.0, load=0.15, burst_per_min=3.0, burst_load=0.3, burst_s=4.0),),
             battery_start=0.15, power_save_below=0.2),
    Scenario("commute", "Commute: walking in the sun (32 °C, bright screen, navigation), a train ride, walking",
             (Phase("walk", 5.0, ambient_c=32.0, load=0.25, burst_per_min=3.0, burst_load=0.3, burst_s=4.0,
                    base_w=2.2),
              Phase("train", 10.0, ambient_c=24.0, load=0.2, burst_per_min=4.0, burst_load=0.3, burst_s=5.0),
              Phase("walk", 5.0, ambient_c=32.0, load=0.25, burst_per_min=3.0, burst_load=0.3, burst_s=4.0,
                    base_w=2.2)),
             battery_start=0.6, power_save_below=0.15),
    Scenario("charging", "Charging at a desk (10 W charger, its losses heat the phone), moderate work, unplugged",
             (Phase("plugged in", 15.0, load=0.3, burst_per_min=3.0, burst_load=0.3, burst_s=5.0, charging=True),
              Phase("unplugged", 5.0, **_LIGHT)),
             battery_start=0.3),
)}
DEFAULT_SCENARIOS = ("steady", "gaming", "low_battery")


@dataclasses.dataclass(frozen=True)
class SimulateConfig:
    bundle: str
    scenarios: tuple[str | Scenario, ...] = DEFAULT_SCENARIOS  # names in SCENARIOS, or Scenario objects
    device: str | None = None  # default: "host" if profiled, else the LUT's only device
    budget_ms: float | None = None  # default: phone.budget_factor × the always-largest point's cool latency
    fps: float = 30.0
    seed: int = 0
    minutes: float | None = None  # stretch every scenario to this length
    points: str = "measured"  # "measured" | "all" (module docstring)
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
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: {self.seed!r}, expected an integer")

    def scenario(self, i: int) -> Scenario:
        s = self.scenarios[i]
        s = s if isinstance(s, Scenario) else SCENARIOS[s]
        return s.scaled(self.minutes) if self.minutes else s


# --------------------------------------------------------------------------- what is simulated


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
        return f"{o.resolution}px {o.backend.value} {o.precision.value} {o.compute_unit}"


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


def _read_lut(bundle: Path) -> LUT:
    if not bundle.is_dir():
        raise FileNotFoundError(f"{bundle}: not a bundle directory (expected lut.json inside)")
    if not (bundle / "lut.json").is_file():
        raise FileNotFoundError(f"{bundle / 'lut.json'}: not found; is {bundle} a bundle written by `resflex convert`?")
    return read_json(LUT, bundle / "lut.json")


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


def _switch_costs(table: LUT, device: str, op: OperatingPoint, phone: Phone) -> tuple[float, float]:
    """(load_file_ms, switch_loaded_ms) of the point's runtime × precision on the device, or the defaults."""
    dev = table.devices.get(device)
    runtime = RUNTIME_OF_BACKEND[op.backend.value]
    costs = [c for c in (dev.switch_costs if dev else ()) if c.runtime == runtime and c.precision == op.precision]
    good = lambda v: isinstance(v, float) and math.isfinite(v) and v >= 0  # noqa: E731
    load = min((c.load_file_ms for c in costs if good(c.load_file_ms)), default=phone.default_load_file_ms)
    switch = min((c.switch_loaded_ms for c in costs if good(c.switch_loaded_ms)), default=0.0)
    return load, switch


def simulated_points(table: LUT, device: str, policy: Policy, phone: Phone, points: str,
                     source: str = "lut.json") -> tuple[list[SimPoint], dict[str, str]]:
    """The points the phone can run (module docstring) and, for the others, why not."""
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


# --------------------------------------------------------------------------- the trace


@dataclasses.dataclass
class Trace:
    """Per-frame inputs shared by every policy of one scenario."""

    phase: list[int]
    load: list[float]
    z: list[float]  # jitter draws


def make_trace(scenario: Scenario, fps: float, seed: int) -> Trace:
    rng = random.Random(f"resflex.simulate:{seed}:{scenario.name}")
    phase, load = [], []
    for k, ph in enumerate(scenario.phases):
        n = int(round(ph.minutes * 60.0 * fps))
        level = [ph.load] * n
        if ph.burst_per_min > 0 and ph.burst_load > 0:
            t = rng.expovariate(ph.burst_per_min / 60.0)
            while t < n / fps:
                height = ph.burst_load * rng.uniform(0.5, 1.0)
                end = t + ph.burst_s * rng.uniform(0.5, 1.5)
                for f in range(int(t * fps), min(int(math.ceil(end * fps)), n)):
                    level[f] += height
                t += rng.expovariate(ph.burst_per_min / 60.0)
        phase += [k] * n
        load += [min(max(v, 0.0), 1.0) for v in level]
    jitter = random.Random(f"resflex.simulate:{seed}:{scenario.name}:jitter")
    return Trace(phase, load, [jitter.gauss(0.0, 1.0) for _ in phase])


# --------------------------------------------------------------------------- one policy on one trace


def _run(name: str, scenario: Scenario, trace: Trace, points: list[SimPoint], lut: LUT, device: str,
         policy: Policy, budget_ms: float, fps: float, phone: Phone) -> PolicyRun:
    by_index = {p.index: p for p in points}
    selector = Selector(lut, device, policy) if name in ("resflex", "one-model-per-resolution") else None
    fixed = largest(points) if name == "always-largest" else smallest(points) if name == "always-smallest" else None
    one_model = name == "one-model-per-resolution"
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
            if selector is not None:
                power_save = scenario.power_save_below is not None and not charging and \
                    battery < scenario.power_save_below
                decision = selector.choose(DeviceState(battery=min(max(battery, 0.0), 1.0), charging=charging,
                                                       power_save=power_save, thermal=status, cpu_load=load,
                                                       thermal_scale="android"))
                point = by_index[decision.index]
            else:
                point = fixed
            extra_ms = 0.0
            if point is not current:
                if current is not None:
                    switches += 1
                    extra_ms = max((point.load_file_ms if one_model else point.switch_ms) - point.base_ms, 0.0)
                    energy += cpu_w * extra_ms / 1e3
                current = point
            slow = throttle * phone.load_factor(load) if point.unit_class == "cpu" else 1.0
            inference_ms = point.base_ms * slow * math.exp(phone.jitter_sigma * trace.z[k])
            latency = extra_ms + inference_ms
            busy_until = t + latency / 1e3
            energy += point.energy_j
            inference_j += point.energy_j
            if selector is not None:
                selector.observe(decision, inference_ms)
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
    return PolicyRun(name, metrics, t_min, res_s, lat_s, temp_s, th_s, bat_s)


# --------------------------------------------------------------------------- the whole simulation


def simulate(config: SimulateConfig) -> SimulationResult:
    """Run every scenario of the config under the four policies (module docstring)."""
    bundle = Path(config.bundle)
    table = _read_lut(bundle)
    device = _pick_device(table, config.device, bundle, config.points)
    policy = load_policy(bundle / POLICY_FILE) if (bundle / POLICY_FILE).exists() else DEFAULT_POLICY
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
        runs = {name: _run(name, scenario, trace, local, sim_lut, device, policy, budget, config.fps, config.phone)
                for name in POLICIES}
        results.append(ScenarioResult(scenario, trace.load, runs))
    return SimulationResult(config, device, budget, points, excluded, policy, results)


# --------------------------------------------------------------------------- outputs


def _fmt(value, spec: str, none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _to_empty(m: dict) -> str:
    if m["minutes_to_empty"] is None:
        return "charging"
    return f"{m['minutes_to_empty']:.1f}" + ("" if m["emptied"] else " (proj.)")


def summary_rows(result: SimulationResult) -> list[dict]:
    """One row per scenario × policy (the table of summary.md)."""
    rows = []
    for s in result.scenarios:
        for name, run in s.runs.items():
            rows.append({"scenario": s.scenario.name, "policy": name, **run.metrics})
    return rows


def format_summary(result: SimulationResult) -> str:
    """The markdown table: one line per scenario × policy."""
    head = ("| scenario | policy | top-1 (served) | miss rate | battery left | min to empty | switches/min | "
            "mean latency ms | inference J | peak °C | main point |")
    lines = [head, "|" + "|".join(["---", "---"] + ["---:"] * 8 + ["---"]) + "|"]
    for r in summary_rows(result):
        main = next(iter(r["points_used"].items()), None)
        lines.append(
            f"| {r['scenario']} | {r['policy']} | {_fmt(r['mean_top1'], '.4f')} | "
            f"{_fmt(100 * r['miss_rate'] if r['miss_rate'] is not None else None, '.2f')} % | "
            f"{r['battery_end_pct']:.2f} % | {_to_empty(r)} | {r['switches_per_min']:.2f} | "
            f"{_fmt(r['mean_latency_ms'], '.3f')} | {r['inference_j']:.2f} | {r['peak_temp_c']:.1f} | "
            + (f"{main[0]} ({100 * main[1]:.0f} %)" if main else "–") + " |")
    return "\n".join(lines)


COLORS = {"always-largest": "#d62728", "always-smallest": "#1f77b4", "resflex": "#2ca02c",
          "one-model-per-resolution": "#ff7f0e"}
STYLES = {"always-largest": dict(lw=3.0, alpha=0.45), "always-smallest": dict(lw=3.0, alpha=0.45),
          "one-model-per-resolution": dict(lw=1.6, ls="--"), "resflex": dict(lw=1.3)}
ANDROID_STATUS = ("NONE", "LIGHT", "MODERATE", "SEVERE", "CRITICAL", "EMERGENCY", "SHUTDOWN")
ZORDER = {"always-largest": 2, "always-smallest": 2, "one-model-per-resolution": 3, "resflex": 4}
MAX_PLOT_POINTS = 1200
IMAGE_FORMATS = ("png", "svg", "pdf")


def summary_json(result: SimulationResult) -> dict:
    c = result.config
    return {
        "kind": "resflex.simulation", "schema_version": "1.0",
        "bundle": str(c.bundle), "device": result.device, "fps": c.fps, "seed": c.seed, "points_set": c.points,
        "budget_ms": result.budget_ms,
        "budget_source": "--budget-ms" if c.budget_ms else
        f"{c.phone.budget_factor} × always-largest's cool latency ({largest(result.points).label})",
        "points": [{"index": p.index, "label": p.label, "resolution": p.op.resolution, "backend": p.op.backend.value,
                    "precision": p.op.precision.value, "compute_unit": p.op.compute_unit, "unit_class": p.unit_class,
                    "top1": p.op.top1, "macs": p.op.macs, "cool_ms": p.base_ms, "latency_source": p.source,
                    "energy_mj": 1e3 * p.energy_j, "load_file_ms": p.load_file_ms, "switch_ms": p.switch_ms}
                   for p in result.points],
        "excluded": result.excluded,
        "phone": dataclasses.asdict(c.phone),
        "policy": result.policy.to_dict(),
        "scenarios": [{**{k: v for k, v in dataclasses.asdict(s.scenario).items()},
                       "minutes": s.scenario.minutes,
                       "policies": {name: run.metrics for name, run in s.runs.items()}} for s in result.scenarios],
    }


def format_markdown(result: SimulationResult, images: dict[str, list[str]]) -> str:
    c, ph = result.config, result.config.phone
    big, small = largest(result.points), smallest(result.points)
    lines = [
        "# resflex simulate", "",
        f"Bundle `{c.bundle}`, device `{result.device}`, {c.fps:g} fps, seed {c.seed}. Frame budget "
        f"**{result.budget_ms:.3f} ms** ("
        + ("--budget-ms" if c.budget_ms else f"{ph.budget_factor:g} × the cool latency of {big.label}") + "). "
        "The LUT's latencies are taken as the phone's cool, idle latencies; the phone model and every constant are "
        "documented in `resflex.mobile.simulate`.", "",
        f"always-largest runs {big.label} (top-1 {big.op.top1:.4f}, {big.base_ms:.3f} ms cool); always-smallest runs "
        f"{small.label} (top-1 {small.op.top1:.4f}, {small.base_ms:.3f} ms cool).", "",
        format_summary(result), "",
        "top-1 averages over frames served (a late result is dropped); miss rate counts late and skipped frames; "
        "minutes to empty is projected from the run's mean drain unless the battery ran out (phone off).", "",
    ]
    for s in result.scenarios:
        sc = s.scenario
        lines += [f"## {sc.name}", "", sc.description + f" — {sc.minutes:g} min, battery starts at "
                  f"{100 * sc.battery_start:g} %" + (f", battery saver below {100 * sc.power_save_below:g} %"
                                                      if sc.power_save_below is not None else "") + ".", ""]
        lines += ["| phase | min | ambient °C | load | bursts/min | burst load | burst s | base W | charger |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        lines += [f"| {p.name} | {p.minutes:g} | {p.ambient_c:g} | {p.load:g} | {p.burst_per_min:g} | "
                  f"{p.burst_load:g} | {p.burst_s:g} | {p.base_w:g} | {'on' if p.charging else 'off'} |"
                  for p in sc.phases]
        lines.append("")
        for name, run in s.runs.items():
            used = ", ".join(f"{label} {100 * share:.0f} %" for label, share in run.metrics["points_used"].items())
            lines.append(f"- {name}: {used}")
        lines.append("")
        if sc.name in images:
            lines += [f"![{sc.name}]({images[sc.name][0]})", ""]
    lines += ["## Operating points simulated", "",
              "| point | class | top-1 | cool ms | source | energy mJ | load file ms | switch ms |",
              "|---|---|---:|---:|---|---:|---:|---:|"]
    lines += [f"| {p.label} | {p.unit_class} | {p.op.top1:.4f} | {p.base_ms:.3f} | {p.source} | "
              f"{1e3 * p.energy_j:.3f} | {p.load_file_ms:.1f} | {p.switch_ms:.3f} |"
              for p in sorted(result.points, key=lambda p: p.op.key())]
    if result.excluded:
        why = Counter(result.excluded.values()).most_common()
        lines += ["", f"Not simulated: {len(result.excluded)} points (" +
                  "; ".join(f"{n}× {w}" for w, n in why) + "); see summary.json."]
    return "\n".join(lines) + "\n"


def _bins(n: int) -> list[range]:
    size = max(1, math.ceil(n / MAX_PLOT_POINTS))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


def _reduce(values: list[float], bins: list[range], how) -> list[float]:
    out = []
    for b in bins:
        v = [values[i] for i in b if values[i] == values[i]]
        out.append(how(v) if v else math.nan)
    return out


def _mode(v: list[float]) -> float:
    return Counter(v).most_common(1)[0][0]


def _figure(result: SimulationResult, s: ScenarioResult):
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    sc, phone, budget = s.scenario, result.config.phone, result.budget_ms
    fig = Figure(figsize=(12, 15))  # a fixed layout: constrained layout doubles the drawing time
    fig.subplots_adjust(left=0.07, right=0.74, top=0.94, bottom=0.04, hspace=0.32)
    axes = fig.subplots(6, 1, sharex=True, height_ratios=(1.1, 1.3, 0.6, 1.1, 0.9, 0.9))
    fig.suptitle(f"resflex simulate — scenario {sc.name!r}\n{sc.description}", fontsize=12, fontweight="bold")
    ax_res, ax_lat, ax_load, ax_temp, ax_bat, ax_gain = axes
    reference = s.runs["always-largest"]
    for name, run in s.runs.items():
        bins = _bins(len(run.t_min))
        t = [run.t_min[b[-1]] for b in bins]
        style = dict(color=COLORS[name], label=name, zorder=ZORDER[name], **STYLES[name])
        ax_res.step(t, _reduce(run.resolution, bins, _mode), where="post", **style)
        ax_lat.plot(t, _reduce(run.latency_ms, bins, max), **style)
        ax_temp.plot(t, _reduce(run.temp_c, bins, lambda v: v[-1]), **style)
        m = run.metrics
        end = f"{m['battery_end_pct']:.2f} %" + (f" (off at {m['minutes_to_empty']:.1f} min)" if m["emptied"] else "")
        ax_bat.plot(t, _reduce(run.battery_pct, bins, lambda v: v[-1]), **{**style, "label": f"{name}: {end}"})
        n = min(len(run.battery_pct), len(reference.battery_pct))
        gain = [run.battery_pct[i] - reference.battery_pct[i] for i in range(n)]
        ax_gain.plot([run.t_min[b[-1]] for b in _bins(n)], _reduce(gain, _bins(n), lambda v: v[-1]), **style)
    first = next(iter(s.runs.values()))
    bins = _bins(len(s.load))
    t = [first.t_min[b[-1]] if b[-1] < len(first.t_min) else (b[-1] + 1) / result.config.fps / 60 for b in bins]
    ax_load.fill_between(t, [100 * v for v in _reduce(s.load, bins, lambda v: sum(v) / len(v))], step="post",
                         color="#7f7f7f", alpha=0.5, label="background CPU load")

    resolutions = sorted({p.op.resolution for p in result.points})
    ax_res.set_yticks(resolutions)
    ax_res.set_ylim(resolutions[0] - 4, resolutions[-1] + 4)
    ax_res.set_ylabel("resolution (px)")
    ax_res.set_title("operating point chosen (most frequent per plotted step)", loc="left", fontsize=10)
    ax_res.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax_lat.axhline(budget, color="black", ls=":", lw=1.5, label=f"budget {budget:.3g} ms")
    ax_lat.set_yscale("log")
    ax_lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_lat.set_ylabel("latency (ms, log)")
    ax_lat.set_title("latency per frame (worst in each plotted step; above the budget = deadline miss)", loc="left",
                     fontsize=10)
    ax_lat.legend(handles=ax_lat.get_lines()[-1:], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    ax_load.set_ylim(0, 100)
    ax_load.set_ylabel("CPU load (%)")
    ax_load.set_title("background CPU load (the same trace for every policy) and phases; green band: charger "
                      "connected", loc="left", fontsize=10)
    ax_temp.axhline(phone.throttle_start_c, color="black", ls=":", lw=1.2)
    ax_temp.set_ylabel("temperature (°C)")
    ax_temp.set_title(f"device temperature; CPU throttling above {phone.throttle_start_c:g} °C; right: Android "
                      "thermal status reported", loc="left", fontsize=10)
    lo, hi = ax_temp.get_ylim()
    hi = max(hi, phone.throttle_start_c + 2)
    ax_temp.set_ylim(lo, hi)
    right = ax_temp.twinx()
    right.set_ylim(lo, hi)
    right.grid(False)
    ticks = [(c, f"{ANDROID_STATUS[i + 1]} ({i + 1})") for i, c in enumerate(phone.android_thresholds_c)
             if lo <= c <= hi]
    right.set_yticks([c for c, _ in ticks], [label for _, label in ticks], fontsize=8)
    for c, _ in ticks:
        ax_temp.axhline(c, color="#999999", lw=0.6, ls="--")
    ax_bat.set_ylabel("battery (%)")
    ax_bat.set_title("battery level (legend: left at the end)", loc="left", fontsize=10)
    ax_bat.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    lo, hi = ax_bat.get_ylim()
    marks = {100 * result.policy.battery_low: "selector: battery low",
             100 * result.policy.battery_critical: "selector: battery critical"}
    if sc.power_save_below is not None:
        marks[100 * sc.power_save_below] = "battery saver below"
    for level, label in sorted(marks.items()):
        if lo <= level <= hi:
            ax_bat.axhline(level, color="#666666", lw=0.8, ls=":")
            ax_bat.annotate(label, (0.005, level), xycoords=("axes fraction", "data"), va="bottom", fontsize=8,
                            color="#444444")
    ax_gain.set_ylabel("Δ battery (points)")
    ax_gain.set_xlabel("time (min)")
    ax_gain.set_title("battery left minus always-largest's (percentage points; above 0 = lasts longer)", loc="left",
                      fontsize=10)
    start = 0.0
    for i, p in enumerate(sc.phases):
        end = start + p.minutes
        for ax in axes:
            if i:
                ax.axvline(start, color="#555555", lw=0.8, ls="-.")
            if p.charging:
                ax.axvspan(start, end, color="#2ca02c", alpha=0.07, lw=0)
        ax_load.annotate(p.name, ((start + end) / 2, 0.95), xycoords=("data", "axes fraction"), ha="center",
                         va="top", fontsize=9, color="#222222",
                         bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#999999", alpha=0.85))
        start = end
    ax_bat.set_xlim(0, sc.minutes)
    return fig


def write_outputs(result: SimulationResult, out: str | Path, overwrite: bool = False,
                  formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """summary.md, summary.json and a plot per scenario (each format) into `out`, written atomically."""
    from resflex.convert.bundle import staging_dir

    try:
        import matplotlib
    except ImportError:  # pragma: no cover - only without the report extra
        raise RuntimeError("resflex simulate needs matplotlib for its plots; install it with: "
                           "pip install -e '.[report]'") from None
    formats = tuple(formats)
    if not formats or any(f not in IMAGE_FORMATS for f in formats) or len(set(formats)) != len(formats):
        raise ValueError(f"formats: {list(formats)}, expected distinct ones of: {', '.join(IMAGE_FORMATS)}")
    out = Path(out)
    if out.exists() and not overwrite and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace it or choose "
                              "another --out")
    bundle = Path(result.config.bundle).resolve()
    if out.resolve() == bundle or bundle.is_relative_to(out.resolve()):
        raise ValueError(f"--out {out} would replace the bundle {result.config.bundle}; choose another folder")
    style = {"font.size": 10, "axes.grid": True, "grid.alpha": 0.35, "svg.hashsalt": "resflex",
             "svg.fonttype": "none", "savefig.dpi": 110}
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}
    images: dict[str, list[str]] = {}
    with matplotlib.rc_context(style), staging_dir(out, overwrite=True) as stage:
        for s in result.scenarios:
            fig = _figure(result, s)
            images[s.scenario.name] = []
            for fmt in formats:
                name = f"{s.scenario.name}.{fmt}"
                fig.savefig(stage / name, format=fmt, metadata=metadata.get(fmt, {}))
                images[s.scenario.name].append(name)
        (stage / "summary.md").write_text(format_markdown(result, images))
        (stage / "summary.json").write_text(json.dumps(summary_json(result), indent=2, allow_nan=False) + "\n")
        written = sorted(p.name for p in stage.iterdir())
    return [out / name for name in written]

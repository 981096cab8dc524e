"""Scenarios — declarative lists of phases (duration, ambient temperature, background CPU load with seeded random
bursts, screen/idle power, charger on/off) — and the per-frame trace drawn from one (the same for every policy)."""

from __future__ import annotations

import dataclasses
import math
import random


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

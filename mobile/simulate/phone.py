"""The simulated phone: its physical constants and what they do.

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
"""

from __future__ import annotations

import dataclasses
import math


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

"""`resflex simulate`: a trace-driven phone that shows whether choosing the operating point per frame pays off.

    result = simulate(SimulateConfig(bundle="bundle", scenarios=("steady", "gaming", "low_battery")))
    write_outputs(result, "sim/")   # summary.md, summary.json, one PNG + SVG per scenario

A scenario is a declarative list of phases (duration, ambient temperature, background CPU load with seeded random
bursts, screen/idle power, charger on/off). The simulation steps one camera frame at a time (1/fps) and runs the
same trace (same seed: same load bursts, same latency jitter) under four policies (`resflex.mobile.simulate.policies`):

    always-largest            the most accurate simulated point (ties: lowest cool latency, then LUT key)
    always-smallest           the fastest simulated point (lowest cool latency; ties: highest top-1, then key)
    resflex                   `Selector.choose` every frame with the state the phone reports, `observe(measured)`
    one-model-per-resolution  its own Selector (same rules, same inputs), but the app holds one model file at a
                              time: every switch of operating point loads another file first, so it steps up only
                              after calm frames worth ≥ 10 × a model load (`policies.tuned_hysteresis`)

Operating points simulated (`points`): "measured" (default) keeps the points with a measured latency on the
device (the phone's cool latencies are then the LUT's own numbers); "all" adds the others, simulated with the
selector's estimate rule (latency model, else MACs). Points with unknown top-1 are left out either way (their
frames could not be scored); both lists are in summary.json. The selector sees only the simulated points.

Assumption: the LUT's absolute p50 latencies on the device are the phone's latencies when cool and idle (host
latencies of a small model are far below a 33 ms frame). So the default budget (`budget_ms`) is 1.2 × the
always-largest point's cool latency: when cool it fits with 20 % margin, so the trade-off is visible; pass
`--budget-ms` for a real app's budget.

What the app sees each frame (the resflex and one-model policies): `DeviceState(battery fraction, charging,
power_save, Android thermal status, cpu_load = the background load now, thermal_scale="android")`, and after the
inference `observe(decision, inference ms)` (a model load or switch is not an inference: it is not fed back). The
selector's policy is the bundle's selector_policy.json (or the defaults) with latency_budget_ms = the budget. A
frame skipped while busy makes no decision.

Reported per scenario × policy: mean top-1 over frames served, deadline-miss rate, battery left (%), minutes to
empty (reached, or projected from the run's mean net drain; none while charging more than it uses), switches per
minute, mean latency of the frames run, inference energy, peak temperature, and the share of each point used.
Deterministic for a seed: the trace is drawn from `random.Random` seeded with (seed, scenario name).

Modules: `phone` (the physics and its constants), `scenarios` (phases, the built-in scenarios, the per-frame
trace), `policies` (the operating points simulated and the four policies, as objects), `run` (the frame loop and
`simulate`), `outputs` (summary.md, summary.json, plots).
"""

from .outputs import format_markdown, format_summary, summary_json, summary_rows, write_outputs
from .phone import Phone
from .policies import (
    POLICIES,
    POLICY_CLASSES,
    AlwaysLargest,
    AlwaysSmallest,
    OneModelPerResolution,
    Resflex,
    SimPoint,
    SimPolicy,
    largest,
    simulated_points,
    smallest,
)
from .run import POINT_SETS, PolicyRun, ScenarioResult, SimulateConfig, SimulationResult, simulate
from .scenarios import DEFAULT_SCENARIOS, SCENARIOS, Phase, Scenario, Trace, make_trace

__all__ = [
    "simulate", "SimulateConfig", "SimulationResult", "ScenarioResult", "PolicyRun", "POINT_SETS",
    "Phone", "Phase", "Scenario", "SCENARIOS", "DEFAULT_SCENARIOS", "Trace", "make_trace",
    "SimPoint", "simulated_points", "largest", "smallest",
    "SimPolicy", "AlwaysLargest", "AlwaysSmallest", "Resflex", "OneModelPerResolution", "POLICY_CLASSES", "POLICIES",
    "write_outputs", "format_summary", "format_markdown", "summary_json", "summary_rows",
]

"""Benchmark: `resflex simulate` on a profiled bundle — does choosing the operating point per frame pay off?

Goal (issue 5), per scenario: the resflex selector's deadline-miss rate ≤ always-smallest's + 1 point while its
mean top-1 (frames served) is higher than always-smallest's, and it lasts longer on battery than always-largest
(more battery left; for a charging scenario, more charge gained). "Higher" top-1 means by ≥ 0.1 point. Issue 16:
resflex switches at most 2 times a minute in the steady scenario; switches per minute are shown for every policy.

    python bench/profile_bench.py --bundle bench/out/mbv2_w0.35_rsnet_trained/bundle      # host latencies first
    python bench/simulate_bench.py --bundle bench/out/mbv2_w0.35_rsnet_trained/bundle --out bench/out/sim

Runs `resflex.mobile.simulate.simulate` (the library function behind `resflex simulate`), writes its outputs
(summary.md, summary.json, a PNG + SVG per scenario) and prints the summary table, the goal checks and the time the
simulation took. The phone model and its constants are documented in `resflex.mobile.simulate`.
"""

from __future__ import annotations

import argparse
import time

from results import recorded  # bench/results.py
from resflex.mobile.simulate import SCENARIOS, SimulateConfig, format_summary, simulate, write_outputs

MISS_SLACK = 0.01
TOP1_MARGIN = 0.001  # "higher" top-1: by at least 0.1 point, not by rounding
STEADY_SWITCHES_PER_MIN = 2.0  # issue 16, in the steady scenario


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="a profiled bundle, e.g. bench/out/mbv2_w0.35_rsnet_trained/bundle")
    p.add_argument("--out", default="bench/out/sim", help="output folder (replaced)")
    p.add_argument("--scenario", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    p.add_argument("--device", default=None)
    p.add_argument("--budget-ms", type=float, default=None)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes", type=float, default=None)
    p.add_argument("--points", default="measured", choices=("measured", "all"))
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    return p.parse_args(argv)


def goal_rows(result) -> list[str]:
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    rows = ["| scenario | resflex miss ≤ smallest + 1 pt | resflex top-1 > smallest | battery left > largest | "
            f"resflex switches/min (steady ≤ {STEADY_SWITCHES_PER_MIN:g}) |", "|---|---|---|---|---|"]
    for s in result.scenarios:
        res, small, big = (s.runs[n].metrics for n in ("resflex", "always-smallest", "always-largest"))
        miss = res["miss_rate"] <= small["miss_rate"] + MISS_SLACK
        top1 = res["mean_top1"] is not None and small["mean_top1"] is not None and \
            res["mean_top1"] >= small["mean_top1"] + TOP1_MARGIN
        saved_j = (res["battery_end_pct"] - big["battery_end_pct"]) / 100 * result.config.phone.capacity_j
        battery = saved_j > 1e-6 if not (res["emptied"] and big["emptied"]) else \
            res["minutes_to_empty"] > big["minutes_to_empty"]
        rows.append(f"| {s.scenario.name} | {mark(miss)} {100 * res['miss_rate']:.2f} % vs "
                    f"{100 * small['miss_rate']:.2f} % | {mark(top1)} {res['mean_top1']:.4f} vs "
                    f"{small['mean_top1']:.4f} ({100 * (res['mean_top1'] - small['mean_top1']):+.2f} pt) | "
                    f"{mark(battery)} {res['battery_end_pct']:.3f} % vs {big['battery_end_pct']:.3f} % "
                    f"({saved_j:+.2f} J) | "
                    + (f"{mark(res['switches_per_min'] <= STEADY_SWITCHES_PER_MIN)} " if s.scenario.name == "steady"
                       else "") + f"{res['switches_per_min']:.2f} |")
    return rows


def switch_rows(result) -> list[str]:
    """Switches per minute: scenario × policy."""
    names = list(result.scenarios[0].runs)
    rows = ["| switches/min | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for s in result.scenarios:
        rows.append(f"| {s.scenario.name} | " + " | ".join(f"{s.runs[n].metrics['switches_per_min']:.2f}"
                                                         for n in names) + " |")
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    with recorded("simulate_bench", args.record):
        return _run(args)


def _run(args) -> int:
    config = SimulateConfig(bundle=args.bundle, scenarios=tuple(s for s in args.scenario.split(",") if s),
                            device=args.device, budget_ms=args.budget_ms, fps=args.fps, seed=args.seed,
                            minutes=args.minutes, points=args.points)
    t0 = time.perf_counter()
    result = simulate(config)
    seconds = time.perf_counter() - t0
    minutes = sum(s.scenario.minutes for s in result.scenarios)
    write_outputs(result, args.out, overwrite=True)
    print(f"device {result.device!r}, budget {result.budget_ms:.3f} ms, {len(result.points)} operating points "
          f"simulated ({len(result.excluded)} left out), {minutes:g} simulated minutes × 4 policies in "
          f"{seconds:.1f} s\n")
    print(format_summary(result))
    print()
    print("\n".join(goal_rows(result)))
    print()
    print("\n".join(switch_rows(result)))
    print(f"\noutputs: {args.out}/summary.md and one plot per scenario")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

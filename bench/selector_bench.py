"""Benchmark: the cost of one selector decision (`choose`) and one feedback (`observe`) in Python.

    python bench/selector_bench.py                          # a realistic synthetic phone LUT (50 points)
    python bench/selector_bench.py --bundle bundles/demo --device host --calls 100000

Target (issue 5): a decision costs ≤ 20 µs on the host. Each row times `--calls` calls in batches of 1000
and reports the median and the 90th percentile of the per-call time over the batches (µs). Scenarios:
- steady: the app passes the same DeviceState object every frame and feeds back a measured latency;
- new state every frame: a fresh DeviceState object each call (sensors re-read), cycling through 64 states
  with changing battery, thermal level and CPU load, so decisions switch and every sensor is re-validated;
- observe: one `observe` call.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from results import recorded  # bench/results.py
from resflex.mobile.bundle.schema import LUT, read_json
from resflex.mobile.selector import DeviceState, Policy, Selector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))
from selector_golden import demo_lut  # noqa: E402  (the golden vectors' generator, beside its output)

TARGET_US = 20.0
BATCH = 1000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=100_000, help="calls per row (batches of 1000)")
    p.add_argument("--bundle", type=Path, default=None, help="time on this bundle's lut.json instead")
    p.add_argument("--device", default="phone", help="device id in the LUT")
    p.add_argument("--budget-ms", type=float, default=20.0)
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    return p.parse_args(argv)


def per_call_us(fn, calls: int) -> tuple[float, float]:
    """(median, p90) of the per-call time in µs over batches of BATCH calls."""
    times = []
    for _ in range(max(1, calls // BATCH)):
        t = time.perf_counter_ns()
        for i in range(BATCH):
            fn(i)
        times.append((time.perf_counter_ns() - t) / BATCH / 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))]


def main(argv=None) -> int:
    args = parse_args(argv)
    with recorded("selector_bench", args.record):
        return _run(args)


def _run(args) -> int:
    table = read_json(LUT, args.bundle / "lut.json") if args.bundle else demo_lut(device=args.device)
    t = time.perf_counter_ns()
    sel = Selector(table, args.device, Policy(latency_budget_ms=args.budget_ms))
    build_ms = (time.perf_counter_ns() - t) / 1e6

    steady = DeviceState(battery=0.42, charging=False, power_save=False, thermal=1, cpu_load=0.3)
    d = sel.choose(steady)

    def steady_frame(i):
        sel.observe(sel.choose(steady), 12.5)

    states = [DeviceState(battery=1.0 - k / 64, charging=k % 16 == 0, power_save=k % 24 == 0, thermal=(k // 8) % 4,
                          cpu_load=(k % 5) / 5) for k in range(64)]
    fresh = [[s._replace() for s in states] for _ in range(BATCH // 64 + 1)]  # distinct objects: no cache hit
    flat = [s for group in fresh for s in group]
    rows = []
    sel.reset()
    rows.append(("choose + observe", "steady", *per_call_us(steady_frame, args.calls)))
    sel.reset()
    switches_before = sel.switches
    rows.append(("choose", "new state every frame", *per_call_us(lambda i: sel.choose(flat[i]), args.calls)))
    switched = sel.switches - switches_before
    rows.append(("observe", "steady", *per_call_us(lambda i: sel.observe(d, 12.5), args.calls)))

    print(f"LUT: {len(table.operating_points)} operating points, {len(sel.candidates)} Pareto-optimal candidates "
          f"on device {args.device!r}; selector built in {build_ms:.2f} ms; Python {platform.python_version()} "
          f"on {platform.machine()}")
    print(f"({switched} switches during the new-state row)\n")
    print("| operation | scenario | median µs/call | p90 µs/call | calls | ≤ 20 µs |")
    print("|---|---|---:|---:|---:|---|")
    for op, scenario, median, p90 in rows:
        ok = "yes" if median <= TARGET_US else "NO"
        print(f"| {op} | {scenario} | {median:.2f} | {p90:.2f} | {args.calls} | {ok if op != 'observe' else '—'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

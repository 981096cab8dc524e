"""Benchmark: `resflex profile` on a converted bundle — per operating point the latency and its distance to the
host's fp32 GEMM peak, the switch cost (goal: switching resolution inside the bundle ≥ 10× cheaper than loading
another model file) and the latency-model fit error (goal: ≤ 15% mean absolute relative error across resolutions,
per runtime × precision).

    python bench/convert_bench.py --random 0.35 --backends executorch,tflite,onnx   # writes bench/out/mbv2_w0.35
    python bench/profile_bench.py --bundle bench/out/mbv2_w0.35 --runs 50 --threads 1

The bundle is profiled in place (or a copy with --copy) by `resflex.profiling.profile.profile`, the library
function behind `resflex profile`, under --device-id; its lut.json keeps the results. Prints markdown tables.
Latencies on a shared machine are noisy: take final numbers on a quiet one.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from results import recorded  # bench/results.py
from resflex.profiling.profile import (
    DEFAULT_RUNTIMES,
    ProfileConfig,
    format_latencies,
    format_latency_models,
    format_switch_costs,
    profile,
)

SWITCH_GOAL, FIT_GOAL = 10.0, 0.15


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="a converted bundle, e.g. bench/out/mbv2_w0.35")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=lambda text: tuple(int(v) for v in text.split(",")), default=(1,),
                   help="comma-separated thread counts")
    p.add_argument("--runtimes", default=",".join(DEFAULT_RUNTIMES))
    p.add_argument("--switch-repeats", type=int, default=5)
    p.add_argument("--device-id", default="host")
    p.add_argument("--copy", action=argparse.BooleanOptionalAction, default=False,
                   help="profile a temporary copy and leave the bundle's lut.json as it is")
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the tables into bench/RESULTS.md")
    return p.parse_args(argv)


def goals(device) -> list[str]:
    """One line per goal: how many runtime × precision (× threads) groups meet it."""
    ratios = [(s.runtime, s.precision.value, s.overheads()[2]) for s in device.switch_costs if s.overheads()]
    met = [r for r in ratios if r[2] >= SWITCH_GOAL]
    lines = [f"- switch cost: load-file overhead ÷ in-bundle switch overhead ≥ {SWITCH_GOAL:.0f}× for {len(met)} of "
             f"{len(ratios)} runtime × precision" + (f" (lowest {min(r[2] for r in ratios):.1f}×)" if ratios else "")]
    errors = [m.mean_abs_rel_error for m in device.latency_models]
    ok = [e for e in errors if e <= FIT_GOAL]
    lines.append(f"- latency model: mean abs. relative error ≤ {100 * FIT_GOAL:.0f}% for {len(ok)} of {len(errors)} "
                 "runtime × precision × threads" + (f" (worst {100 * max(errors):.1f}%)" if errors else ""))
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    with recorded("profile_bench", args.record):
        return _run(args)


def _run(args) -> None:
    with tempfile.TemporaryDirectory(prefix="profile-bench-") as tmp:
        bundle = Path(args.bundle)
        if args.copy:
            bundle = Path(shutil.copytree(bundle, Path(tmp) / bundle.name))
        start = time.perf_counter()
        table = profile(ProfileConfig(
            str(bundle), device_id=args.device_id, runtimes=tuple(args.runtimes.split(",")), threads=args.threads,
            runs=args.runs, warmup=args.warmup, switch_repeats=args.switch_repeats))
        seconds = time.perf_counter() - start
    device = table.devices[args.device_id]
    print(f"## profile of {args.bundle} on {args.device_id} ({seconds:.0f} s; batch 1, {args.warmup} warm-up + "
          f"{args.runs} timed runs, threads {','.join(map(str, args.threads))})\n")
    print(f"{device.facts.get('cpu', '?')}, {device.facts.get('cores_logical', '?')} logical cores; fp32 GEMM peak "
          f"{device.gemm_peak_gflops:.1f} GFLOP/s ({device.facts.get('gemm_peak', '')})\n")
    print("### Lookup table (top-1 measured by convert on the artifact)\n")
    print(format_latencies(table, args.device_id))
    print("\n### Switch cost: time to the first result at another resolution (median)\n")
    print(format_switch_costs(device))
    print("\n### Latency model p50 ≈ a + b·GMACs\n")
    print(format_latency_models(device))
    print("\n### Goals\n")
    print("\n".join(goals(device)))


if __name__ == "__main__":
    main()

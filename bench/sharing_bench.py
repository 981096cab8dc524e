"""fp32 `convert --sharing` modes against each other: each bundle's latency ÷ the `speed` bundle's, per resolution.

    python bench/convert_bench.py --random 0.35 --backends executorch,tflite --precisions fp32 \\
        --sharing size,speed,auto,auto@1.2 --out /tmp/cb_auto          # converts the bundles (and sizes them)
    python bench/sharing_bench.py --bundles /tmp/cb_auto/mbv2_w0.35_random --runs 100

The `speed` bundle's graphs are the BN-folded ones in the same multi-entry file, so this ratio isolates what a
sharing plan costs from the file type (convert_bench compares with one single-resolution file per resolution).
Runs are interleaved (one of each variant in turn), 1 thread, thread-CPU medians.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convert_bench import _exported_view, interleaved_latency, single_thread  # bench/ is on sys.path
from resflex.convert.pipeline import load_backend
from resflex.convert.runtimes import Entry
from resflex.mobile.bundle.io import Bundle


def bundle_folder(root: Path, mode: str) -> Path:
    """Where convert_bench put the bundle of `--sharing` `mode` (auto@1.2 → bundle_auto_1.2)."""
    return root / ("bundle" if mode == "size" else f"bundle_{mode.replace('@', '_')}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundles", required=True, help="convert_bench's OUT/<model> folder")
    p.add_argument("--modes", default="size,auto,auto@1.2", help="compared with speed, comma-separated")
    p.add_argument("--backends", default="executorch,tflite")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args(argv)
    single_thread()
    modes = args.modes.split(",")
    print("| backend | res | speed CPU ms | " + " | ".join(f"{m} ÷ speed" for m in modes) + " |")
    print("|---|---:|---:|" + "---:|" * len(modes))
    for backend in args.backends.split(","):
        be, pairs = load_backend(backend), {}
        for mode in ("speed", *modes):
            folder = bundle_folder(Path(args.bundles), mode)
            art = next(a for a in Bundle.open(folder).manifest.artifacts
                       if a.backend.value == backend and a.precision.value == "fp32")
            runner = be.runner(_exported_view(art), folder / Path(art.file).parent)
            for e in art.entries:
                pairs[mode, e.resolution] = (runner, Entry(e.resolution, e.name, e.input_name, e.output_name,
                                                           tuple(e.input_shape)))
        lat = interleaved_latency(pairs, args.runs, args.warmup)
        for r in sorted({r for _, r in pairs}, reverse=True):
            speed = lat["speed", r][1]
            print(f"| {backend} | {r} | {speed:.2f} | " + " | ".join(f"{lat[m, r][1] / speed:.3f}×" for m in modes)
                  + " |", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark: ONNX int8 with int8 activations (before issue 23 item 5) beside uint8 activations (now) — how many of
MobileNetV2's convs and Adds ONNX Runtime runs as integer ops, and the host latency of each graph, with ONNX Runtime's
default x86 kernels and with the exact U8U8 kernels resflex's host runtime uses (`session.x64quantprecision`).

    python bench/onnx_int8_bench.py --width 1.0 --resolution 224 --classes 1000

The model has random BN statistics (int8 structure and speed do not depend on training); both graphs come from the
backend's own `_quantize` on the same calibration batch. Latency: median of `--runs` interleaved single-thread runs
(thread CPU time), batch 1.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from results import recorded  # bench/results.py
from resflex.convert.backends import onnx as backend
from resflex.convert.bake import bake
from resflex.mobile.models import create_model


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--record", action=argparse.BooleanOptionalAction, default=True,
                   help="write the section onnx_int8_bench of bench/RESULTS.md")
    return p.parse_args(argv)


def _session(path: Path, exact: bool, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 4
    if exact:
        options.add_session_config_entry("session.x64quantprecision", "1")
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    r = args.resolution
    model = create_model("mobilenet_v2", "rsnet", (r,), width=args.width, num_classes=args.classes).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    baked = bake(model, r, "interpolate", "ideal", backend.OnnxBackend.bn_style)
    calib = torch.randn(8, 3, r, r, generator=torch.Generator().manual_seed(2))
    work = Path(tempfile.mkdtemp(prefix="onnx_int8_bench_"))
    graphs = {}
    for activations in ("QInt8", "QUInt8"):
        backend.ACTIVATIONS = activations
        graphs[activations] = work / f"{activations}.onnx"
        onnx.save(backend._quantize(baked, r, calib, work, activations)[0], str(graphs[activations]))
    backend.ACTIVATIONS = "QUInt8"
    x = np.random.default_rng(0).standard_normal((1, 3, r, r)).astype(np.float32)
    with recorded("onnx_int8_bench", args.record):
        print(f"MobileNetV2 x{args.width}, {args.classes} classes, {r} px; onnxruntime {ort.__version__}\n")
        print("| activations | QLinearConv | float Conv | QLinearAdd | float Add | ms, default kernels | "
              "ms, exact U8U8 (resflex) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        rows = {}
        for name, path in graphs.items():
            _session(path, False, work / f"{name}_opt.onnx")
            ops = collections.Counter(n.op_type for n in onnx.load(str(work / f"{name}_opt.onnx")).graph.node)
            sessions = {exact: _session(path, exact) for exact in (False, True)}
            times = {}
            for exact, s in sessions.items():
                try:
                    for _ in range(3):
                        s.run(None, {"image": x})
                except Exception as err:  # noqa: BLE001 — reported in the table
                    times[exact] = f"fails: {str(err).split('was false. ')[-1].strip()}"
                    continue
                t = []
                for _ in range(args.runs):
                    t0 = time.thread_time()
                    s.run(None, {"image": x})
                    t.append(time.thread_time() - t0)
                times[exact] = float(np.median(t)) * 1e3
            rows[name] = times
            cells = [f"{v:.2f}" if isinstance(v, float) else v for v in (times[False], times[True])]
            print(f"| {name} | {ops['QLinearConv']} | {ops['Conv']} | {ops['QLinearAdd']} | {ops['Add']} | "
                  f"{cells[0]} | {cells[1]} |")
        before, after = rows["QInt8"][False], rows["QUInt8"]
        print(f"\nuint8 / int8 activations, default kernels: {after[False] / before:.3f}x; "
              f"uint8 with exact kernels / int8 default: {after[True] / before:.3f}x")


if __name__ == "__main__":
    sys.exit(main())

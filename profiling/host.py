"""Timing artifacts on the host, one child process per artifact × thread count (`python -m resflex.profiling.host`).

Why a child process: the peak memory of a process (`resource.getrusage(...).ru_maxrss`) is a high-water mark,
so a fresh process per artifact makes it that artifact's; and ExecuTorch's XNNPACK thread count can only be set
safely before any program is loaded. The child imports only its runtime (no torch for LiteRT or ONNX Runtime, so
their memory figures do not carry torch), reads one job as JSON on stdin and writes one JSON line per timed entry
on stdout, each prefixed by `MARK`, so a runtime printing on stdout cannot be mistaken for a result.

Each runtime is opened through the one runtime layer, `resflex.convert.runtimes` (what `resflex convert`'s
parity check uses too; its docstring says how each runtime's threads are set). ExecuTorch's thread pool is
process-wide and can only be resized safely before a method is loaded, so the child sets it first.

Timing: `warmup` untimed runs, then `runs` timed runs (`time.perf_counter_ns`) of batch 1 on a fixed random input
of the entry's input shape (already in the artifact's layout; TFLite is NHWC). Entries are timed smallest first,
and `ru_maxrss` is read after each: the peak resident memory of a process that holds the runtime, the artifact and
this and every smaller resolution loaded (what an app keeping them loaded needs), Python and libraries included.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from resflex.convert.runtimes import Entry, Runtime, runtime_class

MARK = "@@resflex-profile "


# ----------------------------------------------------------------------------------------------- timing (child)


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS); None where unknown."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def time_runs(run: Callable, inputs, warmup: int, runs: int) -> list[int]:
    """`warmup` untimed calls, then the duration in ns of each of `runs` timed calls."""
    for _ in range(warmup):
        run(inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        run(inputs)
        times.append(time.perf_counter_ns() - start)
    return times


def _timed(fn: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - start


def switch_times(artifact: Runtime, entries: list[Entry], inputs: dict[str, object],
                 repeats: int) -> dict[str, list[int]]:
    """Time to the first output at resolution B right after resolution A (ns), three ways:

    - switch_loaded: B's method/signature/session already loaded in the open artifact (every ordered pair A→B,
      `repeats` times);
    - switch_first: a freshly opened artifact (not timed) has run A; B's method/signature/session is loaded on
      this first switch (timed with B's run);
    - load_file: the one-model-per-resolution path — open the model file anew (a fresh runtime object from disk;
      for ExecuTorch and TFLite the bundle's artifact file, loading only B's method/signature; for ONNX B's own
      file) and run B once.
    File reads are from a warm page cache in all three. `steady` times B again right after the switch (no
    switch), so each cost's overhead beyond the inference itself can be told apart."""
    pairs = [(a, b) for a in entries for b in entries if a is not b]
    out = {"switch_loaded_ns": [], "switch_first_ns": [], "load_file_ns": [], "steady_ns": []}
    for _ in range(repeats):
        for a, b in pairs:
            artifact.load(a)(inputs[a.name])
            out["switch_loaded_ns"].append(_timed(lambda: artifact.load(b)(inputs[b.name])))
            out["steady_ns"].append(_timed(lambda: artifact.load(b)(inputs[b.name])))
    for i in range(max(repeats, len(pairs))):
        a, b = pairs[i % len(pairs)]
        other = artifact.fresh()
        other.load(a)(inputs[a.name])
        out["switch_first_ns"].append(_timed(lambda: other.load(b)(inputs[b.name])))
        del other
        out["load_file_ns"].append(_timed(lambda: artifact.fresh().load(b)(inputs[b.name])))
    return out


def _emit(message: dict) -> None:
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def run_job(job: dict) -> None:
    """The child's work: time every entry of one artifact at each compute unit, then (optionally) switch cost."""
    runtime = runtime_class(job["runtime"])
    threads = runtime.set_threads(job["threads"])  # before anything is loaded (ExecuTorch)
    if job["runtime"] == "executorch" and threads != job["threads"]:
        raise RuntimeError(f"ExecuTorch thread pool has {threads} threads after asking for {job['threads']}")
    rng = np.random.default_rng(0)
    entries = sorted((Entry.from_dict(e) for e in job["entries"]), key=lambda e: e.resolution)
    images = {e.name: rng.standard_normal(e.input_shape).astype(np.float32) for e in entries}
    for unit in job["units"]:
        artifact = runtime(job["path"], job["threads"], unit)
        inputs = {e.name: artifact.prepare(e, images[e.name]) for e in entries}
        for e in entries:
            run = artifact.load(e)
            first = np.asarray(run(inputs[e.name]))
            if first.size == 0 or not np.isfinite(first).all():
                raise RuntimeError(f"{job['path']} {e.name} ({unit}) returned an empty or non-finite output")
            times = time_runs(run, inputs[e.name], job["warmup"], job["runs"])
            _emit({"type": "entry", "name": e.name, "unit": unit, "times_ns": times,
                   "peak_rss_bytes": peak_rss_bytes()})
        if job.get("switch_repeats") and len(entries) >= 2:
            _emit({"type": "switch", "unit": unit, **switch_times(artifact, entries, inputs, job["switch_repeats"])})
        del artifact
    _emit({"type": "done", "threads": threads, "versions": runtime.versions()})


def worker_main() -> int:
    """Entry point of `python -m resflex.profiling.host`: one job (JSON) on stdin."""
    run_job(json.loads(sys.stdin.read()))
    return 0


# ------------------------------------------------------------------------------------------------- parent side


def run_worker(job: dict, on_message: Callable[[dict], None], timeout_s: float | None = None) -> list[dict]:
    """Run one job in a child process; `on_message` sees each result as it arrives. Returns all messages.
    A child that fails, is killed or times out raises RuntimeError with the tail of its stderr."""
    messages = []
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "resflex.profiling.host"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(timeout_s, proc.kill) if timeout_s else None
        if timer:
            timer.start()
        try:
            proc.stdin.write(json.dumps(job))
            proc.stdin.close()
            for line in proc.stdout:
                if line.startswith(MARK):
                    messages.append(json.loads(line[len(MARK):]))
                    on_message(messages[-1])
            code = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if code != 0 or not messages or messages[-1]["type"] != "done":
            err.seek(0)
            tail = "\n".join(line for line in err.read().splitlines() if not line.startswith("[cpuinfo"))[-3000:]
            why = f"was stopped after {timeout_s} s" if timer and code < 0 else f"exited with code {code}"
            raise RuntimeError(f"timing {job['path']} with {job['runtime']} ({job['threads']} threads) {why}:\n{tail}")
    return messages


def _cpu_model() -> str:
    if sys.platform == "darwin":
        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.processor()
        except (OSError, subprocess.SubprocessError):
            return platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    if sys.platform == "darwin":
        try:
            return int(subprocess.run(["sysctl", "-n", "hw.physicalcpu"], capture_output=True, text=True,
                                      timeout=5).stdout)
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
    try:
        cores, phys = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (s.strip() for s in line.partition(":"))
            if key == "physical id":
                phys = value
            elif key == "core id":
                cores.add((phys, value))
        return len(cores) or None
    except OSError:
        return None


def host_facts() -> dict[str, str]:
    """CPU model, cores (logical, physical, available to this process), OS, Python."""
    facts = {"kind": "host", "cpu": _cpu_model(), "cores_logical": str(os.cpu_count()),
             "os": platform.platform(), "machine": platform.machine(), "python": platform.python_version()}
    physical = _physical_cores()
    if physical:
        facts["cores_physical"] = str(physical)
    if hasattr(os, "sched_getaffinity"):
        facts["cores_available"] = str(len(os.sched_getaffinity(0)))
    return facts


def gemm_peak_gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """fp32 GEMM peak: the best of `repeats` torch.mm of two n×n matrices (after 2 warm-ups), 2·n³ FLOPs each."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        for _ in range(2):
            torch.mm(a, b, out=c)
        best = min(_timed(lambda: torch.mm(a, b, out=c)) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / best  # FLOP per ns = GFLOP/s


if __name__ == "__main__":  # the child process: python -m resflex.profiling.host < job.json
    sys.exit(worker_main())

"""Timing artifacts on the host, one child process per artifact × thread count (`python -m resflex.profiling.host`).

Why a child process: the peak memory of a process (`resource.getrusage(...).ru_maxrss`) is a high-water mark,
so a fresh process per artifact makes it that artifact's; and ExecuTorch's XNNPACK thread count can only be set
safely before any program is loaded. The child imports only its runtime (no torch for LiteRT or ONNX Runtime, so
their memory figures do not carry torch), reads one job as JSON on stdin and writes one JSON line per timed entry
on stdout, each prefixed by `MARK`, so a runtime printing on stdout cannot be mistaken for a result.

Runtimes and their thread settings:
- executorch: `executorch.runtime` (XNNPACK delegate). Threads: ExecuTorch's Python bindings expose
  `executorch.extension.pybindings.portable_lib._unsafe_reset_threadpool(n)` (and `_threadpool_get_thread_count`),
  which resizes the process-wide pthreadpool that XNNPACK uses. "Unsafe" because XNNPACK captures the pool when a
  method is loaded (its runtime is created then) and a reset destroys the old pool; so the child resets it once,
  before loading anything, and checks the count took.
- tflite: LiteRT `ai_edge_litert.interpreter.Interpreter(model_path, num_threads=n)` (default XNNPACK CPU kernels),
  signature runners; `tflite_runtime` as a fallback import.
- onnxruntime: `InferenceSession` with CPUExecutionProvider, `intra_op_num_threads = n`, `inter_op_num_threads = 1`,
  sequential execution.
- coreml (macOS only): `coremltools.models.MLModel(path, function_name=..., compute_units=...)` and `predict`, one
  model per function × compute unit; Core ML picks its own threads (recorded as threads 0).

Timing: `warmup` untimed runs, then `runs` timed runs (`time.perf_counter_ns`) of batch 1 on a fixed random input
of the entry's input shape (already in the artifact's layout; TFLite is NHWC). Entries are timed smallest first,
and `ru_maxrss` is read after each: the peak resident memory of a process that holds the runtime, the artifact and
this and every smaller resolution loaded (what an app keeping them loaded needs), Python and libraries included.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np

MARK = "@@resflex-profile "
ET_THREADS_NOTE = "XNNPACK threads via portable_lib._unsafe_reset_threadpool, set before any method is loaded"


# --------------------------------------------------------------------------------------------- runtimes (child)


def _executorch_runtime():
    """`executorch.runtime` and its `portable_lib`, imported without running `executorch.exir`'s package
    `__init__` (the exporter: ~7 s and ~130 MB here), which portable_lib pulls in only for a warning class; the
    plain import if that fails."""
    if "executorch.runtime" not in sys.modules and "executorch.exir" not in sys.modules:
        spec = importlib.util.find_spec("executorch.exir")
        stub = types.ModuleType("executorch.exir")
        stub.__path__ = list(spec.submodule_search_locations or []) if spec else []
        sys.modules["executorch.exir"] = stub
        try:
            import executorch.runtime  # noqa: F401
        except ImportError:
            for name in [n for n in sys.modules if n.startswith(("executorch.exir", "executorch.runtime",
                                                                  "executorch.extension.pybindings"))]:
                del sys.modules[name]
        finally:
            if sys.modules.get("executorch.exir") is stub:
                del sys.modules["executorch.exir"]
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    return Runtime, portable_lib


class _ExecuTorch:
    """A `.pte` opened in ExecuTorch's Python runtime; methods loaded on first use and kept."""

    def __init__(self, job: dict, unit: str):
        self.job, self.unit = job, unit
        self.program = _executorch_runtime()[0].get().load_program(Path(job["path"]))
        self._methods = {}

    @staticmethod
    def set_threads(threads: int) -> int:
        portable_lib = _executorch_runtime()[1]
        portable_lib._unsafe_reset_threadpool(threads)
        return int(portable_lib._threadpool_get_thread_count())

    @staticmethod
    def versions() -> dict[str, str]:
        return {"executorch": importlib.metadata.version("executorch")}

    def fresh(self) -> _ExecuTorch:
        return _ExecuTorch(self.job, self.unit)

    def prepare(self, entry: dict, x: np.ndarray):
        import torch

        return (torch.from_numpy(x),)

    def load(self, entry: dict) -> Callable:
        if entry["name"] not in self._methods:
            self._methods[entry["name"]] = self.program.load_method(entry["name"])
        method = self._methods[entry["name"]]
        return lambda inputs: method.execute(inputs)[0]


def _litert():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, {"ai-edge-litert": importlib.metadata.version("ai-edge-litert")}
    except ImportError:  # tflite-runtime was the predecessor (last release 2.14; needs numpy < 2)
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, {"tflite-runtime": importlib.metadata.version("tflite-runtime")}


class _TFLite:
    """A `.tflite` in a LiteRT interpreter with `num_threads`; one signature runner per entry."""

    def __init__(self, job: dict, unit: str):
        self.job, self.unit = job, unit
        self.interpreter = _litert()[0](model_path=job["path"], num_threads=job["threads"])
        self._runners = {}

    @staticmethod
    def set_threads(threads: int) -> int:
        return threads  # per interpreter (num_threads)

    @staticmethod
    def versions() -> dict[str, str]:
        return _litert()[1]

    def fresh(self) -> _TFLite:
        return _TFLite(self.job, self.unit)

    def prepare(self, entry: dict, x: np.ndarray):
        return {entry["input_name"]: x}

    def load(self, entry: dict) -> Callable:
        if entry["name"] not in self._runners:
            self._runners[entry["name"]] = self.interpreter.get_signature_runner(entry["name"])
        runner, output = self._runners[entry["name"]], entry["output_name"]
        return lambda inputs: runner(**inputs)[output]


class _OnnxRuntime:
    """ONNX files (one per resolution), one CPU session per file, created on first use."""

    def __init__(self, job: dict, unit: str):
        import onnxruntime as ort

        self.job, self.unit, self.ort = job, unit, ort
        self._sessions = {}

    @staticmethod
    def set_threads(threads: int) -> int:
        return threads  # per session (intra_op_num_threads)

    @staticmethod
    def versions() -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    def fresh(self) -> _OnnxRuntime:
        return _OnnxRuntime(self.job, self.unit)

    def prepare(self, entry: dict, x: np.ndarray):
        return {entry["input_name"]: x}

    def load(self, entry: dict) -> Callable:
        if entry["name"] not in self._sessions:
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = self.job["threads"]
            options.inter_op_num_threads = 1
            options.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
            self._sessions[entry["name"]] = self.ort.InferenceSession(entry["path"], options,
                                                                       providers=[self.unit])
        session, output = self._sessions[entry["name"]], entry["output_name"]
        return lambda inputs: session.run([output], inputs)[0]


class _CoreML:
    """A multifunction `.mlpackage` in Core ML (macOS): one `MLModel` per function at one compute unit."""

    def __init__(self, job: dict, unit: str):
        import coremltools as ct

        self.job, self.unit, self.ct = job, unit, ct
        self._models = {}

    @staticmethod
    def set_threads(threads: int) -> int:
        return 0  # Core ML schedules its own threads

    @staticmethod
    def versions() -> dict[str, str]:
        return {"coremltools": importlib.metadata.version("coremltools"), "macos": platform.mac_ver()[0]}

    def fresh(self) -> _CoreML:
        return _CoreML(self.job, self.unit)

    def prepare(self, entry: dict, x: np.ndarray):
        return {entry["input_name"]: x}

    def load(self, entry: dict) -> Callable:
        if entry["name"] not in self._models:
            self._models[entry["name"]] = self.ct.models.MLModel(
                self.job["path"], function_name=entry["name"], compute_units=self.ct.ComputeUnit[self.unit])
        model, output = self._models[entry["name"]], entry["output_name"]
        return lambda inputs: model.predict(inputs)[output]


ADAPTERS = {"executorch": _ExecuTorch, "tflite": _TFLite, "onnxruntime": _OnnxRuntime, "coreml": _CoreML}


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


def switch_times(artifact, entries: list[dict], inputs: dict[str, object], repeats: int) -> dict[str, list[int]]:
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
            artifact.load(a)(inputs[a["name"]])
            out["switch_loaded_ns"].append(_timed(lambda: artifact.load(b)(inputs[b["name"]])))
            out["steady_ns"].append(_timed(lambda: artifact.load(b)(inputs[b["name"]])))
    for i in range(max(repeats, len(pairs))):
        a, b = pairs[i % len(pairs)]
        other = artifact.fresh()
        other.load(a)(inputs[a["name"]])
        out["switch_first_ns"].append(_timed(lambda: other.load(b)(inputs[b["name"]])))
        del other
        out["load_file_ns"].append(_timed(lambda: artifact.fresh().load(b)(inputs[b["name"]])))
    return out


def _emit(message: dict) -> None:
    sys.stdout.write(MARK + json.dumps(message) + "\n")
    sys.stdout.flush()


def run_job(job: dict) -> None:
    """The child's work: time every entry of one artifact at each compute unit, then (optionally) switch cost."""
    adapter = ADAPTERS[job["runtime"]]
    threads = adapter.set_threads(job["threads"])  # before anything is loaded (ExecuTorch)
    if job["runtime"] == "executorch" and threads != job["threads"]:
        raise RuntimeError(f"ExecuTorch thread pool has {threads} threads after asking for {job['threads']}")
    rng = np.random.default_rng(0)
    entries = sorted(job["entries"], key=lambda e: e["resolution"])
    images = {e["name"]: rng.standard_normal(e["input_shape"]).astype(np.float32) for e in entries}
    for unit in job["units"]:
        artifact = adapter(job, unit)
        inputs = {e["name"]: artifact.prepare(e, images[e["name"]]) for e in entries}
        for e in entries:
            run = artifact.load(e)
            first = np.asarray(run(inputs[e["name"]]))
            if first.size == 0 or not np.isfinite(first).all():
                raise RuntimeError(f"{job['path']} {e['name']} ({unit}) returned an empty or non-finite output")
            times = time_runs(run, inputs[e["name"]], job["warmup"], job["runs"])
            _emit({"type": "entry", "name": e["name"], "unit": unit, "times_ns": times,
                   "peak_rss_bytes": peak_rss_bytes()})
        if job.get("switch_repeats") and len(entries) >= 2:
            _emit({"type": "switch", "unit": unit, **switch_times(artifact, entries, inputs, job["switch_repeats"])})
        del artifact
    _emit({"type": "done", "threads": threads, "versions": adapter.versions()})


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

"""One runtime layer: a bundle artifact opened in its own runtime on this machine — ExecuTorch, LiteRT, ONNX
Runtime, Core ML — with the same four verbs everywhere: open (`open_runtime`), list entries (`entries`), run an entry
(`load(entry)` → a callable on one prepared input, `run(entry, x)` on a normalised NCHW batch) and set threads.

Used by `resflex convert`'s parity check (`Backend.runner`) and by host profiling (`resflex.profiling.host`, one
child process per artifact × thread count). Importing this module imports no runtime and no torch: each adapter
imports its runtime when it opens an artifact, so a profiling child for LiteRT or ONNX Runtime never loads torch.

Runtimes and their thread settings:
- executorch: `executorch.runtime` (XNNPACK delegate). Threads: ExecuTorch's Python bindings expose
  `portable_lib._unsafe_reset_threadpool(n)`, which resizes the process-wide pthreadpool XNNPACK uses. "Unsafe"
  because XNNPACK captures the pool when a method is loaded and a reset destroys the old pool: call `set_threads`
  once, before loading anything (the profiling child does; parity keeps the process's pool).
- tflite: LiteRT `ai_edge_litert.interpreter.Interpreter(model_path, num_threads=n)` (default XNNPACK CPU kernels),
  signature runners; `tflite_runtime` (the predecessor, last release 2.14, numpy < 2) as a fallback import.
- onnxruntime: one `InferenceSession` per file (ONNX has one resolution per file), opened from its path so that ONNX
  Runtime finds the artifact's shared weights file (ONNX external data) beside it, with `intra_op_num_threads = n`,
  `inter_op_num_threads = 1`, sequential execution, on the compute unit's execution provider.
- coreml (macOS only): `coremltools.models.MLModel(path, function_name=..., compute_units=...)` and `predict`, one
  model per function; Core ML schedules its own threads (reported as 0).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import platform
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from resflex.mobile.bundle.schema import BACKEND_RUNTIMES, COMPUTE_UNITS, RUNTIME_BACKENDS, Backend

ON_MACOS = sys.platform == "darwin"


@dataclasses.dataclass(frozen=True, order=True)
class Spatial:
    """What one entry serves: an input resolution and, for Resizable Networks, one scale factor per stage (empty for
    every other method). Backends key their baked modules by it (a bare int means `Spatial(int)`); ordered by
    resolution, then factors, so the largest sorts last."""

    resolution: int
    stage_scales: tuple[float, ...] = ()

    @classmethod
    def of(cls, key: Spatial | int) -> Spatial:
        return key if isinstance(key, Spatial) else cls(int(key))

    @property
    def tag(self) -> str:
        """The entry-name suffix: "64", or "64_s1_0p75_0p5" with stage scales (only [A-Za-z0-9_], valid as an
        ExecuTorch method, Core ML function, TFLite signature and file name)."""
        if not self.stage_scales:
            return str(self.resolution)
        return f"{self.resolution}_s" + "_".join(f"{s:g}".replace(".", "p") for s in self.stage_scales)


def spatial_keys(keys) -> list:
    """The keys of a backend's `baked` mapping, largest first, refusing two that would give one entry name."""
    ordered = sorted(keys, key=Spatial.of, reverse=True)
    tags = [Spatial.of(k).tag for k in ordered]
    if len(set(tags)) != len(tags):
        raise ValueError(f"entries {tags}: two configurations give the same entry name")
    return ordered


@dataclasses.dataclass(frozen=True)
class Entry:
    """One resolution (and stage-scale configuration) inside an artifact: the method / function / signature / file
    that serves it."""

    resolution: int
    name: str  # ExecuTorch method, Core ML function, TFLite signature key, or ONNX file name
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]  # in the artifact's layout, batch 1
    stage_scales: tuple[float, ...] = ()  # Resizable Networks: one factor per stage; () otherwise

    @property
    def spatial(self) -> Spatial:
        return Spatial(self.resolution, self.stage_scales)

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        return cls(int(d["resolution"]), d["name"], d["input_name"], d["output_name"], tuple(d["input_shape"]),
                   tuple(float(s) for s in d.get("stage_scales") or ()))


class Runtime:
    """An artifact (its main file) open in one runtime. Subclasses set `name`, `layout` and the hooks below."""

    name: ClassVar[str]  # the runtime's name in the LUT (`Latency.runtime`)
    layout: ClassVar[str] = "NCHW"  # of the artifact's input

    def __init__(self, path: str | Path, threads: int = 1, unit: str | None = None):
        self.path = Path(path)
        self.threads = threads
        self.unit = unit or self.default_unit()
        self._loaded: dict[str, Callable] = {}

    # -------------------------------------------------------------------- per runtime
    @classmethod
    def default_unit(cls) -> str:
        return COMPUTE_UNITS[RUNTIME_BACKENDS[cls.name]][0]

    @staticmethod
    def set_threads(threads: int) -> int:
        """Process-wide thread setting, before any artifact is opened; returns the count in effect (0: the
        runtime chooses). Runtimes with a per-artifact setting take `threads` when opening and return it here."""
        return threads

    @staticmethod
    def versions() -> dict[str, str]:
        raise NotImplementedError

    def entries(self) -> list[str]:
        """The entry names the artifact serves (methods, signatures, functions or files)."""
        raise NotImplementedError

    def _load(self, entry: Entry) -> Callable:
        """A callable on one prepared input (`prepare`) returning the entry's output."""
        raise NotImplementedError

    def prepare(self, entry: Entry, x: np.ndarray) -> Any:
        """One float32 batch-1 input in the artifact's layout → what the loaded callable takes."""
        return {entry.input_name: x}

    # -------------------------------------------------------------------- common
    def fresh(self) -> Runtime:
        """The same artifact opened anew (nothing loaded)."""
        return type(self)(self.path, self.threads, self.unit)

    def load(self, entry: Entry) -> Callable:
        """The entry's callable, loaded on first use and kept."""
        if entry.name not in self._loaded:
            self._loaded[entry.name] = self._load(entry)
        return self._loaded[entry.name]

    def run(self, entry: Entry, x: np.ndarray) -> np.ndarray:
        """x: float32 NCHW batch (normalised; any batch size, run one image at a time as exported) → float32
        outputs (batch, ...)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise ValueError(f"{entry.name} expects a 4-D NCHW batch, got shape {x.shape}")
        if self.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        if tuple(x.shape[1:]) != tuple(entry.input_shape[1:]):
            expected = ", ".join(map(str, entry.input_shape[1:]))
            raise ValueError(f"{entry.name} expects input ({self.layout}) (N, {expected}), got {x.shape}")
        run = self.load(entry)
        outs = [run(self.prepare(entry, np.ascontiguousarray(x[i: i + 1]))) for i in range(len(x))]
        return np.concatenate([np.asarray(o, dtype=np.float32).reshape(1, -1) for o in outs])


# ------------------------------------------------------------------------------------------------- ExecuTorch


def _executorch_runtime():
    """`executorch.runtime.Runtime` and `portable_lib`, imported without running `executorch.exir`'s package
    `__init__` (the exporter: ~7 s and ~130 MB), which portable_lib pulls in only for a warning class; the plain
    import if that fails or the exporter is already loaded."""
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
    from executorch.runtime import Runtime as _Runtime

    return _Runtime, portable_lib


class ExecuTorchRuntime(Runtime):
    """A `.pte` in ExecuTorch's Python runtime (XNNPACK); methods loaded on first use and kept."""

    name = "executorch"

    def __init__(self, path, threads: int = 1, unit: str | None = None):
        super().__init__(path, threads, unit)
        self.program = _executorch_runtime()[0].get().load_program(self.path)
        self._methods = {}

    @staticmethod
    def set_threads(threads: int) -> int:
        portable_lib = _executorch_runtime()[1]
        portable_lib._unsafe_reset_threadpool(threads)
        return int(portable_lib._threadpool_get_thread_count())

    @staticmethod
    def versions() -> dict[str, str]:
        return {"executorch": importlib.metadata.version("executorch")}

    def entries(self) -> list[str]:
        return sorted(self.program.method_names)

    @property
    def method_names(self) -> set[str]:
        return set(self.program.method_names)

    def method(self, name: str):
        """The ExecuTorch method `name`, loaded on first use and kept (KeyError naming the methods there are)."""
        if name not in self._methods:
            if name not in self.program.method_names:
                raise KeyError(f"{self.path.name} has no method {name!r}; it has: "
                               f"{', '.join(sorted(self.program.method_names))}")
            self._methods[name] = self.program.load_method(name)
        return self._methods[name]

    def prepare(self, entry: Entry, x: np.ndarray):
        import torch

        return (torch.from_numpy(x),)

    def _load(self, entry: Entry) -> Callable:
        method = self.method(entry.name)
        return lambda inputs: method.execute(inputs)[0]



# ---------------------------------------------------------------------------------------------------- LiteRT


def litert_interpreter() -> tuple[type, dict[str, str]]:
    """LiteRT's `Interpreter` class and the version of the package that provided it."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, {"ai-edge-litert": importlib.metadata.version("ai-edge-litert")}
    except ImportError:  # tflite-runtime was the predecessor (last release 2.14; needs numpy < 2)
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, {"tflite-runtime": importlib.metadata.version("tflite-runtime")}


class LiteRTRuntime(Runtime):
    """A `.tflite` in a LiteRT interpreter with `num_threads`; one signature runner per entry (NHWC input)."""

    name = "tflite"
    layout = "NHWC"

    def __init__(self, path, threads: int = 1, unit: str | None = None):
        super().__init__(path, threads, unit)
        self.interpreter = litert_interpreter()[0](model_path=str(self.path), num_threads=threads)

    @staticmethod
    def versions() -> dict[str, str]:
        return litert_interpreter()[1]

    def entries(self) -> list[str]:
        return sorted(self.interpreter.get_signature_list())

    def signatures(self) -> dict:
        return self.interpreter.get_signature_list()

    def _load(self, entry: Entry) -> Callable:
        runner, output = self.interpreter.get_signature_runner(entry.name), entry.output_name
        return lambda inputs: runner(**inputs)[output]


# ---------------------------------------------------------------------------------------------- ONNX Runtime


class OnnxRuntime(Runtime):
    """ONNX files, one per resolution beside the artifact's main file, all referencing one shared weights file in
    the same folder (external data); one session per file, created on first use, on the compute unit's execution
    provider."""

    name = "onnxruntime"

    def __init__(self, path, threads: int = 1, unit: str | None = None):
        import onnxruntime

        super().__init__(path, threads, unit)
        self.ort = onnxruntime

    @property
    def folder(self) -> Path:
        return self.path.parent if self.path.suffix == ".onnx" else self.path

    @staticmethod
    def versions() -> dict[str, str]:
        import onnxruntime

        return {"onnxruntime": onnxruntime.__version__}

    def entries(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*.onnx"))

    def session(self, name: str, exact: bool = True):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: graph optimisation warns about every unused initializer
        # x86 CPUs without VNNI run int8 convs as U8S8 with VPMADDUBSW, whose int16 pair sums saturate (255 · 127 · 2
        # > 32767): ONNX Runtime's own switch to exact U8U8 kernels (onnxruntime_session_options_config_keys.h,
        # kOrtSessionOptionsAvx2PrecisionMode; no effect with VNNI or on ARM, where the int8 graph is exact anyway)
        if exact:
            options.add_session_config_entry("session.x64quantprecision", "1")
        return self.ort.InferenceSession(str(self.folder / name), options, providers=[self.unit])

    def _load(self, entry: Entry) -> Callable:
        sessions, output = [self.session(entry.name)], entry.output_name

        def run(inputs):
            try:
                return sessions[-1].run([output], inputs)[0]
            except Exception as e:
                # With the exact kernels ONNX Runtime rewrites an unfused per-channel DequantizeLinear without zero
                # point to u8 with a scalar zero point, then refuses it (quantize_linear.cc, PrepareForQDQ): run
                # that graph with the default kernels instead and say so; the parity check judges what ran.
                if len(sessions) > 1 or "x_zero_point must be null or 1D" not in str(e):
                    raise
                warnings.warn(f"{self.folder / entry.name}: ONNX Runtime's exact int8 kernels (session."
                              "x64quantprecision) cannot run this graph; it runs with the default kernels, which on "
                              "x86 CPUs without VNNI can saturate (parity measures the result)", stacklevel=2)
                sessions.append(self.session(entry.name, exact=False))
                return sessions[-1].run([output], inputs)[0]
        return run


# --------------------------------------------------------------------------------------------------- Core ML


class CoreMLRuntime(Runtime):
    """A multifunction `.mlpackage` in Core ML (macOS only): one `MLModel` per function at one compute unit."""

    name = "coreml"

    def __init__(self, path, threads: int = 1, unit: str | None = None):
        super().__init__(path, threads, unit)
        if not ON_MACOS:
            raise RuntimeError(f"Core ML runs only on macOS (this host is {sys.platform})")
        import coremltools

        self.ct = coremltools

    @classmethod
    def default_unit(cls) -> str:
        return "ALL"

    @staticmethod
    def set_threads(threads: int) -> int:
        return 0  # Core ML schedules its own threads

    @staticmethod
    def versions() -> dict[str, str]:
        return {"coremltools": importlib.metadata.version("coremltools"), "macos": platform.mac_ver()[0]}

    def entries(self) -> list[str]:
        spec = self.ct.utils.load_spec(str(self.path))
        return sorted(f.name for f in spec.description.functions) or ["main"]

    def _load(self, entry: Entry) -> Callable:
        model = self.ct.models.MLModel(str(self.path), function_name=entry.name,
                                       compute_units=self.ct.ComputeUnit[self.unit])
        output = entry.output_name
        return lambda inputs: model.predict(inputs)[output]


# ------------------------------------------------------------------------------------------------- registry

RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (ExecuTorchRuntime, LiteRTRuntime, OnnxRuntime,
                                                          CoreMLRuntime)}
assert set(RUNTIMES) == set(RUNTIME_BACKENDS), "every runtime of the LUT needs an adapter"
HOST_RUNTIMES = ("executorch", "tflite", "onnxruntime") + (("coreml",) if ON_MACOS else ())


def runtime_class(name: str) -> type[Runtime]:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; expected one of: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def open_runtime(runtime: str, path: str | Path, threads: int = 1, unit: str | None = None) -> Runtime:
    """Open the artifact at `path` (its main file) in `runtime` (see `RUNTIMES`)."""
    return runtime_class(runtime)(path, threads, unit)


def runtime_for(backend: Backend | str) -> str:
    """The runtime that runs a backend's artifacts."""
    return BACKEND_RUNTIMES[Backend(backend)]


def host_units(runtime: str) -> Sequence[str]:
    """The compute units an artifact of `runtime` can be timed at on this machine (its CPU; Core ML's four on
    macOS)."""
    units = COMPUTE_UNITS[RUNTIME_BACKENDS[runtime]]
    return units if runtime == "coreml" else units[:1]

"""The bundle schema — `manifest.json`, `lut.json` and a phone's `device_profile.json` — defined once, here, as dataclasses.

Pure Python (no torch), so the selector and apps' tooling can import it. Every document carries `kind` and
`schema_version` ("MAJOR.MINOR"); a reader refuses an unknown major version. `from_json` validates every
field and names the file, the field path and what was expected; `to_json` validates before writing.
`json_schema(cls)` derives a JSON Schema (committed under `mobile/bundle/jsonschema/`, checked by a test).

Ranges live in one place, `RULES` below: `from_dict` enforces them and `json_schema` writes them into the JSON
Schema. Beyond `RULES`, every float must be finite and every integer within ±(2^53 − 1) (exact in a double, so the
Kotlin/Swift readers agree), and `schema_version` must match `1.MINOR` (^1\\.\\d+$). Every error a reader raises for a bad
document is a `SchemaError` (a `ValueError`), naming the file and the field path.

An **operating point** is what the runtime selector chooses among: resolution × backend × precision ×
compute unit × (Resizable Networks) a stage-scale configuration — `stage_scales`, one factor per stage, null or
absent for every other method; entries, parity rows and points carry it. Keys are structured fields, never
formatted strings.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import stat
import types
import typing
from pathlib import Path, PurePosixPath
from typing import Any, Union

SCHEMA_VERSION = "1.0"


class SchemaError(ValueError):
    """A bundle document that does not follow the schema."""


class Backend(str, enum.Enum):
    EXECUTORCH = "executorch"
    COREML = "coreml"
    TFLITE = "tflite"
    ONNX = "onnx"


class Precision(str, enum.Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"  # weights int8 (and activations, where the backend's int8 is static/full-integer)
    DYNAMIC_INT8 = "dynamic_int8"
    INT4 = "int4"  # weights int4 per output channel, weight-only (Core ML iOS 18; no other runtime runs 4-bit convs)


class Sharing(str, enum.Enum):
    """`resflex convert --sharing`: what an artifact's fp32 graphs trade (int8 is the same in every mode)."""

    SIZE = "size"  # weights stored once; per-resolution BN as an extra per-channel op where the format needs one
    SPEED = "speed"  # BN folded per resolution where the shared graph runs slower than the folded one
    AUTO = "auto"  # per layer: BN folded where that saves the most time per byte, within `convert --size-budget`


DEFAULT_SIZE_BUDGET = 1.05  # `convert --sharing auto --size-budget`: an fp32 artifact's size ÷ its floor


class Layout(str, enum.Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


# Where an artifact of each backend can run; chosen when the app loads it, so each is an operating point.
COMPUTE_UNITS: dict[Backend, tuple[str, ...]] = {
    Backend.EXECUTORCH: ("XNNPACK",),
    Backend.COREML: ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"),
    Backend.TFLITE: ("CPU", "GPU", "NNAPI"),
    Backend.ONNX: ("CPUExecutionProvider",),
}
# The runtime that runs each backend's artifacts (the name `Latency.runtime` and `SwitchCost.runtime` carry).
RUNTIME_BACKENDS: dict[str, Backend] = {"executorch": Backend.EXECUTORCH, "tflite": Backend.TFLITE,
                                        "onnxruntime": Backend.ONNX, "coreml": Backend.COREML}
BACKEND_RUNTIMES: dict[Backend, str] = {backend: runtime for runtime, backend in RUNTIME_BACKENDS.items()}


RESERVED_FILES = ("manifest.json", "lut.json", "selector_policy.json")
MAX_INT = 2**53 - 1  # JSON integers every reader (Python, Kotlin Long, Swift Int, a double) holds exactly
SHA256 = r"^[0-9a-f]{64}$"
NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"  # an entry: method / function / signature / file name in its folder
VERSION_PATTERN = rf"^{SCHEMA_VERSION.split('.')[0]}\.\d+$"


def safe_relpath(path: str, where: str = "path") -> str:
    """A bundle-internal path: relative, POSIX, canonical (no '.', '..', empty parts or trailing '/'), no control
    characters — anything else is refused."""
    p = PurePosixPath(path) if isinstance(path, str) else None
    if p is None or not path or "\\" in path or p.is_absolute() or ".." in p.parts or path.startswith("~") or \
            str(p) != path or any(ord(c) < 32 or c == "\x7f" for c in path):
        raise SchemaError(f"{where}: {path!r} is not a safe relative path inside the bundle (no absolute paths, "
                          "no '..' or '.', POSIX separators, no control characters)")
    return path


# --------------------------------------------------------------------------- manifest


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    arch: str
    method: str
    width: float
    num_classes: int
    train_resolutions: list[int]
    class_names: list[str]
    checkpoint_sha256: str


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How an app turns a camera frame into the input of one resolution."""

    resolution: int
    resize_shorter_to: int  # then center-crop resolution × resolution
    crop: int
    mean: list[float]
    std: list[float]
    interpolation: str = "bilinear_antialias"  # the exact algorithm: tests/golden/README.md, mobile/preprocess.py
    value_range: str = "RGB in [0, 1] before mean/std"


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    """One resolution (and stage-scale configuration) inside an artifact: ExecuTorch method, Core ML function,
    TFLite signature or file."""

    resolution: int
    name: str
    input_name: str
    output_name: str
    input_shape: list[int]
    stage_scales: list[float] | None = None  # Resizable Networks: one factor per stage; null otherwise


@dataclasses.dataclass(frozen=True)
class FileRef:
    file: str
    sha256: str
    bytes: int


class Evaluator(str, enum.Enum):
    """What computed an artifact's parity outputs."""

    RUNTIME = "runtime"  # the backend's own runtime on the host (ExecuTorch, LiteRT, ONNX Runtime, Core ML on macOS)
    MIL_REFERENCE = "mil_reference"  # Core ML off macOS: resflex's evaluator of the saved ML program (torch, fp16
    #                                  casts and quantized weights honoured; not the Core ML runtime)


@dataclasses.dataclass(frozen=True)
class Parity:
    """The artifact's outputs vs the baked torch module (int4: with its weights on the int4 grid, so that parity
    checks the conversion and top1_artifact shows the 4-bit loss), on `samples` validation images."""

    resolution: int
    samples: int
    max_rel_error: float  # max |artifact − torch| / max |torch logits|
    top1_agreement: float
    top1_artifact: float
    top1_torch: float
    passed: bool  # fp32: max_rel_error ≤ 1e-4; quantized: agreement ≥ 0.99 and accuracy drop ≤ 1 point
    stage_scales: list[float] | None = None  # the entry's stage-scale configuration (Resizable Networks)
    evaluator: Evaluator | None = None  # absent: the runtime (manifests before this field)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How an int8 artifact's activation ranges were calibrated (absent: float, or int8 with weights only)."""

    method: str  # the backend quantizer's observer: histogram | minmax | moving_average | percentile | entropy | …
    samples: int  # calibration images used at each resolution (each resolution is calibrated on its own images)
    # `convert --calib-from`: "qat" = the ranges `train --qat` learned at the points they cover (counted below, summed
    # over entries; the other points from the images), "images" = every point from the images
    source: str = "images"
    points_from_qat: int | None = None
    points_from_images: int | None = None


@dataclasses.dataclass(frozen=True)
class ArtifactInfo:
    backend: Backend
    precision: Precision
    file: str
    sha256: str
    bytes: int  # all files of the artifact
    layout: Layout
    entries: list[EntryInfo]
    runs_on_host: bool
    extra_files: list[FileRef] = dataclasses.field(default_factory=list)  # e.g. ONNX's other resolutions
    parity: list[Parity] = dataclasses.field(default_factory=list)  # empty where it cannot run on the host
    notes: str = ""
    convert_seconds: float | None = None  # export (bake, convert, quantize) time on the converting machine
    calibration: Calibration | None = None  # int8 activation calibration (manifests before it: not recorded)
    sharing: Sharing | None = None  # `convert --sharing` (manifests before it: size)
    # fp32 sharing plan: the convs (module names) whose BN is folded per resolution; the others store their weights
    # once (None: not recorded — every conv folded, or no plan applies to this backend / precision)
    folded_layers: list[str] | None = None
    # the compute units the LUT offers its entries on, each one of COMPUTE_UNITS[backend] (None: all of them —
    # manifests before it); TFLite int8's CPU-only artifact (bias scales only the CPU kernels ignore): ["CPU"]
    compute_units: list[str] | None = None


@dataclasses.dataclass(frozen=True)
class Failure:
    backend: str
    precision: str
    error: str


@dataclasses.dataclass(frozen=True)
class UnseenBN:
    """Where the BN of resolutions the checkpoint was not trained at came from (`convert --bn`)."""

    mode: str  # auto | nearest | interpolate | recalibrate | upper (resflex.mobile.layers.BNMode)
    resolutions: list[int]  # the served resolutions it applies to
    # recalibrate: calibration images per resolution its statistics were computed on; auto: the training images
    # `train` recalibrated on, when the checkpoint had statistics for any of these resolutions (others interpolate)
    samples: int | None = None


@dataclasses.dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    resolutions: list[int]
    inputs: list[InputSpec]
    artifacts: list[ArtifactInfo]
    failures: list[Failure] = dataclasses.field(default_factory=list)
    created_with: dict[str, str] = dataclasses.field(default_factory=dict)
    unseen_bn: UnseenBN | None = None  # None: every resolution was trained (or a manifest before it)
    kind: str = "resflex.manifest"
    schema_version: str = SCHEMA_VERSION


# --------------------------------------------------------------------------- lookup table


@dataclasses.dataclass(frozen=True)
class Latency:
    """One latency measurement of one operating point on one device (filled by profiling)."""

    runtime: str  # executorch | tflite | onnxruntime | coreml (the runtime that ran the artifact)
    threads: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    peak_memory_mb: float | None = None
    gflops: float | None = None  # achieved: 2 · MACs / p50
    energy_mj: float | None = None  # per inference, where the device could measure or estimate it


@dataclasses.dataclass(frozen=True)
class DataIdentity:
    dataset: str
    split: str
    samples: int


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    resolution: int
    backend: Backend
    precision: Precision
    compute_unit: str
    artifact: str  # the artifact's (main) file, relative to the bundle
    entry: str  # method / function / signature / file serving this resolution
    macs: int
    params: int
    artifact_bytes: int  # the whole artifact (all its files); shared weights are stored once in it
    artifact_resolutions: int  # how many resolutions that artifact serves (amortised: bytes / this)
    top1: float | None = None  # measured on the artifact in its runtime; None where it cannot run here
    top1_data: DataIdentity | None = None
    latency: dict[str, list[Latency]] = dataclasses.field(default_factory=dict)  # device id → one per runtime × threads
    stage_scales: list[float] | None = None  # Resizable Networks: one factor per stage; null otherwise

    def key(self) -> tuple:
        return (self.resolution, self.backend.value, self.precision.value, self.compute_unit,
                tuple(self.stage_scales or ()))


@dataclasses.dataclass(frozen=True)
class SwitchCost:
    """What it costs on one device to serve another resolution (profiling, host)."""

    runtime: str
    precision: Precision
    switch_loaded_ms: float  # run another method/signature of the already loaded bundle artifact (median)
    switch_first_ms: float  # the same, loading that method on first use
    load_file_ms: float  # load a separate single-resolution model file and run it once (one-model-per-resolution)
    steady_ms: float | None = None  # B run again right after itself (no switch): the inference all three include

    def overheads(self) -> tuple[float, float, float] | None:
        """(switch overhead ms, load overhead ms, load ÷ switch) beyond the inference itself; the switch overhead is
        floored at 1 µs (it is often within timing noise of 0). None without `steady_ms`."""
        if self.steady_ms is None:
            return None
        switch, load = max(self.switch_loaded_ms - self.steady_ms, 1e-3), self.load_file_ms - self.steady_ms
        return switch, load, load / switch


@dataclasses.dataclass(frozen=True)
class LatencyModel:
    """latency_ms ≈ intercept_ms + ms_per_gmac · MACs/1e9, fitted per device × runtime × precision × unit × threads."""

    runtime: str
    precision: Precision
    compute_unit: str
    threads: int
    intercept_ms: float
    ms_per_gmac: float
    mean_abs_rel_error: float  # of the fit over the measured resolutions (leave-one-out where ≥ 3 points)
    points: int


@dataclasses.dataclass(frozen=True)
class Device:
    """A device profiled into the LUT: facts (CPU model, cores, OS, phone model, SoC, runtime versions) and
    the per-device measurements that are not per operating point."""

    facts: dict[str, str] = dataclasses.field(default_factory=dict)
    gemm_peak_gflops: float | None = None  # fp32 large-matmul peak, measured once per device entry
    switch_costs: list[SwitchCost] = dataclasses.field(default_factory=list)
    latency_models: list[LatencyModel] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class LUT:
    operating_points: list[OperatingPoint]
    devices: dict[str, Device] = dataclasses.field(default_factory=dict)  # device id → device
    kind: str = "resflex.lut"
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self):
        seen = set()
        for i, op in enumerate(self.operating_points):
            if op.key() in seen:
                raise SchemaError(f"operating_points[{i}]: duplicate operating point {op.key()}")
            seen.add(op.key())
            for device in op.latency:
                if device not in self.devices:
                    raise SchemaError(f"operating_points[{i}].latency: device {device!r} is not in devices")


# --------------------------------------------------------------------------- a phone's own measurements


DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# What one device profile may add to a lut.json (`resflex profile --import`): a phone writes ~20 facts and one
# measurement per operating point × runtime × threads; lut.json as a whole stays under MAX_DOCUMENT_BYTES.
MAX_PROFILE_FACTS = 256
MAX_FACT_CHARS = 1024  # each fact's name and value
MAX_PROFILE_MEASUREMENTS = 20_000


def check_device_id(value: str, where: str = "device_id") -> str:
    """The one rule for a device id (the key of a device in lut.json) on every path: `profile --device-id`, the id
    an adb profile derives, `profile --import`."""
    if not isinstance(value, str) or not DEVICE_ID.match(value):
        raise SchemaError(f"{where}: {_short(value)} is not a device id ([a-z0-9._-], at most 128 characters, "
                          "starting with a letter or digit; e.g. pixel-8)")
    return value


def _finite_positive(value: float | None, where: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise SchemaError(f"{where}: expected a finite number > 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One operating point timed on the phone by the demo app's BenchmarkRunner."""

    resolution: int
    backend: Backend
    precision: Precision
    compute_unit: str
    entry: str
    latency: Latency
    stage_scales: list[float] | None = None
    energy_estimated: bool = False  # energy_mj from battery current × voltage over the run, not a power rail

    key = OperatingPoint.key  # the same fields name the same operating point

    def __post_init__(self):
        # Stricter than a LUT latency (RULES: ≥ 0): a phone that cannot measure these writes null, never 0.
        for name in ("energy_mj", "peak_memory_mb", "gflops"):
            _finite_positive(getattr(self.latency, name), f"latency.{name}")


@dataclasses.dataclass(frozen=True)
class MeasurementFailure:
    """An operating point the phone could not run (e.g. no GPU delegate), with the app's error text."""

    resolution: int
    backend: Backend
    precision: Precision
    compute_unit: str
    entry: str
    error: str
    stage_scales: list[float] | None = None


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """`device_profile.json`: what the Android/iOS demo app's benchmark measured on one phone for one bundle;
    `resflex profile BUNDLE --import FILE` merges it into the bundle's lut.json under `device_id`."""

    device_id: str
    facts: dict[str, str]
    checkpoint_sha256: str  # manifest.json model.checkpoint_sha256 of the bundle that was measured
    measurements: list[Measurement]
    failures: list[MeasurementFailure] = dataclasses.field(default_factory=list)
    kind: str = "resflex.device_profile"
    schema_version: str = SCHEMA_VERSION

    def __post_init__(self):
        check_device_id(self.device_id)
        if len(self.facts) > MAX_PROFILE_FACTS:
            raise SchemaError(f"facts: {len(self.facts)} entries, over the limit of {MAX_PROFILE_FACTS} "
                              "(MAX_PROFILE_FACTS)")
        for k, v in self.facts.items():
            if len(k) > MAX_FACT_CHARS or len(v) > MAX_FACT_CHARS:
                raise SchemaError(f"facts.{_short(k, 40)}: name or value over {MAX_FACT_CHARS} characters "
                                  "(MAX_FACT_CHARS)")
        if len(self.measurements) > MAX_PROFILE_MEASUREMENTS:
            raise SchemaError(f"measurements: {len(self.measurements)}, over the limit of {MAX_PROFILE_MEASUREMENTS} "
                              "(MAX_PROFILE_MEASUREMENTS)")
        seen = set()
        for i, m in enumerate(self.measurements):
            key = (m.key(), m.latency.runtime, m.latency.threads)
            if key in seen:
                raise SchemaError(f"measurements[{i}]: duplicate measurement {key}")
            seen.add(key)


# --------------------------------------------------------------------------- ranges (the one place)


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field's value (each item, for a list) must satisfy beyond its type; `json_schema` writes the same."""

    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    unique: bool = False  # a list without repeated items
    path: bool = False  # a safe relative path inside the bundle (`safe_relpath`)


_POS, _NONNEG, _FRACTION = Rule(exclusive_minimum=0), Rule(minimum=0), Rule(minimum=0, maximum=1)
_COUNT, _SHA, _NAME = Rule(minimum=1), Rule(pattern=SHA256), Rule(pattern=NAME)
_RES = Rule(minimum=1, maximum=65536)
_SCALE = Rule(exclusive_minimum=0, maximum=1)  # a stage scale factor, in (0, 1]
_THREADS = Rule(minimum=0, maximum=4096)  # 0: the runtime's own choice (Core ML)
_LATENCY = {"threads": _THREADS, "runs": _COUNT, "p50_ms": _POS, "p90_ms": _POS, "p99_ms": _POS,
            "peak_memory_mb": _NONNEG, "gflops": _NONNEG, "energy_mj": _NONNEG}
RULES: dict[str, dict[str, Rule]] = {
    "ModelInfo": {"width": _POS, "num_classes": _COUNT, "train_resolutions": Rule(minimum=1, maximum=65536, unique=True),
                  "checkpoint_sha256": _SHA},
    "InputSpec": {"resolution": _RES, "resize_shorter_to": _RES, "crop": _RES, "std": _POS},
    "EntryInfo": {"resolution": _RES, "name": _NAME, "input_shape": _COUNT, "stage_scales": _SCALE},
    "FileRef": {"file": Rule(path=True), "sha256": _SHA, "bytes": _NONNEG},
    "Parity": {"resolution": _RES, "samples": _COUNT, "max_rel_error": _NONNEG, "top1_agreement": _FRACTION,
               "top1_artifact": _FRACTION, "top1_torch": _FRACTION, "stage_scales": _SCALE},
    "Calibration": {"method": Rule(pattern=r"^[a-z0-9_]{1,32}$"), "samples": _COUNT,
                    "source": Rule(pattern=r"^(qat|images)$"), "points_from_qat": _NONNEG,
                    "points_from_images": _NONNEG},
    "ArtifactInfo": {"file": Rule(path=True), "sha256": _SHA, "bytes": _NONNEG, "convert_seconds": _NONNEG,
                     "folded_layers": Rule(unique=True)},
    "UnseenBN": {"mode": Rule(pattern=r"^(auto|nearest|interpolate|recalibrate|upper)$"),
                 "resolutions": Rule(minimum=1, maximum=65536, unique=True), "samples": _COUNT},
    "Manifest": {"resolutions": Rule(minimum=1, maximum=65536, unique=True)},
    "Latency": _LATENCY,
    "DataIdentity": {"samples": _COUNT},
    "OperatingPoint": {"resolution": _RES, "artifact": Rule(path=True), "entry": _NAME, "macs": _COUNT,
                       "params": _COUNT, "artifact_bytes": _NONNEG, "artifact_resolutions": _COUNT,
                       "top1": _FRACTION, "stage_scales": _SCALE},
    "SwitchCost": {"switch_loaded_ms": _NONNEG, "switch_first_ms": _NONNEG, "load_file_ms": _NONNEG,
                   "steady_ms": _NONNEG},
    "LatencyModel": {"threads": _THREADS, "mean_abs_rel_error": _NONNEG, "points": _COUNT},
    "Device": {"gemm_peak_gflops": _POS},
    "Measurement": {"resolution": _RES, "entry": _NAME, "stage_scales": _SCALE},
    "MeasurementFailure": {"resolution": _RES, "entry": _NAME, "stage_scales": _SCALE},
    "DeviceProfile": {"checkpoint_sha256": _SHA},
}


def _apply_rule(rule: Rule, value: Any, where: str) -> None:
    if value is None:
        return
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        at = f"{where}[{i}]" if isinstance(value, list) else where
        if rule.path:
            safe_relpath(v, at)
        if rule.pattern is not None and not re.fullmatch(rule.pattern, v, re.ASCII):
            raise SchemaError(f"{at}: {v!r} does not match {rule.pattern}")
        if (rule.minimum is not None and v < rule.minimum) or (rule.maximum is not None and v > rule.maximum) or \
                (rule.exclusive_minimum is not None and v <= rule.exclusive_minimum):
            lo = f"> {rule.exclusive_minimum}" if rule.exclusive_minimum is not None else \
                f"≥ {rule.minimum}" if rule.minimum is not None else ""
            hi = f"≤ {rule.maximum}" if rule.maximum is not None else ""
            raise SchemaError(f"{at}: {v!r} is out of range (expected {' and '.join(x for x in (lo, hi) if x)})")
    if rule.unique and isinstance(value, list) and len(set(value)) != len(value):
        dup = sorted({v for v in value if value.count(v) > 1})
        raise SchemaError(f"{where}: repeated value(s) {dup}; each may appear once")


# --------------------------------------------------------------------------- (de)serialisation


def _check(value: Any, tp: Any, where: str) -> Any:
    """Validate `value` against type hint `tp` and build dataclasses/enums; errors name the field path."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise SchemaError(f"{where}: expected a value, got null")
        return _check(value, next(o for o in options if o is not type(None)), where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise SchemaError(f"{where}: unknown field(s) {unknown}")
        kwargs = {}
        rules = RULES.get(tp.__name__, {})
        for name, f in fields.items():
            if name in value:
                kwargs[name] = _check(value[name], hints[name], f"{where}.{name}")
                if name in rules:
                    _apply_rule(rules[name], kwargs[name], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{where}: missing field {name!r}")
        try:
            return tp(**kwargs)
        except (SchemaError, ValueError, TypeError, ArithmeticError) as e:  # __post_init__ checks
            raise SchemaError(f"{where}: {e}") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            raise SchemaError(f"{where}: expected one of {', '.join(m.value for m in tp)}, got {_short(value)}") \
                from None
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, got {type(value).__name__}")
        _, item = typing.get_args(tp)
        return {str(k): _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, int) and abs(value) > MAX_INT) or not math.isfinite(value):
            raise SchemaError(f"{where}: expected a finite number, got {_short(value)}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SchemaError(f"{where}: expected {tp.__name__}, got {_short(value)}")
        if tp is int and abs(value) > MAX_INT:
            raise SchemaError(f"{where}: {_short(value)} is out of range (integers are at most 2^53 − 1)")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {where}")


def _short(value: Any, limit: int = 80) -> str:
    """repr of a value, cut to `limit` characters (an error message never echoes a huge document)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**60:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        return f"a {type(value).__name__}"
    return text if len(text) <= limit else text[:limit] + "…"


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type, data: Any, source: str = "document"):
    """Validate and build `cls` (Manifest, LUT or DeviceProfile) from parsed JSON: types, `RULES`, and the checks
    across fields (`_check_document`); refuses unknown major versions. Raises only `SchemaError`."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: expected a JSON object at the top level")
    kind = cls.__dataclass_fields__["kind"].default
    if data.get("kind") != kind:
        raise SchemaError(f"{source}: kind is {_short(data.get('kind'))}, expected {kind!r}")
    version = data.get("schema_version")
    if not isinstance(version, str) or not re.fullmatch(VERSION_PATTERN, version, re.ASCII):
        raise SchemaError(f"{source}: schema_version {_short(version)} is not supported by this reader (expected "
                          f"\"{SCHEMA_VERSION.split('.')[0]}.MINOR\"); upgrade resflex to read it")
    doc = _check(data, cls, source)
    _check_document(doc, source)
    return doc


def entry_file(artifact: ArtifactInfo, name: str) -> str | None:
    """The bundle-relative file an entry names, for backends whose entries are files (ONNX: one file per
    resolution, beside the artifact's main file); None where entries are methods/functions/signatures."""
    if artifact.backend not in ENTRY_IS_FILE:
        return None
    folder = PurePosixPath(artifact.file).parent
    return (folder / name).as_posix()


ENTRY_IS_FILE = frozenset({Backend.ONNX})


def _unique(items, what: str, where: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item in seen:
            raise SchemaError(f"{where}[{i}]: duplicate {what} {item!r}")
        seen.add(item)


def _check_percentiles(lat: Latency, where: str) -> None:
    if not lat.p50_ms <= lat.p90_ms <= lat.p99_ms:
        raise SchemaError(f"{where}: expected p50 ≤ p90 ≤ p99, got {lat.p50_ms}, {lat.p90_ms}, {lat.p99_ms}")


def _check_document(doc: Any, source: str) -> None:
    """Checks across fields: unique files, entries and points; every file an entry names is listed with a sha256."""
    if isinstance(doc, Manifest):
        _unique([i.resolution for i in doc.inputs], "input resolution", f"{source}: inputs")
        if doc.unseen_bn is not None:
            odd = [r for r in doc.unseen_bn.resolutions if r in doc.model.train_resolutions or r not in doc.resolutions]
            if odd or not doc.unseen_bn.resolutions:
                raise SchemaError(f"{source}: unseen_bn.resolutions: {_short(odd or [])} — expected resolutions the "
                                  "bundle serves and the model was not trained at")
        files = [f for a in doc.artifacts for f in (a.file, *(x.file for x in a.extra_files))]
        _unique(files, "artifact file", f"{source}: artifact files")
        for i, a in enumerate(doc.artifacts):
            where = f"{source}: artifacts[{i}]"
            for f in (a.file, *(x.file for x in a.extra_files)):
                if f in RESERVED_FILES:
                    raise SchemaError(f"{where}: {f!r} is reserved for the bundle's own documents")
            if not a.entries:
                raise SchemaError(f"{where}.entries: an artifact serves at least one resolution")
            _unique([e.name for e in a.entries], "entry name", f"{where}.entries")
            _unique([(e.resolution, *(e.stage_scales or ())) for e in a.entries],
                    "entry (resolution, stage scales)", f"{where}.entries")
            if a.compute_units is not None:
                allowed = COMPUTE_UNITS[a.backend]
                bad = [u for u in a.compute_units if u not in allowed]
                if bad or not a.compute_units:
                    raise SchemaError(f"{where}.compute_units: {_short(bad or a.compute_units)} — expected a non-empty "
                                      f"list of {a.backend.value} compute units: {', '.join(allowed)}")
                _unique(a.compute_units, "compute unit", f"{where}.compute_units")
            own = {a.file, *(x.file for x in a.extra_files)}
            for j, e in enumerate(a.entries):
                path = entry_file(a, e.name)
                if path is not None and path not in own:
                    raise SchemaError(f"{where}.entries[{j}].name: {e.name!r} names the file {path!r}, which is not "
                                      f"this artifact's file or one of its extra_files (each listed with a sha256)")
    elif isinstance(doc, DeviceProfile):
        for i, m in enumerate(doc.measurements):
            _check_percentiles(m.latency, f"{source}: measurements[{i}].latency")
    elif isinstance(doc, LUT):
        for i, op in enumerate(doc.operating_points):
            for device, lats in op.latency.items():
                where = f"{source}: operating_points[{i}].latency.{device}"
                _unique([(x.runtime, x.threads) for x in lats], "(runtime, threads)", where)
                for j, x in enumerate(lats):
                    _check_percentiles(x, f"{where}[{j}]")
        for name, device in doc.devices.items():
            where = f"{source}: devices.{name}"
            _unique([(s.runtime, s.precision.value) for s in device.switch_costs], "(runtime, precision)",
                    f"{where}.switch_costs")
            _unique([(m.runtime, m.precision.value, m.compute_unit, m.threads) for m in device.latency_models],
                    "(runtime, precision, compute unit, threads)", f"{where}.latency_models")


def validate(doc) -> None:
    """Check a document built in code exactly as a reader would check it (SchemaError names the field)."""
    from_dict(type(doc), _to_plain(doc), f"{type(doc).__name__}")


def to_dict(doc) -> dict:
    """Plain JSON-ready dict; validated by a round trip."""
    plain = _to_plain(doc)
    from_dict(type(doc), plain, f"{type(doc).__name__} being written")
    return plain


MAX_DOCUMENT_BYTES = 64 * 2**20  # a lut.json of a very large bundle is < 10 MB


def document_bytes(doc, where: str) -> bytes:
    """`doc` validated and serialized as pretty JSON; a document over MAX_DOCUMENT_BYTES, which every reader would
    refuse, raises SchemaError naming `where` and the limit."""
    data = (json.dumps(to_dict(doc), indent=2, sort_keys=False, allow_nan=False) + "\n").encode()
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SchemaError(f"{where}: would be {len(data)} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit every "
                          "reader enforces (MAX_DOCUMENT_BYTES); nothing was written")
    return data


def write_json(doc, path: str | Path) -> Path:
    """Validate, then write `doc` as pretty JSON (callers write into a temporary bundle directory); refused before
    writing if it is over MAX_DOCUMENT_BYTES."""
    path = Path(path)
    path.write_bytes(document_bytes(doc, str(path)))
    return path


MAX_JSON_DEPTH = 64  # nested arrays/objects in any document every reader accepts (real ones nest < 10)


def _no_constant(name: str):
    raise SchemaError(f"{name} is not JSON (write null or a finite number)")


def read_json_data(path: str | Path, what: str = "file") -> Any:
    """The parsed JSON of a file. A missing file raises FileNotFoundError; a folder, something that is not a regular
    file, a file over 64 MB, bad JSON, bare NaN/Infinity or nesting too deep raise SchemaError; all name the file."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except OSError as e:
        raise SchemaError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise SchemaError(f"{path}: is a folder; expected the {what} (a JSON file)")
    if not stat.S_ISREG(st.st_mode):
        raise SchemaError(f"{path}: is not a regular file; expected the {what} (a JSON file)")
    if st.st_size > MAX_DOCUMENT_BYTES:
        raise SchemaError(f"{path}: {st.st_size} bytes; a {what} is at most {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SchemaError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:
        raise SchemaError(f"{path}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except OSError as e:
        raise SchemaError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    _check_depth(data, str(path))
    return data


def _check_depth(data: Any, where: str) -> None:
    """SchemaError if arrays/objects nest deeper than MAX_JSON_DEPTH (checked without recursion)."""
    level, depth = [data] if isinstance(data, (dict, list)) else [], 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise SchemaError(f"{where}: JSON nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        level = [v for c in level for v in (c.values() if isinstance(c, dict) else c) if isinstance(v, (dict, list))]


def read_json(cls: type, path: str | Path):
    try:
        data = read_json_data(path)
    except FileNotFoundError as e:
        raise SchemaError(str(e)) from None
    return from_dict(cls, data, str(path))


# --------------------------------------------------------------------------- JSON Schema


def _rule_keywords(rule: Rule | None, tp: Any) -> dict:
    out: dict = {}
    if tp is int:
        out = {"minimum": -MAX_INT, "maximum": MAX_INT}
    if rule is None:
        return out
    if rule.minimum is not None:
        out["minimum"] = rule.minimum
    if rule.exclusive_minimum is not None:
        out.pop("minimum", None)
        out["exclusiveMinimum"] = rule.exclusive_minimum
    if rule.maximum is not None:
        out["maximum"] = rule.maximum
    if rule.pattern is not None:
        out["pattern"] = rule.pattern
    if rule.path:
        out["pattern"] = SAFE_PATH_PATTERN
    return out


# JSON Schema's approximation of `safe_relpath`: canonical POSIX parts, none '.', '..' or empty, no control characters.
SAFE_PATH_PATTERN = r"^(?!~)(?:(?!\.\.?/)[^/\\\x00-\x1f\x7f]+/)*(?!\.\.?$)[^/\\\x00-\x1f\x7f]+$"


def _schema(tp: Any, defs: dict, rule: Rule | None = None) -> dict:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = next(o for o in typing.get_args(tp) if o is not type(None))
        return {"anyOf": [_schema(inner, defs, rule), {"type": "null"}]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}
            hints = typing.get_type_hints(tp)
            fields = dataclasses.fields(tp)
            rules = RULES.get(name, {})
            defs[name] = {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: _schema(hints[f.name], defs, rules.get(f.name)) for f in fields},
                "required": [f.name for f in fields
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING],
            }
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if origin is list:
        out = {"type": "array", "items": _schema(typing.get_args(tp)[0], defs, rule)}
        return {**out, "uniqueItems": True} if rule is not None and rule.unique else out
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(typing.get_args(tp)[1], defs)}
    return {"type": {int: "integer", float: "number", str: "string", bool: "boolean"}[tp], **_rule_keywords(rule, tp)}


def json_schema(cls: type) -> dict:
    """JSON Schema (draft 2020-12) of a top-level document class."""
    defs: dict = {}
    ref = _schema(cls, defs)
    top = defs.pop(cls.__name__)
    top["properties"]["kind"] = {"const": cls.__dataclass_fields__["kind"].default}
    top["properties"]["schema_version"] = {"type": "string", "pattern": VERSION_PATTERN}
    assert ref == {"$ref": f"#/$defs/{cls.__name__}"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": cls.__name__, **top, "$defs": defs}


SCHEMA_DIR = Path(__file__).parent / "jsonschema"
DOCUMENTS = {"manifest": Manifest, "lut": LUT, "device_profile": DeviceProfile}


def write_schemas(folder: str | Path = SCHEMA_DIR) -> list[Path]:
    """Regenerate the committed JSON Schemas (`mobile/bundle/jsonschema/*.schema.json`) from the dataclasses."""
    paths = []
    for name, cls in DOCUMENTS.items():
        path = Path(folder) / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(cls), indent=2, allow_nan=False) + "\n")
        paths.append(path)
    return paths

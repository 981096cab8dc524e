"""The bundle schema — `manifest.json` and `lut.json` — defined once, here, as dataclasses.

Pure Python (no torch), so the selector and apps' tooling can import it. Every document carries `kind` and
`schema_version` ("MAJOR.MINOR"); a reader refuses an unknown major version. `from_json` validates every
field and names the file, the field path and what was expected; `to_json` validates before writing.
`json_schema(cls)` derives a JSON Schema (committed under `mobile/schema/`, checked by a test).

An **operating point** is what the runtime selector chooses among: resolution × backend × precision ×
compute unit (later also a stage-scale configuration for Resizable Networks). Keys are structured fields,
never formatted strings.
"""

from __future__ import annotations

import dataclasses
import enum
import json
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


def safe_relpath(path: str, where: str = "path") -> str:
    """A bundle-internal path: relative, POSIX, no '..' — anything else is refused."""
    p = PurePosixPath(path)
    if not path or "\\" in path or p.is_absolute() or ".." in p.parts or path.startswith("~"):
        raise SchemaError(f"{where}: {path!r} is not a safe relative path inside the bundle (no absolute paths, "
                          "no '..', POSIX separators)")
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
    interpolation: str = "bilinear"
    value_range: str = "RGB in [0, 1] before mean/std"


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    """One resolution inside an artifact: ExecuTorch method, Core ML function, TFLite signature or file."""

    resolution: int
    name: str
    input_name: str
    output_name: str
    input_shape: list[int]


@dataclasses.dataclass(frozen=True)
class FileRef:
    file: str
    sha256: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class Parity:
    """The artifact run in its own runtime vs the baked torch module, on `samples` validation images."""

    resolution: int
    samples: int
    max_rel_error: float  # max |artifact − torch| / max |torch logits|
    top1_agreement: float
    top1_artifact: float
    top1_torch: float
    passed: bool  # fp32: max_rel_error ≤ 1e-4; quantized: agreement ≥ 0.99 and accuracy drop ≤ 1 point


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


@dataclasses.dataclass(frozen=True)
class Failure:
    backend: str
    precision: str
    error: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    model: ModelInfo
    resolutions: list[int]
    inputs: list[InputSpec]
    artifacts: list[ArtifactInfo]
    failures: list[Failure] = dataclasses.field(default_factory=list)
    created_with: dict[str, str] = dataclasses.field(default_factory=dict)
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
    stage_scales: list[float] | None = None  # Resizable Networks (later)

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
        for name, f in fields.items():
            if name in value:
                kwargs[name] = _check(value[name], hints[name], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SchemaError(f"{where}: missing field {name!r}")
        try:
            return tp(**kwargs)
        except SchemaError as e:
            raise SchemaError(f"{where}: {e}") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise SchemaError(f"{where}: expected one of {', '.join(m.value for m in tp)}, got {value!r}") from None
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise SchemaError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported schema type {tp!r} at {where}")


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
    """Validate and build `cls` (Manifest or LUT) from parsed JSON; refuses unknown major versions."""
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: expected a JSON object at the top level")
    kind = cls.__dataclass_fields__["kind"].default
    if data.get("kind") != kind:
        raise SchemaError(f"{source}: kind is {data.get('kind')!r}, expected {kind!r}")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise SchemaError(f"{source}: schema_version {version!r} is not supported by this reader (major "
                          f"{SCHEMA_VERSION.split('.')[0]}); upgrade resflex to read it")
    doc = _check(data, cls, source)
    _check_paths(doc, source)
    return doc


def _check_paths(doc: Any, source: str) -> None:
    if isinstance(doc, Manifest):
        for i, a in enumerate(doc.artifacts):
            for f in (a.file, *(x.file for x in a.extra_files)):
                safe_relpath(f, f"{source}: artifacts[{i}].file")
    elif isinstance(doc, LUT):
        for i, op in enumerate(doc.operating_points):
            safe_relpath(op.artifact, f"{source}: operating_points[{i}].artifact")


def to_dict(doc) -> dict:
    """Plain JSON-ready dict; validated by a round trip."""
    plain = _to_plain(doc)
    from_dict(type(doc), plain, f"{type(doc).__name__} being written")
    return plain


def write_json(doc, path: str | Path) -> Path:
    """Validate, then write `doc` as pretty JSON (callers write into a temporary bundle directory)."""
    path = Path(path)
    path.write_text(json.dumps(to_dict(doc), indent=2, sort_keys=False) + "\n")
    return path


def read_json_data(path: str | Path, what: str = "file") -> Any:
    """The parsed JSON of a file; a missing file (FileNotFoundError) or bad JSON (SchemaError) names the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SchemaError(f"{path}: not valid JSON: {e}") from None


def read_json(cls: type, path: str | Path):
    try:
        data = read_json_data(path)
    except FileNotFoundError as e:
        raise SchemaError(str(e)) from None
    return from_dict(cls, data, str(path))


# --------------------------------------------------------------------------- JSON Schema


def _schema(tp: Any, defs: dict) -> dict:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = next(o for o in typing.get_args(tp) if o is not type(None))
        return {"anyOf": [_schema(inner, defs), {"type": "null"}]}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}
            hints = typing.get_type_hints(tp)
            fields = dataclasses.fields(tp)
            defs[name] = {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: _schema(hints[f.name], defs) for f in fields},
                "required": [f.name for f in fields
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING],
            }
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if origin is list:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(typing.get_args(tp)[1], defs)}
    return {"type": {int: "integer", float: "number", str: "string", bool: "boolean"}[tp]}


def json_schema(cls: type) -> dict:
    """JSON Schema (draft 2020-12) of a top-level document class."""
    defs: dict = {}
    ref = _schema(cls, defs)
    top = defs.pop(cls.__name__)
    top["properties"]["kind"] = {"const": cls.__dataclass_fields__["kind"].default}
    top["properties"]["schema_version"] = {"type": "string", "pattern": rf"^{SCHEMA_VERSION.split('.')[0]}\.\d+$"}
    assert ref == {"$ref": f"#/$defs/{cls.__name__}"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": cls.__name__, **top, "$defs": defs}


SCHEMA_DIR = Path(__file__).parent / "schema"
DOCUMENTS = {"manifest": Manifest, "lut": LUT}


def write_schemas(folder: str | Path = SCHEMA_DIR) -> list[Path]:
    """Regenerate the committed JSON Schemas (`mobile/schema/*.schema.json`) from the dataclasses."""
    paths = []
    for name, cls in DOCUMENTS.items():
        path = Path(folder) / f"{name}.schema.json"
        path.write_text(json.dumps(json_schema(cls), indent=2) + "\n")
        paths.append(path)
    return paths

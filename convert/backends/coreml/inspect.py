"""What a Core ML package contains, read from its spec without running it (Core ML cannot run on Linux, so this
is how an exported package is checked there)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from resflex.mobile.bundle.io import size_of

from ...runtimes import Spatial
from .common import INPUT_NAME, coremltools, function_name

_MIL_DTYPES = {"FLOAT16": "fp16", "FLOAT32": "fp32", "FLOAT64": "fp64", "BFLOAT16": "bf16", "BOOL": "bool",
               "STRING": "string"}
_ARRAY_DTYPES = {"FLOAT16": "fp16", "FLOAT32": "fp32", "DOUBLE": "fp64", "INT32": "int32", "INT8": "int8"}


def _mil_dtype(code: int) -> str:
    from coremltools.proto import MIL_pb2

    name = MIL_pb2.DataType.Name(code)
    return _MIL_DTYPES.get(name, name.lower())


def _feature(feature) -> dict:
    from coremltools.proto import FeatureTypes_pb2

    array = feature.type.multiArrayType
    name = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(array.dataType)
    return {"name": feature.name, "shape": tuple(int(d) for d in array.shape),
            "dtype": _ARRAY_DTYPES.get(name, name.lower())}


def _operations(block) -> Iterator:
    for op in block.operations:
        yield op
        for inner in op.blocks:
            yield from _operations(inner)


def _tensor_values(op) -> Iterator:
    """The constant tensors an op carries: a const's value, and values bound directly to its inputs (how
    `constexpr_*` ops hold their quantized data and scales)."""
    if op.type == "const":
        yield op.attributes["val"]
    for argument in op.inputs.values():
        for binding in argument.arguments:
            if binding.WhichOneof("binding") == "value":
                yield binding.value


def inspect_coreml(path: Path | str) -> dict:
    """What a Core ML package contains, read from its spec without running it.

    Returns {"spec_version", "default_function", "bytes", "weight_file_bytes",
    "functions": {name: {"inputs", "outputs" (lists of {"name", "shape", "dtype"}), "op_types" (set),
    "op_counts" (Counter), "weight_dtypes" (Counter of the dtypes of the constant tensors the function
    keeps in the weight file: const values and constexpr inputs), "const_dtypes" (the same over every
    constant tensor of rank ≥ 1, inline ones included)}},
    "weights": {"references": weight-file tensors referenced, over all functions; "unique": distinct
    ones (a tensor shared by k functions counts k times above, once here); "unique_dtypes": Counter}}.
    """
    ct = coremltools()
    path = Path(path)
    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    if desc.functions:
        described = {f.name: f for f in desc.functions}
        default = desc.defaultFunctionName
    else:
        described = {"main": desc}
        default = "main"
    functions: dict[str, dict] = {}
    blobs: dict[tuple[str, int], str] = {}
    references = 0
    for name, fn in spec.mlProgram.functions.items():
        block = fn.block_specializations[fn.opset]
        op_counts: Counter = Counter()
        weight_dtypes: Counter = Counter()
        const_dtypes: Counter = Counter()
        for op in _operations(block):
            op_counts[op.type] += 1
            for value in _tensor_values(op):
                tensor = value.type.tensorType
                dtype = _mil_dtype(tensor.dataType)
                if tensor.rank >= 1 and dtype != "string":
                    const_dtypes[dtype] += 1
                if value.HasField("blobFileValue"):
                    weight_dtypes[dtype] += 1
                    references += 1
                    blobs[(value.blobFileValue.fileName, value.blobFileValue.offset)] = dtype
        d = described.get(name)
        functions[name] = {
            "inputs": [_feature(f) for f in d.input] if d is not None else [],
            "outputs": [_feature(f) for f in d.output] if d is not None else [],
            "op_types": set(op_counts),
            "op_counts": op_counts,
            "weight_dtypes": weight_dtypes,
            "const_dtypes": const_dtypes,
        }
    weight_file = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    return {
        "spec_version": spec.specificationVersion,
        "default_function": default,
        "bytes": size_of(path),
        "weight_file_bytes": weight_file.stat().st_size if weight_file.exists() else 0,
        "functions": functions,
        "weights": {"references": references, "unique": len(blobs), "unique_dtypes": Counter(blobs.values())},
    }


def check_package(path: Path, resolutions: list[int]) -> None:
    """The package just written has the functions, default and input shapes it should have."""
    info = inspect_coreml(path)
    expected = {function_name(r): Spatial.of(r).resolution for r in resolutions}  # entry name → input side
    largest = max(resolutions, key=Spatial.of)
    if set(info["functions"]) != set(expected) or info["default_function"] != function_name(largest):
        raise RuntimeError(f"Core ML package {path.name}: functions {sorted(info['functions'])}, default "
                           f"{info['default_function']!r}; expected {sorted(expected)}, default "
                           f"{function_name(largest)!r}")
    for name, r in expected.items():
        inputs = info["functions"][name]["inputs"]
        if [(i["name"], i["shape"], i["dtype"]) for i in inputs] != [(INPUT_NAME, (1, 3, r, r), "fp32")]:
            raise RuntimeError(f"Core ML function {name}: unexpected inputs {inputs}")

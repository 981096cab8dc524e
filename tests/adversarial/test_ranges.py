"""Issue 10, defect 8: ranges of every number in lut.json / manifest.json, in one place (`resflex.mobile.bundle.schema.RULES`),
enforced by the readers and written into the JSON Schemas; bare NaN is never written."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest

from resflex.mobile.bundle import schema

NAN, INF = float("nan"), float("inf")


def _lat(d):
    return d["operating_points"][0]["latency"]["host"][0]


LUT_EDITS = {
    "nan_p50": (lambda d: _lat(d).update(p50_ms=NAN), "finite number"),
    "inf_p99": (lambda d: _lat(d).update(p99_ms=INF), "finite number"),
    "negative_p50": (lambda d: _lat(d).update(p50_ms=-1.0), "out of range"),
    "zero_p50": (lambda d: _lat(d).update(p50_ms=0.0), "out of range"),
    "p50_above_p99": (lambda d: _lat(d).update(p50_ms=50.0), "p50 ≤ p90 ≤ p99"),
    "negative_threads": (lambda d: _lat(d).update(threads=-2), "out of range"),
    "zero_runs": (lambda d: _lat(d).update(runs=0), "out of range"),
    "negative_macs": (lambda d: d["operating_points"][0].update(macs=-5), "out of range"),
    "huge_macs": (lambda d: d["operating_points"][0].update(macs=10**400), "out of range"),
    "top1_5": (lambda d: d["operating_points"][0].update(top1=5.0), "out of range"),
    "top1_nan": (lambda d: d["operating_points"][0].update(top1=NAN), "finite number"),
    "negative_resolution": (lambda d: d["operating_points"][0].update(resolution=-32), "out of range"),
    "duplicate_point": (lambda d: d["operating_points"].append(d["operating_points"][0]), "duplicate operating point"),
    "duplicate_runtime_threads": (lambda d: d["operating_points"][0]["latency"]["host"].append(_lat(d)),
                                  "duplicate \\(runtime, threads\\)"),
    "version_garbage": (lambda d: d.update(schema_version="1.garbage"), "schema_version"),
    "version_newline": (lambda d: d.update(schema_version="1.0\n"), "schema_version"),
    "version_unicode_digit": (lambda d: d.update(schema_version="1.\u0663"), "schema_version"),
    "negative_energy": (lambda d: _lat(d).update(energy_mj=-1.0), "out of range"),
    "gemm_peak_zero": (lambda d: d["devices"]["host"].update(gemm_peak_gflops=0.0), "out of range"),
    "bool_as_int": (lambda d: _lat(d).update(threads=True), "expected int"),
}

MANIFEST_EDITS = {
    "negative_resolution": (lambda d: d.update(resolutions=[32, -24, 16]), "out of range"),
    "duplicate_resolution": (lambda d: d.update(resolutions=[32, 32, 16]), "repeated value"),
    "duplicate_entry": (lambda d: d["artifacts"][1]["entries"].append(d["artifacts"][1]["entries"][0]),
                        "duplicate entry name"),
    "nan_width": (lambda d: d["model"].update(width=NAN), "finite number"),
    "zero_std": (lambda d: d["inputs"][0].update(std=[0.2, 0.0, 0.2]), "out of range"),
    "bad_sha": (lambda d: d["artifacts"][1].update(sha256="not-a-sha"), "does not match"),
    "negative_bytes": (lambda d: d["artifacts"][1].update(bytes=-1), "out of range"),
    "reserved_file": (lambda d: d["artifacts"][1].update(file="lut.json"), "reserved"),
    "duplicate_file": (lambda d: d["artifacts"][1].update(file=d["artifacts"][0]["file"]), "duplicate artifact file"),
    "dot_path": (lambda d: d["artifacts"][1].update(file="./executorch/model_fp32.pte"), "not a safe relative path"),
    "nul_path": (lambda d: d["artifacts"][1].update(file="executorch/m\0.pte"), "not a safe relative path"),
    "no_entries": (lambda d: d["artifacts"][1].update(entries=[]), "at least one resolution"),
}


@pytest.mark.parametrize("name", sorted(LUT_EDITS))
def test_out_of_range_lut_is_refused_naming_the_field(docs, name):
    edit, match = LUT_EDITS[name]
    data = docs.lut()
    edit(data)
    with pytest.raises(schema.SchemaError, match=match):
        schema.from_dict(schema.LUT, data, "lut.json")


@pytest.mark.parametrize("name", sorted(MANIFEST_EDITS))
def test_out_of_range_manifest_is_refused_naming_the_field(docs, name):
    edit, match = MANIFEST_EDITS[name]
    data = docs.manifest()
    edit(data)
    with pytest.raises(schema.SchemaError, match=match):
        schema.from_dict(schema.Manifest, data, "manifest.json")


def test_reader_refuses_bare_nan_and_writer_never_writes_it(docs, tmp_path):
    data = docs.lut()
    text = json.dumps(data).replace('"top1": 0.82', '"top1": NaN', 1)
    assert "NaN" in text
    (tmp_path / "lut.json").write_text(text)
    with pytest.raises(schema.SchemaError, match="NaN is not JSON"):
        schema.read_json(schema.LUT, tmp_path / "lut.json")
    table = schema.from_dict(schema.LUT, docs.lut())
    bad = schema.LUT([*table.operating_points[:-1], schema.OperatingPoint(**{
        **table.operating_points[-1].__dict__, "top1": math.nan})], table.devices)
    with pytest.raises(schema.SchemaError, match="finite number"):
        schema.write_json(bad, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_json_schema_carries_the_same_ranges(docs):
    document = schema.json_schema(schema.LUT)
    lat = document["$defs"]["Latency"]["properties"]
    assert lat["p50_ms"]["exclusiveMinimum"] == 0 and lat["runs"]["minimum"] == 1
    assert document["$defs"]["OperatingPoint"]["properties"]["top1"]["anyOf"][0]["maximum"] == 1
    assert document["properties"]["schema_version"]["pattern"] == r"^1\.\d+$"
    jsonschema.validate(docs.lut(), document)
    for name, (edit, _) in LUT_EDITS.items():
        data = docs.lut()
        edit(data)
        if name in ("nan_p50", "inf_p99", "top1_nan", "p50_above_p99", "duplicate_point",
                    "duplicate_runtime_threads", "version_newline", "version_unicode_digit"):
            continue  # not expressible in JSON Schema (or not JSON at all): the readers check them
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, document)
    manifest_schema = schema.json_schema(schema.Manifest)
    for name in ("negative_resolution", "duplicate_resolution", "zero_std", "bad_sha", "negative_bytes",
                 "dot_path", "nul_path"):
        data = docs.manifest()
        MANIFEST_EDITS[name][0](data)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, manifest_schema)

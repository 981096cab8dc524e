import copy
import json
import re
import subprocess
import sys

import jsonschema
import pytest

from resflex.mobile.bundle import schema


def manifest():
    return schema.Manifest(
        model=schema.ModelInfo("tiny_cnn", "rsnet", 0.5, 2, [32, 16], ["cat", "dog"], "0" * 64),
        resolutions=[32, 16],
        inputs=[schema.InputSpec(r, round(r / 0.875), r, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) for r in (32, 16)],
        artifacts=[schema.ArtifactInfo(
            schema.Backend.EXECUTORCH, schema.Precision.INT8, "executorch/model_int8.pte", "a" * 64, 1234, schema.Layout.NCHW,
            [schema.EntryInfo(r, f"forward_{r}", "image", "logits", [1, 3, r, r]) for r in (32, 16)], True)],
        failures=[schema.Failure("coreml", "int8", "boom")],
    )


def table():
    return schema.LUT([schema.OperatingPoint(r, schema.Backend.EXECUTORCH, schema.Precision.INT8, "XNNPACK",
                                       "executorch/model_int8.pte", f"forward_{r}", 1000 * r, 500, 1234, 2,
                                       top1=0.9, top1_data=schema.DataIdentity("synthetic", "val", 100),
                                       latency={"host": [schema.Latency("executorch", 1, 20, 1.0, 1.2, 1.5)]})
                    for r in (32, 16)],
                   devices={"host": schema.Device({"cpu": "test"}, 100.0,
                                               [schema.SwitchCost("executorch", schema.Precision.INT8, 0.1, 0.5, 20.0, 0.08)],
                                               [schema.LatencyModel("executorch", schema.Precision.INT8, "XNNPACK", 1, 0.2,
                                                                 3.0, 0.05, 2)])})


@pytest.mark.parametrize("make", [manifest, table])
def test_round_trip_and_json_schema_agree(make, tmp_path):
    doc = make()
    path = schema.write_json(doc, tmp_path / "doc.json")
    assert schema.read_json(type(doc), path) == doc
    jsonschema.validate(json.loads(path.read_text()), schema.json_schema(type(doc)))


def test_committed_json_schemas_are_current(tmp_path):
    for path in schema.write_schemas(tmp_path):
        committed = schema.SCHEMA_DIR / path.name
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run python -c 'from resflex.mobile.bundle.schema import write_schemas; write_schemas()'")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["artifacts"][0].update(precision="int2"), "artifacts[0].precision: expected one of fp32"),
    (lambda d: d["artifacts"][0].update(file="/etc/passwd"), "not a safe relative path"),
    (lambda d: d["artifacts"][0].update(file="../outside.pte"), "not a safe relative path"),
    (lambda d: d["artifacts"][0].update(extra_files=[{"file": "a\\..\\b", "sha256": "0", "bytes": 1}]),
     "not a safe relative path"),
    (lambda d: d["model"].update(num_classes="2"), "model.num_classes: expected int"),
    (lambda d: d["model"].pop("arch"), "missing field 'arch'"),
    (lambda d: d.update(surprise=1), "unknown field(s) ['surprise']"),
    (lambda d: d.update(schema_version="2.0"), "schema_version '2.0' is not supported"),
    (lambda d: d.update(kind="resflex.lut"), "expected 'resflex.manifest'"),
])
def test_bad_manifest_is_refused_with_the_field_named(edit, message, tmp_path):
    data = schema.to_dict(manifest())
    edit(data)
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(schema.SchemaError, match="manifest.json.*" + re.escape(message)):
        schema.read_json(schema.Manifest, tmp_path / "manifest.json")


def test_minor_version_bump_is_accepted_and_duplicates_refused():
    data = schema.to_dict(table())
    data["schema_version"] = "1.7"
    schema.from_dict(schema.LUT, data)
    dup = copy.deepcopy(data)
    dup["operating_points"].append(dup["operating_points"][0])
    with pytest.raises(schema.SchemaError, match="duplicate operating point"):
        schema.from_dict(schema.LUT, dup)


def test_stage_scale_entries_parity_and_points(tmp_path):
    """Resizable Networks: entries, parity rows and points carry stage_scales; documents without them still read."""
    data = schema.to_dict(manifest())
    old = copy.deepcopy(data)
    for e in old["artifacts"][0]["entries"]:
        del e["stage_scales"]  # a bundle written before the field
    assert schema.from_dict(schema.Manifest, old) == manifest()
    entries = data["artifacts"][0]["entries"]
    entries[:] = [{**entries[0], "name": f"forward_32_s{n}", "stage_scales": s}
                  for n, s in (("1_1", [1.0, 1.0]), ("1_0p5", [1.0, 0.5]))]
    data["artifacts"][0]["parity"] = [{"resolution": 32, "samples": 8, "max_rel_error": 0.0, "top1_agreement": 1.0,
                                       "top1_artifact": 0.5, "top1_torch": 0.5, "passed": True,
                                       "stage_scales": e["stage_scales"]} for e in entries]
    doc = schema.from_dict(schema.Manifest, data)  # two entries at one resolution: distinct configurations
    assert [e.stage_scales for e in doc.artifacts[0].entries] == [[1.0, 1.0], [1.0, 0.5]]
    jsonschema.validate(data, schema.json_schema(schema.Manifest))
    dup = copy.deepcopy(data)
    dup["artifacts"][0]["entries"][1]["stage_scales"] = [1.0, 1.0]
    with pytest.raises(schema.SchemaError, match=re.escape("duplicate entry (resolution, stage scales) (32, 1.0, 1.0)")):
        schema.from_dict(schema.Manifest, dup)
    for bad in (0.0, 1.5):
        wrong = copy.deepcopy(data)
        wrong["artifacts"][0]["entries"][1]["stage_scales"] = [1.0, bad]
        with pytest.raises(schema.SchemaError, match=re.escape(f"entries[1].stage_scales[1]: {bad} is out of range")):
            schema.from_dict(schema.Manifest, wrong)
    lut = schema.to_dict(table())
    lut["operating_points"].append({**lut["operating_points"][0], "stage_scales": [1.0, 0.5]})
    assert len(schema.from_dict(schema.LUT, lut).operating_points) == 3  # same resolution, another configuration


def test_writing_an_invalid_document_is_refused(tmp_path):
    bad = schema.Manifest(**{**manifest().__dict__, "resolutions": ["32"]})
    with pytest.raises(schema.SchemaError, match=re.escape("resolutions[0]: expected int")):
        schema.write_json(bad, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_schema_module_imports_without_torch():
    code = "import sys; import resflex.mobile.bundle.schema; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_switch_overheads_exclude_the_inference_and_floor_noise():
    cost = schema.SwitchCost("executorch", schema.Precision.INT8, 4.3, 9.5, 8.8, steady_ms=4.1)
    switch, load, ratio = cost.overheads()
    assert switch == pytest.approx(0.2) and load == pytest.approx(4.7) and ratio == pytest.approx(23.5)
    assert schema.SwitchCost("ort", schema.Precision.FP32, 4.0, 5.0, 9.0, 4.1).overheads()[0] == 1e-3  # noise below 0
    assert schema.SwitchCost("ort", schema.Precision.FP32, 4.0, 5.0, 9.0).overheads() is None

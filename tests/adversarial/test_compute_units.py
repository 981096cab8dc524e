"""Issue 23 item 3: `ArtifactInfo.compute_units` (TFLite int8's CPU-only artifact, whose bias scales only the CPU
kernels may ignore). A malformed value is refused naming the field and the allowed units; a LUT point that runs
such an artifact on another unit is refused by every bundle reader and by `resflex select` / `profile`, with the
reason; the selector never offers it; manifests before the field still read."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle import schema
from resflex.mobile.bundle.io import Bundle
from resflex.mobile.bundle.schema import SchemaError
from resflex.mobile.selector import DeviceState, Selector

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("hostile_bundles", HERE / "hostile_bundles.py")
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)


@pytest.mark.parametrize("units, problem", [
    (("CPU", "TPU"), "'TPU'"), ([], r"\[\]"), ("CPU", "expected a list"), (("CPU", "CPU"), "duplicate compute unit"),
    ([7], "expected str")])
def test_a_malformed_value_names_the_field_and_the_units(tmp_path, units, problem):
    bundle = hostile._with_cpu_only_tflite(tmp_path / "b", compute_units=units)
    with pytest.raises(SchemaError, match=problem) as e:
        Bundle.open(bundle)
    assert "artifacts[2].compute_units" in str(e.value) and str(bundle / "manifest.json") in str(e.value)
    if units != "CPU" and units != [7]:
        assert "CPU, GPU, NNAPI" in str(e.value) or "duplicate" in str(e.value)


def test_a_cpu_only_artifact_on_gpu_is_refused_with_the_reason(tmp_path):
    bundle = hostile._with_cpu_only_tflite(tmp_path / "b", ("CPU", "GPU"))
    with pytest.raises(SchemaError, match=r"compute_unit 'GPU'.*model_int8_cpu\.tflite' on CPU only.*CPU-only"):
        Bundle.open(bundle, verify=False)
    assert Bundle.open(hostile._with_cpu_only_tflite(tmp_path / "ok")).manifest.artifacts[2].compute_units == ["CPU"]


@pytest.mark.parametrize("command", ["select", "profile"])
def test_select_and_profile_refuse_it(tmp_path, capsys, command):
    bundle = str(hostile._with_cpu_only_tflite(tmp_path / "b", ("CPU", "GPU")))
    argv = [bundle] + (["--runs", "1", "--warmup", "0"] if command == "profile" else [])
    assert main([command, *argv]) == 2
    err = capsys.readouterr().err
    assert "compute_unit 'GPU'" in err and "CPU-only" in err


def test_old_manifests_read_and_mean_every_unit(tmp_path):
    bundle = hostile._valid(tmp_path / "b")
    doc = json.loads((bundle / "manifest.json").read_text())
    for a in doc["artifacts"]:
        del a["compute_units"]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    assert all(a.compute_units is None for a in Bundle.open(bundle).manifest.artifacts)


def test_the_selector_never_offers_a_point_on_a_unit_its_artifact_is_not_offered_on():
    """The faster, equally accurate GPU point of a CPU-only artifact is dropped; with only such points, a clear
    error instead of a choice."""
    lut = schema.read_json(schema.LUT, hostile._with_cpu_only_tflite(Path(_tmp()) / "b", ("CPU", "GPU")) / "lut.json")
    fast = [dataclasses.replace(p, latency={}, macs=1) if p.compute_unit == "GPU" else p for p in lut.operating_points]
    lut = schema.LUT(fast, lut.devices)
    assert Selector(lut, "host").choose(DeviceState()).point.compute_unit == "GPU"
    units = {hostile.TFLITE_CPU: ["CPU"]}
    sel = Selector(lut, "host", compute_units=units)
    assert all(lut.operating_points[i].compute_unit != "GPU" for i in sel.candidates)
    assert sel.choose(DeviceState()).point.compute_unit != "GPU"
    gpu_only = schema.LUT([p for p in fast if p.compute_unit == "GPU"], lut.devices)
    with pytest.raises(SchemaError, match="no operating point is on a compute unit its artifact is offered on"):
        Selector(gpu_only, "host", compute_units=units)


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="resflex_units_")


def test_convert_offers_each_tflite_int8_point_on_one_artifact():
    """The LUT gets the CPU-only artifact's entries on CPU only and the GPU-capable one's on GPU and NNAPI: one
    artifact per operating point key, never the CPU-only file on the GPU delegate."""
    from types import SimpleNamespace

    from resflex.convert.pipeline import _operating_points
    from resflex.convert.runtimes import Spatial

    entries = [schema.EntryInfo(r, f"serving_{r}", "image", "logits", [1, r, r, 3]) for r in (32, 16)]
    macs = {Spatial(r, ()): 1000 * r for r in (32, 16)}
    config = SimpleNamespace(data="synthetic")

    def points(file, units):
        info = schema.ArtifactInfo(schema.Backend.TFLITE, schema.Precision.INT8, file, "0" * 64, 10, schema.Layout.NHWC,
                                   entries, True, compute_units=units)
        return [(p.resolution, p.compute_unit, p.artifact) for p in _operating_points(info, macs, 5, config, {})]

    cpu, gpu = points("tflite/model_int8_cpu.tflite", ["CPU"]), points("tflite/model_int8.tflite", ["GPU", "NNAPI"])
    assert {u for _, u, _ in cpu} == {"CPU"} and {u for _, u, _ in gpu} == {"GPU", "NNAPI"}
    assert len({(r, u) for r, u, _ in cpu + gpu}) == len(cpu + gpu) == 6
    assert {u for _, u, _ in points("tflite/model_int8.tflite", None)} == {"CPU", "GPU", "NNAPI"}  # older bundles

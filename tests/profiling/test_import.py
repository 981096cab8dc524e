"""`resflex profile BUNDLE --import device_profile.json`: a phone's own benchmark merged into a real bundle's LUT."""

import dataclasses
import json

import pytest

from resflex.cli.main import main
from resflex.mobile.bundle.schema import LUT, Manifest, SchemaError, read_json
from resflex.mobile.selector import DeviceState, Policy, Selector
from resflex.profiling.profile import import_profile

PHONE = "android-example-phone"


def _profile_doc(bundle, runtimes=("executorch", "tflite"), scale=1.0) -> dict:
    manifest = read_json(Manifest, bundle / "manifest.json")
    table = read_json(LUT, bundle / "lut.json")
    measurements = []
    for op in table.operating_points:
        runtime = {"executorch": "executorch", "tflite": "tflite"}.get(op.backend.value)
        if runtime not in runtimes or op.compute_unit not in ("XNNPACK", "CPU"):
            continue
        p50 = scale * (1.0 + op.macs / 1e6)
        measurements.append({
            "resolution": op.resolution, "backend": op.backend.value, "precision": op.precision.value,
            "compute_unit": op.compute_unit, "stage_scales": None, "entry": op.entry,
            "latency": {"runtime": runtime, "threads": 4, "runs": 30, "p50_ms": p50, "p90_ms": p50 * 1.1,
                        "p99_ms": p50 * 1.3, "peak_memory_mb": None, "gflops": None, "energy_mj": 0.5 * p50},
            "energy_estimated": True})
    return {"kind": "resflex.device_profile", "schema_version": "1.0", "device_id": PHONE,
            "facts": {"platform": "android", "model": "Example Phone", "os": "Android 14 (API 34)"},
            "checkpoint_sha256": manifest.model.checkpoint_sha256, "measurements": measurements, "failures": []}


def _write(tmp_path, doc, name="device_profile.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_import_merges_the_phone_and_the_selector_decides_from_it(profiled_bundle, bundle_copy, tmp_path, capsys):
    bundle = bundle_copy(profiled_bundle)
    before = read_json(LUT, bundle / "lut.json")
    doc = _profile_doc(bundle)
    assert main(["profile", str(bundle), "--import", str(_write(tmp_path, doc))]) == 0
    assert PHONE in capsys.readouterr().out
    after = read_json(LUT, bundle / "lut.json")
    assert after.devices["host"] == before.devices["host"]  # other devices untouched
    for old, new in zip(before.operating_points, after.operating_points):
        assert new.latency.get("host") == old.latency.get("host")
    phone = after.devices[PHONE]
    assert phone.facts["model"] == "Example Phone" and phone.facts["imported_from"] == "device_profile.json"
    assert {(m.runtime, m.threads) for m in phone.latency_models} == {("executorch", 4)} | (
        {("tflite", 4)} if any(m["backend"] == "tflite" for m in doc["measurements"]) else set())
    timed = {op.key(): op.latency[PHONE][0] for op in after.operating_points if PHONE in op.latency}
    assert len(timed) == len(doc["measurements"])
    assert all(lat.energy_mj == pytest.approx(0.5 * lat.p50_ms) for lat in timed.values())

    # the app offers the selector the points its engines run (here: what the phone measured)
    runnable = dataclasses.replace(after, operating_points=[op for op in after.operating_points if PHONE in op.latency])
    selector = Selector(runnable, PHONE, Policy(latency_budget_ms=1e6))
    d = selector.choose(DeviceState(battery=0.9, charging=False, power_save=False, thermal=0, cpu_load=0.0))
    assert d.latency_source == "measured" and d.key in timed
    assert main(["select", str(bundle), "--device", PHONE, "--budget-ms", "1000000"]) == 0


def test_reimport_replaces_only_what_was_measured(profiled_bundle, bundle_copy, tmp_path):
    bundle = bundle_copy(profiled_bundle)
    import_profile(bundle, _write(tmp_path, _profile_doc(bundle)))
    table, _ = import_profile(bundle, _write(tmp_path, _profile_doc(bundle, ("executorch",), 2.0), "second.json"))
    for op in table.operating_points:
        for lat in op.latency.get(PHONE, ()):
            expected = (2.0 if lat.runtime == "executorch" else 1.0) * (1.0 + op.macs / 1e6)
            assert lat.p50_ms == pytest.approx(expected)  # tflite kept from the first import


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["measurements"][0]["latency"].update(p50_ms="fast"), r"measurements\[0\]\.latency\.p50_ms"),
    (lambda d: d["measurements"][0]["latency"].update(p50_ms=-1.0), r"measurements\[0\].*p50_ms.*> 0"),
    (lambda d: d["measurements"][0]["latency"].update(p90_ms=1e-3), r"p50 ≤ p90 ≤ p99"),
    (lambda d: d["measurements"][0].pop("entry"), r"measurements\[0\]: missing field 'entry'"),
    (lambda d: d.update(device_id="../../etc"), r"device_id"),
    (lambda d: d.update(checkpoint_sha256="f" * 64), r"another bundle"),
    (lambda d: d["measurements"][0].update(resolution=999), r"measurements\[0\]: operating point \(999"),
    (lambda d: d["measurements"][0].update(entry="forward_1"), r"measurements\[0\]\.entry"),
    (lambda d: d["measurements"][0]["latency"].update(runtime="coreml"), r"latency\.runtime: 'coreml'"),
    (lambda d: d.update(kind="resflex.lut"), r"kind"),
    (lambda d: d["measurements"].append(dict(d["measurements"][0])), r"duplicate measurement"),
])
def test_bad_profile_names_the_field_and_leaves_the_lut(profiled_bundle, bundle_copy, tmp_path, edit, match):
    bundle = bundle_copy(profiled_bundle)
    doc = _profile_doc(bundle)
    edit(doc)
    before = (bundle / "lut.json").read_bytes()
    with pytest.raises(SchemaError, match=match):
        import_profile(bundle, _write(tmp_path, doc))
    assert (bundle / "lut.json").read_bytes() == before
    assert sorted(p.name for p in bundle.iterdir() if p.name.startswith(".")) == [".resflex-output.json"]


def test_not_json_and_folder(profiled_bundle, bundle_copy, tmp_path):
    bundle = bundle_copy(profiled_bundle)
    bad = tmp_path / "device_profile.json"
    bad.write_text("{not json")
    with pytest.raises(SchemaError, match="device_profile.json: not valid JSON"):
        import_profile(bundle, bad)
    with pytest.raises(SchemaError, match="is a folder"):
        import_profile(bundle, tmp_path)

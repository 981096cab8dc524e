"""`resflex profile` on the host: real runtimes timing a tiny bundle, merged into lut.json per device."""

import dataclasses
import importlib.metadata
import json
import os
import platform
import sys

import pytest

from resflex.mobile.bundle.io import Bundle, sha256_of
from resflex.cli.main import main
from resflex.mobile.bundle.schema import LUT, Backend, Device, Latency, OperatingPoint, Precision, SchemaError
from resflex.profiling.fit import fit_line
from resflex.profiling.profile import ProfileConfig, latency_from_times, merge_device, profile

HOST_UNITS = {"XNNPACK": "executorch", "CPU": "tflite", "CPUExecutionProvider": "onnxruntime"}
QUICK = dict(threads=(1,), runs=3, warmup=1, switch_cost=False, gemm_peak=False, progress=False)


def test_every_host_point_has_sane_latencies_per_runtime_and_threads(profiled_bundle):
    opened = Bundle.open(profiled_bundle, verify=True)  # still a valid, verified bundle
    manifest, table = opened.manifest, opened.lut
    timed = 0
    for op in table.operating_points:
        lats = op.latency.get("host", [])
        if op.compute_unit not in HOST_UNITS:  # TFLite GPU / NNAPI: not on the host
            assert lats == []
            continue
        assert sorted((x.runtime, x.threads) for x in lats) == [(HOST_UNITS[op.compute_unit], 1),
                                                              (HOST_UNITS[op.compute_unit], 2)]
        for x in lats:
            assert 0 < x.p50_ms <= x.p90_ms <= x.p99_ms < 1000 and x.runs == 6
            assert x.gflops == pytest.approx(2 * op.macs / (x.p50_ms * 1e6))
            assert 10 < x.peak_memory_mb < 10_000
        timed += 1
    assert timed == 3 * len({a.backend for a in manifest.artifacts})
    assert all(op.top1 is not None for op in table.operating_points)  # convert's accuracy is kept


def test_device_entry_has_facts_peak_switch_costs_and_models(profiled_bundle):
    opened = Bundle.open(profiled_bundle)
    _, table = opened.manifest, opened.lut
    device = table.devices["host"]
    facts = device.facts
    assert facts["cores_logical"] == str(os.cpu_count()) and facts["cpu"]
    assert facts["python"] == platform.python_version() and facts["threads_profiled"] == "1,2"
    assert facts["executorch"] == importlib.metadata.version("executorch")
    assert facts["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert "profiled_at" in facts and "torch.mm fp32 2048x2048" in facts["gemm_peak"]
    assert device.gemm_peak_gflops > 0
    backends = sorted(op.backend.value for op in table.operating_points if op.resolution == 32
                      and op.compute_unit in HOST_UNITS)
    runtimes = {"executorch": "executorch", "onnx": "onnxruntime", "tflite": "tflite"}
    assert sorted(s.runtime for s in device.switch_costs) == sorted(runtimes[b] for b in backends)
    for s in device.switch_costs:
        assert s.precision is Precision.FP32 and min(s.switch_loaded_ms, s.switch_first_ms, s.load_file_ms) > 0
        assert s.load_file_ms > s.switch_loaded_ms  # loading another file costs more than switching inside
    assert len(device.latency_models) == 2 * len(backends)  # runtime × threads (one precision, one host unit)
    for m in device.latency_models:
        points = sorted((op.macs / 1e9, x.p50_ms) for op in table.operating_points
                        for x in op.latency.get("host", []) if x.runtime == m.runtime and x.threads == m.threads)
        assert m.points == 3 and m.mean_abs_rel_error >= 0
        assert (m.intercept_ms, m.ms_per_gmac) == pytest.approx(fit_line(*zip(*points)))


def test_profiling_another_device_keeps_the_first(profiled_bundle, bundle_copy):
    bundle = bundle_copy(profiled_bundle)
    opened = Bundle.open(bundle)
    _, before = opened.manifest, opened.lut
    after = profile(ProfileConfig(str(bundle), device_id="second", runtimes=("onnxruntime",), **QUICK))
    assert after == Bundle.open(bundle).lut
    assert list(after.devices) == ["host", "second"] and after.devices["host"] == before.devices["host"]
    for old, new in zip(before.operating_points, after.operating_points):
        assert new.latency["host"] == old.latency["host"] if "host" in old.latency else "host" not in new.latency
        assert ("second" in new.latency) == (new.backend is Backend.ONNX)
    assert after.devices["second"].gemm_peak_gflops is None and after.devices["second"].switch_costs == []

    again = profile(ProfileConfig(str(bundle), device_id="host", runtimes=("onnxruntime",), **QUICK))
    assert again.devices["second"] == after.devices["second"]  # re-profiling "host" replaces only "host"
    for op, previous in zip(again.operating_points, after.operating_points):
        assert op.latency.get("second") == previous.latency.get("second")
        # issue 10 (defect 3): only onnxruntime was measured now; the other runtimes' host latencies stay
        assert ("host" in op.latency) == ("host" in previous.latency)
        if op.backend is not Backend.ONNX:
            assert op.latency.get("host") == previous.latency.get("host")
    assert {s.runtime for s in again.devices["host"].switch_costs} >= {
        s.runtime for s in after.devices["host"].switch_costs}


def _point(resolution, unit="CPUExecutionProvider"):
    return OperatingPoint(resolution, Backend.ONNX, Precision.FP32, unit, "onnx/m.onnx", f"m_{resolution}.onnx",
                          1000, 10, 100, 2)


def test_merge_device_replaces_only_that_device():
    a, b = Latency("onnxruntime", 1, 5, 1.0, 1.1, 1.2), Latency("onnxruntime", 1, 5, 2.0, 2.1, 2.2)
    p32, p16 = _point(32), _point(16)
    table = LUT([dataclasses.replace(p32, latency={"phone": [a], "host": [a]}), dataclasses.replace(p16, latency={
        "host": [a]})], devices={"phone": Device({"model": "x"}), "host": Device()})
    merged = merge_device(table, "host", Device({"cpu": "y"}), {p32.key(): [b]})
    assert merged.operating_points[0].latency == {"phone": [a], "host": [b]}
    assert merged.operating_points[1].latency == {}
    assert merged.devices == {"phone": Device({"model": "x"}), "host": Device({"cpu": "y"})}
    with pytest.raises(ValueError, match="not in the LUT"):
        merge_device(table, "host", Device(), {_point(8).key(): [b]})


def test_percentiles_and_gflops():
    lat = latency_from_times([i * 1_000_000 for i in range(1, 101)], "tflite", 2, macs=5_000_000, peak_bytes=3_000_000)
    assert (lat.p50_ms, lat.p90_ms, lat.p99_ms) == pytest.approx((50.5, 90.1, 99.01))
    assert lat.gflops == pytest.approx(2 * 5e6 / 50.5e6) and lat.peak_memory_mb == 3.0 and lat.runs == 100


def test_tampered_artifact_is_refused(bundle_copy):
    bundle = bundle_copy()
    pte = bundle / "executorch" / "model_fp32.pte"
    pte.write_bytes(pte.read_bytes() + b"\0")
    with pytest.raises(SchemaError, match="checksum mismatch for executorch/model_fp32.pte"):
        profile(ProfileConfig(str(bundle), **QUICK))


def test_bad_configuration_is_refused_clearly(tiny_bundle, tmp_path):
    with pytest.raises(ValueError, match="unknown runtime.*'tensorrt'.*executorch, tflite, onnxruntime, coreml"):
        ProfileConfig(str(tiny_bundle), runtimes=("tensorrt",))
    with pytest.raises(ValueError, match="'phone'.*'host' or 'adb:SERIAL'"):
        ProfileConfig(str(tiny_bundle), device="phone")
    with pytest.raises(ValueError, match="threads must be integers ≥ 1"):
        ProfileConfig(str(tiny_bundle), threads=(0,))
    with pytest.raises(FileNotFoundError, match="nowhere: bundle directory not found"):
        profile(ProfileConfig(str(tmp_path / "nowhere")))
    missing = tmp_path / "bin" / "executor_runner"
    with pytest.raises(FileNotFoundError, match=f"--executor-runner {missing}: file not found"):
        profile(ProfileConfig(str(tiny_bundle), device="adb:EMULATOR5554", executor_runner=str(missing)))


def test_cli_errors_exit_2_with_the_reason(tiny_bundle, tmp_path, capsys):
    assert main(["profile", str(tiny_bundle), "--runtimes", "tensorrt"]) == 2
    assert "resflex profile: error: unknown runtime(s) ['tensorrt']" in capsys.readouterr().err
    assert main(["profile", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: bundle directory not found" in capsys.readouterr().err
    runner = tmp_path / "executor_runner"
    assert main(["profile", str(tiny_bundle), "--device", "adb:X", "--executor-runner", str(runner)]) == 2
    assert f"--executor-runner {runner}: file not found" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_cli_skips_coreml_off_macos_and_prints_the_table(bundle_copy, capsys):
    bundle = bundle_copy()
    code = main(["profile", str(bundle), "--runtimes", "coreml,onnxruntime", "--threads", "1", "--runs", "3",
                 "--warmup", "1", "--no-gemm-peak", "--no-switch-cost", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "coreml: skipped — Core ML runs only on macOS" in err
    assert "device host:" in out and "| 32 | onnx | fp32 | CPUExecutionProvider | onnxruntime | 1 |" in out
    with pytest.raises(ValueError, match="nothing to profile on the host"):
        profile(ProfileConfig(str(bundle), runtimes=("coreml",), **QUICK))


def _corrupt_onnx_file(bundle, name="onnx/model_fp32_24.onnx"):
    """Garbage in one ONNX file with the manifest updated to match, so only the runtime can notice."""
    (bundle / name).write_bytes(b"not an onnx model")
    manifest = json.loads((bundle / "manifest.json").read_text())
    for art in manifest["artifacts"]:
        for ref in art["extra_files"]:
            if ref["file"] == name:
                ref.update(sha256=sha256_of(bundle / name), bytes=len(b"not an onnx model"))
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_runtime_failure_names_the_file_and_leaves_the_lut(bundle_copy):
    bundle = bundle_copy()
    _corrupt_onnx_file(bundle)
    before = (bundle / "lut.json").read_bytes()
    with pytest.raises(RuntimeError, match="(?s)no operating point could be timed.*model_fp32_24.onnx"):
        profile(ProfileConfig(str(bundle), runtimes=("onnxruntime",), **QUICK))
    assert (bundle / "lut.json").read_bytes() == before


def test_one_failing_artifact_does_not_lose_the_others(bundle_copy):
    bundle = bundle_copy()
    if not (bundle / "tflite").is_dir():
        pytest.skip("no TFLite artifact (onnx2tf environment not set up)")
    _corrupt_onnx_file(bundle)
    with pytest.raises(RuntimeError, match="(?s)1 artifact run\\(s\\) failed.*written to.*onnxruntime fp32"):
        profile(ProfileConfig(str(bundle), runtimes=("onnxruntime", "tflite"), **QUICK))
    opened = Bundle.open(bundle)
    _, table = opened.manifest, opened.lut
    assert {op.backend for op in table.operating_points if "host" in op.latency} == {Backend.TFLITE}

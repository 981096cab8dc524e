"""Android profiling over adb: command lines, parsers on stored tool outputs, and the checks before any phone work.

Samples under samples/ are outputs of the tools taken from their repositories, documentation or issue threads (each
file names its source above a "# ---" line). Two formats have no published sample: executor_runner's per-iteration
line (added in ExecuTorch 1.3) and benchmark_model's single-run statistics line; the tests that need them build the
lines from the format strings in the tools' sources, cited where they are built.
"""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from resflex.mobile.bundle import schema
from resflex.profiling import adb

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> str:
    header, sep, body = (SAMPLES / name).read_text().partition("# ---\n")
    assert sep and header.startswith("# Source:"), f"{name}: every sample starts with its source"
    return body


def test_every_sample_names_its_source():
    names = sorted(p.name for p in SAMPLES.iterdir())
    assert len(names) >= 10
    for name in names:
        assert sample(name).strip(), name


# --------------------------------------------------------------------------- command construction


def test_executor_runner_cmd_uses_the_1x_runner_flags():
    cmd = adb.executor_runner_cmd("/data/local/tmp/resflex/executor_runner", "/data/local/tmp/resflex/m.pte",
                                  "forward_224", threads=2, executions=60)
    assert cmd == ["/data/local/tmp/resflex/executor_runner", "--model_path=/data/local/tmp/resflex/m.pte",
                   "--method_name=forward_224", "--num_executions=60", "--cpu_threads=2", "--print_output=none"]


@pytest.mark.parametrize("unit, flags", [("CPU", []), ("GPU", ["--use_gpu=true"]), ("NNAPI", ["--use_nnapi=true"])])
def test_benchmark_model_cmd_per_compute_unit(unit, flags):
    cmd = adb.benchmark_model_cmd("bm", "model_fp32.tflite", "serving_160", compute_unit=unit, threads=4, warmup=5,
                                  serialize_dir="/data/local/tmp/resflex/cache", serialize_token="tok")
    base = ["bm", "--graph=model_fp32.tflite", "--signature_to_run_for=serving_160", "--num_threads=4",
            "--warmup_runs=5", "--warmup_min_secs=0", "--num_runs=1", "--min_secs=0"]
    cache = [] if unit == "CPU" else ["--delegate_serialize_dir=/data/local/tmp/resflex/cache",
                                      "--delegate_serialize_token=tok"]
    assert cmd == base + flags + cache


def test_benchmark_model_cmd_refuses_an_unknown_unit():
    with pytest.raises(ValueError, match="CPU, GPU, NNAPI"):
        adb.benchmark_model_cmd("bm", "m.tflite", "serving_1", compute_unit="DSP", threads=1, warmup=0)


def test_device_shell_quotes_and_repeat_runs_one_process_per_sample():
    argv = ["/data/local/tmp/resflex/benchmark_model", "--graph=/data/local/tmp/resflex/a b.tflite"]
    quoted = "/data/local/tmp/resflex/benchmark_model '--graph=/data/local/tmp/resflex/a b.tflite'"
    assert adb.device_shell(argv) == quoted
    loop = adb.repeat_shell(argv, 3)
    done = subprocess.run(["sh", "-c", adb.repeat_shell(["echo", "run"], 3)], capture_output=True, text=True)
    assert done.stdout.split() == ["run"] * 3 and "while [ $i -lt 3 ]" in loop
    assert adb.adb_cmd("adb", "SERIAL", "shell", "getprop") == ["adb", "-s", "SERIAL", "shell", "getprop"]


# --------------------------------------------------------------------------- executor_runner parsing


def test_executor_runner_docs_sample_has_a_total_but_no_iterations():
    r = adb.parse_executor_runner(sample("executor_runner_docs_build_from_source.txt"))
    assert (r.executions, r.total_ms, r.iterations_ms, r.unknown_flags) == (1, 15.013292, [], [])


@pytest.mark.parametrize("name", ["executor_runner_issue1231_no_timing.txt",
                                  "executor_runner_issue4005_android_stdout.txt"])
def test_executor_runner_samples_without_times_give_none(name):
    r = adb.parse_executor_runner(sample(name))
    assert r.iterations_ms == [] and r.total_ms is None and r.executions is None


def _et_iteration_lines(times_ms, prefix):
    # executor_runner.cpp (ExecuTorch ≥ 1.3; pytorch/executorch cff6f4dd): ET_LOG(Info, "Iteration %" PRIu32 " of %"
    # PRIu32 ": %f ms", i + 1, n, t) and ET_LOG(Info, "Model executed successfully %" PRIu32 " time(s) in %f ms.").
    n = len(times_ms)
    lines = [prefix + "Iteration %d of %d: %f ms" % (i + 1, n, t) for i, t in enumerate(times_ms)]
    return "\n".join(lines + [prefix + "Model executed successfully %d time(s) in %f ms." % (n, sum(times_ms))])


@pytest.mark.parametrize("prefix", [
    "I 00:00:00.043703 executorch:executor_runner.cpp:781] ",  # posix PAL, as in the docs sample
    "05-30 15:16:45.362  3380  3380 I ExecuTorch: ",  # android PAL → logcat threadtime, as in the TF logcat sample
])
def test_executor_runner_per_iteration_lines(prefix):
    times = [12.5, 10.25, 10.0, 11.125]
    r = adb.parse_executor_runner(_et_iteration_lines(times, prefix))
    assert r.iterations_ms == times and r.executions == 4 and r.total_ms == pytest.approx(sum(times))


def test_executor_runner_unknown_flag_is_reported():
    # gflags' message for a flag an older runner (ExecuTorch < 1.3) does not define.
    r = adb.parse_executor_runner("ERROR: unknown command line flag 'method_name'\n")
    assert r.unknown_flags == ["method_name"]


# --------------------------------------------------------------------------- benchmark_model parsing


def test_benchmark_model_android_gpu_sample():
    (run,) = adb.parse_benchmark_model(sample("benchmark_model_tf43541_android_gpu.txt"))
    assert (run.init_us, run.first_us, run.warmup_avg_us, run.inference_avg_us) == (870557, 130565, 122373, 119375)
    assert run.warmup.count == 4 and run.timed.count == 50
    assert run.timed.values == {"first": 119212, "curr": 118055, "min": 113737, "max": 124776, "avg": 119375,
                                "std": 1948}
    assert (run.delegate, run.delegation, run.delegate_kernels) == ("GPU", "full", 1)
    assert run.single_run_us() is None  # 50 timed runs: no single-run time to take


def test_benchmark_model_nnapi_logcat_sample_is_partially_delegated():
    (run,) = adb.parse_benchmark_model(sample("benchmark_model_tf56301_nnapi_logcat.txt"))
    assert (run.delegate, run.delegation, run.delegate_kernels) == ("NNAPI", "partial", 44)
    assert run.timed.count == 75 and run.timed.values["avg"] == 12167.6 and run.inference_avg_us == 12167.6


def test_benchmark_model_docs_summary_lines():
    runs = adb.parse_benchmark_model(sample("benchmark_model_docs_logcat.txt"))
    assert [(r.init_us, r.first_us, r.warmup_avg_us, r.inference_avg_us) for r in runs] == [
        (1007529, 4098, 1686.59, 1687.92), (5685, 18535, 14462.3, 14575.2)]
    assert all(r.timed is None and r.single_run_us() is None for r in runs)


def test_benchmark_model_old_summary_and_op_profiling_table():
    (run,) = adb.parse_benchmark_model(sample("benchmark_model_readme_op_profiling.txt"))
    # "Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9"; the op profiler's
    # "Timings (microseconds): count=50 …" is not the benchmark's run statistics.
    assert (run.warmup_avg_us, run.init_us, run.inference_avg_us, run.timed) == (83235, 38467, 79760.9, None)


def test_benchmark_model_cut_output_gives_no_result():
    assert adb.parse_benchmark_model(sample("benchmark_model_tf58379_gpu_truncated.txt")) == []


def _bm_single_run(curr_us, warmup_line="count=0"):
    # benchmark_model.cc (google-ai-edge/LiteRT f6745779): "Running benchmark for at least N iterations and at least
    # S seconds but terminate if exceeding M seconds." then run_stats.OutputToStream: tsl StatWithPercentiles prints
    # "count=1 curr=X" (Stat's all-same branch) + " p5=X median=X p95=X"; then the listener's summary line.
    return "\n".join([
        "INFO: Running benchmark for at least 2 iterations and at least 0 seconds but terminate if exceeding 150 "
        "seconds.", f"INFO: {warmup_line}", "",
        "INFO: Running benchmark for at least 1 iterations and at least 0 seconds but terminate if exceeding 150 "
        "seconds.", f"INFO: count=1 curr={curr_us} p5={curr_us} median={curr_us} p95={curr_us}", "",
        f"INFO: Inference timings in us: Init: 5579, First inference: 9000, Warmup (avg): 8000, "
        f"Inference (avg): {curr_us}"])


def test_benchmark_model_repeated_single_runs_give_one_sample_each():
    text = "\n".join(_bm_single_run(t, "count=2 first=9000 curr=7000 min=7000 max=9000 avg=8000 std=1000 p5=7000 "
                                       "median=9000 p95=9000") for t in (1357602, 1240143, 1249964))
    runs = adb.parse_benchmark_model(text)
    assert [r.single_run_us() for r in runs] == [1357602, 1240143, 1249964]
    assert all(r.warmup.count == 2 and r.warmup.values["median"] == 9000 for r in runs)


# --------------------------------------------------------------------------- getprop, devices, device id


def test_getprop_pixel8_sample():
    props = adb.parse_getprop(sample("getprop_pixel8_scrcpy5653.txt"))
    assert props["ro.product.model"] == "Pixel 8" and props["ro.product.cpu.abilist32"] == ""
    facts = adb.device_facts(props, "35121FDH2001AB")
    assert facts == {"platform": "android", "serial": "35121FDH2001AB", "manufacturer": "Google",
                     "model": "Pixel 8", "abi": "arm64-v8a"}
    assert adb.device_id(props, "35121FDH2001AB") == "android-pixel-8-35121fdh2001ab"


def test_getprop_nexus5_sample_keeps_values_with_spaces():
    props = adb.parse_getprop(sample("getprop_nexus5_flutter4009.txt"))
    assert len(props) == 27
    assert props["ro.build.date"] == "Tue Jan  6 22:40:00 UTC 2015"
    assert props["ro.boot.hardware"] == "hammerhead" and props["ro.board.platform"] == "msm8974"
    assert adb.device_facts(props, "07e401a0d00b3699")["board_platform"] == "msm8974"
    assert adb.device_id(props, "07e401a0d00b3699") == "android-07e401a0d00b3699"  # no ro.product.model here


@pytest.mark.parametrize("model, serial, expected", [
    ("Pixel 8", "emulator-5554", "android-pixel-8-emulator-5554"),
    ("SM-S921B/DS (Galaxy S24)", "192.168.1.5:5555", "android-sm-s921b-ds-galaxy-s24-192.168.1.5-5555"),
    ("../../etc", "a b", "android-..-..-etc-a-b"),
])
def test_device_id_is_sanitized(model, serial, expected):
    dev = adb.device_id({"ro.product.model": model}, serial)
    assert dev == expected and "/" not in dev and " " not in dev


def test_adb_devices_guide_sample():
    devices = adb.parse_adb_devices(sample("adb_devices_android_devguide.txt"))
    assert [(d.serial, d.state) for d in devices] == [("emulator-5554", "device"), ("emulator-5556", "device"),
                                                      ("emulator-5558", "device")]
    assert adb.check_attached(devices, "emulator-5556").serial == "emulator-5556"
    with pytest.raises(RuntimeError, match=r"no Android device 'ZX1G22' is attached.*emulator-5554 \(device\), "
                                           r"emulator-5556 \(device\), emulator-5558 \(device\)"):
        adb.check_attached(devices, "ZX1G22")


def test_adb_devices_l_sample_with_device_paths():
    devices = adb.parse_adb_devices(sample("adb_devices_l_aosp_e109d266.txt"))
    assert [(d.serial, d.state, d.details) for d in devices] == [
        ("016B75D60A00600D", "device", {"usb": "2-5"}), ("3031D0B2E71D00EC", "device", {"usb": "1-4.3"})]


def test_attached_but_not_ready_says_what_to_do():
    # The documented "[serialNumber] [state]" lines, with the states adb documents.
    devices = adb.parse_adb_devices("List of devices attached\ncf264b8f\tunauthorized\nemulator-5554\toffline\n")
    with pytest.raises(RuntimeError, match="'unauthorized', not ready: accept the USB debugging prompt"):
        adb.check_attached(devices, "cf264b8f")
    with pytest.raises(RuntimeError, match="'offline'"):
        adb.check_attached(devices, "emulator-5554")


# --------------------------------------------------------------------------- percentiles


def test_percentiles_match_numpy_and_latency_fields():
    rng = np.random.default_rng(0)
    samples = list(rng.gamma(4.0, 3.0, size=37))
    for q in (0, 50, 90, 99, 100):
        assert adb.percentile(samples, q) == pytest.approx(np.percentile(samples, q))
    lat = adb.latency_from_samples("tflite", 2, samples, macs=300_000_000)
    assert (lat.runtime, lat.threads, lat.runs) == ("tflite", 2, 37)
    assert lat.p50_ms <= lat.p90_ms <= lat.p99_ms
    assert lat.gflops == pytest.approx(2 * 3e8 / (lat.p50_ms * 1e-3) / 1e9)


# --------------------------------------------------------------------------- planning and the checks before a phone


@pytest.fixture
def bundle_docs():
    """A Manifest and LUT as convert writes them: ExecuTorch, TFLite, ONNX and Core ML artifacts, 2 resolutions."""
    res = [32, 24]
    artifacts, points = [], []
    for backend, file, entry in (("executorch", "executorch/model_fp32.pte", "forward_{}"),
                                 ("tflite", "tflite/model_fp32.tflite", "serving_{}"),
                                 ("onnx", "onnx/model_fp32_32.onnx", "model_fp32_{}.onnx"),
                                 ("coreml", "coreml/model_fp32.mlpackage", "resolution_{}")):
        be = schema.Backend(backend)
        artifacts.append(schema.ArtifactInfo(
            backend=be, precision=schema.Precision.FP32, file=file, sha256="0" * 64, bytes=1000,
            layout=schema.Layout.NHWC if backend == "tflite" else schema.Layout.NCHW,
            entries=[schema.EntryInfo(r, entry.format(r), "image", "logits", [1, 3, r, r]) for r in res],
            runs_on_host=backend != "coreml"))
        for r in res:
            for unit in schema.COMPUTE_UNITS[be]:
                points.append(schema.OperatingPoint(
                    resolution=r, backend=be, precision=schema.Precision.FP32, compute_unit=unit, artifact=file,
                    entry=entry.format(r), macs=1000 * r * r, params=500, artifact_bytes=1000,
                    artifact_resolutions=len(res)))
    manifest = schema.Manifest(
        model=schema.ModelInfo("tiny_cnn", "rsnet", 0.5, 4, res, ["a", "b", "c", "d"], "0" * 64),
        resolutions=res,
        inputs=[schema.InputSpec(r, r, r, [0.5] * 3, [0.25] * 3) for r in res],
        artifacts=artifacts)
    return manifest, schema.LUT(points)


def test_plan_jobs_picks_what_android_runs(bundle_docs):
    _, table = bundle_docs
    jobs = adb.plan_jobs(table, ["executorch", "tflite"])
    assert sorted({(j.runtime, j.compute_unit) for j in jobs}) == [
        ("executorch", "XNNPACK"), ("tflite", "CPU"), ("tflite", "GPU"), ("tflite", "NNAPI")]
    assert len(jobs) == 2 * 4
    job = next(j for j in jobs if j.runtime == "tflite" and j.compute_unit == "GPU" and j.key[0] == 24)
    assert (job.artifact, job.entry, job.macs, job.key) == ("tflite/model_fp32.tflite", "serving_24", 576000,
                                                             (24, "tflite", "fp32", "GPU", ()))
    assert {j.runtime for j in adb.plan_jobs(table, ["tflite"])} == {"tflite"}
    with pytest.raises(ValueError, match="unknown runtime.*onnxruntime.*expected: executorch, tflite"):
        adb.plan_jobs(table, ["onnxruntime"])


@pytest.fixture
def binaries(tmp_path):
    paths = {}
    for name in ("executor_runner", "benchmark_model"):
        paths[name] = tmp_path / "bin" / name
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_bytes(b"\x7fELF placeholder, never executed here")
    return paths


def _profile(bundle_docs, tmp_path, binaries, serial="resflex-not-attached", **overrides):
    manifest, table = bundle_docs
    kwargs = dict(executor_runner=str(binaries["executor_runner"]), benchmark_model=str(binaries["benchmark_model"]),
                  runtimes=("executorch", "tflite"), threads=(1, 2), runs=20, warmup=3, adb="adb")
    kwargs.update(overrides)
    return adb.profile_adb(manifest, table, tmp_path, serial, **kwargs)


def test_missing_binary_names_the_flag_and_path(bundle_docs, tmp_path, binaries):
    with pytest.raises(FileNotFoundError, match=r"--executor-runner .*/nope/executor_runner: no such file"):
        _profile(bundle_docs, tmp_path, binaries, executor_runner=str(tmp_path / "nope" / "executor_runner"))
    with pytest.raises(FileNotFoundError, match=r"--benchmark-model .*/nope/bm: no such file"):
        _profile(bundle_docs, tmp_path, binaries, benchmark_model=str(tmp_path / "nope" / "bm"))
    with pytest.raises(ValueError, match="runtime tflite on Android needs --benchmark-model PATH"):
        _profile(bundle_docs, tmp_path, binaries, benchmark_model=None)
    # a binary for a runtime not asked for is not needed: the next check (adb) is reached
    with pytest.raises(FileNotFoundError, match="adb not found"):
        _profile(bundle_docs, tmp_path, binaries, runtimes=("tflite",), executor_runner=None, adb="/nonexistent/adb")


def test_missing_adb_says_how_to_get_it(bundle_docs, tmp_path, binaries):
    with pytest.raises(FileNotFoundError, match=r"adb not found \('/nonexistent/adb'.*platform-tools.*--adb"):
        _profile(bundle_docs, tmp_path, binaries, adb="/nonexistent/adb")


def test_bad_arguments_fail_before_any_device_work(bundle_docs, tmp_path, binaries):
    with pytest.raises(ValueError, match="runs ≥ 1"):
        _profile(bundle_docs, tmp_path, binaries, runs=0, adb="/nonexistent/adb")
    with pytest.raises(ValueError, match="unknown runtime"):
        _profile(bundle_docs, tmp_path, binaries, runtimes=("coreml",), adb="/nonexistent/adb")


@pytest.fixture
def real_adb(monkeypatch):
    """Debian's adb (`apt-get install adb`), on a private server port; the server it starts is stopped after."""
    path = shutil.which("adb")
    if path is None:
        pytest.skip("adb is not installed (apt-get install adb)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    yield path
    subprocess.run([path, "kill-server"], capture_output=True, timeout=30, env=dict(os.environ))


def test_no_device_attached_with_the_real_adb(bundle_docs, tmp_path, binaries, real_adb):
    done = subprocess.run([real_adb, "devices", "-l"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "List of devices attached" in done.stdout
    attached = adb.parse_adb_devices(done.stdout)
    listed = ", ".join(f"{d.serial} ({d.state})" for d in attached) or "none"
    with pytest.raises(RuntimeError, match=r"no Android device 'resflex-not-attached' is attached; "
                                           rf"`adb devices` lists: {re.escape(listed)}\. Connect the phone"):
        _profile(bundle_docs, tmp_path, binaries, adb=real_adb)


@pytest.mark.slow
def test_jobs_of_a_real_bundle_name_real_methods_and_signatures(tiny_bundle):
    """The --method_name / --signature_to_run_for values come from the bundle and exist in its artifacts."""
    from resflex.mobile.bundle.io import Bundle

    opened = Bundle.open(tiny_bundle)

    manifest, table = opened.manifest, opened.lut
    runtimes = [r for r in ("executorch", "tflite") if any(a.backend.value == r for a in manifest.artifacts)]
    jobs = adb.plan_jobs(table, runtimes)
    assert {j.key for j in jobs} == {op.key() for op in table.operating_points
                                     if op.backend.value in runtimes}
    for job in jobs:
        path = tiny_bundle / job.artifact
        if job.runtime == "executorch":
            from executorch.runtime import Runtime

            assert job.entry in Runtime.get().load_program(path).method_names
        else:
            from ai_edge_litert.interpreter import Interpreter

            assert job.entry in Interpreter(model_path=str(path)).get_signature_list()
        cmd = (adb.executor_runner_cmd("r", job.artifact, job.entry, threads=1, executions=2)
               if job.runtime == "executorch" else
               adb.benchmark_model_cmd("b", job.artifact, job.entry, compute_unit=job.compute_unit, threads=1,
                                       warmup=1))
        assert f"={job.entry}" in " ".join(cmd)

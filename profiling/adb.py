"""Latency on an Android phone over adb: ExecuTorch's `executor_runner` and LiteRT's `benchmark_model`.

`profile_adb` checks the user-provided binaries and adb, checks the phone is attached, pushes the binaries and the
bundle's artifacts to `/data/local/tmp/resflex/`, runs every operating point it can, reads the phone's facts from
`getprop` and returns one `Latency` per runtime × threads for each operating point that ran (the caller writes them
into the LUT). Command lines are built and tool outputs parsed by pure functions, tested on stored samples.

How the percentiles are obtained (never from a tool's mean):
- **ExecuTorch** (`.pte` methods, XNNPACK): one runner process per method × threads with
  `--num_executions = warmup + runs`; the runner (ExecuTorch ≥ 1.3, `--method_name`) logs every execution
  ("Iteration i of n: t ms"). The first `warmup` iterations are dropped; p50/p90/p99 are taken over the other
  `runs`. The runner logs through ExecuTorch's PAL: to stderr with the posix PAL, to logcat (tag `ExecuTorch`) with
  the android PAL; the shell output is read first, then that process's logcat (`logcat --pid`). A runner built
  without logging (`-DEXECUTORCH_ENABLE_LOGGING=OFF`, the Release default) prints no times and is reported as such.
- **TFLite** (`benchmark_model`, one signature per resolution via `--signature_to_run_for`; compute units CPU,
  GPU `--use_gpu=true`, NNAPI `--use_nnapi=true`): benchmark_model prints only count/min/max/avg/std and, in
  newer builds, p5/median/p95 of its timed runs — no p90/p99. So each sample is its own process:
  `--warmup_runs=warmup --warmup_min_secs=0 --num_runs=1 --min_secs=0` (the `*_min_secs=0` make the counts exact),
  run `runs` times in one `adb shell` loop; the sample is that run's time, `curr=` of the timed runs' statistics
  line `count=1 curr=t` (µs, exact integer). GPU/NNAPI compilations are cached across the
  processes (`--delegate_serialize_dir/--delegate_serialize_token`). A point whose delegate was not applied
  ("Though GPU delegate is explicitly applied, … will not be executed") is skipped, not recorded as GPU.
- p50/p90/p99 use linear interpolation between order statistics (numpy's default `percentile` method).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from resflex.mobile.bundle.io import sha256_of
from resflex.mobile.bundle.schema import LUT, RUNTIME_BACKENDS, Device, Latency, Manifest

from .stats import latency_from_samples, percentile

log = logging.getLogger(__name__)

REMOTE_DIR = "/data/local/tmp/resflex"
PHONE_RUNTIMES = ("executorch", "tflite")  # the runtimes timed on a phone (their backends: RUNTIME_BACKENDS)
UNIT_FLAGS = {"CPU": (), "GPU": ("--use_gpu=true",), "NNAPI": ("--use_nnapi=true",)}  # TFLite compute units
DELEGATE_NAMES = {"GPU": "GPU", "NNAPI": "NNAPI"}  # benchmark_model's delegate provider names
GETPROP_FACTS = {  # getprop key → Device.facts key
    "ro.product.manufacturer": "manufacturer", "ro.product.model": "model",
    "ro.soc.manufacturer": "soc_manufacturer", "ro.soc.model": "soc_model",
    "ro.board.platform": "board_platform", "ro.hardware": "hardware",
    "ro.build.version.release": "android_release", "ro.build.version.sdk": "android_sdk",
    "ro.product.cpu.abi": "abi",
}
ADB_HINT = ("install Android SDK Platform-Tools (https://developer.android.com/tools/releases/platform-tools; "
            "Debian/Ubuntu: apt install adb) or pass its path with --adb")
TIMEOUT_S = 1800.0


# --------------------------------------------------------------------------- command construction (pure)


def adb_cmd(adb: str, serial: str, *args: str) -> list[str]:
    return [adb, "-s", serial, *args]


def device_shell(argv: Sequence[str]) -> str:
    """One `adb shell` command string (the device's sh parses it), every argument quoted."""
    return " ".join(shlex.quote(a) for a in argv)


def executor_runner_cmd(runner: str, model: str, method: str, *, threads: int, executions: int) -> list[str]:
    """ExecuTorch ≥ 1.3 examples/portable/executor_runner: run `method` of `model` `executions` times."""
    return [runner, f"--model_path={model}", f"--method_name={method}", f"--num_executions={executions}",
            f"--cpu_threads={threads}", "--print_output=none"]


def benchmark_model_cmd(binary: str, graph: str, signature: str, *, compute_unit: str, threads: int, warmup: int,
                        runs: int = 1, serialize_dir: str | None = None, serialize_token: str | None = None
                        ) -> list[str]:
    """LiteRT tools/benchmark/benchmark_model: exactly `warmup` untimed and `runs` timed runs of one signature."""
    if compute_unit not in UNIT_FLAGS:
        raise ValueError(f"TFLite compute unit {compute_unit!r}; expected one of: {', '.join(UNIT_FLAGS)}")
    cmd = [binary, f"--graph={graph}", f"--signature_to_run_for={signature}", f"--num_threads={threads}",
           f"--warmup_runs={warmup}", "--warmup_min_secs=0", f"--num_runs={runs}", "--min_secs=0",
           *UNIT_FLAGS[compute_unit]]
    if compute_unit != "CPU" and serialize_dir and serialize_token:
        cmd += [f"--delegate_serialize_dir={serialize_dir}", f"--delegate_serialize_token={serialize_token}"]
    return cmd


def repeat_shell(argv: Sequence[str], times: int) -> str:
    """A device shell loop running `argv` `times` times (one process each), in one `adb shell` call."""
    return f"i=0; while [ $i -lt {int(times)} ]; do {device_shell(argv)}; i=$((i+1)); done"


# --------------------------------------------------------------------------- parsers (pure)


@dataclasses.dataclass(frozen=True)
class AdbDevice:
    serial: str
    state: str  # device | offline | unauthorized | no permissions | recovery | …
    details: dict[str, str]  # `adb devices -l` extras (usb, product, model, device, transport_id)


def parse_adb_devices(text: str) -> list[AdbDevice]:
    """`adb devices [-l]` output → attached devices (daemon messages and the header are skipped)."""
    devices = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("*", "List of devices", "$", "adb server")):
            continue
        serial, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
        rest = rest.strip()
        if rest.startswith("no permissions"):
            state, extras = "no permissions", []
        else:
            tokens = rest.split()
            words = [t for t in tokens if ":" not in t]
            state = words[0] if words else "unknown"
            extras = [t for t in tokens if ":" in t]
        details = dict(t.split(":", 1) for t in extras)
        devices.append(AdbDevice(serial.strip(), state, details))
    return devices


_GETPROP = re.compile(r"^\s*\[([^\]]+)\]:\s*\[(.*)\]\s*$")


def parse_getprop(text: str) -> dict[str, str]:
    """`getprop` listing (`[key]: [value]` lines) → {key: value}."""
    props = {}
    for line in text.splitlines():
        m = _GETPROP.match(line)
        if m:
            props[m.group(1)] = m.group(2)
    return props


@dataclasses.dataclass(frozen=True)
class ExecutorRunnerResult:
    iterations_ms: list[float]  # "Iteration i of n: t ms", in order (ExecuTorch ≥ 1.3)
    executions: int | None  # from "Model executed successfully n time(s) in t ms."
    total_ms: float | None
    load_ms: float | None  # "Model loaded in t ms." (≥ 1.3)
    unknown_flags: list[str]  # gflags: "unknown command line flag 'x'" (a runner older than the flags we pass)


_ITERATION = re.compile(r"Iteration (\d+) of (\d+): ([0-9.]+(?:[eE][-+]?\d+)?) ms")
_EXECUTED = re.compile(r"Model executed successfully (\d+) time\(s\) in ([0-9.]+(?:[eE][-+]?\d+)?) ms")
_LOADED = re.compile(r"Model loaded in ([0-9.]+(?:[eE][-+]?\d+)?) ms")
_UNKNOWN_FLAG = re.compile(r"unknown command line flag '([^']+)'")


def parse_executor_runner(text: str) -> ExecutorRunnerResult:
    """executor_runner output (stderr with the posix PAL, or logcat lines with the android PAL) → its timings."""
    iterations = [float(m.group(3)) for m in _ITERATION.finditer(text)]
    executed = _EXECUTED.findall(text)
    loaded = _LOADED.findall(text)
    return ExecutorRunnerResult(
        iterations_ms=iterations,
        executions=int(executed[-1][0]) if executed else None,
        total_ms=float(executed[-1][1]) if executed else None,
        load_ms=float(loaded[-1]) if loaded else None,
        unknown_flags=_UNKNOWN_FLAG.findall(text))


@dataclasses.dataclass(frozen=True)
class RunStats:
    """One `Stat::OutputToStream` line of benchmark_model (microseconds): `count=… first=… curr=… …`."""

    count: int
    values: dict[str, float]  # first, curr, min, max, avg, std, p5, median, p95 — whichever were printed


@dataclasses.dataclass(frozen=True)
class BenchmarkModelRun:
    """One benchmark_model invocation, as far as its output shows it."""

    inference_avg_us: float  # the summary line's "Inference (avg)" (older builds: "Inference")
    init_us: float | None
    first_us: float | None
    warmup_avg_us: float | None
    warmup: RunStats | None  # statistics printed after "Running benchmark for at least …" (warm-up runs)
    timed: RunStats | None  # … and after the second such line (timed runs)
    delegate: str | None  # provider named in "Explicitly applied X delegate" / "Though X delegate is …"
    delegation: str | None  # "full" | "partial" | "none"
    delegate_kernels: int | None

    def single_run_us(self) -> float | None:
        """The time of the one timed run (`count=1 curr=t`); None unless the output shows exactly one was timed."""
        if self.timed is None or self.timed.count != 1:
            return None
        return self.timed.values.get("curr")


_NUM = r"([-+]?[0-9.]+(?:[eE][-+]?\d+)?)"
_SUMMARY_NEW = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                          rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_SUMMARY_OLD = re.compile(rf"Average inference timings in us: Warmup: {_NUM}, Init: {_NUM}, Inference: {_NUM}")
_STAT = re.compile(r"(?:^|[\s:])count=(\d+)((?:\s+\w+=\S+)*)")
_RUNNING = "Running benchmark for at least"
_APPLIED = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be (completely|partially) "
                      r"executed by the delegate(?: w/ (\d+) delegate kernels)?")
_NOT_APPLIED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")


def _stat(line: str) -> RunStats | None:
    m = _STAT.search(line)
    if not m:
        return None
    values = {}
    for key, value in re.findall(r"(\w+)=([-+0-9.eE]+)", m.group(2)):
        try:
            values[key] = float(value)
        except ValueError:
            pass
    return RunStats(int(m.group(1)), values)


def parse_benchmark_model(text: str) -> list[BenchmarkModelRun]:
    """benchmark_model output (stdout, or logcat tag `tflite`) → one entry per invocation that printed its
    summary line; an output cut before the summary gives nothing (no result is made up)."""
    runs, stats, expect_stat = [], [], False
    delegate = delegation = kernels = None
    for line in text.splitlines():
        if _RUNNING in line:
            expect_stat = True
            continue
        if expect_stat and (s := _stat(line)) is not None:
            stats.append(s)
            expect_stat = False
            continue
        if m := _APPLIED.search(line):
            delegate, delegation = m.group(1), "full" if m.group(2) == "completely" else "partial"
            kernels = int(m.group(3)) if m.group(3) else (1 if delegation == "full" else None)
            continue
        if m := _NOT_APPLIED.search(line):
            delegate, delegation, kernels = m.group(1), "none", 0
            continue
        new, old = _SUMMARY_NEW.search(line), _SUMMARY_OLD.search(line)
        if new or old:
            init, first, warm, inference = ((float(new.group(1)), float(new.group(2)), float(new.group(3)),
                                             float(new.group(4))) if new else
                                            (float(old.group(2)), None, float(old.group(1)), float(old.group(3))))
            runs.append(BenchmarkModelRun(
                inference_avg_us=inference, init_us=init, first_us=first, warmup_avg_us=warm,
                warmup=stats[0] if len(stats) >= 2 else None, timed=stats[-1] if stats else None,
                delegate=delegate, delegation=delegation, delegate_kernels=kernels))
            stats, expect_stat = [], False
            delegate = delegation = kernels = None
    return runs


# --------------------------------------------------------------------------- small pure helpers


def device_id(props: dict[str, str], serial: str) -> str:
    """"android-<model>-<serial>", lower-case, anything but [a-z0-9._-] collapsed to '-', at most 128 characters
    (a valid `check_device_id`)."""
    parts = ["android", props.get("ro.product.model", ""), serial]
    raw = "-".join(p for p in parts if p)
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9._-]+", "-", raw.lower()))[:128].strip("-.")


def device_facts(props: dict[str, str], serial: str) -> dict[str, str]:
    facts = {"platform": "android", "serial": serial}
    facts.update({name: props[key] for key, name in GETPROP_FACTS.items() if props.get(key)})
    if "android_release" in facts:
        facts["os"] = f"Android {facts['android_release']}" + (
            f" (API {facts['android_sdk']})" if "android_sdk" in facts else "")
    return facts


@dataclasses.dataclass(frozen=True)
class Job:
    """One operating point to time on the phone: which artifact, entry (method/signature) and runtime."""

    key: tuple
    runtime: str
    artifact: str
    entry: str
    compute_unit: str
    macs: int


def plan_jobs(lut: LUT, runtimes: Sequence[str]) -> list[Job]:
    """The LUT's operating points these runtimes can run on Android (ExecuTorch: XNNPACK; TFLite: CPU/GPU/NNAPI)."""
    unknown = [r for r in runtimes if r not in PHONE_RUNTIMES]
    if unknown:
        raise ValueError(f"adb profiling: unknown runtime(s) {unknown}; expected: {', '.join(PHONE_RUNTIMES)}")
    jobs = []
    for op in lut.operating_points:
        runtime = next((r for r in runtimes if RUNTIME_BACKENDS[r] is op.backend), None)
        if runtime is None or (runtime == "tflite" and op.compute_unit not in UNIT_FLAGS):
            continue
        jobs.append(Job(op.key(), runtime, op.artifact, op.entry, op.compute_unit, op.macs))
    return jobs


# --------------------------------------------------------------------------- checks and adb plumbing


def check_binaries(runtimes: Sequence[str], executor_runner: str | None, benchmark_model: str | None) -> None:
    """Every runtime asked for needs its user-provided binary, and it must exist here."""
    for runtime, flag, path in (("executorch", "--executor-runner", executor_runner),
                                ("tflite", "--benchmark-model", benchmark_model)):
        if runtime not in runtimes:
            continue
        if not path:
            raise ValueError(f"runtime {runtime} on Android needs {flag} PATH (the Android build of "
                             f"{'executor_runner' if runtime == 'executorch' else 'benchmark_model'})")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: no such file")


def find_adb(adb: str = "adb") -> str:
    """The adb executable (a name on PATH or a path); missing → how to get it."""
    found = shutil.which(adb)
    if found is None:
        raise FileNotFoundError(f"adb not found ({adb!r} is not an executable on PATH or a path to one): {ADB_HINT}")
    return found


def _run(cmd: Sequence[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{shlex.join(cmd)} timed out after {timeout:.0f} s") from e
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.replace("\r\n", "\n"),
                                       done.stderr.replace("\r\n", "\n"))


def _checked(cmd: Sequence[str], what: str, timeout: float = TIMEOUT_S) -> str:
    done = _run(cmd, timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {shlex.join(cmd)}\n"
                           f"{(done.stdout + done.stderr).strip()[-2000:]}")
    return done.stdout


def require_device(adb: str, serial: str) -> AdbDevice:
    """The attached device `serial` in state "device", or a RuntimeError saying what is attached and missing."""
    done = _run([adb, "devices", "-l"], timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"`{adb} devices -l` failed (exit {done.returncode}): {(done.stdout + done.stderr).strip()}")
    return check_attached(parse_adb_devices(done.stdout), serial)


def check_attached(devices: Sequence[AdbDevice], serial: str) -> AdbDevice:
    """`serial` among `devices` and ready ("device"), else a RuntimeError naming what is attached and missing."""
    listed = ", ".join(f"{d.serial} ({d.state})" for d in devices) or "none"
    match = next((d for d in devices if d.serial == serial), None)
    if match is None:
        raise RuntimeError(f"no Android device {serial!r} is attached; `adb devices` lists: {listed}. Connect the "
                           "phone with USB debugging enabled (or `adb connect HOST:PORT`) and pass its serial as "
                           "--device adb:SERIAL")
    if match.state != "device":
        hint = {"unauthorized": "accept the USB debugging prompt on the phone",
                "offline": "reconnect the cable or restart adb (`adb kill-server`)",
                "no permissions": "fix the USB permissions (udev rules) of this host"}.get(match.state, "")
        raise RuntimeError(f"Android device {serial!r} is attached but {match.state!r}, not ready"
                           + (f": {hint}" if hint else "") + f"; `adb devices` lists: {listed}")
    return match


# --------------------------------------------------------------------------- measurement


def _executorch_samples(adb: str, serial: str, runner: str, model: str, job: Job, threads: int, runs: int,
                        warmup: int) -> list[float]:
    argv = executor_runner_cmd(runner, model, job.entry, threads=threads, executions=warmup + runs)
    done = _run(adb_cmd(adb, serial, "shell", f"echo resflex-pid=$$; exec {device_shell(argv)}"))
    text = done.stdout + done.stderr
    result = parse_executor_runner(text)
    if not result.iterations_ms and (pid := re.search(r"resflex-pid=(\d+)", text)):
        logcat = _run(adb_cmd(adb, serial, "logcat", "-d", f"--pid={pid.group(1)}", "-s", "ExecuTorch:*"), 120)
        text += logcat.stdout
        result = parse_executor_runner(text)
    if result.unknown_flags:
        raise RuntimeError(f"executor_runner does not know {result.unknown_flags}: it predates ExecuTorch 1.3 "
                           "(needed for --method_name and per-iteration times)")
    if len(result.iterations_ms) < warmup + runs:
        why = ("it printed only a total time (per-iteration times need ExecuTorch ≥ 1.3's runner)"
               if result.total_ms is not None else
               "it printed no times (build it with -DEXECUTORCH_ENABLE_LOGGING=ON, ExecuTorch ≥ 1.3)")
        raise RuntimeError(f"executor_runner {job.entry} (exit {done.returncode}): got "
                           f"{len(result.iterations_ms)} of {warmup + runs} iteration times; {why}\n{text[-1500:]}")
    return result.iterations_ms[warmup:warmup + runs]


def _tflite_samples(adb: str, serial: str, binary: str, model: str, job: Job, threads: int, runs: int,
                    warmup: int) -> list[float]:
    token = "resflex_" + hashlib.sha256(f"{model}|{job.entry}|{job.compute_unit}".encode()).hexdigest()[:16]
    argv = benchmark_model_cmd(binary, model, job.entry, compute_unit=job.compute_unit, threads=threads,
                               warmup=warmup, serialize_dir=f"{REMOTE_DIR}/cache", serialize_token=token)
    done = _run(adb_cmd(adb, serial, "shell", repeat_shell(argv, runs)))
    text = done.stdout + done.stderr
    if re.search(r"Unconsumed cmdline flags:.*signature_to_run_for", text):
        raise RuntimeError("benchmark_model does not know --signature_to_run_for: it predates multi-signature "
                           "models; use a current LiteRT/TensorFlow Lite build")
    found = parse_benchmark_model(text)
    if job.compute_unit in DELEGATE_NAMES:
        name = DELEGATE_NAMES[job.compute_unit]
        bad = [r for r in found if r.delegate != name or r.delegation == "none"]
        if not found or bad:
            raise RuntimeError(f"benchmark_model {job.entry} {job.compute_unit}: the {name} delegate was not "
                               f"applied (not recorded as {job.compute_unit})\n{text[-1500:]}")
    samples = [s for r in found if (s := r.single_run_us()) is not None]
    if len(samples) < runs:
        raise RuntimeError(f"benchmark_model {job.entry} {job.compute_unit} (exit {done.returncode}): got "
                           f"{len(samples)} of {runs} single-run times\n{text[-1500:]}")
    return [s / 1000.0 for s in samples[:runs]]


def profile_adb(manifest: Manifest, lut: LUT, bundle_dir, serial: str, *, executor_runner: str | None,
                benchmark_model: str | None, runtimes: Sequence[str], threads: Sequence[int], runs: int,
                warmup: int, adb: str = "adb") -> tuple[str, Device, dict[tuple, list[Latency]]]:
    """Time the bundle's operating points on the attached phone `serial` (see the module docstring for how).

    Returns (device id "android-<model>-<serial>", the Device with getprop facts and tool identities, latencies keyed
    by `OperatingPoint.key()`, one per runtime × threads). Points that fail are logged and left out; if none ran,
    RuntimeError lists why.
    """
    if runs < 1 or warmup < 0 or not threads or any(t < 1 for t in threads):
        raise ValueError(f"adb profiling needs runs ≥ 1, warmup ≥ 0 and threads ≥ 1; got runs={runs}, "
                         f"warmup={warmup}, threads={list(threads)}")
    jobs = plan_jobs(lut, runtimes)
    if not jobs:
        raise ValueError(f"{bundle_dir}: the LUT has no operating point that runtimes {list(runtimes)} run on "
                         "Android (ExecuTorch XNNPACK, TFLite CPU/GPU/NNAPI)")
    check_binaries(runtimes, executor_runner, benchmark_model)
    adb = find_adb(adb)
    require_device(adb, serial)
    bundle_dir = Path(bundle_dir)
    artifacts = {a.file for a in manifest.artifacts}
    missing = sorted({j.artifact for j in jobs} - artifacts)
    if missing:
        raise ValueError(f"{bundle_dir}: LUT artifacts {missing} are not in manifest.json")

    props = parse_getprop(_checked(adb_cmd(adb, serial, "shell", "getprop"), "reading getprop", 120))
    dev_id = device_id(props, serial)
    facts = device_facts(props, serial)
    binaries = {"executorch": ("executor_runner", executor_runner), "tflite": ("benchmark_model", benchmark_model)}
    for runtime in runtimes:
        name, path = binaries[runtime]
        facts[name] = f"{Path(path).name} sha256:{sha256_of(Path(path))[:16]}"
    facts["latency_method"] = ("executor_runner: per-iteration times after warm-up; benchmark_model: one timed "
                               "run per process; p50/p90/p99 linear-interpolated")

    _checked(adb_cmd(adb, serial, "shell", f"mkdir -p {REMOTE_DIR}/cache"), "creating " + REMOTE_DIR, 120)
    remote_bin = {}
    try:
        for runtime in runtimes:
            name, path = binaries[runtime]
            remote_bin[runtime] = f"{REMOTE_DIR}/{name}"
            _checked(adb_cmd(adb, serial, "push", str(path), remote_bin[runtime]), f"pushing {path}")
            _checked(adb_cmd(adb, serial, "shell", f"chmod +x {shlex.quote(remote_bin[runtime])}"), "chmod", 120)
        remote_model = {}
        for artifact in sorted({j.artifact for j in jobs}):
            remote = f"{REMOTE_DIR}/{PurePosixPath(artifact).as_posix()}"
            _checked(adb_cmd(adb, serial, "shell", f"mkdir -p {shlex.quote(str(PurePosixPath(remote).parent))}"),
                     "mkdir", 120)
            _checked(adb_cmd(adb, serial, "push", str(bundle_dir / artifact), remote), f"pushing {artifact}")
            remote_model[artifact] = remote

        latencies: dict[tuple, list[Latency]] = {}
        failures = []
        for job in jobs:
            measure = _executorch_samples if job.runtime == "executorch" else _tflite_samples
            for t in threads:
                try:
                    samples = measure(adb, serial, remote_bin[job.runtime], remote_model[job.artifact], job, t,
                                      runs, warmup)
                except RuntimeError as e:
                    failures.append(f"{job.key} threads={t}: {str(e).splitlines()[0]}")
                    log.warning("adb %s: %s threads=%d skipped: %s", serial, job.key, t, str(e).splitlines()[0])
                    log.debug("adb %s: %s", serial, e)
                    continue
                latencies.setdefault(job.key, []).append(latency_from_samples(job.runtime, t, samples, job.macs))
    finally:
        _run(adb_cmd(adb, serial, "shell", f"rm -rf {REMOTE_DIR}"), 120)
    if not latencies:
        raise RuntimeError(f"no operating point could be timed on {serial}:\n  " + "\n  ".join(failures))
    return dev_id, Device(facts=facts), latencies


__all__ = [
    "profile_adb", "executor_runner_cmd", "benchmark_model_cmd", "adb_cmd", "device_shell", "repeat_shell",
    "parse_executor_runner", "parse_benchmark_model", "parse_getprop", "parse_adb_devices", "device_id",
    "device_facts", "percentile", "latency_from_samples", "plan_jobs", "check_binaries", "find_adb",
    "require_device", "check_attached",
]

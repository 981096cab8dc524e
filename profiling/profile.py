"""`profile`: measure a bundle's operating points on a device and merge the results into its `lut.json`.

On the host every host-runnable operating point is timed in its own runtime (see `resflex.profiling.host`), per
runtime × thread count. The device entry gets the host's facts, its fp32 GEMM peak (at the largest thread count),
the switch cost per runtime × precision (at the smallest thread count) and a latency model per runtime ×
precision × compute unit × threads (`resflex.profiling.fit`). On an Android phone (`--device adb:SERIAL`) the
measuring is `resflex.profiling.adb.profile_adb`'s; the merging is the same. The host has CPU compute units only
(XNNPACK, CPU, CPUExecutionProvider; Core ML's four on macOS): the other units of the same artifact (TFLite
GPU/NNAPI) keep no host latency. Accuracy per operating point was measured by `convert` on the artifact itself
and is left as it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from resflex.mobile.bundle.io import LUT_FILE, Bundle, check_writable, update_lut
from resflex.convert.runtimes import HOST_RUNTIMES, ON_MACOS, host_units
from resflex.mobile import __version__
from resflex.mobile.bundle.schema import (
    LUT,
    RUNTIME_BACKENDS,
    Device,
    DeviceProfile,
    Latency,
    Manifest,
    SchemaError,
    SwitchCost,
    check_device_id,
    read_json,
)

from .fit import fit_latency_models
from .host import gemm_peak_gflops, host_facts, run_worker
from .stats import latency_from_samples

HOST_UNITS = {runtime: tuple(host_units(runtime)) for runtime in RUNTIME_BACKENDS}
DEFAULT_RUNTIMES = HOST_RUNTIMES
GEMM_SIZE, GEMM_REPEATS = 2048, 5


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    bundle: str
    device: str = "host"  # host | adb:SERIAL
    device_id: str | None = None  # default: "host"; for adb, the id the phone profiler reports
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    threads: tuple[int, ...] = (1,)
    runs: int = 50
    warmup: int = 10
    switch_cost: bool = True
    switch_repeats: int = 5
    gemm_peak: bool = True
    executor_runner: str | None = None  # adb: ExecuTorch's executor_runner built for the phone
    benchmark_model: str | None = None  # adb: LiteRT's benchmark_model built for the phone
    adb: str = "adb"
    progress: bool = True
    timeout_s: float = 1800.0  # per child process (one artifact × thread count)

    def __post_init__(self):
        unknown = [r for r in self.runtimes if r not in RUNTIME_BACKENDS]
        if unknown or not self.runtimes:
            raise ValueError(f"unknown runtime(s) {unknown or list(self.runtimes)}; expected one or more of: "
                             f"{', '.join(RUNTIME_BACKENDS)}")
        if not self.threads or any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise ValueError(f"threads must be integers ≥ 1, got {list(self.threads)}")
        if self.runs < 1 or self.warmup < 0 or self.switch_repeats < 1:
            raise ValueError(f"need runs ≥ 1, warmup ≥ 0 and switch_repeats ≥ 1; got runs {self.runs}, warmup "
                             f"{self.warmup}, switch_repeats {self.switch_repeats}")
        if self.device != "host" and not (self.device.startswith("adb:") and self.device[4:]):
            raise ValueError(f"device {self.device!r}: expected 'host' or 'adb:SERIAL' (serial from `adb devices`)")
        if self.device_id is not None:
            check_device_id(self.device_id, "--device-id")

    @property
    def is_host(self) -> bool:
        return self.device == "host"


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def merge_device(lut: LUT, device_id: str, device: Device, latencies: Mapping[tuple, Sequence[Latency]]) -> LUT:
    """`lut` with the entry of `device_id` replaced: its `Device`, and its latency list on every operating point
    (points absent from `latencies` no longer list this device). Every other device's entries are kept as they
    are. `latencies` is keyed by `OperatingPoint.key()`."""
    known = {op.key() for op in lut.operating_points}
    stray = [k for k in latencies if k not in known]
    if stray:
        raise ValueError(f"latencies for operating points that are not in the LUT: {stray}")
    points = []
    for op in lut.operating_points:
        latency = {d: lats for d, lats in op.latency.items() if d != device_id}
        if latencies.get(op.key()):
            latency[device_id] = list(latencies[op.key()])
        points.append(dataclasses.replace(op, latency=latency))
    return dataclasses.replace(lut, operating_points=points, devices={**lut.devices, device_id: device})


def merge_measured(lut: LUT, device_id: str, device: Device, latencies: Mapping[tuple, Sequence[Latency]]) -> LUT:
    """`lut` with what one `profile` run measured on `device_id` merged in: each (operating point, runtime, threads)
    measured now replaces the stored one, every other latency of the device is kept (`import_profile` merges the same way); switch
    costs replace those of the same (runtime, precision); the GEMM peak is kept unless measured now; facts are
    updated; latency models are refitted over the merged latencies (a phone profiler's own models replace those of
    the same runtime × precision × unit × threads)."""
    old = lut.devices.get(device_id, Device())
    measured: dict[tuple, dict] = defaultdict(dict)
    for op in lut.operating_points:
        for lat in op.latency.get(device_id, ()):
            measured[op.key()][(lat.runtime, lat.threads)] = lat
    for key, lats in latencies.items():
        for lat in lats:
            measured[key][(lat.runtime, lat.threads)] = lat
    merged = {key: list(by_run.values()) for key, by_run in measured.items()}
    new_switch = {(s.runtime, s.precision) for s in device.switch_costs}
    switch_costs = [s for s in old.switch_costs if (s.runtime, s.precision) not in new_switch] + list(device.switch_costs)
    models = fit_latency_models(lut, merged)
    if device.latency_models:
        model_key = lambda m: (m.runtime, m.precision, m.compute_unit, m.threads)  # noqa: E731
        given = {model_key(m) for m in device.latency_models}
        models = [m for m in models if model_key(m) not in given] + list(device.latency_models)
    peak = device.gemm_peak_gflops if device.gemm_peak_gflops is not None else old.gemm_peak_gflops
    return merge_device(lut, device_id, Device({**old.facts, **device.facts}, peak, switch_costs, models), merged)


def latency_from_times(times_ns: Sequence[int], runtime: str, threads: int, macs: int,
                       peak_bytes: int | None = None) -> Latency:
    """`resflex.profiling.stats.latency_from_samples` of timed runs given in nanoseconds."""
    return latency_from_samples(runtime, threads, [t / 1e6 for t in times_ns], macs, peak_bytes)


def _host_jobs(config: ProfileConfig, manifest: Manifest, lut: LUT, bundle: Path, runtimes: list[str]):
    """(job, artifact) per artifact × thread count, for `resflex.profiling.host.run_worker`."""
    points = {(op.artifact, op.entry, op.compute_unit) for op in lut.operating_points}
    jobs = []
    for runtime in runtimes:
        artifacts = [a for a in manifest.artifacts if a.backend is RUNTIME_BACKENDS[runtime]]
        if not artifacts:
            _say(f"{runtime}: the bundle has no {RUNTIME_BACKENDS[runtime].value} artifact; skipped")
        for a in artifacts:
            units = [u for u in HOST_UNITS[runtime] if any((a.file, e.name, u) in points for e in a.entries)]
            entries = [e for e in a.entries if any((a.file, e.name, u) in points for u in units)]
            if not entries:
                continue
            folder = (bundle / PurePosixPath(a.file).parent).resolve()
            thread_counts = (0,) if runtime == "coreml" else tuple(sorted(set(config.threads)))
            for t in thread_counts:
                switch = config.switch_cost and runtime != "coreml" and t == thread_counts[0]
                jobs.append(({
                    "runtime": runtime, "path": str((bundle / a.file).resolve()), "threads": t, "units": units,
                    "runs": config.runs, "warmup": config.warmup,
                    "switch_repeats": config.switch_repeats if switch else 0,
                    "entries": [{"name": e.name, "resolution": e.resolution, "input_name": e.input_name,
                                 "output_name": e.output_name, "input_shape": list(e.input_shape),
                                 "path": str(folder / e.name)} for e in entries],
                }, a))
    return jobs


def profile_host(config: ProfileConfig, manifest: Manifest, lut: LUT, bundle: Path):
    """Time the bundle on this machine: (Device, latencies keyed by `OperatingPoint.key()`, failures)."""
    runtimes = list(dict.fromkeys(config.runtimes))
    if "coreml" in runtimes and not ON_MACOS:
        _say(f"coreml: skipped — Core ML runs only on macOS (this host is {sys.platform}); the Core ML operating "
             "points get no host latency")
        runtimes.remove("coreml")
    jobs = _host_jobs(config, manifest, lut, bundle, runtimes)
    if not jobs:
        have = sorted({a.backend.value for a in manifest.artifacts})
        raise ValueError(f"{bundle}: nothing to profile on the host with runtimes {runtimes or list(config.runtimes)};"
                         f" the bundle has artifacts for: {', '.join(have) or 'none'}")
    ops = {(op.artifact, op.entry, op.compute_unit): op for op in lut.operating_points}
    latencies, switch_costs, versions, failures = defaultdict(list), [], {}, []
    bar = tqdm(total=sum(len(j["entries"]) * len(j["units"]) for j, _ in jobs), desc="profile", unit="point",
               disable=not config.progress)
    for job, artifact in jobs:
        bar.set_postfix_str(f"{job['runtime']} {artifact.precision.value} {job['threads'] or 'auto'} thread(s)")
        try:
            messages = run_worker(job, lambda m: bar.update(m["type"] == "entry"), config.timeout_s)
        except RuntimeError as e:
            failures.append(f"{job['runtime']} {artifact.precision.value} ({job['threads']} threads): {e}")
            _say(f"FAILED {failures[-1]}")
            continue
        for m in messages:
            if m["type"] == "entry":
                op = ops[(artifact.file, m["name"], m["unit"])]
                latencies[op.key()].append(latency_from_times(m["times_ns"], job["runtime"], job["threads"], op.macs,
                                                              m["peak_rss_bytes"]))
            elif m["type"] == "switch":
                median = {k: float(np.median(m[f"{k}_ns"])) / 1e6 for k in ("switch_loaded", "switch_first",
                                                                             "load_file", "steady")}
                switch_costs.append(SwitchCost(job["runtime"], artifact.precision, median["switch_loaded"],
                                               median["switch_first"], median["load_file"], median["steady"]))
            elif m["type"] == "done":
                versions.update(m["versions"])
    bar.close()
    facts = {**host_facts(), **versions, "threads_profiled": ",".join(map(str, sorted(set(config.threads)))),
             "resflex": __version__}
    peak = None
    if config.gemm_peak and latencies:
        threads = max(config.threads)
        peak = gemm_peak_gflops(threads, GEMM_SIZE, GEMM_REPEATS)
        facts["gemm_peak"] = f"torch.mm fp32 {GEMM_SIZE}x{GEMM_SIZE}, {threads} thread(s), best of {GEMM_REPEATS}"
    return Device(facts=facts, gemm_peak_gflops=peak, switch_costs=switch_costs), dict(latencies), failures


def _check_binaries(config: ProfileConfig) -> None:
    for flag, path in (("--executor-runner", config.executor_runner), ("--benchmark-model", config.benchmark_model)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{flag} {path}: file not found (give the path of the binary built for the "
                                    "phone; it is pushed to the device)")


def profile(config: ProfileConfig) -> LUT:
    """Profile the bundle at `config.bundle` on `config.device` and merge the results into its `lut.json`
    (atomically; other devices' entries untouched). Returns the LUT written. If some artifacts fail to run, the
    others are still written, then RuntimeError lists the failures."""
    bundle = Path(config.bundle)
    if not bundle.is_dir():
        raise FileNotFoundError(f"{bundle}: bundle directory not found")
    opened = Bundle.open(bundle, verify=True)
    manifest, lut = opened.manifest, opened.lut
    check_writable(bundle, "bundle")  # refuse before measuring, not after
    failures = []
    if config.is_host:
        device_id = config.device_id or "host"
        device, latencies, failures = profile_host(config, manifest, lut, bundle)
    else:
        _check_binaries(config)
        from resflex.profiling.adb import profile_adb

        device_id, device, latencies = profile_adb(
            manifest, lut, bundle, config.device[len("adb:"):], executor_runner=config.executor_runner,
            benchmark_model=config.benchmark_model, runtimes=config.runtimes, threads=config.threads,
            runs=config.runs, warmup=config.warmup, adb=config.adb)
        device_id = check_device_id(config.device_id or device_id, f"{config.device}: device id")
    if not latencies:
        raise RuntimeError(f"{bundle}: no operating point could be timed on {config.device}:\n" + "\n".join(failures))
    device = dataclasses.replace(device, facts={
        **device.facts, "profiled_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    # read, merge and write under the bundle's lock; keep what was not measured now
    merged = update_lut(bundle, lambda current: merge_measured(current, device_id, device, latencies))
    if failures:
        raise RuntimeError(f"{len(failures)} artifact run(s) failed (the other measurements were written to "
                           f"{bundle / LUT_FILE}):\n" + "\n".join(failures))
    return merged


def import_profile(bundle: str | Path, profile_path: str | Path) -> tuple[LUT, str]:
    """Merge a phone's `device_profile.json` (the demo apps' "Benchmark this phone") into the bundle's lut.json.

    The profile must come from this bundle (same checkpoint) and name only its operating points, each with the
    runtime of its backend. Under the profile's device id, each (operating point, runtime, threads) it measured
    replaces the one stored; everything else (other devices, other runtimes or thread counts of this device, its
    switch costs and GEMM peak) is kept; the latency models are refitted. Written atomically; on any error
    lut.json is untouched. Returns the LUT written and the device id."""
    bundle, profile_path = Path(bundle), Path(profile_path)
    if profile_path.is_dir():
        raise SchemaError(f"{profile_path}: is a folder; give the device_profile.json file")
    doc = read_json(DeviceProfile, profile_path)
    opened = Bundle.open(bundle, verify=False)
    manifest, lut = opened.manifest, opened.lut
    if doc.checkpoint_sha256 != manifest.model.checkpoint_sha256:
        raise SchemaError(f"{profile_path}: checkpoint_sha256 {doc.checkpoint_sha256[:12]}… is not this bundle's "
                          f"({manifest.model.checkpoint_sha256[:12]}…): the phone measured another bundle")
    points = {op.key(): op for op in lut.operating_points}
    for i, m in enumerate(doc.measurements):
        op = points.get(m.key())
        where = f"{profile_path}: measurements[{i}]"
        if op is None:
            raise SchemaError(f"{where}: operating point {m.key()} is not in {bundle / LUT_FILE}")
        if m.entry != op.entry:
            raise SchemaError(f"{where}.entry: {m.entry!r}, but the LUT serves {m.key()} with {op.entry!r}")
        if RUNTIME_BACKENDS.get(m.latency.runtime) is not op.backend:
            raise SchemaError(f"{where}.latency.runtime: {m.latency.runtime!r} does not run {op.backend.value} "
                              f"artifacts; expected one of {[r for r, b in RUNTIME_BACKENDS.items() if b is op.backend]}")

    latencies = defaultdict(list)
    for m in doc.measurements:
        latencies[m.key()].append(m.latency)
    facts = {**doc.facts, "imported_from": profile_path.name,
             "profiled_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}

    def change(lut: LUT) -> LUT:  # under the bundle's lock, on lut.json as it is now
        return merge_measured(lut, doc.device_id, Device(facts), latencies)

    return update_lut(bundle, change), doc.device_id


def last_profiled(lut: LUT) -> str:
    """The device id most recently profiled into `lut` (by its `profiled_at` fact)."""
    dated = [(d.facts.get("profiled_at", ""), i) for i, d in lut.devices.items()]
    if not dated:
        raise ValueError("the LUT has no devices")
    return max(dated)[1]


# --------------------------------------------------------------------------------------------------- tables


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _mmacs(macs: int) -> str:
    return f"{macs / 1e6:.1f}" if macs >= 10_000_000 else f"{macs / 1e6:.3f}"


def format_latencies(lut: LUT, device_id: str) -> str:
    """Markdown: one row per operating point × runtime × threads measured on `device_id`."""
    peak = lut.devices[device_id].gemm_peak_gflops
    lines = ["| resolution | backend | precision | unit | runtime | threads | MMACs | top-1 | p50 ms | p90 ms | "
             "p99 ms | GFLOP/s | of GEMM peak | peak MB |",
             "|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for op in sorted(lut.operating_points, key=lambda o: (o.backend.value, o.precision.value, o.compute_unit,
                                                          -o.resolution)):
        for lat in sorted(op.latency.get(device_id, []), key=lambda x: (x.runtime, x.threads)):
            top1 = f"{100 * op.top1:.1f}" if op.top1 is not None else "-"
            share = f"{100 * lat.gflops / peak:.1f}%" if peak and lat.gflops is not None else "-"
            scales = f" s{','.join(f'{s:g}' for s in op.stage_scales)}" if op.stage_scales else ""
            lines.append(f"| {op.resolution}{scales} | {op.backend.value} | {op.precision.value} | {op.compute_unit} | "
                         f"{lat.runtime} | {lat.threads or 'auto'} | {_mmacs(op.macs)} | {top1} | {lat.p50_ms:.3f} | "
                         f"{lat.p90_ms:.3f} | {lat.p99_ms:.3f} | {_f(lat.gflops)} | {share} | "
                         f"{_f(lat.peak_memory_mb, '.0f')} |")
    return "\n".join(lines)


def format_switch_costs(device: Device) -> str:
    """Medians; each includes one inference. Overheads are beyond that inference (`SwitchCost.overheads`)."""
    lines = ["| runtime | precision | switch, loaded ms | switch, first use ms | load file ms | inference alone ms | "
             "switch overhead ms | load overhead ms | load ÷ switch overhead |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in device.switch_costs:
        over = s.overheads()
        tail = (f"{over[0]:.3f} | {over[1]:.3f} | {over[2]:.0f}× |" if over else "- | - | - |")
        lines.append(f"| {s.runtime} | {s.precision.value} | {s.switch_loaded_ms:.3f} | {s.switch_first_ms:.3f} | "
                     f"{s.load_file_ms:.3f} | {_f(s.steady_ms, '.3f')} | " + tail)
    return "\n".join(lines)


def format_latency_models(device: Device) -> str:
    lines = ["| runtime | precision | unit | threads | a (ms) | b (ms/GMAC) | mean abs. rel. error | points |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for m in device.latency_models:
        how = "leave-one-out" if m.points >= 3 else "in-sample"
        lines.append(f"| {m.runtime} | {m.precision.value} | {m.compute_unit} | {m.threads or 'auto'} | "
                     f"{m.intercept_ms:.3f} | {m.ms_per_gmac:.2f} | {100 * m.mean_abs_rel_error:.1f}% ({how}) | "
                     f"{m.points} |")
    return "\n".join(lines)


def format_profile(lut: LUT, device_id: str) -> str:
    """What `resflex profile` prints: the device, its latencies, switch costs and latency models."""
    device = lut.devices[device_id]
    facts = ", ".join(f"{k} {v}" for k, v in device.facts.items())
    parts = [f"device {device_id}: {facts}", f"fp32 GEMM peak: {_f(device.gemm_peak_gflops, '.1f')} GFLOP/s", "",
             format_latencies(lut, device_id)]
    if device.switch_costs:
        parts += ["", "switch cost (time to the first result at another resolution):", format_switch_costs(device)]
    if device.latency_models:
        parts += ["", "latency model p50 ≈ a + b·GMACs:", format_latency_models(device)]
    return "\n".join(parts)
